"""A layer split by image over two daemons (`--shard 1/2`, `--shard 2/2`), fed through a cluster
file, merged by `hndd merge` from the running daemons and from their kept state files: the merged
row equals one daemon's row of the whole pass, every dataset bit for bit but `time_unix`, and passes
docs/3-numbers.md against the NumPy reference. Shards that disagree are refused with the reason, nothing
written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import generate
from daemon_harness import LAYER, client_environment, complete_row, snapshot_rows, wait_until


def write_cluster(path: Path, daemons: list[dict]) -> Path:
    path.write_text(json.dumps({"format": "hndd-cluster", "version": 1, "daemons": daemons}))
    return path


def push_cluster(cluster: Path, activations: Path, run: str, step: int, *options) -> str:
    """`python3 -m hndd_client push --cluster FILE`; requires exit status 0, returns its stderr."""
    command = [sys.executable, "-m", "hndd_client", "push", "--activations", str(activations), "--cluster", str(cluster),
               "--run", run, "--step", str(step), *map(str, options)]
    done = subprocess.run(command, env=client_environment(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


def shard_done(daemon, run: str, step: int):
    """Waits until the shard's pass is complete for its share and kept (closed)."""
    return daemon.wait_pass(run, step, lambda p: not p["open"] and p["images_seen"] == p["images_expected"],
                            "its share complete and kept")


def identical_rows(a: dict, b: dict) -> list[str]:
    """The datasets in which two snapshot rows differ, bit for bit (time_unix aside)."""
    differ = []
    for name in sorted(set(a) | set(b)):
        if name == "time_unix":
            continue
        x, y = np.asarray(a.get(name)), np.asarray(b.get(name))
        if x.dtype.kind == "f":
            same = x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x.view(f"u{x.itemsize}"), y.view(f"u{y.itemsize}"))
        else:
            same = x.shape == y.shape and np.array_equal(x, y)
        if not same:
            differ.append(name)
    return differ


