"""`hndd_client.snapshots` on files written by the real `hndd dissect` (two runs, two layers,
several steps, a partial pass): what it lists, its tables and views against the datasets read
directly, and its per-unit table summed against `hndd summary --json` (the one owner of counts)."""

from __future__ import annotations

import builtins
import sys

import h5py
import numpy as np
import pytest

import generate
from hndd_client import snapshots

REPORT_DIR = __import__("pathlib").Path(__file__).resolve().parents[1] / "report"
sys.path.insert(0, str(REPORT_DIR))
from report_helpers import training_activations  # noqa: E402

pytest.importorskip("pandas")
STEPS = {"early": [0, 100], "late": [0, 100, 200]}
LAYERS = ["layer4.2.conv1", "layer3"]


@pytest.fixture(scope="module")
def dissected(tmp_path_factory, hndd_binary, store_hndd):
    root = tmp_path_factory.mktemp("api")
    dictionary, activations, out = root / "D.h5", root / "A.h5", root / "S.h5"
    shapes = [generate.LayerShape(LAYERS[0], 32, 7, 7), generate.LayerShape(LAYERS[1], 16, 14, 14)]
    generate.generate_case(shapes, generate.GenerationOptions(n_images=300, mask_size=28, seed=5),
                           dictionary_path=dictionary, activations_path=activations)
    for run, steps in STEPS.items():
        for i, step in enumerate(steps):
            mixed = root / f"A-{run}-{step}.h5"
            training_activations(activations, mixed, trained=0.3 + 0.3 * i, seed=step + len(run))
            store_hndd("dissect", "--dictionary", dictionary, "--activations", mixed, "--out", out, "--run", run, "--step", step)
    half = root / "Ahalf.h5"
    training_activations(activations, half, trained=1.0, seed=3, keep_rows=150)
    store_hndd("dissect", "--dictionary", dictionary, "--activations", half, "--out", out, "--run", "late", "--step", 300)
    return out, str(hndd_binary)


def test_lists_runs_layers_and_steps(dissected):
    out, hndd = dissected
    with snapshots.open(out, hndd=hndd) as f:
        assert f.layers == sorted(LAYERS) or set(f.layers) == set(LAYERS)
        assert f.runs() == ["early", "late"]
        assert f.steps(LAYERS[0], run="late").tolist() == [0, 100, 200]
        assert f.steps(LAYERS[0], run="late", complete=False).tolist() == [0, 100, 200, 300]
        assert f.steps(LAYERS[1]).tolist() == [0, 100, 0, 100, 200]  # per run, in run order
        rows = f.rows(LAYERS[0])
        assert len(rows) == 6 and rows.complete.tolist() == [True] * 5 + [False]
        assert f.units_of(LAYERS[1]) == 16


def test_unit_table_sums_are_hndd_summary_counts(dissected):
    out, hndd = dissected
    with snapshots.open(out, hndd=hndd) as f:
        for layer in LAYERS:
            counts = f.counts(layer).set_index("row")
            units = f.units(layer, complete=False)
            assert len(units) == len(counts) * f.units_of(layer)
            for row, table in units.groupby("row"):
                c = counts.loc[row]
                assert (table.run.iloc[0], table.step.iloc[0]) == (c.run, c.step)
                assert table.interpretable.sum() == c.interpretable_units
                assert (table.biased_subgroups.str.len() > 0).sum() == c.biased_units
                assert (table.paired_concepts.str.len() > 0).sum() == c.paired_units
                assert table.region.notna().sum() == c.localised_units
                assert table.nd_label.notna().sum() == c.netdissect_units
                per_concept = table.paired_concepts.explode().dropna().value_counts().to_dict()
                assert per_concept == {k: v for k, v in c.units_per_concept.items() if v}
            assert counts.interpretable_units.max() > 0, "a test of zeros could not fail"


