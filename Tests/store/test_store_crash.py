"""Crash safety (issue 14): the writer is killed with SIGKILL at 50 random moments while it
appends; after every kill the file opens in plain h5py — no flag, no recovery step — with every
row whose append had returned, each value as written, and a restarted writer appends again."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time

import h5py
import numpy as np

from bench_rows import check_rows

UNITS, SUBGROUPS, CONCEPTS, REGIONS = 256, 12, 39, 5


def test_kill_minus_nine_at_fifty_random_moments(tmp_path, hndd_binary, store_dictionary, store_hndd):
    out = tmp_path / "S.h5"
    rng = random.Random(14)
    committed = 0  # rows whose append returned before some kill
    kills_in_flight = 0
    for attempt in range(50):
        writer = subprocess.Popen([str(hndd_binary), "bench-append", "--dictionary", str(store_dictionary), "--out", str(out),
                                   "--rows", "100000", "--units", str(UNITS), "--per-row"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Wait for a random number of appends (0 to 3) to return, then kill after a random delay:
        # the moment falls anywhere in an append (writing row files, syncing, the index's rename).
        for _ in range(rng.randrange(0, 4)):
            line = writer.stdout.readline()
            assert line, f"writer ended early: {writer.stderr.read()}"
            committed = json.loads(line)["row"] + 1
        time.sleep(rng.uniform(0, 0.08))
        writer.send_signal(signal.SIGKILL)
        rest, errors = writer.communicate()
        for line in rest.splitlines():  # appends that returned while we slept
            committed = json.loads(line)["row"] + 1
        assert "error" not in errors, errors
        if not out.exists():  # killed before it created the file
            assert committed == 0
            continue
        with h5py.File(out, "r") as f:  # plain h5py: no swmr flag, no h5clear
            group = f.get("layers/bench")
            rows = 0 if group is None else group["step"].shape[0]
            # Every returned append is there; at most the one in flight is there too.
            assert committed <= rows <= committed + 1, (attempt, committed, rows)
            kills_in_flight += rows - committed
            committed = rows
            if rows:
                shapes = {name: group[name].shape[0] for name in group}
                assert set(shapes.values()) == {rows}, shapes
                check_rows(group, range(max(0, rows - 3), rows), UNITS, SUBGROUPS, CONCEPTS, REGIONS)
        summary = store_hndd("summary", out, "--json", check=rows > 0)
        if rows:
            assert len(summary.stdout.splitlines()) == rows
    assert committed >= 20, f"only {committed} rows in 50 attempts: the kills came too early to test appends"
    # A restarted writer appends again, after the rows the kills left, and every row is intact.
    store_hndd("bench-append", "--dictionary", store_dictionary, "--out", out, "--rows", 3, "--units", UNITS)
    with h5py.File(out, "r") as f:
        group = f["layers/bench"]
        assert group["step"].shape[0] == committed + 3
        check_rows(group, range(committed + 3), UNITS, SUBGROUPS, CONCEPTS, REGIONS)
    print(f"{committed + 3} rows; {kills_in_flight} kills landed after an append committed but before it returned")


def test_a_torn_row_file_tail_is_never_read(tmp_path, store_dictionary, store_hndd):
    """What a kill between writing the row files and renaming the index leaves: bytes past the
    committed rows. Readers see only the committed rows; the next writer cuts and overwrites them."""
    out = tmp_path / "S.h5"
    store_hndd("bench-append", "--dictionary", store_dictionary, "--out", out, "--rows", 2, "--units", 16)
    for raw in (tmp_path / "S.h5.rows").rglob("*.raw"):
        with open(raw, "ab") as f:
            f.write(b"\xab" * 1000)
    with h5py.File(out, "r") as f:
        assert f["layers/bench/step"][()].tolist() == [0, 10]
        check_rows(f["layers/bench"], range(2), 16, SUBGROUPS, CONCEPTS, REGIONS)
    store_hndd("bench-append", "--dictionary", store_dictionary, "--out", out, "--rows", 1, "--units", 16)
    with h5py.File(out, "r") as f:
        check_rows(f["layers/bench"], range(3), 16, SUBGROUPS, CONCEPTS, REGIONS)
    sizes = {raw.name: raw.stat().st_size for raw in (tmp_path / "S.h5.rows").rglob("*.raw")}
    assert sizes["step.raw"] == 3 * 8 and sizes["iou.raw"] == 3 * 16 * CONCEPTS * 4, sizes
