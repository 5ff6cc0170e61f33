"""hndd_client.torch: Probe and watch, with a tiny model, against a PULL socket standing in for the
daemon and against the real `hndd serve`."""
import json
import logging
import os
import subprocess
import tempfile
import time
import warnings

import h5py
import numpy as np
import pytest
import zmq

torch = pytest.importorskip("torch", reason="PyTorch is not installed (tools/setup with HNDD_WITH_TORCH=1)")

from hndd_client import Client  # noqa: E402
from hndd_client.synth import generate_dictionary  # noqa: E402
from hndd_client.torch import Probe, ProbeError, watch  # noqa: E402
from hndd_client.wire import hndd_pb2  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
IMAGES, PIXELS = 10, 32


class TinyNet(torch.nn.Module):
    """conv (16x16) -> BN -> ReLU -> block conv (8x8) -> dropout -> linear head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.block = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3, stride=2, padding=1))
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x):
        x = self.block(self.bn(self.stem(x)))
        return self.head(self.drop(x.mean(dim=(2, 3))))


@pytest.fixture(scope="module")
def dictionary():
    with tempfile.TemporaryDirectory(prefix="hndw-dict-") as directory:
        path = os.path.join(directory, "D.h5")
        generate_dictionary(path, images=IMAGES, size=PIXELS, seed=5, mask_size=16)
        yield path


@pytest.fixture
def receiver(ingest_receiver):
    return ingest_receiver


def receive_all(pull, expected_batches):
    batches = []
    for _ in range(expected_batches):
        header_bytes, tensor = pull.recv_multipart()
        header = hndd_pb2.BatchHeader()
        header.ParseFromString(header_bytes)
        batches.append((header, tensor))
    pull.setsockopt(zmq.RCVTIMEO, 300)
    with pytest.raises(zmq.Again):  # nothing beyond what was expected
        pull.recv_multipart()
    return batches


def dictionary_images(path):
    with h5py.File(path, "r") as file:
        return torch.from_numpy(file["images/pixels"][()]).permute(0, 3, 1, 2).contiguous().float() / 255


def reference_outputs(model, images):
    """Each watched layer's output in eval mode, computed without the watcher."""
    outputs = {}
    handles = [model.stem.register_forward_hook(lambda m, i, o: outputs.__setitem__("stem", o)),
               model.block[1].register_forward_hook(lambda m, i, o: outputs.__setitem__("block.1", o))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(images)
    model.train(was_training)
    for handle in handles:
        handle.remove()
    return outputs


# -- Probe ----------------------------------------------------------------------------------------

def test_probe_yields_every_image_once_in_batches(dictionary):
    probe = Probe(dictionary, batch_size=4)
    batches = list(probe)
    assert len(probe) == len(batches) == 3
    assert [len(ids) for ids, _ in batches] == [4, 4, 2]
    ids = torch.cat([ids for ids, _ in batches])
    assert ids.tolist() == list(range(IMAGES)) and ids.dtype == torch.int64
    images = torch.cat([images for _, images in batches])
    torch.testing.assert_close(images, dictionary_images(dictionary), rtol=0, atol=0)
    assert list(probe)[1][1] is batches[1][1], "a second pass reuses the cached batches"


def test_probe_applies_preprocess_and_subsets(dictionary):
    seen_shapes = []

    def preprocess(batch):
        seen_shapes.append(tuple(batch.shape))
        return (batch - 0.5) * 4

    probe = Probe(dictionary, batch_size=3, preprocess=preprocess, image_ids=[7, 2, 9])
    (ids, images), = list(probe)
    assert ids.tolist() == [7, 2, 9]
    assert seen_shapes == [(3, 3, PIXELS, PIXELS)]
    torch.testing.assert_close(images, (dictionary_images(dictionary)[[7, 2, 9]] - 0.5) * 4)
    assert probe.images_total == IMAGES


def test_probe_bad_input_says_what_and_where(dictionary, tmp_path):
    with pytest.raises(ProbeError, match="does not exist"):
        Probe(tmp_path / "missing.h5")
    no_pixels = tmp_path / "no_pixels.h5"
    with h5py.File(no_pixels, "w") as file:
        file.attrs["format"] = "hndd-dictionary"
    with pytest.raises(ProbeError, match="no /images/pixels"):
        Probe(no_pixels)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file.attrs["format"] = "something-else"
    with pytest.raises(ProbeError, match="not a Face Dictionary"):
        Probe(other)
    with pytest.raises(ProbeError, match="image id 10 is not a row"):
        Probe(dictionary, image_ids=[0, 10])
    with pytest.raises(ProbeError, match="batch_size"):
        Probe(dictionary, batch_size=0)
    with pytest.raises(ProbeError, match="turned a batch of 4 images into 2"):
        list(Probe(dictionary, batch_size=4, preprocess=lambda batch: batch[:2]))


# -- watch ----------------------------------------------------------------------------------------

def test_every_probe_image_is_sent_per_pass_with_the_layer_shapes_in_float16(dictionary, run_dir, receiver):
    model = TinyNet()
    model.train()
    expected = reference_outputs(model, dictionary_images(dictionary))
    client = Client(run_dir=run_dir, run="tiny")
    watcher = watch(model, ["stem", "block.1"], dictionary, every=5, client=client, batch_size=4)
    ran = [watcher.step(step) for step in range(11)]
    assert [step for step, did in enumerate(ran) if did] == [0, 5, 10]
    assert client.flush(timeout=10)
    batches = receive_all(receiver, expected_batches=3 * 2 * 3)  # passes x layers x batches
    watcher.close()
    client.close()

    for step in (0, 5, 10):
        for layer, (units, height) in (("stem", (4, 16)), ("block.1", (6, 8))):
            mine = [(h, t) for h, t in batches if h.step == step and h.layer == layer]
            ids = [i for h, _ in mine for i in h.image_ids]
            assert sorted(ids) == list(range(IMAGES)), f"pass {step} of {layer} misses or repeats images"
            for header, tensor in mine:
                assert header.run == "tiny"
                assert header.dtype == hndd_pb2.DTYPE_FLOAT16
                assert (header.units, header.height, header.width) == (units, height, height)
                assert len(tensor) == len(header.image_ids) * units * height * height * 2
                values = np.frombuffer(tensor, dtype="<f2").reshape(-1, units, height, height)
                reference = expected[layer][list(header.image_ids)].numpy().astype(np.float16)
                np.testing.assert_array_equal(values, reference)
    stats = watcher.stats
    assert (stats.passes_run, stats.passes_skipped, stats.dropped_batches) == (3, 0, 0)
    assert stats.last_pass_bytes == IMAGES * (4 * 16 * 16 + 6 * 8 * 8) * 2
    assert stats.probe_seconds > 0


def test_float32_when_no_cast_is_asked_and_linear_layers_become_1x1(dictionary, run_dir, receiver):
    model = TinyNet()
    with Client(run_dir=run_dir) as client:
        watcher = watch(model, ["head"], dictionary, every=1, client=client, batch_size=IMAGES, dtype=None)
        watcher.step(3)
        client.flush(timeout=10)
        (header, tensor), = receive_all(receiver, expected_batches=1)
    assert header.dtype == hndd_pb2.DTYPE_FLOAT32
    assert (header.units, header.height, header.width) == (2, 1, 1)
    model.eval()
    with torch.no_grad():
        logits = model(dictionary_images(dictionary))
    np.testing.assert_array_equal(np.frombuffer(tensor, dtype="<f4").reshape(IMAGES, 2), logits.numpy())


def test_a_batch_that_overflows_float16_goes_as_float32(dictionary, run_dir, receiver, caplog):
    model = TinyNet()
    with torch.no_grad():
        model.stem.bias[0] = 1e5  # unit 0 of the stem is beyond float16's ±65504 everywhere
    with Client(run_dir=run_dir) as client, caplog.at_level(logging.WARNING, logger="hndd_client"):
        watch(model, ["stem", "block.1"], dictionary, every=1, client=client, batch_size=IMAGES).step(0)
        client.flush(timeout=10)
        batches = {header.layer: (header, tensor) for header, tensor in receive_all(receiver, expected_batches=2)}
    header, tensor = batches["stem"]
    assert header.dtype == hndd_pb2.DTYPE_FLOAT32
    values = np.frombuffer(tensor, dtype="<f4").reshape(IMAGES, 4, 16, 16)
    assert np.isfinite(values).all() and values[:, 0].min() > 65504
    assert batches["block.1"][0].dtype == hndd_pb2.DTYPE_FLOAT16, "other layers keep float16"
    assert any("beyond the range" in record.getMessage() for record in caplog.records)


def test_what_is_sent_is_the_layer_output_before_later_in_place_ops(dictionary, run_dir, receiver):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.ReLU(inplace=True))
    with Client(run_dir=run_dir) as client:
        watch(model, ["0"], dictionary, every=1, client=client, batch_size=IMAGES, dtype=None,
              stop_early=False).step(0)
        client.flush(timeout=10)
        (header, tensor), = receive_all(receiver, expected_batches=1)
    with torch.no_grad():
        expected = model[0](dictionary_images(dictionary))
    values = np.frombuffer(tensor, dtype="<f4").reshape(IMAGES, 5, PIXELS, PIXELS)
    assert values.min() < 0, "negative pre-ReLU values survive"
    np.testing.assert_array_equal(values, expected.numpy())


