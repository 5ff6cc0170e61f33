#!/usr/bin/env python3
"""hndd beyond one machine (issue 15), on the paper's workload of bench.py (512×7×7, 35,632 images):

  --curve    end-to-end images/s over loopback tcp:// without CURVE (--insecure-tcp) and with
             CURVE, alternating, --rounds times: what encryption and authentication cost
  --shards   one layer by 1 daemon, then split by image over N daemons (`--shard K/N`, fed by a
             cluster-file client) and merged by `hndd merge`: the time to every shard's kept
             state, the merge (state transfer, decoding, merging, the merged snapshot) from the
             live daemons and from the state files; the inputs of the README's scaling model

    python3 tools/bench/cluster.py --curve --rounds 3
    python3 tools/bench/cluster.py --shards 2 --rounds 2
    python3 tools/bench/cluster.py --quick --curve --shards 2      # small pass, a smoke run

Every daemon runs on this machine: with N daemons on 2 cores they share the cores, so the split
measures the costs the model needs (ingest per image, merge per shard), not a speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the workload and the end-to-end run)
from bench import Client, hndd_pb2  # noqa: E402

WORKLOAD, LAYER = "512x7x7", "bench512x7x7"


def control(endpoint: str, request: "hndd_pb2.ControlRequest", timeout: float = 10) -> "hndd_pb2.ControlReply":
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    try:
        sock.connect(endpoint)
        request.protocol_version = 1
        sock.send(request.SerializeToString())
        return hndd_pb2.ControlReply.FromString(sock.recv())
    finally:
        sock.close()


def pass_entry(endpoint: str):
    """The status entry of the benchmark's pass on a daemon, or None (none yet, or a daemon too
    busy to answer within the timeout: asked again)."""
    request = hndd_pb2.ControlRequest()
    request.status.SetInParent()
    try:
        reply = control(endpoint, request)
    except zmq.Again:
        return None
    for layer in reply.status.layers:
        for p in layer.passes:
            if p.run == "bench":
                return p
    return None


class Daemons:
    """N `hndd serve` over ipc:// in `work`: one of every image (n = 1), or shards 1/N … N/N."""

    def __init__(self, binary: str, dictionary: Path, work: Path, n: int, sharded: bool):
        self.run_dirs = [work / f"run-{k}" for k in range(n)]
        self.logs = [work / f"serve-{k}.log" for k in range(n)]
        self.processes = []
        for k, run_dir in enumerate(self.run_dirs):
            shutil.rmtree(run_dir, ignore_errors=True)
            shard = ["--shard", f"{k + 1}/{n}"] if sharded else []
            with open(self.logs[k], "w") as log:
                self.processes.append(subprocess.Popen(
                    [binary, "serve", "--dictionary", str(dictionary), "--run-dir", str(run_dir), "--snapshot-interval", "1",
                     "--checkpoint-interval", "3600", *shard], stderr=log))
        self.endpoints = [self._wait_up(k) for k in range(n)]
        self.sharded = sharded

    def _wait_up(self, k: int) -> dict:
        path, deadline = self.run_dirs[k] / "endpoints.json", time.time() + 30
        while not path.exists():
            if self.processes[k].poll() is not None or time.time() > deadline:
                sys.exit(f"cluster bench: hndd serve did not start; see {self.logs[k]}")
            time.sleep(0.05)
        return json.loads(path.read_text())

    def cluster_file(self, path: Path) -> Path:
        n = len(self.run_dirs)
        daemons = [{"name": f"d{k}", "run_dir": str(d), "layers": [LAYER], **({"shard": f"{k + 1}/{n}"} if self.sharded else {})}
                   for k, d in enumerate(self.run_dirs)]
        path.write_text(json.dumps({"format": "hndd-cluster", "version": 1, "daemons": daemons}))
        return path

    def done(self) -> bool:
        """Every daemon has finished the pass: written (one daemon) or its share kept (shards)."""
        for endpoints in self.endpoints:
            p = pass_entry(endpoints["control"])
            if p is None or p.open or p.images_seen < (p.images_expected if self.sharded else p.images_total):
                return False
        return True

    def stop(self):
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()

    def snapshot_costs(self) -> list[float]:
        """The daemons' own cost of their last snapshot (a shard's: none, it keeps its state)."""
        return [float(c[-1]) for log in self.logs if (c := re.findall(r"snapshot_s=([0-9.]+)", log.read_text()))]


def feed_until_done(daemons: Daemons, pool: list[np.ndarray], images: int, cluster: Path) -> float:
    """Seconds from the first batch sent (through the cluster file) to every daemon done."""
    client = Client(cluster=str(cluster), run="bench", max_queue_mb=1024, on_full="block", block_timeout=3600)
    started = time.perf_counter()
    for layer, ids, maps in bench.workloads.cycled(LAYER, pool, images):
        client.send(layer, 1, ids, maps)
    client.flush()
    deadline = time.time() + 900
    while not daemons.done():
        if time.time() > deadline:
            sys.exit("cluster bench: the pass did not finish within 900 s")
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    client.close()
    return seconds