def merge(hndd_binary, dictionary, *options) -> subprocess.CompletedProcess:
    return subprocess.run([str(hndd_binary), "merge", "--dictionary", str(dictionary), *map(str, options)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def split_pass(dataset, new_run_dir, start_daemon, push, tmp_path):
    """Shards a and b of the pass (run "split", step 3) fed through a cluster file, and one daemon
    fed the whole pass: (a, b, whole, cluster file)."""
    a_dir, b_dir, whole_dir = new_run_dir(), new_run_dir(), new_run_dir()
    a = start_daemon(a_dir, "--shard", "1/2")
    b = start_daemon(b_dir, "--shard", "2/2")
    whole = start_daemon(whole_dir)
    cluster = write_cluster(tmp_path / "cluster.json", [
        {"name": "a", "run_dir": str(a_dir), "layers": [LAYER], "shard": "1/2"},
        {"name": "b", "run_dir": str(b_dir), "layers": [LAYER], "shard": "2/2"}])
    push(whole_dir, dataset.activations, "split", 3, "--shuffle", "--seed", "2")
    # The cluster client splits every batch by image: ids with id mod 2 == 0 to a, the others to b.
    stderr = push_cluster(cluster, dataset.activations, "split", 3, "--shuffle", "--seed", "5")
    assert "to the 2 daemons of" in stderr
    whole.wait_complete("split", 3)
    shard_done(a, "split", 3), shard_done(b, "split", 3)
    return a, b, whole, cluster


def test_a_layer_split_over_two_daemons_merges_into_one_daemons_snapshot(dataset, split_pass, hndd_binary, tmp_path):
    a, b, whole, cluster = split_pass
    expected = complete_row(whole.snapshot_file, "split", 3)
    assert dataset.failures(expected) == []
    # Each shard saw its share only and wrote no row: a share is not a pass.
    for shard, k in ((a, 0), (b, 1)):
        s = shard.status()
        assert s["shard"] == f"{k + 1}/2" and s["images_seen"] == int(np.sum(dataset.image_ids % 2 == k))
        assert not shard.snapshot_file.exists() or LAYER not in h5py.File(shard.snapshot_file, "r").get("layers", {})
    # From the running daemons.
    live = tmp_path / "live.h5"
    done = merge(hndd_binary, dataset.dictionary, "--peer", a.endpoints.control, "--peer", b.endpoints.control,
                 "--layer", LAYER, "--run", "split", "--step", 3, "--out", live)
    assert done.returncode == 0, done.stderr
    assert f"{LAYER} run split step 3: {dataset.n_images}/{dataset.n_images} images from 2 shards" in done.stdout
    row = complete_row(live, "split", 3)
    assert identical_rows(row, expected) == []
    assert dataset.failures(row) == []
    # Through the cluster file (listing the daemons' passes itself), as JSON.
    done = merge(hndd_binary, dataset.dictionary, "--cluster", cluster, "--layer", LAYER, "--json")
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert line["complete"] and line["images_seen"] == dataset.n_images and line["step"] == 3
    assert line["region"] == list(expected["region"])
    # From the state files the shards keep (after the daemons are gone).
    files = [next((d.run_dir / "shards").glob("*.hndd")) for d in (a, b)]
    a.terminate(), b.terminate()
    offline = tmp_path / "offline.h5"
    done = merge(hndd_binary, dataset.dictionary, "--state", files[0], "--state", files[1], "--out", offline)
    assert done.returncode == 0, done.stderr
    assert identical_rows(complete_row(offline, "split", 3), expected) == []


def test_a_shard_refuses_images_outside_its_share(dataset, run_dir, start_daemon, push):
    shard = start_daemon(run_dir, "--shard", "2/3")
    push(run_dir, dataset.activations, "whole", 1, "--batch-size", "100")
    s = wait_until(lambda: (st := shard.status())["rejected_batches"]["not_in_shard"] == 16 and st, 30, "16 batches refused")
    assert s["images_seen"] == 0 and s["layers"] == []
    assert "is not in this daemon's shard 2/3 (ids with id mod 3 = 1)" in shard.log()


def test_shards_that_disagree_are_refused_and_nothing_is_written(dataset, split_pass, new_run_dir, start_daemon, push,
                                                                 hndd_binary, tmp_path):
    a, b, _, _ = split_pass
    a_file = next((a.run_dir / "shards").glob("*.hndd"))
    out = tmp_path / "never.h5"

    def refused(*sources, reason: str):
        done = merge(hndd_binary, dataset.dictionary, *sources, "--out", out)
        assert done.returncode == 1 and reason in done.stderr, done.stderr
        assert "nothing merged, nothing written" in done.stderr and not out.exists()

    # The same share twice: its images would count twice.
    refused("--state", a_file, "--state", a_file, reason=f"share {int(np.sum(dataset.image_ids % 2 == 0))} images")
    # Another layer than the sources hold.
    refused("--peer", a.endpoints.control, "--peer", b.endpoints.control, "--layer", "layer9",
            reason=f"holds no pass of layer layer9 (it holds: {LAYER}/split/3)")
    def second_shard(*options, activations=dataset.activations, dictionary=None):
        """Another daemon holding share 2/2 of the pass, fed through a cluster with shard a."""
        directory = new_run_dir()
        daemon = start_daemon(directory, "--shard", "2/2", *options, dictionary=dictionary)
        cluster = write_cluster(tmp_path / f"{directory.name}.json", [
            {"name": "second", "run_dir": str(directory), "layers": [LAYER], "shard": "2/2"},
            {"name": "a", "run_dir": str(a.run_dir), "layers": [LAYER], "shard": "1/2"}])  # a refuses: its pass is written
        push_cluster(cluster, activations, "split", 3, "--timeout", "20")
        shard_done(daemon, "split", 3)
        return daemon

    # A shard made with other options.
    other = second_shard("--quantile", "0.01")
    refused("--peer", a.endpoints.control, "--peer", other.endpoints.control, "--run", "split", "--step", 3, "--layer", LAYER,
            reason="made with different options (quantile 0.005")
    # A shard of another dictionary (one label changed): compared by fingerprint, not by name.
    changed = tmp_path / "dictionary.h5"
    shutil.copy(dataset.dictionary, changed)
    with h5py.File(changed, "r+") as f:
        labels = f["images/local_label"][()]
        n, c = np.argwhere(labels == 1)[0]
        labels[n, c] = 0
        f["images/local_label"][...] = labels
    foreign = second_shard(dictionary=changed)
    refused("--peer", a.endpoints.control, "--peer", foreign.endpoints.control, "--layer", LAYER,
            reason="serves another dictionary than the one given (fingerprint")
    # A shard with fewer units.
    narrow = tmp_path / "narrow.h5"
    generate.write_activations(narrow, {LAYER: (np.ascontiguousarray(dataset.maps[:, :32]), dataset.image_ids)}, "float32")
    thin = second_shard(activations=narrow)
    refused("--peer", a.endpoints.control, "--peer", thin.endpoints.control, "--layer", LAYER,
            reason="different unit counts (64, 32)")
    # None of this changed the shards: they still merge into the pass.
    good = tmp_path / "good.h5"
    done = merge(hndd_binary, dataset.dictionary, "--peer", a.endpoints.control, "--peer", b.endpoints.control,
                 "--layer", LAYER, "--out", good)
    assert done.returncode == 0, done.stderr
    assert dataset.failures(complete_row(good, "split", 3)) == []
    assert len(snapshot_rows(good)) == 1
