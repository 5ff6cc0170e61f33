#!/usr/bin/env python3
"""hndd's benchmark (issue 7): one run reports, per workload,

  engine-only images/s      `hndd dissect` fed from an activations file
  end-to-end images/s       Python client → `hndd serve` over ipc://, until the complete snapshot
  raw ZeroMQ images/s       the same messages PUSH → PULL over ipc://, nothing done with them
  NumPy images/s            a vectorised NumPy Stage II (skip maps below the threshold, upsample the
                            rest with two matrix products), our baseline
  latency                   last batch sent → complete snapshot received by a subscriber (and the
                            daemon's own cost of that snapshot, from its log)
  peak RSS                  of `hndd serve` (VmHWM) and of `hndd dissect`

Workloads are generated deterministically (seeded): a synthetic dictionary of the paper's size
(11,000 global + 24,632 local images, mask 112) and ReLU-like activation maps with sparse strong
responses, as trained convolutional layers give. A pool of distinct batches is generated once and
cycled with fresh image ids, so generation never limits the sender.

    python3 tools/bench/bench.py                 # the three single layers, paper-sized pass
    python3 tools/bench/bench.py --quick         # small pass, for a smoke run
    python3 tools/bench/bench.py --workload 512x7x7 --images 35632
    python3 tools/bench/bench.py --workload three-layers    # the three interleaved, as `watch` sends them
    python3 tools/bench/bench.py --workload real --dtype float16   # ResNet-50 maps of real faces
    python3 tools/bench/bench.py --workload real-2048x7x7 --workload real-1024x14x14   # its two big layers
    python3 tools/bench/bench.py --workload 512x7x7 --passes 2     # a later pass, tested against the first

--workload three-layers runs 512x7x7, 1024x14x14 and 2048x7x7 end to end each alone, then the
three interleaved in one pass to one `hndd serve` (tools/bench/workloads.py says how), and
reports the combined images/s against the sum of the three alone, each layer's latency and the
daemon's peak RSS. --workload real is the single-layer figures on a torchvision ResNet-50's
layer4.2.conv1 (random initialisation) of real faces, computed once and cached; real-2048x7x7 and
real-1024x14x14 the same on its layer4 and layer3 outputs (ResNet-50's block 4 and block 3), the
layers of one bench run computed in one forward pass.
    python3 tools/bench/bench.py --rasters --rounds 2   # version 1 against version 2 (raster masks)

With --rasters each workload (default: the paper's 512x7x7) is run with the version-1 dictionary
and its version-2 twin — the same images and labels, every mask a raster, the bilateral concepts
drawn as two ellipses — alternating (v1, v2, then v2, v1, …), `hndd dissect` and `hndd serve` each
time; it reports both and their ratios (raw ZeroMQ and NumPy do not depend on the dictionary and
are left out), plus the time and peak RSS of `hndd dictionary check` on each dictionary.
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import zmq

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "python"))
from hndd_client import Client  # noqa: E402
from hndd_client.curve import load_credential  # noqa: E402
from hndd_client.wire import hndd_pb2  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads  # noqa: E402  (the three-layer and real-map passes)

WORKLOADS = {"512x7x7": (512, 7, 7), "2048x7x7": (2048, 7, 7), "1024x14x14": (1024, 14, 14)}
MASK = 112


def batch_size(units: int, h: int, w: int) -> int:
    """Images per message: 256 for the paper's layer (25.7 MB of float32), and as many as fit in
    the same bytes for bigger layers (64 and 32) — what a trainer's probe batches would weigh."""
    size = 256
    while size > 1 and size * units * h * w * 4 > 256 * 512 * 7 * 7 * 4:
        size //= 2
    return size


def hndd_binary() -> str:
    path = os.environ.get("HNDD_BIN", str(REPO / ".build" / "release" / "hndd"))
    if not os.path.exists(path):
        sys.exit(f"bench: {path} not found; run tools/setup first")
    return path


