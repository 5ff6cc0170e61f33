"""Layer routing through a cluster file: 2 daemons on tcp://127.0.0.1 with CURVE, 3 layers. Each
layer's pass lands on the daemon that serves it, equal bit for bit to one daemon fed every layer;
status and subscribe reach each daemon through the file; a daemon that cannot be reached is
reported while the other keeps receiving, and nothing blocks for ever."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import generate
from daemon_harness import LAYER, client_environment, complete_row, find_pass, wait_until

from hndd_client import Client
from test_daemon_curve import make_client
from test_daemon_merge import identical_rows, write_cluster

TCP = ("--ingest", "tcp", "--publish", "tcp", "--control", "tcp")
LAYERS = {LAYER: slice(0, 64), "layer3.1.conv2": slice(0, 32), "layer2.0.conv1": slice(16, 40)}


@pytest.fixture(scope="module")
def three_layers(dataset, tmp_path_factory) -> Path:
    """The dataset's maps as three layers of different widths (and values: the last is scaled)."""
    path = tmp_path_factory.mktemp("cluster") / "three-layers.h5"
    layers = {name: (np.ascontiguousarray(dataset.maps[:, units] * np.float32(1 + i)), dataset.image_ids)
              for i, (name, units) in enumerate(LAYERS.items())}
    generate.write_activations(path, layers, "float32")
    return path


def push_cluster(cluster: Path, activations: Path, run: str, step: int, *options, timeout=120):
    command = [sys.executable, "-m", "hndd_client", "push", "--activations", str(activations), "--cluster", str(cluster),
               "--run", run, "--step", str(step), *map(str, options)]
    return subprocess.run(command, env=client_environment(), capture_output=True, text=True, timeout=timeout)


def wait_written(daemon, run: str, step: int, layer: str):
    """Waits until the pass (run, layer, step) is complete and written on `daemon`."""
    wait_until(lambda: (p := find_pass(daemon.status(), run, step, layer)) and p["complete"] and not p["open"],
               90, f"{layer} complete on {daemon.run_dir}")


def hndd(binary, *arguments, timeout=60):
    return subprocess.run([str(binary), *map(str, arguments)], capture_output=True, text=True, timeout=timeout)


def test_layers_route_to_their_daemons_and_equal_one_daemon_fed_everything(dataset, three_layers, new_run_dir, start_daemon,
                                                                          push, hndd_binary, tmp_path):
    a_dir, b_dir, whole_dir = new_run_dir(), new_run_dir(), new_run_dir()
    a_key, b_key = make_client(hndd_binary, a_dir, "trainer"), make_client(hndd_binary, b_dir, "trainer")
    a = start_daemon(a_dir, *TCP, key=a_key)
    b = start_daemon(b_dir, *TCP, key=b_key)
    whole = start_daemon(whole_dir)
    first, second, third = LAYERS
    cluster = write_cluster(tmp_path / "cluster.json", [
        {"name": "a", "ingest": a.endpoints.ingest, "publish": a.endpoints.publish, "control": a.endpoints.control,
         "key": str(a_key), "layers": [first, third]},
        {"name": "b", "run_dir": str(b_dir), "key": str(b_key), "layers": [second]}])
    push(whole_dir, three_layers, "routed", 7)
    done = push_cluster(cluster, three_layers, "routed", 7, "--shuffle", "--seed", "3")
    assert done.returncode == 0, done.stderr
    wait_layers = {a: [first, third], b: [second], whole: list(LAYERS)}
    for daemon, layers in wait_layers.items():
        for layer in layers:
            wait_written(daemon, "routed", 7, layer)
    for daemon, layers in wait_layers.items():
        status = daemon.status()
        assert sorted(entry["layer"] for entry in status["layers"]) == sorted(layers)  # nothing else reached it
    for layer in LAYERS:
        owner = b if layer == second else a
        routed = complete_row(owner.snapshot_file, "routed", 7, layer)
        assert identical_rows(routed, complete_row(whole.snapshot_file, "routed", 7, layer)) == [], layer
    assert dataset.failures(complete_row(a.snapshot_file, "routed", 7, first)) == []

    # hndd status --cluster: every daemon's status, by name.
    out = hndd(hndd_binary, "status", "--cluster", cluster)
    assert out.returncode == 0, out.stderr
    daemons = json.loads(out.stdout)["daemons"]
    assert {name: sorted(l["layer"] for l in s["layers"]) for name, s in daemons.items()} == {"a": sorted([first, third]), "b": [second]}
    # hndd subscribe --cluster --layer: the state of the layer from the daemon that serves it.
    for layer, units in ((second, 32), (third, 24)):
        out = hndd(hndd_binary, "subscribe", "--cluster", cluster, "--layer", layer, "--once", "--json")
        assert out.returncode == 0, out.stderr
        line = json.loads(out.stdout)
        assert line["layer"] == layer and line["units"] == units and line["complete"]
    out = hndd(hndd_binary, "subscribe", "--cluster", cluster, "--layer", "nowhere", "--once")
    assert out.returncode == 1 and "no daemon serves layer nowhere" in out.stderr


def test_an_unreachable_daemon_is_reported_and_the_others_keep_receiving(dataset, three_layers, new_run_dir, start_daemon,
                                                                        hndd_binary, tmp_path):
    a_dir = new_run_dir()
    a_key = make_client(hndd_binary, a_dir, "trainer")
    a = start_daemon(a_dir, *TCP, key=a_key)
    first, second, third = LAYERS
    # Daemon b was never started: its port refuses connections.
    cluster = write_cluster(tmp_path / "cluster.json", [
        {"name": "a", "run_dir": str(a_dir), "key": str(a_key), "layers": [first, third]},
        {"name": "b", "ingest": "tcp://127.0.0.1:9", "publish": "tcp://127.0.0.1:9", "control": "tcp://127.0.0.1:9",
         "layers": [second]}])
    started = time.monotonic()
    done = push_cluster(cluster, three_layers, "partial", 1, "--timeout", "3", "--batch-size", "100")
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "daemon b at tcp://127.0.0.1:9 has taken nothing for 5 s: dropping its batches" in done.stderr
    assert "push: error: daemon b: 16 batches dropped" in done.stderr
    assert elapsed < 60, f"push took {elapsed:.0f} s"
    for layer in (first, third):
        wait_written(a, "partial", 1, layer)
    assert dataset.failures(complete_row(a.snapshot_file, "partial", 1, first)) == []
    # The Python client reports it per daemon, and close() gives up on it at once.
    client = Client(cluster=cluster, run="api", unreachable_after=0.5)
    ids, maps = dataset.image_ids[:100], np.ascontiguousarray(dataset.maps[:100, :32])
    assert client.send(second, 1, ids, maps)  # queued: b is not yet known to be unreachable
    time.sleep(1.0)
    assert not client.send(second, 1, ids, maps)  # dropped at once
    assert client.send(first, 1, ids, np.ascontiguousarray(dataset.maps[:100]))
    closing = time.monotonic()
    client.close(10)
    assert time.monotonic() - closing < 5
    stats = client.daemon_stats
    assert stats["b"].unreachable_batches >= 1 and stats["b"].sent_batches == 0
    assert stats["a"].sent_batches == 1 and stats["a"].dropped_batches == 0
    # hndd status --cluster says which daemon it cannot reach, and fails.
    out = hndd(hndd_binary, "status", "--cluster", cluster, "--timeout", "1")
    assert out.returncode == 1 and "cannot reach b" in out.stderr
    daemons = json.loads(out.stdout)["daemons"]
    assert "error" in daemons["b"] and daemons["a"]["images_seen"] > 0
