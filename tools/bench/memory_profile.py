#!/usr/bin/env python3
"""Where `hndd serve`'s memory goes over one single-layer pass (issue 18).

Runs only bench.py's end-to-end pass (no dissect, raw ZeroMQ or NumPy), samples the daemon's
resident size (VmRSS) every --interval seconds while it runs, and prints the timeline's peak and
when it came (as a share of the pass). The daemon runs with HNDD_LOG=debug, so that it logs after
every batch what it can attribute (`memory` lines: resident size, the malloc heap in use and free,
the queue, the pass's maxima, top-k and candidate stores); the tool prints that breakdown at the
batch of the highest resident size, and at the written pass. What is left beyond the attributed
parts is the binary, the dictionary's index and the heap's free space.

    HNDD_BIN=/path/to/hndd python3 tools/bench/memory_profile.py --workload 2048x7x7
    HNDD_BIN=/path/to/hndd python3 tools/bench/memory_profile.py --workload real-1024x14x14 --dtype float16
"""
import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import compare_snapshots  # noqa: E402
import workloads  # noqa: E402


def serve_pids(binary: str) -> list[int]:
    """Pids of `hndd serve` processes of `binary` that are children of this process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and cmd[:2] == [binary.encode(), b"serve"]:
            found.append(int(entry.name))
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sample(binary: str, interval: float, samples: list, stop: threading.Event) -> None:
    started = time.perf_counter()
    while not stop.is_set():
        for pid in serve_pids(binary):
            try:
                samples.append((time.perf_counter() - started, rss_mb(pid)))
            except OSError:
                pass
        time.sleep(interval)


#: A `key=value` of a daemon log line (values hold no spaces).
FIELD = re.compile(r"(\w+)=(\S+)")


def memory_lines(log: str) -> list[dict]:
    """The daemon's `memory` lines (one per batch at debug level), as dicts of their fields."""
    return [dict(FIELD.findall(line)) for line in log.splitlines() if line.endswith("] memory")]


def written_pass_line(log: str) -> dict:
    """The fields of the daemon's line for the written pass (its memory figures among them)."""
    lines = [line for line in log.splitlines() if line.endswith("] pass complete")]
    return dict(FIELD.findall(lines[-1])) if lines else {}


#: The figures printed, in this order: resident size, then what the daemon attributes.
SHOWN = ["rss_mb", "hwm_mb", "maxima_mb", "topk_mb", "candidates_mb", "candidates", "queue_mb", "queue_batches",
         "heap_used_mb", "heap_mapped_mb", "heap_free_mb", "baseline_mb"]


def breakdown(fields: dict) -> str:
    parts = [f"{key} {fields[key]}" for key in SHOWN if key in fields]
    if "candidate_stores_mb" in fields:
        parts.append(f"per store [{fields['candidate_stores_mb']}] MB")
    return ", ".join(parts)


def pass_messages(args, units: int, h: int, w: int):
    """The layer's name and its pass's messages, as bench.py sends them for --workload and --dtype."""
    if args.workload in workloads.REAL_WORKLOADS:
        layer, _, _, messages = bench.real_pass(args.workload, args.images, seed=args.seed,
                                                real_images=args.real_images, dtype=args.dtype)
        return layer, messages
    layer = f"bench{args.workload}"
    pool = bench.wire(bench.batch_pool(units, h, w, 8, args.seed, bench.batch_size(units, h, w)), args.dtype)
    return layer, lambda: workloads.cycled(layer, pool, args.images)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted([*bench.WORKLOADS, *workloads.REAL_WORKLOADS]), default="2048x7x7",
                        help="a synthetic layer, or a real-map one (built and cached as bench.py does)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="the messages' dtype")
    parser.add_argument("--real-images", type=int, default=workloads.REAL_IMAGES,
                        help="distinct faces of a real-map workload, tiled to --images")
    parser.add_argument("--images", type=int, default=35632)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-snapshots", metavar="FILE.npz",
                        help="keep the datasets of the daemon's snapshot file there (compare_snapshots.py compares two)")
    args = parser.parse_args()
    binary = bench.hndd_binary()
    real = args.workload in workloads.REAL_WORKLOADS
    units, h, w = workloads.REAL_WORKLOADS[args.workload].shape if real else bench.WORKLOADS[args.workload]
    work = Path(tempfile.mkdtemp(prefix="candidate-memory-profile-"))
    samples: list = []
    stop = threading.Event()
    try:
        dictionary = work / "dictionary.h5"
        n_global = min(11000, args.images * 11000 // 35632)
        bench.write_dictionary(dictionary, n_global, args.images - n_global, args.seed)
        layer, messages = pass_messages(args, units, h, w)
        sampler = threading.Thread(target=sample, args=(binary, args.interval, samples, stop), daemon=True)
        sampler.start()
        os.environ["HNDD_LOG"] = "debug"  # the daemon's memory line after every batch
        r = bench.bench_serve(binary, dictionary, [layer], messages, args.images, work)
        stop.set()
        sampler.join()
        log = (work / "serve.log").read_text()
        if args.keep_snapshots:
            compare_snapshots.save(str(work / "run" / "snapshots.h5"), args.keep_snapshots)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak_t, peak = max(samples, key=lambda s: s[1]) if samples else (float("nan"), float("nan"))
    span = samples[-1][0] if samples else float("nan")
    n_local = args.images - n_global
    maxima_mb = units * args.images * 4 / 2**20
    topk_mb = units * int(0.005 * n_local * h * w + 1) * 4 / 2**20
    print(f"{args.workload}, {args.dtype}: VmHWM {r['serve_peak_rss_mb']:.0f} MB; sampled peak {peak:.0f} MB at {peak_t:.1f} s "
          f"of {span:.1f} s; end to end {r['end_to_end_seconds']:.1f} s")
    print(f"  fixed: maxima {maxima_mb:.0f} MB (x2 with a baseline), top-k ~{topk_mb:.0f} MB")
    lines = memory_lines(log)
    if lines:
        print(f"  after the first batch: {breakdown(lines[0])}")
        top = max(lines, key=lambda fields: float(fields.get("rss_mb", "nan")))
        print(f"  at the batch of the highest RSS ({lines.index(top) + 1} of {len(lines)}): {breakdown(top)}")
    written = written_pass_line(log)
    if written:
        print(f"  at the written pass: {breakdown(written)}")
    for t, mb in samples[:: max(1, len(samples) // 20)]:
        print(f"  t={t:6.1f} s  RSS {mb:7.0f} MB")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