def write_dictionary(path: Path, n_global: int, n_local: int, seed: int) -> None:
    """A dictionary with the paper's taxonomy sizes: 14 subgroups in 4 categories, 36 local concepts
    in 5 regions; global-only images carry no local labels, local ones no global labels."""
    rng = np.random.default_rng(seed)
    n = n_global + n_local
    categories = ["age", "gender", "ethnicity", "skin_tone"]
    subgroups = ["0-20", "20-40", "40-60", "60+", "female", "male", "white", "black", "asian", "indian", "dark", "bright"]
    subgroup_category = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3]
    regions = ["eye", "cheek", "nose", "mouth", "chin"]
    per_region = [12, 8, 4, 8, 5]
    concept_region = sum(([r] * k for r, k in enumerate(per_region)), [])
    concepts = [f"{regions[r]}_{i}" for r, k in enumerate(per_region) for i in range(k)]
    centres = {0: (0.5, 0.38), 1: (0.5, 0.55), 2: (0.5, 0.52), 3: (0.5, 0.72), 4: (0.5, 0.88)}
    global_label = np.full((n, 4), -1, np.int32)
    offsets = [0, 4, 6, 10]
    sizes = [4, 2, 4, 2]
    for g in range(4):
        global_label[:n_global, g] = offsets[g] + rng.integers(0, sizes[g], n_global)
    local_label = np.full((n, len(concepts)), -1, np.int8)
    local_label[n_global:] = (rng.random((n_local, len(concepts))) < 0.35).astype(np.int8)
    ellipse = np.full((n, len(concepts), 5), np.nan, np.float32)
    present = local_label == 1
    for c, r in enumerate(concept_region):
        cx, cy = centres[r]
        rows = np.nonzero(present[:, c])[0]
        ellipse[rows, c, 0] = cx + rng.normal(0, 0.03, rows.size)
        ellipse[rows, c, 1] = cy + rng.normal(0, 0.02, rows.size)
        ellipse[rows, c, 2] = 0.004 + 0.002 * rng.random(rows.size)
        ellipse[rows, c, 3] = 0.0
        ellipse[rows, c, 4] = 0.0015 + 0.001 * rng.random(rows.size)
    with h5py.File(path, "w") as f:
        f.attrs.update(format="hndd-dictionary", version=1, mask_size=MASK, ellipse_chi2=5.991)
        s = h5py.string_dtype()
        f["global/categories"] = np.array(categories, dtype=s)
        f["global/subgroups"] = np.array(subgroups, dtype=s)
        f["global/subgroup_category"] = np.array(subgroup_category, np.int32)
        f["local/regions"] = np.array(regions, dtype=s)
        f["local/concepts"] = np.array(concepts, dtype=s)
        f["local/concept_region"] = np.array(concept_region, np.int32)
        f["local/concept_type"] = np.array([c % 3 for c in range(len(concepts))], np.int32)
        f["images/global_label"] = global_label
        f["images/local_label"] = local_label
        f["images/ellipse"] = ellipse


#: Concepts drawn as two ellipses, one per side, in the version-2 dictionary: as many as the
#: published Face Dictionary's bilateral attributes (arched eyebrows and bags under the eyes in the
#: eye region, rosy cheeks and high cheekbones in the cheek region).
BILATERAL = ("eye_0", "eye_1", "cheek_0", "cheek_1")
#: Each side's offset from the concept's centre and the scale of its variance along x.
BILATERAL_OFFSET, BILATERAL_X_SCALE = 0.15, 0.2


