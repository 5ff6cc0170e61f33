"""Readers while `hndd serve` writes (issue 14), for `store_bench.py --serve-seconds S`.

A simulated trainer pushes one probe pass of the dictionary's 20 images (one layer, 64 units
of 4×4 maps, fresh values each time) every second, at steps 0, 10, 20, …; each second a reader
opens the snapshot file with plain h5py and checks its newest row, another opens it with
`hndd_client.snapshots` and reads the newest step's iou, and `hndd summary` reads it. Reported:
passes pushed and written, reads made, every reader failure (none expected); the file's rows at the end.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np

from hndd_client import Client, snapshots

UNITS, SIZE, IMAGES, LAYER = 64, 4, 20, "layer.sim"


def bench_serve_readers(binary: str, work: Path, dictionary: Path, seconds: float) -> dict:
    run_dir, out = work / "serve-run", work / "serve.h5"
    subprocess.run(["rm", "-rf", str(run_dir), str(out), str(out) + ".rows"], check=True)
    daemon = subprocess.Popen([binary, "serve", "--dictionary", str(dictionary), "--run-dir", str(run_dir),
                               "--out", str(out)], stderr=open(work / "serve.log", "w"))
    try:
        deadline = time.time() + 30
        while not (run_dir / "endpoints.json").exists():
            assert time.time() < deadline and daemon.poll() is None, "hndd serve did not start"
            time.sleep(0.1)
        result = {"seconds": seconds, "passes_pushed": 0, "reads": {"h5py": 0, "snapshots": 0, "summary": 0},
                  "failures": []}
        stop = threading.Event()
        readers = [threading.Thread(target=_reader, args=(kind, binary, out, stop, result)) for kind in result["reads"]]
        for reader in readers:
            reader.start()
        rng = np.random.default_rng(0)
        client = Client(run_dir=str(run_dir), run="simulated", on_full="block")
        started = time.time()
        while time.time() - started < seconds:
            tick = time.time()
            step = result["passes_pushed"] * 10
            client.send(LAYER, step, np.arange(IMAGES), rng.random((IMAGES, UNITS, SIZE, SIZE), dtype=np.float32))
            client.flush(timeout=30)
            result["passes_pushed"] += 1
            time.sleep(max(0.0, 1.0 - (time.time() - tick)))
        client.close()
        time.sleep(3)
        stop.set()
        for reader in readers:
            reader.join()
        with h5py.File(out, "r") as f:
            result["rows_written"] = int(f[f"layers/{LAYER}/step"].shape[0])
            result["complete_rows"] = int(f[f"layers/{LAYER}/complete"][()].sum())
        result["index_bytes"] = out.stat().st_size
        return result
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)


def _reader(kind: str, binary: str, out: Path, stop: threading.Event, result: dict) -> None:
    while not stop.is_set():
        tick = time.time()
        try:
            if out.exists():
                _read_once(kind, binary, out)
                result["reads"][kind] += 1
        except Exception as error:  # noqa: BLE001 - every failure is the finding
            result["failures"].append(f"{kind} at {time.strftime('%H:%M:%S')}: {error!r}")
        stop.wait(max(0.0, 1.0 - (time.time() - tick)))


def _read_once(kind: str, binary: str, out: Path) -> None:
    if kind == "h5py":
        with h5py.File(out, "r") as f:
            if "layers" in f and LAYER in f["layers"]:
                group = f["layers"][LAYER]
                n = group["step"].shape[0]
                assert {group[name].shape[0] for name in group} == {n}
                if n:
                    assert group["step"][n - 1] == 10 * (n - 1) and np.isfinite(group["iou"][n - 1]).all()
    elif kind == "snapshots":
        with snapshots.open(out) as f:
            if LAYER in f.layers:
                f.values(LAYER, "iou", steps=f.steps(LAYER)[-1:])
    else:
        done = subprocess.run([binary, "summary", str(out), "--layer", LAYER], capture_output=True, text=True)
        if done.returncode != 0 and "no snapshots yet" not in done.stderr and "no layer" not in done.stderr:
            raise RuntimeError(done.stderr.strip())