def test_values_are_the_datasets_rows(dissected):
    out, hndd = dissected
    with snapshots.open(out) as f, h5py.File(out, "r") as raw:
        for name in ("iou", "global_prob", "local_prob"):
            v = f.values(LAYERS[0], name, run="late", steps=[200, 0])
            assert v.step.tolist() == [0, 200] and v.row.tolist() == [2, 4]
            assert np.array_equal(v.values, raw[f"layers/{LAYERS[0]}/{name}"][[2, 4]])
        x = f.xarray(LAYERS[0], "global_prob", run="early")
        assert x.dims == ("step", "unit", "subgroup") and x.sizes["step"] == 2
        assert list(x.coords["subgroup"].values) == f.taxonomy["subgroups"]
        assert np.array_equal(x.sel(step=100).values, raw[f"layers/{LAYERS[0]}/global_prob"][1])


def test_every_per_unit_dataset_hndd_writes_can_be_read(dissected):
    """VALUE_AXES follows the file hndd writes: every [T, C, ...] dataset of a layer is readable
    by name, with the axes the file has, and nothing else is claimed."""
    out, _ = dissected
    with snapshots.open(out) as f, h5py.File(out, "r") as raw:
        group = raw[f"layers/{LAYERS[0]}"]
        units = f.units_of(LAYERS[0])
        per_unit = {name for name, d in group.items() if d.ndim >= 2 and d.shape[1] == units}
        assert per_unit == set(snapshots.VALUE_AXES), "a per-unit dataset the reader does not know, or the other way round"
        for name in sorted(per_unit):
            v = f.values(LAYERS[0], name, run="late", steps=[0])
            assert v.values.shape == (1,) + group[name].shape[1:] and len(v.dims) == group[name].ndim
            assert np.array_equal(v.values, group[name][[v.row[0]]], equal_nan=v.values.dtype.kind == "f")


def test_only_the_rows_asked_for_are_read():
    class Recording:
        shape, dtype = (2000, 4), np.float32
        def __init__(self):
            self.reads = []
        def __getitem__(self, key):
            self.reads.append(key)
            return np.full((key.stop - key.start, 4), key.start, dtype=np.float32)
    dataset = Recording()
    got = snapshots._read_rows(dataset, np.array([1500, 7, 8, 9]))
    assert dataset.reads == [slice(7, 10), slice(1500, 1501)]
    assert got[:, 0].tolist() == [1500, 7, 7, 7]


def test_errors_name_the_file_and_what(dissected, monkeypatch):
    out, hndd = dissected
    with snapshots.open(out, hndd=hndd) as f:
        with pytest.raises(snapshots.SnapshotsError, match="no layer 'nope'.*layers: "):
            f.units("nope")
        with pytest.raises(snapshots.SnapshotsError, match=r"no complete row at step\(s\) \[300\]"):
            f.values(LAYERS[0], "iou", run="late", steps=[300])
        with pytest.raises(snapshots.SnapshotsError, match="no run 'x'; runs: early, late"):
            f.steps(LAYERS[0], run="x")
        real_import = builtins.__import__
        monkeypatch.setattr(builtins, "__import__",
                            lambda name, *a, **k: (_ for _ in ()).throw(ImportError()) if name == "pandas" else real_import(name, *a, **k))
        with pytest.raises(snapshots.SnapshotsError, match="need pandas: pip install pandas"):
            f.units(LAYERS[0])


def test_report_picks_the_run(dissected, store_hndd, tmp_path):
    out, _ = dissected
    done = store_hndd("report", out, "--out", tmp_path / "r.html", "--run", "early")
    assert "step 100)" in done.stdout and "partial" not in done.stdout
    done = store_hndd("report", out, "--out", tmp_path / "r.html", "--run", "late", "--step", 300)
    assert "step 300, partial" in done.stdout
    bad = store_hndd("report", out, "--out", tmp_path / "r.html", "--run", "nope", check=False)
    assert bad.returncode == 1 and 'no snapshot of run "nope"; runs in this file: "early", "late"' in bad.stderr