def test_modes_are_restored_module_by_module_and_training_is_untouched(dictionary, run_dir, receiver):
    model = TinyNet()
    model.train()
    model.bn.eval()  # the user froze this BatchNorm
    running_mean = model.bn.running_mean.clone()
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    with Client(run_dir=run_dir) as client:
        watcher = watch(model, ["stem", "block.1"], dictionary, every=1, client=client, batch_size=4,
                        stop_early=False)
        seen_modes = []
        model.drop.register_forward_pre_hook(lambda module, inputs: seen_modes.append(module.training))
        watcher.step(1)
    assert seen_modes == [False] * 3, "the probe ran every batch with dropout in eval mode"
    assert model.training and model.stem.training and model.block.training and model.drop.training
    assert not model.bn.training, "a module the user put in eval mode stays in eval mode"
    assert torch.is_grad_enabled()
    assert all(p.grad is None for p in model.parameters()), "probe passes compute no gradients"
    torch.testing.assert_close(model.bn.running_mean, running_mean, rtol=0, atol=0)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0, msg=f"{name} changed")


def test_user_hooks_stay_and_the_watchers_go(dictionary, run_dir, receiver):
    model = TinyNet()
    calls = []
    user_hook = model.stem.register_forward_hook(lambda module, inputs, output: calls.append(output.shape[0]))
    model.block.register_forward_pre_hook(lambda module, inputs: None)
    before = {name: (len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in model.named_modules()}
    with Client(run_dir=run_dir) as client:
        watcher = watch(model, ["stem", "block.1"], dictionary, every=1, client=client, batch_size=5)
        watcher.step(1)
        during = len(calls)
        after = {name: (len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in model.named_modules()}
        assert after == before
        assert during == 2, "the user's hook saw both probe batches"
        model(torch.zeros(1, 3, PIXELS, PIXELS))
        assert calls[-1] == 1, "the user's hook still works after the pass"
    user_hook.remove()


def test_a_failing_forward_still_restores_mode_and_hooks(dictionary, run_dir, receiver):
    model = TinyNet()
    model.train()
    before = {name: len(m._forward_hooks) for name, m in model.named_modules()}
    with Client(run_dir=run_dir) as client:
        watcher = watch(model, ["block.1"], dictionary, every=1, client=client,
                        preprocess=lambda batch: batch[:, :2])  # two channels: the stem refuses them
        with pytest.raises(RuntimeError):
            watcher.step(1)
    assert model.training and all(m.training for m in model.modules())
    assert {name: len(m._forward_hooks) for name, m in model.named_modules()} == before


def test_stop_early_skips_the_rest_of_the_forward_pass(dictionary, run_dir, receiver):
    for stop_early, expected_head_calls in ((True, 0), (False, 2)):
        model = TinyNet()
        head_calls = []
        model.head.register_forward_hook(lambda module, inputs, output: head_calls.append(1))
        with Client(run_dir=run_dir) as client:
            watch(model, ["block.1"], dictionary, every=1, client=client, batch_size=5,
                  stop_early=stop_early).step(1)
            client.flush(timeout=10)
            receive_all(receiver, expected_batches=2)
        assert len(head_calls) == expected_head_calls


def test_attach_counts_optimizer_steps_until_close(dictionary, run_dir, receiver):
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with Client(run_dir=run_dir) as client:
        watcher = watch(model, ["stem"], dictionary, every=3, client=client, batch_size=IMAGES).attach(optimizer)
        for _ in range(7):
            optimizer.zero_grad()
            model(torch.rand(2, 3, PIXELS, PIXELS)).sum().backward()
            optimizer.step()
        watcher.close()
        optimizer.step()
        optimizer.step()  # after close: step 9 would have been a pass
        client.flush(timeout=10)
        steps = [header.step for header, _ in receive_all(receiver, expected_batches=2)]
    assert steps == [3, 6]


def test_bad_arguments_are_named(dictionary, run_dir):
    model = TinyNet()
    with Client(run_dir=run_dir) as client:
        with pytest.raises(ValueError, match=r"no module named 'block\.9'.*block\.1"):
            watch(model, ["block.9"], dictionary, every=1, client=client)
        with pytest.raises(ValueError, match="every"):
            watch(model, ["stem"], dictionary, every=0, client=client)
        with pytest.raises(ValueError, match="dtype"):
            watch(model, ["stem"], dictionary, every=1, client=client, dtype="int8")
        with pytest.raises(ValueError, match="twice"):
            watch(model, ["stem", "stem"], dictionary, every=1, client=client)
        with pytest.raises(ValueError, match="only N x C x h x w"):
            class Flat(torch.nn.Module):
                def forward(self, x):
                    return x.flatten()

            holder = torch.nn.Sequential(Flat())
            watch(holder, ["0"], dictionary, every=1, client=client).step(0)


# -- when the daemon is slow or gone ------------------------------------------------------------------

def test_without_a_daemon_passes_are_skipped_and_training_does_not_wait(dictionary, run_dir, caplog):
    model = TinyNet()
    client = Client(run_dir=run_dir, run="nobody-listens")  # nothing is bound at the endpoint
    watcher = watch(model, ["stem", "block.1"], dictionary, every=1, client=client, batch_size=4,
                    stall_seconds=0.2)
    pass_bytes = IMAGES * (4 * 16 * 16 + 6 * 8 * 8) * 2
    with caplog.at_level(logging.INFO, logger="hndd_client"):
        durations = []
        for step in range(6):
            time.sleep(0.25)  # training steps, longer than stall_seconds
            started = time.monotonic()
            watcher.step(step)
            durations.append(time.monotonic() - started)
    stats = watcher.stats
    assert stats.passes_run == 1 and stats.passes_skipped == 5
    assert pass_bytes <= stats.queued_bytes < 2 * pass_bytes, "the backlog is one pass, not six"
    assert max(durations) < 2.0
    assert any("skipping the probe pass of step 1" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    started = time.monotonic()
    client.close(timeout=0.5)
    assert time.monotonic() - started < 3.0
    assert client.stats.dropped_batches == 6  # the first pass's 2 layers x 3 batches, never delivered


def test_a_slow_daemon_gets_passes_queued_up_to_the_bound_then_skipped(dictionary, run_dir):
    model = TinyNet()
    pass_bytes = IMAGES * (4 * 16 * 16 + 6 * 8 * 8) * 2
    client = Client(run_dir=run_dir, max_queue_mb=3.5 * pass_bytes / 2**20)  # room for three passes
    watcher = watch(model, ["stem", "block.1"], dictionary, every=1, client=client, batch_size=4)
    for step in range(6):  # faster than stall_seconds: a daemon that is merely slow to connect
        watcher.step(step)
    stats = watcher.stats
    assert (stats.passes_run, stats.passes_skipped, stats.dropped_batches) == (3, 3, 0)
    assert 3 * pass_bytes <= stats.queued_bytes <= client.max_queue_bytes
    client.close(timeout=0.2)


def test_a_queue_smaller_than_a_pass_drops_batches_and_warns(dictionary, run_dir):
    model = TinyNet()
    pass_bytes = IMAGES * (4 * 16 * 16 + 6 * 8 * 8) * 2
    client = Client(run_dir=run_dir, max_queue_mb=(pass_bytes / 3) / 2**20)
    watcher = watch(model, ["stem", "block.1"], dictionary, every=1, client=client, batch_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        watcher.step(0)
    assert any("dropping batches" in str(w.message) for w in caught)
    stats = client.stats
    assert stats.dropped_batches > 0 and stats.queued_bytes <= client.max_queue_bytes
    client.close(timeout=0.2)


# -- the real daemon ---------------------------------------------------------------------------------------

def complete_passes(hndd_binary, run_dir, run):
    status = subprocess.run([hndd_binary, "status", "--run-dir", run_dir], capture_output=True, text=True)
    if status.returncode != 0:
        return 0
    return sum(1 for layer in json.loads(status.stdout).get("layers", []) for p in layer.get("passes", [])
               if p.get("run") == run and p.get("complete"))


def test_passes_reach_hndd_serve_complete(dictionary, run_dir, hndd_binary, tmp_path):
    snapshots = tmp_path / "snapshots.h5"
    daemon = subprocess.Popen([hndd_binary, "serve", "--dictionary", dictionary, "--run-dir", run_dir,
                               "--out", str(snapshots)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        model = TinyNet()
        with Client(run_dir=run_dir, run="tiny-real") as client:
            watcher = watch(model, ["stem", "block.1"], dictionary, every=2, client=client, batch_size=3)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            for step in range(5):
                watcher.step(step)
                assert client.flush(timeout=20)  # else a pass may be skipped while the daemon starts up
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(torch.rand(4, 3, PIXELS, PIXELS)),
                                                  torch.tensor([0, 1, 0, 1])).backward()
                optimizer.step()
            assert client.flush(timeout=20)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and complete_passes(hndd_binary, run_dir, "tiny-real") < 6:
            time.sleep(0.3)
    finally:
        daemon.terminate()
        output = daemon.communicate(timeout=30)[0].decode(errors="replace")
    assert daemon.returncode == 0, output
    with h5py.File(snapshots, "r") as file:
        for layer, units in (("stem", 4), ("block.1", 6)):
            group = file["layers"][layer]
            complete = group["complete"][()] == 1
            runs = [r.decode() if isinstance(r, bytes) else r for r in group["run"][()]]
            steps = sorted(int(s) for s, c, r in zip(group["step"][()], complete, runs) if c and r == "tiny-real")
            assert steps == [0, 2, 4], f"{layer}: complete passes {steps}"
            assert group["region"].shape[1] == units
            assert set(group["images_seen"][()][complete].tolist()) == {IMAGES}
