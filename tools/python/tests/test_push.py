"""`python3 -m hndd_client push` against a Python PULL socket standing in for the daemon."""
import os
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
import zmq

from hndd_client import Endpoints
from hndd_client.push import main as push_main, select_rows
from hndd_client.wire import hndd_pb2

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = 50


@pytest.fixture
def activations_file(run_dir):
    """Two layers: `conv1` float32 with image_ids (a permutation of 100..149), `fc.2` float16
    without (rows are images 0..49)."""
    rng = np.random.default_rng(5)
    path = os.path.join(run_dir, "acts.h5")
    with h5py.File(path, "w") as f:
        f["layers/conv1/activations"] = rng.standard_normal((ROWS, 3, 4, 4)).astype(np.float32)
        f["layers/conv1/image_ids"] = rng.permutation(ROWS).astype(np.int64) + 100
        f["layers/fc.2/activations"] = rng.standard_normal((ROWS, 5, 1, 1)).astype(np.float16)
    with h5py.File(path, "r") as f:
        expected = {
            "conv1": dict(zip(f["layers/conv1/image_ids"][()].tolist(), f["layers/conv1/activations"][()])),
            "fc.2": dict(enumerate(f["layers/fc.2/activations"][()])),
        }
    return path, expected


class Collector:
    """Receives batches on the run directory's ingest endpoint in a background thread."""

    def __init__(self, run_dir):
        self.context = zmq.Context()
        self.pull = self.context.socket(zmq.PULL)
        self.pull.setsockopt(zmq.RCVTIMEO, 100)
        self.pull.bind(Endpoints.from_run_dir(run_dir).ingest)
        self.batches = []  # (header, tensor bytes)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                frames = self.pull.recv_multipart()
            except zmq.Again:
                continue
            assert len(frames) == 2
            header = hndd_pb2.BatchHeader()
            header.ParseFromString(frames[0])
            self.batches.append((header, frames[1]))

    def finish(self, expected_batches=None, timeout=10):
        if expected_batches is not None:
            deadline = time.monotonic() + timeout
            while len(self.batches) < expected_batches and time.monotonic() < deadline:
                time.sleep(0.05)
        self.stop.set()
        self.thread.join()
        self.pull.close(linger=0)
        self.context.term()
        return self.batches


def rows_of(header, tensor):
    """{image id: activation row} of one received batch."""
    dtype = {hndd_pb2.DTYPE_FLOAT32: "<f4", hndd_pb2.DTYPE_FLOAT16: "<f2"}[header.dtype]
    values = np.frombuffer(tensor, dtype=dtype).reshape(len(header.image_ids), header.units, header.height,
                                                        header.width)
    return dict(zip(header.image_ids, values))


def test_replays_every_layer_and_row_exactly(run_dir, activations_file, capsys):
    path, expected = activations_file
    collector = Collector(run_dir)
    try:
        status = push_main(["--activations", path, "--run-dir", run_dir, "--run", "exp", "--step", "42",
                            "--batch-size", "16"])
    finally:
        batches = collector.finish(expected_batches=8)
    assert status == 0, capsys.readouterr().err
    assert "sent 100 image rows in 8 batches" in capsys.readouterr().err
    assert len(batches) == 8  # ceil(50 / 16) = 4 batches per layer
    # A trainer sends each image batch's layers together: layers alternate.
    assert [header.layer for header, _ in batches] == ["conv1", "fc.2"] * 4
    received = {"conv1": {}, "fc.2": {}}
    for header, tensor in batches:
        assert (header.protocol_version, header.run, header.step) == (1, "exp", 42)
        assert len(header.image_ids) <= 16
        assert not header.HasField("rank")
        for image, row in rows_of(header, tensor).items():
            assert image not in received[header.layer], "each row is sent once"
            received[header.layer][image] = row
    assert batches[1][0].dtype == hndd_pb2.DTYPE_FLOAT16, "float16 data stays float16"
    assert (batches[0][0].units, batches[0][0].height, batches[0][0].width) == (3, 4, 4)
    for layer in expected:
        assert sorted(received[layer]) == sorted(expected[layer])
        for image, row in expected[layer].items():
            np.testing.assert_array_equal(received[layer][image], row)


def test_parts_cover_every_row_exactly_once(run_dir, activations_file):
    """Four concurrent `push --part K/4 --shuffle --seed 9` processes, as four data-parallel ranks."""
    path, expected = activations_file
    collector = Collector(run_dir)
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    processes = [
        subprocess.Popen([sys.executable, "-m", "hndd_client", "push", "--activations", path, "--run-dir", run_dir,
                          "--run", "ddp", "--step", "7", "--batch-size", "5", "--shuffle", "--seed", "9",
                          "--part", f"{k}/4", "--layer", "conv1"],
                         env=env, stderr=subprocess.PIPE, text=True)
        for k in range(1, 5)
    ]
    try:
        errors = [process.communicate(timeout=60)[1] for process in processes]
    finally:
        batches = collector.finish(expected_batches=12)  # ranks get 13, 13, 12, 12 rows: 3 batches each
    assert [process.returncode for process in processes] == [0, 0, 0, 0], errors
    ids_by_rank = {}
    received = {}
    for header, tensor in batches:
        assert header.layer == "conv1" and header.step == 7
        ids_by_rank.setdefault(header.rank, []).extend(header.image_ids)
        received.update(rows_of(header, tensor))
    assert sorted(ids_by_rank) == [0, 1, 2, 3]
    all_ids = [image for ids in ids_by_rank.values() for image in ids]
    assert sorted(all_ids) == sorted(expected["conv1"]), "every row once, none twice"
    assert sorted(len(ids) for ids in ids_by_rank.values()) == [12, 12, 13, 13]
    for image, row in expected["conv1"].items():
        np.testing.assert_array_equal(received[image], row)