def write_raster_dictionary(source: Path, path: Path, block: int = 256) -> None:
    """The version-2 twin of `source`: the same file plus `/images/masks`, docs/1-dictionary.md's bit-packed
    rasters, compressed (gzip 1) in chunks of 64 images. Each present concept's raster is its
    ellipse's mask, except the `BILATERAL` concepts, drawn as two ellipses, one per side."""
    shutil.copyfile(source, path)
    with h5py.File(path, "r+") as f:
        f.attrs["version"] = np.int32(2)
        label, ellipse = f["images/local_label"][...], f["images/ellipse"][...].astype(np.float64)
        concepts = list(f["local/concepts"].asstr()[...])
        n, l = label.shape
        masks = f.create_dataset("images/masks", (n, l, MASK, (MASK + 7) // 8), np.uint8,
                                 chunks=(64, l, MASK, (MASK + 7) // 8), compression="gzip", compression_opts=1)
        f["images/source"] = np.array([f"bench/{i:06d}.png" for i in range(n)], dtype=h5py.string_dtype())
        centres = (np.arange(MASK) + 0.5) / MASK
        for start in range(0, n, block):
            present = label[start:start + block] == 1
            if not present.any():
                continue  # never written: HDF5 reads the chunks as zeros
            bits = np.zeros(present.shape + (MASK, MASK), bool)
            for c in range(l):
                rows = np.flatnonzero(present[:, c])
                if rows.size == 0:
                    continue
                e = ellipse[start + rows, c]
                sides = [(0.0, 1.0)] if concepts[c] not in BILATERAL else [(-BILATERAL_OFFSET, BILATERAL_X_SCALE), (BILATERAL_OFFSET, BILATERAL_X_SCALE)]
                for dx, scale in sides:
                    cx, cy, sxx, syy = e[:, 0] + dx, e[:, 1], e[:, 2] * scale, e[:, 4]
                    sxy = e[:, 3] * np.sqrt(scale)
                    det = sxx * syy - sxy * sxy
                    x = centres[None, None, :] - cx[:, None, None]
                    y = centres[None, :, None] - cy[:, None, None]
                    d = (syy[:, None, None] * x * x - 2 * sxy[:, None, None] * x * y + sxx[:, None, None] * y * y) / det[:, None, None]
                    bits[rows, c] |= d <= 5.991
            masks[start:start + len(present)] = np.packbits(bits, axis=-1)


def batch_pool(units: int, h: int, w: int, batches: int, seed: int, batch: int) -> list[np.ndarray]:
    """ReLU-like maps: a negative-mean smooth field, so most positions are 0, with a few strong
    localised responses per unit — the statistics of a trained conv layer after ReLU."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(batches):
        field = rng.normal(-0.8, 0.6, (batch, units, h, w)).astype(np.float32)
        hot = rng.random((batch, units)) < 0.15
        ys = rng.integers(0, h, (batch, units))
        xs = rng.integers(0, w, (batch, units))
        b, u = np.nonzero(hot)
        field[b, u, ys[b, u], xs[b, u]] += rng.gamma(2.0, 1.2, b.size).astype(np.float32)
        pool.append(np.maximum(field, 0))
    return pool


def write_activations(path: Path, messages, shape: tuple[int, int, int], images: int, batch: int) -> None:
    """The pass's `messages` (one layer's) as `hndd dissect` reads them: /layers/L/activations, float32."""
    with h5py.File(path, "w") as f:
        datasets = {}
        for layer, ids, maps in messages:
            if layer not in datasets:
                datasets[layer] = f.create_dataset(f"layers/{layer}/activations", (images, *shape), np.float32,
                                                   chunks=(batch, *shape))
            datasets[layer][ids[0]:ids[-1] + 1] = maps


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def bench_dissect(binary: str, dictionary: Path, activations: Path, layer: str, images: int, work: Path,
                  batch: int) -> dict:
    out = work / "dissect.h5"
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", binary, "dissect", "--dictionary", str(dictionary),
                           "--activations", str(activations), "--out", str(out), "--layer", layer,
                           "--batch-size", str(batch)],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"bench: dissect failed: {proc.stderr}")
    rss = int(proc.stderr.strip().splitlines()[-1]) / 1024
    # dissect's own line: "... (N images/s; reading R s, engine E s, snapshot S s)".
    phases = dict(re.findall(r"(reading|engine|snapshot) ([0-9.]+) s", proc.stdout))
    # "... in P s": the pass itself, after the dictionary is loaded and indexed.
    passed = re.search(r" in ([0-9.]+) s \(", proc.stdout)
    pass_seconds = float(passed.group(1)) if passed else float("nan")
    kernels = re.search(r"kernels (\w+)", proc.stdout)
    snapshot = snapshot_phases(proc.stdout)
    return {"kernels": kernels.group(1) if kernels else "?",
            "engine_images_per_s": images / seconds, "engine_seconds": seconds, "dissect_peak_rss_mb": rss,
            "dissect_pass_s": pass_seconds, "dissect_start_up_s": seconds - pass_seconds,
            **{f"dissect_{name}_s": float(value) for name, value in phases.items()},
            **({"dissect_snapshot_phases_s": snapshot} if snapshot else {})}


#: The engine's seconds per phase of a snapshot (SnapshotPhases.fields: "sets_s=… thresholds_s=… count_s=…
#: units_s=… tests_s=…"), on `hndd dissect`'s "snapshot phases" line and on `hndd serve`'s line of a written pass.
SNAPSHOT_PHASE = re.compile(r"\b(sets|thresholds|count|units|tests)_s=([0-9.]+)")


def snapshot_phases(text: str) -> dict[str, float]:
    """Phase → seconds of the (last) snapshot whose phases `text` names; {} from older binaries."""
    return {name: float(value) for name, value in SNAPSHOT_PHASE.findall(text)}


def bench_dictionary_check(binary: str, dictionary: Path) -> dict:
    """`hndd dictionary check`: loading (masks read in blocks), validating and indexing a dictionary."""
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", binary, "dictionary", "check", str(dictionary)],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"bench: dictionary check failed: {proc.stderr}")
    return {"check_seconds": seconds, "check_peak_rss_mb": int(proc.stderr.strip().splitlines()[-1]) / 1024}


#: --transport: the endpoints `hndd serve` gets. "tcp" is loopback TCP without CURVE (it needs
#: --insecure-tcp), "curve" the same with CURVE and a client credential (`hndd keys client`).
TRANSPORTS = {"ipc": [], "tcp": ["--ingest", "tcp", "--publish", "tcp", "--control", "tcp", "--insecure-tcp"],
              "curve": ["--ingest", "tcp", "--publish", "tcp", "--control", "tcp"]}


def transport_credential(binary: str, run_dir: Path, transport: str) -> Path | None:
    """For "curve": the server's keys and a client credential made in `run_dir`, else None."""
    if transport != "curve":
        return None
    made = subprocess.run([binary, "keys", "client", "--run-dir", str(run_dir), "--name", "bench"],
                          capture_output=True, text=True, check=True)
    return Path(made.stdout.strip())


def bench_serve(binary: str, dictionary: Path, layers: list[str], messages, images: int, work: Path,
                snapshot_interval: float = 1.0, queue_mb: float | None = None, transport: str = "ipc",
                later_passes=()) -> dict:
    """End to end: `messages()`'s batches (of `layers`) from one client to one `hndd serve`,
    until every layer's complete snapshot has arrived. With several layers, each one's latency
    (from the pass's last batch sent) and the daemon's cost of its complete snapshot too.

    `later_passes` (callables like `messages`) are further probe passes of the same run at steps
    2, 3, …, each sent once the previous pass is complete, as a trainer probes between training
    steps: the run's first pass is its untrained baseline, so these pay the change test (issue 17).
    Their latency and the daemon's cost are under "later_passes"; the top-level figures are the first
    pass's."""
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(mode=0o700)
    key = transport_credential(binary, run_dir, transport)
    log = open(work / "serve.log", "w")
    proc = subprocess.Popen([binary, "serve", "--dictionary", str(dictionary), "--run-dir", str(run_dir),
                             "--snapshot-interval", str(snapshot_interval), "--checkpoint-interval", "3600"]
                            + (["--queue-mb", str(queue_mb)] if queue_mb else []) + TRANSPORTS[transport], stderr=log)
    try:
        deadline = time.time() + 30
        while not (run_dir / "endpoints.json").exists():
            if proc.poll() is not None or time.time() > deadline:
                sys.exit(f"bench: hndd serve did not start; see {work / 'serve.log'}")
            time.sleep(0.05)
        endpoints = json.loads((run_dir / "endpoints.json").read_text())
        complete_at = subscribe_complete(endpoints["publish"], key, layers)
        client = Client(endpoint=endpoints["ingest"], key=key, run="bench", max_queue_mb=1024, on_full="block",
                        block_timeout=3600)
        sent = [send_pass(client, complete_at, layers, step, pass_messages)
                for step, pass_messages in enumerate([messages, *later_passes], start=1)]
        client.close()
        complete_at.closed.set()
        rss = peak_rss_mb(proc.pid)
        # The daemon's own figures for each complete snapshot (compute and publish; CPU of all its threads).
        costs = logged_pass_costs(work / "serve.log", [(layer, step) for layer in layers
                                                       for step in range(1, len(sent) + 1)])
        (started, last_sent), times = sent[0], complete_at.of_step(1)
        finished = max(times.values())
        last = costs.get((max(times, key=times.get), 1), {})  # the daemon's figures of the last layer to complete
        r = {"transport": transport, "end_to_end_images_per_s": images / (finished - started),
             "end_to_end_seconds": finished - started, "latency_last_batch_to_snapshot_s": finished - last_sent,
             "complete_snapshot_cost_s": last.get("snapshot_s", float("nan")),
             "serve_peak_rss_mb": rss}
        if "candidates" in last:  # how many maps the data let survive the running bound, and their memory
            r["kept_maps"] = int(last["candidates"])
            r["kept_maps_mb"] = last.get("candidates_mb", float("nan"))
        if "phases" in last:  # where the complete snapshot's time went
            r["complete_snapshot_phases_s"] = last["phases"]
        if len(layers) > 1:
            r["layers"] = {layer: {"complete_after_s": times[layer] - started,
                                   "latency_last_batch_to_snapshot_s": times[layer] - last_sent,
                                   "complete_snapshot_cost_s": costs.get((layer, 1), {}).get("snapshot_s", float("nan"))}
                           for layer in layers}
        if later_passes:
            r["later_passes"] = [later_pass_figures(step, sent[step - 1], complete_at.of_step(step), costs)
                                 for step in range(2, len(sent) + 1)]
        return r
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def send_pass(client, complete_at: "CompleteTimes", layers: list[str], step: int, messages) -> tuple[float, float]:
    """One probe pass at `step`, waited for until every layer's complete snapshot of it has arrived;
    (time of its first batch, time its last batch left the client)."""
    started = time.perf_counter()
    for layer, ids, maps in messages():
        client.send(layer, step, ids, maps)
    client.flush()
    last_sent = time.perf_counter()
    missing = complete_at.wait_for(layers, step, 600)
    if missing:
        sys.exit(f"bench: no complete snapshot of {missing} at step {step} within 600 s")
    return started, last_sent


def later_pass_figures(step: int, sent: tuple[float, float], times: dict[str, float], costs: dict) -> dict:
    """A later pass's latency (its last batch → its last layer's complete snapshot) and the daemon's
    cost of each layer's complete snapshot of it."""
    started, last_sent = sent
    return {"step": step, "latency_last_batch_to_snapshot_s": max(times.values()) - last_sent,
            "end_to_end_seconds": max(times.values()) - started,
            "complete_snapshot_cost_s": {layer: costs.get((layer, step), {}).get("snapshot_s") for layer in times},
            "complete_snapshot_cpu_s": {layer: costs.get((layer, step), {}).get("snapshot_cpu_s") for layer in times}}


#: `hndd serve`'s line for a written pass: "... pass=run R, layer L, step S ... snapshot_cpu_s=C snapshot_s=T ...",
#: its metadata in key order (swift-log's), memory figures among them — `candidates` (the maps the pass
#: still kept when it was written, those above the running bound) and `candidates_mb` (their arena);
#: snapshot_cpu_s and the memory figures are absent from older binaries.
PASS_KEY = re.compile(r"pass=run .*?, layer ([^,\s]+), step (\d+)")
PASS_FIGURE = re.compile(r"\b(snapshot_cpu_s|snapshot_s|candidates|candidates_mb)=([0-9.]+)")


def pass_costs(log: str) -> dict[tuple[str, int], dict[str, float]]:
    """(layer, step) → the daemon's snapshot_s (and snapshot_cpu_s, candidates, candidates_mb and the
    snapshot's phases when logged) of that written pass."""
    costs = {}
    for line in log.splitlines():
        key, figures = PASS_KEY.search(line), dict(PASS_FIGURE.findall(line))
        if key and "snapshot_s" in figures:
            costs[(key.group(1), int(key.group(2)))] = {name: float(value) for name, value in figures.items()}
            if phases := snapshot_phases(line):
                costs[(key.group(1), int(key.group(2)))]["phases"] = phases
    return costs


def logged_pass_costs(log: Path, passes: list[tuple[str, int]], timeout: float = 10.0) -> dict:
    """`pass_costs` of the serve log once it has a line for each of `passes`: the daemon publishes a
    snapshot before it logs the pass, so the subscriber can be a little ahead of the log."""
    deadline = time.time() + timeout
    while True:
        costs = pass_costs(log.read_text())
        if all(p in costs for p in passes) or time.time() > deadline:
            return costs
        time.sleep(0.05)


def snapshot_costs(log: str) -> dict[str, str]:
    """Layer → the daemon's cost of its last written pass (seconds, as logged)."""
    return {layer: f"{c['snapshot_s']:.3f}" for (layer, _), c in pass_costs(log).items()}


class CompleteTimes:
    """(layer, step) → time its complete snapshot arrived; `wait_for` blocks until a step's layers have."""

    def __init__(self):
        self.times: dict[tuple[str, int], float] = {}
        self.changed = threading.Condition()
        self.closed = threading.Event()

    def arrived(self, layer: str, step: int) -> None:
        with self.changed:
            self.times.setdefault((layer, step), time.perf_counter())
            self.changed.notify_all()

    def of_step(self, step: int) -> dict[str, float]:
        with self.changed:
            return {layer: t for (layer, s), t in self.times.items() if s == step}

    def wait_for(self, layers: list[str], step: int, timeout: float) -> list[str]:
        """The layers whose complete snapshot of `step` did not arrive within `timeout` seconds."""
        with self.changed:
            self.changed.wait_for(lambda: all((layer, step) in self.times for layer in layers), timeout)
            return sorted(layer for layer in layers if (layer, step) not in self.times)


def subscribe_complete(endpoint: str, key, layers: list[str]) -> CompleteTimes:
    """A subscriber thread on `layers` that notes when each one's complete snapshot of each step arrives
    (until `closed` is set)."""
    sub = zmq.Context.instance().socket(zmq.SUB)
    if key is not None:
        load_credential(key).apply(sub)
    sub.connect(endpoint)
    for layer in layers:
        sub.setsockopt(zmq.SUBSCRIBE, layer.encode() + b"\0")
    time.sleep(0.3)
    times = CompleteTimes()

    def listen():
        while not times.closed.is_set():
            if sub.poll(100):
                _, payload = sub.recv_multipart()
                s = hndd_pb2.Snapshot.FromString(payload)
                if s.complete:
                    times.arrived(s.layer, s.step)
        sub.close(0)

    threading.Thread(target=listen, daemon=True).start()
    return times


def bench_raw_zmq(messages, work: Path) -> dict:
    """`messages()`'s batches as the same 2-frame messages PUSH → PULL over ipc://, the receiver
    only counting (the maps go as they are, zero-copy, as the pool's bytes did before)."""
    context = zmq.Context()
    endpoint = f"ipc://{work}/raw.sock"
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 8)  # received messages waiting for the counting thread: memory stays bounded
    pull.bind(endpoint)
    push = context.socket(zmq.PUSH)
    push.connect(endpoint)
    header = hndd_pb2.BatchHeader(protocol_version=1, run="bench", layer="x", step=1).SerializeToString()
    sent, layers = [], set()
    for layer, ids, maps in messages():
        sent.append((ids.size, np.ascontiguousarray(maps)))
        layers.add(layer)

    def receive():
        for _ in sent:
            pull.recv_multipart(copy=False)  # and dropped: the pass is far bigger than memory

    receiver = threading.Thread(target=receive)
    started = time.perf_counter()
    receiver.start()
    for _, maps in sent:
        push.send_multipart([header, maps], copy=False)
    receiver.join()
    seconds = time.perf_counter() - started
    push.close(0); pull.close(0); context.term()
    return {"raw_zmq_images_per_s": sum(n for n, _ in sent) / len(layers) / seconds,
            "raw_zmq_gb_per_s": sum(maps.nbytes for _, maps in sent) / seconds / 1e9}


def bench_numpy(dictionary: Path, pool: list[np.ndarray], images: int) -> dict:
    """Vectorised NumPy Stage II for one pass: threshold known (as a two-pass tool would have it),
    maps whose max is below it skipped, the rest upsampled as Wy · A · Wxᵀ and counted against the
    concept masks. Stages I and III are left out: this is a lower bound on NumPy's cost."""
    units, h, w = pool[0].shape[1:]

    def weights(n_in):
        scale = n_in / MASK
        src = np.maximum((np.arange(MASK) + 0.5) * scale - 0.5, 0)
        i0 = np.minimum(src.astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        l1 = (src - i0).astype(np.float32)
        m = np.zeros((MASK, n_in), np.float32)
        m[np.arange(MASK), i0] += 1 - l1
        m[np.arange(MASK), i1] += l1
        return m

    wy, wx = weights(h), weights(w)
    with h5py.File(dictionary, "r") as f:
        n_global = int((f["images/local_label"][:, 0] < 0).sum())
        ellipse = f["images/ellipse"][n_global:n_global + 256]
        present = f["images/local_label"][n_global:n_global + 256] == 1
    grid = (np.arange(MASK) + 0.5) / MASK
    px, py = np.meshgrid(grid, grid)
    masks = np.zeros((256, ellipse.shape[1], MASK, MASK), bool)
    for i in range(256):
        for c in np.nonzero(present[i])[0]:
            cx, cy, sxx, sxy, syy = ellipse[i, c].astype(np.float64)
            det = sxx * syy - sxy * sxy
            dx, dy = px - cx, py - cy
            masks[i, c] = (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / det <= 5.991
    threshold = np.quantile(np.concatenate([p.reshape(-1, units, h * w)[:64] for p in pool[:1]]).transpose(1, 0, 2).reshape(units, -1), 0.995, axis=1)
    sample = min(images, 1024)
    started = time.perf_counter()
    inter = np.zeros((units, masks.shape[1]))
    for k, start in enumerate(range(0, sample, pool[0].shape[0])):
        batch = pool[k % len(pool)]
        maxima = batch.max(axis=(2, 3))
        for i in range(batch.shape[0]):
            hot = np.nonzero(maxima[i] > threshold)[0]
            if hot.size == 0:
                continue
            up = wy @ batch[i, hot] @ wx.T                     # [hot, S, S]
            m = (up > threshold[hot, None, None]).reshape(hot.size, -1).astype(np.float32)
            inter[hot] += m @ masks[i % 256].reshape(masks.shape[1], -1).T.astype(np.float32)
    seconds = time.perf_counter() - started
    return {"numpy_images_per_s": sample / seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS) + sorted(PASSES),
                        help="default: the three single synthetic layers")
    parser.add_argument("--images", type=int, help="probe pass size (default 35,632; --quick 4,096)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="element type of the messages (end to end and raw ZeroMQ); the maps are rounded to it, "
                             "and dissect reads the rounded values from a float32 file (default float32)")
    parser.add_argument("--snapshot-interval", type=float, default=1.0,
                        help="hndd serve's partial snapshot interval during the end-to-end run (default 1 s)")
    parser.add_argument("--passes", type=int, default=1, metavar="N",
                        help="single synthetic layers: N probe passes of one run to one `hndd serve` (fresh maps each, "
                             "steps 1..N); the first is the run's baseline, the later ones pay the change test and "
                             "their latency is reported under later_passes (default 1)")
    parser.add_argument("--real-images", type=int, default=workloads.REAL_IMAGES,
                        help=f"--workload real*: distinct real faces, tiled to the pass (default {workloads.REAL_IMAGES})")
    parser.add_argument("--rasters", action="store_true",
                        help="version 1 against version 2 (raster masks, bilateral concepts as two ellipses), alternating")
    parser.add_argument("--rounds", type=int, default=2, help="with --rasters: rounds of v1 and v2 (default 2)")
    parser.add_argument("--transport", choices=sorted(TRANSPORTS), default="ipc",
                        help="end to end over ipc:// (default), loopback tcp:// without CURVE (--insecure-tcp), or with "
                             "CURVE (a client credential); tools/bench/cluster.py --curve alternates the last two")
    args = parser.parse_args(argv)
    if args.rasters:
        if set(args.workload or []) - set(WORKLOADS):
            parser.error(f"--rasters runs single synthetic layers only: {', '.join(WORKLOADS)}")
        return compare_versions(args)
    images = args.images or (4096 if args.quick else 35632)
    n_global = min(11000, images * 11000 // 35632)
    binary = hndd_binary()
    work = Path(tempfile.mkdtemp(prefix="hndd-bench-"))
    results = {}
    try:
        dictionary = work / "dictionary.h5"
        write_dictionary(dictionary, n_global, images - n_global, args.seed)
        for name in args.workload or list(WORKLOADS):
            run = PASSES.get(name, run_single)
            results[name] = r = run(name, binary=binary, dictionary=dictionary, images=images, work=work, args=args)
            print(f"{name}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return finish(results, args)


#: The CPU flags that choose hndd's kernels (Sources/CHNDCPU) or limit them, as /proc/cpuinfo spells them.
VECTOR_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_fp16", "avx512_bf16")


def cpu_description(cpuinfo: str) -> dict:
    """The CPU a figure came from, as the docs must name it: model and the vector flags present."""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    present = set(flags.group(1).split()) if flags else set()
    return {"cpu_model": model.group(1).strip() if model else "unknown",
            "cpu_vector_flags": [f for f in VECTOR_FLAGS if f in present], "cores": os.cpu_count()}


def finish(results: dict, args) -> int:
    """Every bench run's epilogue (bench.py's and cluster.py's): the machine — its CPU and load — then --json."""
    load = os.getloadavg()
    try:
        machine = cpu_description(Path("/proc/cpuinfo").read_text())
    except OSError:
        machine = cpu_description("")
    machine.update(load_average_at_end=list(load), date_utc=time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
    print(f"machine: {machine['cpu_model']}, {' '.join(machine['cpu_vector_flags']) or 'no vector flags found'}")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores")
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "machine": machine}, indent=2))
    return 0


def wire(pool: list[np.ndarray], dtype: str) -> list[np.ndarray]:
    return [p.astype(np.float16) for p in pool] if dtype == "float16" else pool


def run_single(name: str, *, binary: str, dictionary: Path, images: int, work: Path, args) -> dict:
    """One synthetic layer: every figure of the module doc."""
    units, h, w = WORKLOADS[name]
    batch = batch_size(units, h, w)
    pool = wire(batch_pool(units, h, w, 8, args.seed, batch), args.dtype)
    layer = f"bench{name}"
    # Later passes get maps of their own: a pass equal to the baseline would skip the change test unit by unit.
    later = [wire(batch_pool(units, h, w, 8, args.seed + 1000 * k, batch), args.dtype) for k in range(1, args.passes)]
    return measure_layer(layer, lambda: workloads.cycled(layer, pool, images), (units, h, w), batch, pool,
                         binary=binary, dictionary=dictionary, images=images, work=work, args=args,
                         later_passes=[lambda p=p: workloads.cycled(layer, p, images) for p in later])


def real_pass(name: str, images: int, *, seed: int, real_images: int, dtype: str, along=()):
    """A real-map workload's pass (workloads.REAL_WORKLOADS[name]): (layer, maps, batch, messages),
    the maps rounded to the message dtype and `messages()` them tiled to `images` ids. The cache
    is built first where it lacks them, with the real workloads' modules `along` in the same pass."""
    module = workloads.REAL_WORKLOADS[name].module
    maps = workloads.real_maps(module, real_images, seed, along=along)
    maps = maps.astype(np.float16) if dtype == "float16" else maps
    batch = batch_size(*maps.shape[1:])
    return module, maps, batch, lambda: workloads.tiled(module, maps, images, batch)


def run_real(name: str, *, binary: str, dictionary: Path, images: int, work: Path, args) -> dict:
    """--workload real, real-2048x7x7, real-1024x14x14: a ResNet-50 layer on real faces
    (workloads.py), tiled to the pass; every figure of the single synthetic layers."""
    along = [workloads.REAL_WORKLOADS[w].module for w in args.workload or () if w in workloads.REAL_WORKLOADS]
    layer, maps, batch, messages = real_pass(name, images, seed=args.seed, real_images=args.real_images,
                                             dtype=args.dtype, along=along)
    r = {"layer": layer, "real_images": maps.shape[0], "repeats": images / maps.shape[0]}
    r.update(measure_layer(layer, messages, maps.shape[1:], batch, [m for _, _, m in itertools.islice(messages(), 8)],
                           binary=binary, dictionary=dictionary, images=images, work=work, args=args))
    return r


def measure_layer(layer: str, messages, shape, batch: int, pool: list[np.ndarray], *, binary: str, dictionary: Path,
                  images: int, work: Path, args, later_passes=()) -> dict:
    """dissect, end to end, raw ZeroMQ and NumPy (on `pool`, a few of the batches) for one layer's pass."""
    units, h, w = shape
    r = {"images": images, "units": units, "map": f"{h}x{w}", "batch": batch, "dtype": args.dtype,
         "activations_mb": images * units * h * w * 4 / 2**20}
    activations = work / "activations.h5"
    write_activations(activations, messages(), shape, images, batch)
    r.update(bench_dissect(binary, dictionary, activations, layer, images, work, batch))
    print(f"{layer}: dissect done: {r}", flush=True)
    activations.unlink()
    r.update(bench_serve(binary, dictionary, [layer], messages, images, work, args.snapshot_interval,
                         transport=args.transport, later_passes=later_passes))
    r.update(bench_raw_zmq(messages, work))
    r.update(bench_numpy(dictionary, [p.astype(np.float32) for p in pool], images))
    r["end_to_end_over_numpy"] = r["end_to_end_images_per_s"] / r["numpy_images_per_s"]
    r["end_to_end_share_of_raw_zmq"] = r["end_to_end_images_per_s"] / r["raw_zmq_images_per_s"]
    r["load_average"] = os.getloadavg()[0]
    return r


def run_three_layers(name: str, *, binary: str, dictionary: Path, images: int, work: Path, args) -> dict:
    """--workload three-layers: each layer alone, then the three interleaved as `watch` sends them
    (`watch`'s probe batch for every layer), all to one `hndd serve`; and raw ZeroMQ for the
    interleaved messages. `hndd dissect` is left out: the single workloads measure it."""
    pools = {f"bench{shape}": wire(batch_pool(*WORKLOADS[shape], 8, args.seed, workloads.WATCH_BATCH), args.dtype)
             for shape in workloads.THREE_LAYERS}
    r: dict = {"images": images, "batch": workloads.WATCH_BATCH, "dtype": args.dtype, "layers_in_order": list(pools),
               "alone": {}}
    serve = dict(images=images, work=work, snapshot_interval=args.snapshot_interval, transport=args.transport)
    for layer, pool in pools.items():
        r["alone"][layer] = bench_serve(binary, dictionary, [layer], lambda: workloads.cycled(layer, pool, images), **serve)
        r["alone"][layer]["load_average"] = os.getloadavg()[0]
        print(f"{layer} alone: {r['alone'][layer]}", flush=True)
    messages = lambda: workloads.interleaved(pools, images)  # noqa: E731
    r.update(bench_serve(binary, dictionary, list(pools), messages, **serve))
    r.update(bench_raw_zmq(messages, work))
    alone_seconds = sum(a["end_to_end_seconds"] for a in r["alone"].values())
    r["sum_alone_seconds"] = alone_seconds
    r["sum_alone_images_per_s"] = images / alone_seconds
    r["together_over_sum_alone"] = r["end_to_end_images_per_s"] / r["sum_alone_images_per_s"]
    r["serve_peak_rss_mb_alone_max"] = max(a["serve_peak_rss_mb"] for a in r["alone"].values())
    r["end_to_end_share_of_raw_zmq"] = r["end_to_end_images_per_s"] / r["raw_zmq_images_per_s"]
    r["load_average"] = os.getloadavg()[0]
    return r


#: The workloads beyond one synthetic layer (`WORKLOADS`), by their --workload name.
PASSES = {"three-layers": run_three_layers, **{name: run_real for name in workloads.REAL_WORKLOADS}}


def compare_versions(args) -> int:
    """--rasters: each workload with the version-1 dictionary and its version-2 twin, alternating."""
    images = args.images or (4096 if args.quick else 35632)
    n_global = min(11000, images * 11000 // 35632)
    binary = hndd_binary()
    work = Path(tempfile.mkdtemp(prefix="hndd-bench-"))
    results: dict = {"dictionaries": {}, "runs": [], "ratios": []}
    keys = ("engine_images_per_s", "end_to_end_images_per_s", "latency_last_batch_to_snapshot_s",
            "complete_snapshot_cost_s", "dissect_peak_rss_mb", "serve_peak_rss_mb", "dissect_start_up_s")
    try:
        dictionaries = {1: work / "dictionary-v1.h5", 2: work / "dictionary-v2.h5"}
        write_dictionary(dictionaries[1], n_global, images - n_global, args.seed)
        write_raster_dictionary(dictionaries[1], dictionaries[2])
        for version, path in dictionaries.items():
            results["dictionaries"][f"v{version}"] = {"file_mb": path.stat().st_size / 2**20,
                                                      **bench_dictionary_check(binary, path)}
            print(f"dictionary v{version}: {results['dictionaries'][f'v{version}']}", flush=True)
        for name in args.workload or ["512x7x7"]:
            units, h, w = WORKLOADS[name]
            batch = batch_size(units, h, w)
            pool = batch_pool(units, h, w, 8, args.seed, batch)
            layer = f"bench{name}"
            messages = lambda: workloads.cycled(layer, pool, images)  # noqa: E731
            activations = work / "activations.h5"
            write_activations(activations, messages(), (units, h, w), images, batch)
            for round_ in range(args.rounds):
                measured = {}
                for version in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                    r = {"workload": name, "version": version, "round": round_, "images": images}
                    r.update(bench_dissect(binary, dictionaries[version], activations, layer, images, work, batch))
                    r.update(bench_serve(binary, dictionaries[version], [layer], messages, images, work,
                                         args.snapshot_interval))
                    r["load_average"] = os.getloadavg()[0]
                    measured[version] = r
                    results["runs"].append(r)
                    print(f"{name} v{version} round {round_}: " + ", ".join(
                        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)
                ratio = {"workload": name, "round": round_,
                         **{f"{k}_v2_over_v1": measured[2][k] / measured[1][k] for k in keys}}
                results["ratios"].append(ratio)
                print(f"{name} round {round_} v2/v1: " + ", ".join(f"{k}={v:.3f}" for k, v in ratio.items() if isinstance(v, float)),
                      flush=True)
            activations.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return finish(results, args)


if __name__ == "__main__":
    sys.exit(main())
