"""`hndd summary`: one place for the counts. On the same files, `hndd summary --json` equals
independent NumPy counts, the numbers `hndd report` shows and the tables the demo prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from report_helpers import REPO_ROOT, expected_counts, training_activations

#: Run names as tools/demo gives them: <concept>-P<percent>.
RUNS = ("eyeglasses-P50", "eyeglasses-P100", "grayscale-P50")
STEPS = (0, 40, 80)
LAYERS = ("layer4.2.conv1", "layer3")
#: Written again, later, with other activations: the demo and the report take the later row.
REDONE = ("eyeglasses-P100", 40)
PARTIAL = ("grayscale-P50", 120)


def rename_subgroup(dictionary: Path, old: str, new: str) -> None:
    with h5py.File(dictionary, "a") as f:
        names = [s.decode() if isinstance(s, bytes) else s for s in f["global/subgroups"][()]]
        del f["global/subgroups"]
        f.create_dataset("global/subgroups", data=[new if s == old else s for s in names], dtype=h5py.string_dtype())


@pytest.fixture(scope="module")
def named_runs(timeline_case, run_hndd, tmp_path_factory):
    """A snapshot file of three runs named as the demo names them, three steps each, over two
    layers, with one step written twice and one partial pass. The dictionary's subgroup "60+" is
    renamed "grayscale", so that both of the demo's tables have numbers."""
    root = tmp_path_factory.mktemp("named-runs")
    dictionary, snapshots = root / "D.h5", root / "S.h5"
    shutil.copy(timeline_case.dictionary, dictionary)
    rename_subgroup(dictionary, "60+", "grayscale")

    def dissect(run: str, step: int, trained: float, seed: int, keep_rows=None) -> None:
        activations = root / f"A-{run}-{step}-{seed}.h5"
        training_activations(timeline_case.activations, activations, trained=trained, seed=seed, keep_rows=keep_rows)
        done = run_hndd(["dissect", "--dictionary", dictionary, "--activations", activations, "--out", snapshots,
                         "--run", run, "--step", step])
        assert done.returncode == 0, done.stderr
        activations.unlink()

    for r, run in enumerate(RUNS):
        for i, step in enumerate(STEPS):
            dissect(run, step, trained=0.15 + 0.3 * i + 0.1 * r, seed=100 * r + i)
    dissect(*REDONE, trained=0.95, seed=999)
    dissect(*PARTIAL, trained=1.0, seed=7, keep_rows=200)
    return snapshots


def summary_lines(run_hndd, snapshots: Path, *options) -> list[dict]:
    done = run_hndd(["summary", snapshots, "--json", *options])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return [json.loads(line) for line in done.stdout.splitlines()]


