"""Row r of `hndd bench-append` (`benchRow` in Sources/hndd/BenchAppend.swift), computed here
independently, so that a test can check every value of every row a crash left."""

from __future__ import annotations

import numpy as np


def bench_row(r: int, units: int, subgroups: int, concepts: int, regions: int, k: int = 8) -> dict:
    u = np.arange(units)[:, None]
    g = np.arange(subgroups)[None, :]
    c = np.arange(concepts)[None, :]
    f32 = np.float32
    return {
        "run": f"bench-{r // 1000}".encode(), "step": r * 10, "images_seen": 99 if r % 7 == 6 else 100,
        "images_total": 100, "complete": 0 if r % 7 == 6 else 1, "time_unix": 1.7e9 + r,
        "threshold": (f32(r) + np.arange(units, dtype=f32) * f32(0.25)).astype(f32),
        "global_prob": (((r + 3 * u + 7 * g) % 997).astype(f32) / f32(1000)),
        "global_biased": ((r + u + g) % 5 == 0).astype(np.uint8),
        "iou": (((r + 3 * u + 7 * c) % 1000).astype(f32) / f32(1000)),
        "region": ((r + np.arange(units)) % (regions + 1) - 1).astype(np.int32),
        "local_prob": (((r + 5 * u + 3 * c) % 991).astype(f32) / f32(1000)),
        "local_paired": ((r + 2 * u + c) % 7 == 0).astype(np.uint8),
        "netdissect_concept": ((r + np.arange(units)) % (concepts + 1) - 1).astype(np.int32),
        "top_images": ((r + np.arange(units * k)) % 50).reshape(units, k).astype(np.int64),
    }


def check_rows(group, rows, units: int, subgroups: int, concepts: int, regions: int) -> None:
    """Asserts that rows `rows` of an open `/layers/<layer>` group are bench rows, value for value."""
    for r in rows:
        expected = bench_row(r, units, subgroups, concepts, regions)
        for name, value in expected.items():
            got = group[name][r]
            assert np.array_equal(np.asarray(got), np.asarray(value)), f"row {r}, {name}: {got!r} != {value!r}"
