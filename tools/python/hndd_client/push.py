"""`python3 -m hndd_client push`: replay an activations file (docs/2-activations.md) to `hndd serve`, as a
trainer would send it: batch by batch, each batch's layers one after another.

`--part K/N` sends only the K-th (1-based) of N disjoint shares of the rows (after `--shuffle`,
which then needs `--seed` so that every part shuffles alike): N processes with parts 1/N..N/N
emulate N data-parallel ranks feeding one probe pass.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

BLOCK_TIMEOUT_DEFAULT = 60.0


class PushError(Exception):
    """Bad input: reported as one line on stderr, exit status 1."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python3 -m hndd_client push",
        description="Replay an activations file (/layers/<layer>/activations [M,C,h,w], optional image_ids [M]) "
                    "to hndd serve.")
    parser.add_argument("--activations", required=True, metavar="A.h5", help="activations file (docs/2-activations.md)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--run-dir", metavar="DIR", help="the daemon's run directory (ipc://DIR/ingest.sock)")
    target.add_argument("--endpoint", metavar="EP", help="the daemon's ingest endpoint, e.g. tcp://127.0.0.1:5555")
    target.add_argument("--cluster", metavar="FILE", help="a cluster file: each layer goes to the daemon(s) serving it")
    parser.add_argument("--key", metavar="FILE", help="CURVE credential for a daemon on TCP (made by hndd keys client)")
    parser.add_argument("--run", required=True, metavar="NAME", help="run name of the probe pass")
    parser.add_argument("--step", required=True, type=int, metavar="S", help="training step of the probe pass")
    parser.add_argument("--layer", action="append", metavar="L", help="layer to send (repeatable; default: all)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="B", help="images per batch (default 256)")
    parser.add_argument("--shuffle", action="store_true", help="send rows in a random order")
    parser.add_argument("--seed", type=int, metavar="K", help="seed of --shuffle")
    parser.add_argument("--part", metavar="K/N", help="send only the K-th of N disjoint shares of the rows (K from 1)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                        help="wire element type (default: float16 data as float16, the rest as float32)")
    parser.add_argument("--rank", type=int, metavar="R", help="data-parallel rank to report (default: K-1 of --part)")
    parser.add_argument("--max-queue-mb", type=float, default=256, metavar="MB", help="client send queue (default 256)")
    parser.add_argument("--timeout", type=float, default=BLOCK_TIMEOUT_DEFAULT, metavar="SEC",
                        help="give up when the daemon accepts nothing for this long (default 60)")
    return parser


def parse_part(text):
    """'K/N' -> (K, N) with 1 <= K <= N."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise PushError(f"--part {text!r}: expected K/N with integers, e.g. 1/4") from None
    if n < 1 or not 1 <= k <= n:
        raise PushError(f"--part {text}: need 1 <= K <= N (K counts from 1, e.g. 1/4 .. 4/4)")
    return k, n


def select_rows(row_count, shuffle, seed, part):
    """The row indices this process sends, in sending order. The same arguments give the same
    order for every layer with the same row count, and parts 1/N..N/N partition all rows."""
    rows = np.arange(row_count)
    if shuffle:
        rows = np.random.default_rng(seed).permutation(row_count)
    if part is not None:
        k, n = part
        rows = rows[k - 1::n]
    return rows


def load_layers(h5file, path, wanted):
    """[(name, activations dataset, image ids array)] for the requested layers, validated."""
    if "layers" not in h5file or not hasattr(h5file["layers"], "keys"):
        raise PushError(f"{path}: no /layers group (an activations file has /layers/<layer>/activations)")
    available = list(h5file["layers"].keys())
    if not available:
        raise PushError(f"{path}: /layers is empty")
    names = wanted or available
    missing = [name for name in names if name not in available]
    if missing:
        raise PushError(f"{path}: no layer {', '.join(missing)} in /layers (has: {', '.join(available)})")
    layers = []
    for name in names:
        group = h5file["layers"][name]
        where = f"{path}: /layers/{name}"
        if "activations" not in group:
            raise PushError(f"{where}/activations is missing")
        activations = group["activations"]
        if not hasattr(activations, "shape") or len(activations.shape) != 4:
            raise PushError(f"{where}/activations must be [M, C, h, w], has shape {getattr(activations, 'shape', None)}")
        if activations.dtype.kind != "f":
            raise PushError(f"{where}/activations must be float32 or float16, is {activations.dtype}")
        if min(activations.shape) == 0:
            raise PushError(f"{where}/activations has an empty dimension: shape {activations.shape}")
        row_count = activations.shape[0]
        if "image_ids" in group:
            ids = group["image_ids"]
            if ids.dtype.kind not in "iu" or ids.shape != (row_count,):
                raise PushError(f"{where}/image_ids must be {row_count} integers (one per activation row), "
                                f"is {ids.dtype} {ids.shape}")
            ids = ids[()].astype(np.int64)
            if ids.size and ids.min() < 0:
                bad = int(np.argmax(ids < 0))
                raise PushError(f"{where}/image_ids[{bad}] = {ids[bad]} is negative")
        else:
            ids = np.arange(row_count, dtype=np.int64)
        layers.append((name, activations, ids))
    return layers


def read_rows(activations, rows):
    """The activation rows `rows` (sorted increasingly, as h5py reads selections)."""
    if rows[-1] - rows[0] + 1 == len(rows):  # contiguous: one hyperslab
        return activations[int(rows[0]):int(rows[-1]) + 1]
    return activations[rows]


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return push(args)
    except PushError as error:
        print(f"push: error: {error}", file=sys.stderr)
        return 1


def push(args):
    import h5py

    from .client import Client

    if args.batch_size < 1:
        raise PushError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.timeout <= 0:
        raise PushError(f"--timeout {args.timeout}: must be positive")
    part = parse_part(args.part) if args.part else None
    if args.shuffle and part is not None and args.seed is None:
        raise PushError("--shuffle with --part needs --seed, so that every part shuffles the rows alike")
    if not os.path.isfile(args.activations):
        raise PushError(f"{args.activations}: no such file")
    rank = args.rank if args.rank is not None else (part[0] - 1 if part else None)

    try:
        h5file = h5py.File(args.activations, "r")
    except OSError as error:
        raise PushError(f"{args.activations}: not a readable HDF5 file ({error})") from None
    with h5file:
        layers = load_layers(h5file, args.activations, args.layer)
        plans = []  # (name, dataset, ids, batches of row indices)
        for name, activations, ids in layers:
            rows = select_rows(activations.shape[0], args.shuffle, args.seed, part)
            batches = [rows[start:start + args.batch_size] for start in range(0, len(rows), args.batch_size)]
            plans.append((name, activations, ids, batches))
        try:
            client = Client(run_dir=args.run_dir, endpoint=args.endpoint, cluster=args.cluster, key=args.key, run=args.run,
                            max_queue_mb=args.max_queue_mb, on_full="block", dtype=args.dtype,
                            block_timeout=args.timeout, rank=rank)
        except ValueError as error:
            raise PushError(str(error)) from None
        started = time.monotonic()
        images = 0
        delivered = False
        try:
            for batch_index in range(max(len(batches) for *_, batches in plans)):
                for name, activations, ids, batches in plans:
                    if batch_index >= len(batches):
                        continue
                    # Within a batch the order of images does not matter (their ids travel with
                    # them), so read them in the increasing order h5py needs.
                    rows = np.sort(batches[batch_index])
                    try:
                        values = read_rows(activations, rows)
                    except OSError as error:
                        raise PushError(f"{args.activations}: cannot read /layers/{name}/activations: {error}") from None
                    try:
                        queued = client.send(name, args.step, ids[rows], values)
                    except (ValueError, TypeError) as error:
                        raise PushError(str(error)) from None
                    if not queued and client.cluster is None:
                        raise PushError(f"the daemon at {client.endpoint} accepted nothing for {args.timeout:g} s: "
                                        f"is hndd serve running{_refusal_hint(client)}?")
                    images += len(rows)
            if not client.flush(args.timeout):
                raise PushError(f"the daemon at {client.endpoint} did not take the last batches within "
                                f"{args.timeout:g} s: is hndd serve running{_refusal_hint(client)}?")
            delivered = True
        finally:
            # After a failure, give up on what is still queued instead of waiting again.
            client.close(timeout=args.timeout if delivered else 0.0)
        stats = client.stats
    elapsed = time.monotonic() - started
    target = client.endpoint if client.cluster is None else f"the {len(client.cluster.daemons)} daemons of {args.cluster}"
    print(f"push: sent {images} image rows in {stats.sent_batches} batches ({stats.sent_bytes / 2**20:.1f} MiB) "
          f"of {len(layers)} layer(s) to {target} in {elapsed:.2f} s", file=sys.stderr)
    return _report_unreachable(client)


def _refusal_hint(client) -> str:
    """ ", and does it accept this credential" when the daemon refused the handshake."""
    return ", and does it accept this client (see the log above)" if client.stats.auth_refusals else ""


def _report_unreachable(client) -> int:
    """With a cluster: one line per daemon that dropped batches; exit status 1 if any did."""
    failed = {name: s for name, s in client.daemon_stats.items() if s.dropped_batches}
    for name, s in failed.items():
        print(f"push: error: daemon {name or client.endpoint}: {s.dropped_batches} batches dropped "
              f"({s.unreachable_batches} while it was unreachable)", file=sys.stderr)
    return 1 if failed else 0