def run_merge(binary: str, dictionary: Path, sources: list[str], out: Path) -> dict:
    """`hndd merge` of `sources`: its wall time and its own account (state read, decode, merge, snapshot)."""
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    done = subprocess.run([binary, "merge", "--dictionary", str(dictionary), *sources, "--out", str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"cluster bench: hndd merge failed: {done.stderr}")
    found = re.search(r"([0-9.]+) MB of state read in ([0-9.]+) s.*decoding ([0-9.]+) s, merging ([0-9.]+) s, "
                      r"snapshot ([0-9.]+) s", done.stderr)
    state_mb, read, decode, merge, snapshot = map(float, found.groups())
    return {"wall_s": wall, "state_mb": state_mb, "read_s": read, "decode_s": decode, "merge_s": merge,
            "snapshot_s": snapshot}


def bench_shards(binary: str, dictionary: Path, pool, images: int, work: Path, n: int) -> dict:
    """One daemon, then N shard daemons and their merge (live, then from the kept files)."""
    result = {"daemons": n}
    for sharded, name in ((False, "one"), (True, "shards")):
        daemons = Daemons(binary, dictionary, work, 1 if not sharded else n, sharded)
        try:
            seconds = feed_until_done(daemons, pool, images, daemons.cluster_file(work / f"cluster-{name}.json"))
            result[f"{name}_pass_s"] = seconds
            result[f"{name}_images_per_s"] = images / seconds
            if not sharded:
                result["one_snapshot_s"] = daemons.snapshot_costs()[-1]
            else:
                live = run_merge(binary, dictionary, [a for e in daemons.endpoints for a in ("--peer", e["control"])],
                                 work / "merged-live.h5")
                result.update({f"merge_live_{k}": v for k, v in live.items()})
        finally:
            daemons.stop()
    files = [str(next((d / "shards").glob("*.hndd"))) for d in daemons.run_dirs]
    offline = run_merge(binary, dictionary, [a for f in files for a in ("--state", f)], work / "merged-files.h5")
    result.update({f"merge_files_{k}": v for k, v in offline.items()})
    result["shards_plus_merge_images_per_s"] = images / (result["shards_pass_s"] + result["merge_live_wall_s"])
    # Loading and indexing the dictionary is part of every `hndd merge`'s wall time.
    result["dictionary_load_s"] = bench.bench_dictionary_check(binary, dictionary)["check_seconds"]
    return result


def bench_raw_tcp(pool, images: int, curve: bool) -> dict:
    """The pass's messages PUSH → PULL over loopback tcp://, with or without CURVE, the receiver
    only counting: what the encryption costs ZeroMQ alone (one I/O thread each side)."""
    context = zmq.Context()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    if curve:
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        pull.curve_server, pull.curve_secretkey, pull.curve_publickey = True, server_secret, server_public
        push.curve_serverkey, push.curve_publickey, push.curve_secretkey = server_public, client_public, client_secret
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push.connect(f"tcp://127.0.0.1:{port}")
    payloads = [p.tobytes() for p in pool]
    batch = pool[0].shape[0]
    count = (images + batch - 1) // batch
    receiver = threading.Thread(target=lambda: [pull.recv(copy=False) for _ in range(count)])
    started = time.perf_counter()
    receiver.start()
    for k in range(count):
        push.send(payloads[k % len(payloads)], copy=False)
    receiver.join()
    seconds = time.perf_counter() - started
    push.close(0), pull.close(0), context.term()
    return {"images_per_s": count * batch / seconds, "gb_per_s": count * len(payloads[0]) / seconds / 1e9}


def bench_curve(binary: str, dictionary: Path, pool, images: int, work: Path, rounds: int) -> list[dict]:
    runs = []
    for round_ in range(rounds):
        for transport in (("tcp", "curve") if round_ % 2 == 0 else ("curve", "tcp")):
            r = bench.bench_serve(binary, dictionary, [LAYER], lambda: bench.workloads.cycled(LAYER, pool, images),
                                  images, work, transport=transport)
            r.update({f"raw_zmq_{k}": v for k, v in bench_raw_tcp(pool, images, transport == "curve").items()})
            r.update(round=round_, load_average=os.getloadavg()[0])
            runs.append(r)
            print(f"{transport} round {round_}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                             for k, v in r.items()), flush=True)
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curve", action="store_true", help="tcp:// without and with CURVE, alternating")
    parser.add_argument("--shards", type=int, action="append", metavar="N", help="1 daemon against N shards and their merge")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, help="probe pass size (default 35,632; --quick 4,096)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if not args.curve and not args.shards:
        parser.error("give --curve and/or --shards N")
    images = args.images or (4096 if args.quick else 35632)
    binary = bench.hndd_binary()
    work = Path(tempfile.mkdtemp(prefix="hndd-cbench-", dir="/tmp"))
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "images": images, "cores": os.cpu_count()}
    try:
        dictionary = work / "dictionary.h5"
        bench.write_dictionary(dictionary, min(11000, images * 11000 // 35632), images - min(11000, images * 11000 // 35632),
                               args.seed)
        units, h, w = bench.WORKLOADS[WORKLOAD]
        pool = bench.batch_pool(units, h, w, 8, args.seed, bench.batch_size(units, h, w))
        if args.curve:
            results["curve"] = bench_curve(binary, dictionary, pool, images, work, args.rounds)
        for n in args.shards or []:
            for round_ in range(args.rounds):
                r = bench_shards(binary, dictionary, pool, images, work, n)
                r.update(round=round_, load_average=os.getloadavg()[0])
                results.setdefault("shards", []).append(r)
                print(f"shards {n} round {round_}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                                  for k, v in r.items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return bench.finish(results, args)


if __name__ == "__main__":
    sys.exit(main())