def by_layer(lines: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for line in lines:
        grouped.setdefault(line["layer"], []).append(line)
    return grouped


def latest_complete(lines: list[dict], run: str, step: int) -> dict:
    """The row the demo and the report take for (run, step): the last complete one."""
    return [line for line in lines if line["run"] == run and line["step"] == step and line["complete"]][-1]


def test_summary_counts_equal_numpy_counts(named_runs, run_hndd):
    lines = by_layer(summary_lines(run_hndd, named_runs))
    assert set(lines) == set(LAYERS)
    with h5py.File(named_runs, "r") as f:
        categories = [c.decode() for c in f["global/categories"][()]]
        subgroups = [s.decode() for s in f["global/subgroups"][()]]
        subgroup_category = f["global/subgroup_category"][()]
        concept_type = f["local/concept_type"][()]
        rows = {layer: len(f[f"layers/{layer}/step"]) for layer in LAYERS}
        assert all(rows[layer] == len(RUNS) * len(STEPS) + 2 for layer in LAYERS)
        for layer in LAYERS:
            assert len(lines[layer]) == rows[layer], "one line per row"
            group = f[f"layers/{layer}"]
            for row, line in enumerate(lines[layer]):
                expected = expected_counts(named_runs, layer, row)
                biased = group["global_biased"][row].astype(bool)
                paired = group["local_paired"][row].astype(bool)
                assert (line["run"], line["step"]) == (group["run"][row].decode(), int(group["step"][row]))
                assert line["complete"] == bool(group["complete"][row])
                assert line["images_seen"] == int(group["images_seen"][row])
                assert line["units"] == group["threshold"].shape[1]
                assert (line["interpretable_units"], line["biased_units"], line["paired_units"], line["localised_units"],
                        line["netdissect_units"]) == (expected.interpretable, expected.biased, expected.paired,
                                                      expected.localised, expected.netdissect)
                assert line["units_per_region"] == expected.region_units
                assert line["units_per_subgroup"] == dict(zip(subgroups, expected.subgroup_units))
                assert line["units_per_concept"] == {c: n for c, n in expected.concept_units.items() if n}
                assert line["netdissect_units_per_concept"] == {c: n for c, n in expected.concept_netdissect.items() if n}
                assert line["coverage"] == {
                    "paired_and_biased": int((paired.any(1) & biased.any(1)).sum()),
                    "paired_only": int((paired.any(1) & ~biased.any(1)).sum()),
                    "biased_only": int((~paired.any(1) & biased.any(1)).sum())}
                assert line["units_per_category"] == {
                    name: int(biased[:, subgroup_category == g].any(1).sum()) for g, name in enumerate(categories)}
                assert line["units_per_type"] == {
                    name: int(paired[:, concept_type == t].any(1).sum())
                    for t, name in enumerate(("part", "attribute", "action unit"))}
                assert line["region"] == group["region"][row].tolist()
                assert line["duplicates_reported"] is None, "a snapshot file does not record duplicates"
    # Something to see: the trained units are found.
    assert max(line["interpretable_units"] for line in lines["layer4.2.conv1"]) > 10


def test_report_shows_the_summary_counts(named_runs, run_hndd, report, tmp_path):
    lines = by_layer(summary_lines(run_hndd, named_runs))
    for step in STEPS:  # the last complete row of the step: of grayscale-P50, or the redone one at 40
        page = report(named_runs, tmp_path / "r.html", "--step", step)
        for layer in LAYERS:
            section = page.layers[layer]
            shown = lines[layer][section.row]
            assert shown["complete"] and section.step == shown["step"]
            assert section.stats == {"interpretable": shown["interpretable_units"], "biased": shown["biased_units"],
                                     "paired": shown["paired_units"], "localised": shown["localised_units"],
                                     "netdissect": shown["netdissect_units"]}
            significant = shown["significant"]
            assert section.significant_stats() == {key: significant[f"{key}_units"] for key in ("interpretable", "biased", "paired")}
            for concept, (hnd, baseline) in section.concept_bars().items():
                assert (hnd, baseline) == (shown["units_per_concept"].get(concept, 0),
                                           shown["netdissect_units_per_concept"].get(concept, 0)), concept
            # The timeline: the last complete row of each step of the shown row's run.
            timeline = [latest_complete(lines[layer], shown["run"], step) for step in STEPS]
            series = section.series()
            steps = [float(s) for s in STEPS]
            for key, field in (("interpretable", "interpretable_units"), ("biased", "biased_units"),
                               ("paired", "paired_units"), ("netdissect", "netdissect_units")):
                assert series[key] == (steps, [float(line[field]) for line in timeline]), key
            assert series["region:eye"] == (steps, [float(line["units_per_region"]["eye"]) for line in timeline])


def printed_tables(stdout: str) -> dict[str, tuple[list[str], dict[int, list[str]]]]:
    """{"eyeglasses" or "grayscale": (header cells, {step: cells})} of the demo's Markdown tables."""
    tables, title, header = {}, None, None
    for line in stdout.splitlines():
        if line.startswith("Eyeglasses bias") or line.startswith("Grayscale bias"):
            title = line.split()[0].lower()
        elif line.startswith("| step |") and title:
            header = [c.strip() for c in line.strip("|").split("|")]
            tables[title] = (header, {})
        elif line.startswith("| ") and title in tables and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            tables[title][1][int(cells[0])] = cells[1:]
    return tables


def test_demo_prints_the_summary_counts(named_runs, run_hndd, hndd_binary):
    lines = by_layer(summary_lines(run_hndd, named_runs))
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "tools" / "python"))
    done = subprocess.run([sys.executable, "-m", "hndd_client.demo", "table", "--snapshots", str(named_runs),
                           "--layers", *LAYERS, "--hndd", str(hndd_binary)],
                          capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr
    tables = printed_tables(done.stdout)
    assert set(tables) == {"eyeglasses", "grayscale"}
    checked = 0
    for title, (header, rows) in tables.items():
        assert sorted(rows) == list(STEPS), "complete passes only: the partial step is not a row"
        for column, name in enumerate(header[1:]):
            layer, percent = name.split(" P=")
            run = f"{title}-P{percent}"
            for step, cells in rows.items():
                line = latest_complete(lines[layer], run, step)
                significant = line["significant"]
                assert significant is not None, "complete passes hold the significance tests"
                if title == "eyeglasses":
                    expected = (f"{line['units_per_concept'].get('eyeglasses', 0)}/{line['units_per_region']['eye']}"
                                f" · {significant['units_per_concept'].get('eyeglasses', 0)}")
                else:
                    expected = f"{line['units_per_subgroup']['grayscale']} · {significant['units_per_subgroup']['grayscale']}"
                assert cells[column] == expected, (title, name, step)
                checked += 1
    assert checked == len(STEPS) * len(LAYERS) * len(RUNS)


def test_selection_and_changes(named_runs, run_hndd):
    run, step = REDONE
    lines = summary_lines(run_hndd, named_runs, "--layer", "layer3", "--run", run, "--step", step)
    assert [(l["layer"], l["run"], l["step"]) for l in lines] == [("layer3", run, step)] * 2, "the step written twice"
    # What changed since the previous pass (with --run, among that run's rows): the pass of the
    # step before, in subscribe's words. Without --run, earlier rows of any run count, as for a
    # subscriber, which sees every run of its layer.
    everything = summary_lines(run_hndd, named_runs, "--layer", "layer3", "--run", run)
    first = latest_complete(everything, run, STEPS[0])
    assert lines[0]["changes_since_previous_pass"][0] == (
        f"interpretable {first['interpretable_units']} → {lines[0]['interpretable_units']} "
        f"({lines[0]['interpretable_units'] - first['interpretable_units']:+d})")
    assert everything[0]["changes_since_previous_pass"] == [], "no earlier pass of the run"
    unfiltered = [l for l in summary_lines(run_hndd, named_runs, "--layer", "layer3") if l["run"] == run]
    assert unfiltered[0]["changes_since_previous_pass"] != [], "the other runs' passes came before"
    partial = summary_lines(run_hndd, named_runs, "--step", PARTIAL[1])
    assert [(l["layer"], l["complete"]) for l in partial] == [(layer, False) for layer in sorted(LAYERS)]
    # Plain text: one line per row.
    text = run_hndd(["summary", named_runs, "--layer", "layer4.2.conv1", "--run", "eyeglasses-P50"])
    assert text.returncode == 0 and len(text.stdout.splitlines()) == len(STEPS)
    assert text.stdout.startswith("layer4.2.conv1 run eyeglasses-P50 step 0: ")


@pytest.mark.parametrize("options, needle", [
    (["--layer", "fc9"], 'no layer "fc9"'),
    (["--step", "777"], "no snapshot at step 777; steps present: 0, 40, 80, 120"),
    (["--run", "nobody"], 'no snapshot of run "nobody"'),
])
def test_bad_selection_is_one_line(named_runs, run_hndd, options, needle):
    done = run_hndd(["summary", named_runs, "--json", *options])
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hndd: error: {named_runs}: ") and needle in lines[0], done.stderr
