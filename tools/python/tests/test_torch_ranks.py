"""Many trainer ranks, one pass: 4 ranks of a gloo process group on this machine, each with its own
CURVE credential, `watch` the same model over tcp://127.0.0.1; each probes only its share (split
by rank and world size) and the daemon completes one pass equal, dataset for dataset and bit for
bit, to the pass of one process probing every image."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (tools/setup with HNDD_WITH_TORCH=1)")

from hndd_client import Client  # noqa: E402
from hndd_client.synth import generate_dictionary  # noqa: E402
from hndd_client.torch import Probe, ProbeError, watch  # noqa: E402
from test_torch_watch import TinyNet  # noqa: E402

HERE = Path(__file__).resolve().parent
WORLD, IMAGES, LAYERS = 4, 42, {"stem": 4, "block.1": 6}
TCP = ("--ingest", "tcp", "--publish", "tcp", "--control", "tcp")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hndd(binary, *arguments, check=True):
    return subprocess.run([str(binary), *map(str, arguments)], capture_output=True, text=True, check=check, timeout=60)


def complete(binary, run_dir, key, run):
    """Layers whose pass of `run` (step 0) is complete and written, from `hndd status --key`."""
    out = hndd(binary, "status", "--run-dir", run_dir, "--key", key, check=False)
    if out.returncode != 0:
        return set()
    return {layer["layer"] for layer in json.loads(out.stdout)["layers"]
            for p in layer["passes"] if p["run"] == run and p["complete"] and not p["open"]}


def rows(path, run):
    """Per layer, the datasets of the complete row of `run` (time_unix and run aside)."""
    found = {}
    with h5py.File(path, "r") as file:
        for layer in LAYERS:
            group = file["layers"][layer]
            runs = [r.decode() if isinstance(r, bytes) else r for r in group["run"][()]]
            (index,) = [i for i, r in enumerate(runs) if r == run and group["complete"][i] == 1]
            found[layer] = {name: np.asarray(data[index]) for name, data in group.items()
                            if isinstance(data, h5py.Dataset) and name not in ("time_unix", "run")}
    return found


def test_probe_share_splits_ids_once_over_the_ranks(tmp_path):
    dictionary = tmp_path / "D.h5"
    generate_dictionary(str(dictionary), images=10, size=32, seed=5, mask_size=16)
    probe = Probe(dictionary, batch_size=3)
    shares = [probe.share(r, 4).image_ids.tolist() for r in range(4)]
    assert shares == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    assert probe.image_ids.tolist() == list(range(10))  # the probe itself is unchanged
    with pytest.raises(ProbeError, match="rank 4 is not in 0..3"):
        probe.share(4, 4)
    with pytest.raises(ProbeError, match="gets no image"):
        Probe(dictionary, image_ids=[1, 2]).share(2, 3)


def test_four_gloo_ranks_make_one_pass_equal_to_a_single_process_pass(hndd_binary, run_dir, tmp_path):
    dictionary = tmp_path / "D.h5"
    generate_dictionary(str(dictionary), images=IMAGES, size=32, seed=7, mask_size=16)
    keys = [Path(hndd(hndd_binary, "keys", "client", "--run-dir", run_dir, "--name", f"rank-{r}").stdout.strip())
            for r in range(WORLD)]
    single_key = Path(hndd(hndd_binary, "keys", "client", "--run-dir", run_dir, "--name", "single").stdout.strip())
    snapshots = tmp_path / "snapshots.h5"
    daemon = subprocess.Popen([str(hndd_binary), "serve", "--dictionary", str(dictionary), "--run-dir", run_dir,
                               "--out", str(snapshots), *TCP], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ranks = []
    try:
        endpoints = Path(run_dir) / "endpoints.json"
        deadline = time.monotonic() + 20
        while not endpoints.exists() and daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert endpoints.exists(), "hndd serve did not start"
        ingest = json.loads(endpoints.read_text())["ingest"]
        assert ingest.startswith("tcp://127.0.0.1:")
        port = free_port()
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
        ranks = [subprocess.Popen([sys.executable, str(HERE / "rank_worker.py"), str(r), str(WORLD), str(port),
                                   str(dictionary), ingest, str(keys[r]), "ranks", "0"],
                                  env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for r in range(WORLD)]
        outputs = [p.communicate(timeout=180)[0] for p in ranks]
        for r, (p, out) in enumerate(zip(ranks, outputs)):
            assert p.returncode == 0, f"rank {r}: {out}"
        assert sorted(int(o.split("rank ")[1].split(":")[1].split()[0]) for o in outputs) == [10, 10, 11, 11]
        # The single-process pass, in the same daemon, as another run.
        with Client(endpoint=ingest, key=single_key, run="single", on_full="block") as client:
            assert watch(TinyNet(), list(LAYERS), dictionary, every=1, client=client, batch_size=4).step(0)
            assert client.flush(timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(complete(hndd_binary, run_dir, single_key, run) == set(LAYERS)
                                                      for run in ("ranks", "single")):
            time.sleep(0.3)
        status = json.loads(hndd(hndd_binary, "status", "--run-dir", run_dir, "--key", single_key).stdout)
        assert status["auth_denied"] == 0 and status["images_seen"] == 2 * IMAGES * len(LAYERS)
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
        daemon.terminate()
        log = daemon.communicate(timeout=30)[0].decode(errors="replace")
    assert daemon.returncode == 0, log
    for r in range(WORLD):
        assert f"admitted client rank-{r} from 127.0.0.1" in log
    many, one = rows(snapshots, "ranks"), rows(snapshots, "single")
    for layer, units in LAYERS.items():
        assert int(many[layer]["images_seen"]) == IMAGES and many[layer]["region"].shape == (units,)
        differ = [name for name in one[layer] if not np.array_equal(many[layer][name], one[layer][name])]
        assert differ == [], f"{layer}: the 4-rank pass differs from the single-process pass in {differ}"
