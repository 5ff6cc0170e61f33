"""Migration of files written before row files, retention (--keep-partials) and readers that
read while the writer appends."""

from __future__ import annotations

import subprocess
import threading

import h5py
import numpy as np

from bench_rows import check_rows
from hndd_client import snapshots

SUBGROUPS, CONCEPTS, REGIONS = 12, 39, 5


def test_a_file_of_the_old_layout_is_migrated_with_every_value(tmp_path, store_dictionary, store_hndd):
    """The old layout kept values inside S.h5 (chunked, deflated, run as variable-length
    strings). Opening it for writing moves every row to row files; appends then continue."""
    made = tmp_path / "made.h5"
    store_hndd("bench-append", "--dictionary", store_dictionary, "--out", made, "--rows", 9, "--units", 8)
    old = tmp_path / "old.h5"
    with h5py.File(made, "r") as src, h5py.File(old, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for group in ("global", "local"):
            src.copy(group, dst)
        layer = dst.create_group("layers/bench")
        layer.attrs["units"] = src["layers/bench"].attrs["units"]
        for name, data in src["layers/bench"].items():
            values = data[()]
            if name == "run":
                layer.create_dataset(name, data=[v.decode() for v in values], dtype=h5py.string_dtype(),
                                     maxshape=(None,), chunks=(1,))
            else:
                layer.create_dataset(name, data=values, maxshape=(None,) + values.shape[1:],
                                     chunks=(1,) + values.shape[1:], compression="gzip")
    store_hndd("bench-append", "--dictionary", store_dictionary, "--out", old, "--rows", 2, "--units", 8)
    with h5py.File(old, "r") as f:
        group = f["layers/bench"]
        assert group["iou"].external is not None
        check_rows(group, range(11), 8, SUBGROUPS, CONCEPTS, REGIONS)


def test_keep_partials_drops_only_old_incomplete_rows(tmp_path, store_dictionary, store_hndd):
    out = tmp_path / "S.h5"
    store_hndd("bench-append", "--dictionary", store_dictionary, "--out", out, "--rows", 30, "--units", 8)
    with h5py.File(out, "r") as f:
        before = {name: d[()] for name, d in f["layers/bench"].items()}
    assert (before["complete"] == 0).sum() == 4  # rows 6, 13, 20, 27
    store_hndd("bench-append", "--dictionary", store_dictionary, "--out", out, "--rows", 0, "--units", 8, "--keep-partials", 1)
    kept = [r for r in range(30) if r not in (6, 13, 20)]
    with h5py.File(out, "r") as f:
        group = f["layers/bench"]
        for name, values in before.items():
            # NaN where a partial row skipped the significance tests (global_p, local_p)
            assert np.array_equal(group[name][()], values[kept], equal_nan=values.dtype.kind == "f"), name
        assert group["step"].external[0][0].endswith("bench.g2/step.raw")
    assert not (tmp_path / "S.h5.rows" / "bench.g1").exists()
    again = store_hndd("bench-append", "--dictionary", store_dictionary, "--out", out, "--rows", 0, "--units", 8, "--keep-partials", 1)
    assert again.returncode == 0 and (tmp_path / "S.h5.rows" / "bench.g2").exists()  # nothing more to drop


def test_readers_read_while_the_writer_appends(tmp_path, hndd_binary, store_dictionary, store_hndd):
    out = tmp_path / "S.h5"
    store_hndd("bench-append", "--dictionary", store_dictionary, "--out", out, "--rows", 1, "--units", 64)
    writer = subprocess.Popen([str(hndd_binary), "bench-append", "--dictionary", str(store_dictionary), "--out", str(out),
                               "--rows", "150", "--units", "64"], stderr=subprocess.PIPE, text=True)
    seen, failures = [], []

    def read():
        while writer.poll() is None:
            try:
                with h5py.File(out, "r") as f:
                    group = f["layers/bench"]
                    n = group["step"].shape[0]
                    check_rows(group, [n - 1], 64, SUBGROUPS, CONCEPTS, REGIONS)
                with snapshots.open(out) as s:
                    s.values("bench", "iou", steps=s.steps("bench", complete=False)[-1:], complete=False)
                summary = subprocess.run([str(hndd_binary), "summary", str(out)], capture_output=True, text=True)
                assert summary.returncode == 0, summary.stderr
                seen.append(n)
            except Exception as error:  # noqa: BLE001 - every failure is reported
                failures.append(repr(error))
    reader = threading.Thread(target=read)
    reader.start()
    assert writer.wait(timeout=600) == 0, writer.stderr.read()
    reader.join()
    assert not failures, failures[:3]
    assert len(seen) >= 5 and seen == sorted(seen) and seen[-1] > seen[0], seen