def test_row_selection_is_a_partition_and_reproducible():
    parts = [select_rows(103, True, 4, (k, 5)) for k in range(1, 6)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    np.testing.assert_array_equal(select_rows(103, True, 4, (2, 5)), parts[1])
    shuffled = select_rows(103, True, 4, None)
    assert sorted(shuffled.tolist()) == list(range(103)) and shuffled.tolist() != list(range(103))
    assert select_rows(10, False, None, (3, 4)).tolist() == [2, 6]


def test_layer_selection_and_bfloat16(run_dir, activations_file):
    path, expected = activations_file
    collector = Collector(run_dir)
    try:
        status = push_main(["--activations", path, "--run-dir", run_dir, "--run", "r", "--step", "1",
                            "--layer", "fc.2", "--dtype", "bfloat16", "--batch-size", "100"])
    finally:
        batches = collector.finish(expected_batches=1)
    assert status == 0
    assert len(batches) == 1
    header, tensor = batches[0]
    assert header.layer == "fc.2" and header.dtype == hndd_pb2.DTYPE_BFLOAT16
    assert list(header.image_ids) == list(range(ROWS))
    bits = np.frombuffer(tensor, dtype="<u2").astype(np.uint32) << 16
    decoded = bits.view(np.float32).reshape(ROWS, 5)
    float16_rows = np.stack([expected["fc.2"][i] for i in range(ROWS)]).reshape(ROWS, 5).astype(np.float32)
    np.testing.assert_allclose(decoded, float16_rows, rtol=2**-8)


def write_file(path, build):
    with h5py.File(path, "w") as f:
        build(f)
    return path


@pytest.mark.parametrize("build, extra, message", [
    (lambda f: f.create_group("other"), [], "no /layers group"),
    (lambda f: f.create_dataset("layers/a/activations", data=np.zeros((2, 3, 4))), [], "must be [M, C, h, w]"),
    (lambda f: f.create_dataset("layers/a/activations", data=np.zeros((2, 1, 1, 1), dtype=np.int32)), [],
     "must be float32 or float16"),
    (lambda f: (f.create_dataset("layers/a/activations", data=np.zeros((2, 1, 1, 1), dtype=np.float32)),
                f.create_dataset("layers/a/image_ids", data=np.arange(3))), [], "must be 2 integers"),
    (lambda f: (f.create_dataset("layers/a/activations", data=np.zeros((2, 1, 1, 1), dtype=np.float32)),
                f.create_dataset("layers/a/image_ids", data=np.array([0, -4]))), [], "image_ids[1] = -4 is negative"),
    (lambda f: f.create_dataset("layers/a/activations", data=np.zeros((2, 1, 1, 1), dtype=np.float32)),
     ["--layer", "b"], "no layer b in /layers (has: a)"),
    (lambda f: f.create_dataset("layers/a/activations", data=np.zeros((2, 1, 1, 1), dtype=np.float32)),
     ["--part", "0/4"], "K counts from 1"),
    (lambda f: f.create_dataset("layers/a/activations", data=np.zeros((2, 1, 1, 1), dtype=np.float32)),
     ["--part", "5/4"], "1 <= K <= N"),
    (lambda f: f.create_dataset("layers/a/activations", data=np.zeros((2, 1, 1, 1), dtype=np.float32)),
     ["--part", "half"], "expected K/N"),
    (lambda f: f.create_dataset("layers/a/activations", data=np.zeros((2, 1, 1, 1), dtype=np.float32)),
     ["--part", "1/2", "--shuffle"], "needs --seed"),
    (lambda f: f.create_dataset("layers/a/activations", data=np.zeros((2, 1, 1, 1), dtype=np.float32)),
     ["--batch-size", "0"], "--batch-size 0"),
])
def test_bad_input_exits_nonzero_with_a_clear_message(run_dir, capsys, build, extra, message):
    path = write_file(os.path.join(run_dir, "bad.h5"), build)
    status = push_main(["--activations", path, "--run-dir", run_dir, "--run", "r", "--step", "0"] + extra)
    assert status == 1
    error = capsys.readouterr().err
    assert error.startswith("push: error: ")
    assert message in error


def test_missing_and_non_hdf5_files(run_dir, capsys):
    assert push_main(["--activations", os.path.join(run_dir, "nope.h5"), "--run-dir", run_dir,
                      "--run", "r", "--step", "0"]) == 1
    assert "no such file" in capsys.readouterr().err
    text = os.path.join(run_dir, "text.h5")
    with open(text, "w") as f:
        f.write("not hdf5")
    assert push_main(["--activations", text, "--run-dir", run_dir, "--run", "r", "--step", "0"]) == 1
    assert "not a readable HDF5 file" in capsys.readouterr().err


def test_no_daemon_fails_after_the_timeout(run_dir, activations_file, capsys):
    path, _ = activations_file
    status = push_main(["--activations", path, "--run-dir", run_dir, "--run", "r", "--step", "0",
                        "--timeout", "0.3"])
    assert status == 1
    assert "is hndd serve running?" in capsys.readouterr().err


def test_usage_errors_exit_2(run_dir):
    with pytest.raises(SystemExit) as exit_info:
        push_main(["--activations", "a.h5", "--run-dir", run_dir, "--step", "0"])  # no --run
    assert exit_info.value.code == 2
