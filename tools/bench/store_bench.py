#!/usr/bin/env python3
"""The snapshot store's benchmark (issue 14).

    python3 tools/bench/store_bench.py [--rows 5000] [--units 2048] [--work DIR]

Appends `--rows` synthetic rows of `--units` units (the real taxonomy: 12 subgroups, 39
concepts) to a fresh snapshot file through the daemon's writer (`hndd bench-append`, one append
per row, as `serve` appends one finished pass), and reports for the appends of rows 10, 1,000
and 5,000 the bytes the process wrote (`wchar` of /proc/self/io: every write call, row files
and index) and the time the append took — each single append and the median of the 21 appends
around it — and late / early. Then it times `hndd summary --json` and `hndd report` on the file
(the report's page size too), and the reading API (`hndd_client.snapshots`) on it.

    python3 tools/bench/store_bench.py --serve-seconds 3600

instead runs `hndd serve` while a simulated trainer pushes one small probe pass a second, and
readers (plain h5py, `hndd_client.snapshots`, `hndd summary`) read the file every second, for
that long; it reports the passes written and every failure of a reader (none expected).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "python"))
REPORTED = (10, 1_000, 5_000)


def hndd_binary() -> str:
    for flavour in ("release", "debug"):
        path = REPO / ".build" / flavour / "hndd"
        if path.exists():
            return str(path)
    raise SystemExit("build hndd first (swift build)")


def dictionary(work: Path) -> Path:
    path = work / "dictionary.h5"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "hndd_client", "synth-dictionary", "--images", "20", "--size", "32",
                        "--mask-size", "16", "--seed", "1", "--out", str(path)], check=True, capture_output=True)
    return path


def bench_appends(binary: str, work: Path, rows: int, units: int) -> dict:
    out = work / "s.h5"
    subprocess.run(["rm", "-rf", str(out), str(out) + ".rows"], check=True)
    started = time.time()
    run = subprocess.run([binary, "bench-append", "--dictionary", str(dictionary(work)), "--out", str(out),
                          "--rows", str(rows), "--units", str(units), "--per-row"], check=True, capture_output=True, text=True)
    total = time.time() - started
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    result = {"rows": rows, "units": units, "total_s": round(total, 1), "appends": {}}
    for n in REPORTED:
        if n > rows:
            continue
        i = n - 1
        window = lines[max(0, i - 10):i + 11]
        result["appends"][n] = {
            "bytes": lines[i]["wchar"], "seconds": round(lines[i]["seconds"], 4),
            "median_bytes": statistics.median(l["wchar"] for l in window),
            "median_seconds": round(statistics.median(l["seconds"] for l in window), 4)}
    first, last = result["appends"][REPORTED[0]], result["appends"][max(k for k in result["appends"])]
    result["late_over_early"] = {"bytes": round(last["median_bytes"] / first["median_bytes"], 3),
                                 "seconds": round(last["median_seconds"] / first["median_seconds"], 3)}
    result["index_bytes"] = out.stat().st_size
    result["row_file_bytes"] = sum(p.stat().st_size for p in (work / "s.h5.rows").rglob("*.raw"))
    return result


def bench_readers(binary: str, work: Path) -> dict:
    out = work / "s.h5"
    timings = {}
    started = time.time()
    summary = subprocess.run([binary, "summary", str(out), "--json"], check=True, capture_output=True, text=True)
    timings["summary_json_s"] = round(time.time() - started, 2)
    timings["summary_lines"] = len(summary.stdout.splitlines())
    started = time.time()
    subprocess.run([binary, "report", str(out), "--out", str(work / "report.html")], check=True, capture_output=True)
    timings["report_s"] = round(time.time() - started, 2)
    timings["report_bytes"] = (work / "report.html").stat().st_size
    from hndd_client import snapshots
    started = time.time()
    with snapshots.open(out) as f:
        layer = f.layers[0]
        timings["api_steps"] = len(f.steps(layer))
        f.units(layer, steps=f.steps(layer)[-1:])
        timings["api_units_table_s"] = round(time.time() - started, 2)
        started = time.time()
        f.values(layer, "iou", steps=f.steps(layer)[-100:])
        timings["api_iou_100_steps_s"] = round(time.time() - started, 2)
        started = time.time()
        f.counts(layer)
        timings["api_counts_s"] = round(time.time() - started, 2)
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--units", type=int, default=2048)
    parser.add_argument("--work", default="/tmp/hndd-store-bench")
    parser.add_argument("--serve-seconds", type=float, help="run the readers-during-serve benchmark this long instead")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    binary = hndd_binary()
    if args.serve_seconds:
        from serve_readers import bench_serve_readers
        print(json.dumps(bench_serve_readers(binary, work, dictionary(work), args.serve_seconds), indent=1))
        return 0
    result = bench_appends(binary, work, args.rows, args.units)
    print(json.dumps(result, indent=1), flush=True)
    print(json.dumps(bench_readers(binary, work), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
