"""tools/experiment: the plan and its argument errors, the ranges and tables from given
`hndd summary --json` rows, the SVG charts, child-process handling, and (with torch and hndd) a
tiny end-to-end run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hndd_client import experiment, experiment_svg as svg
from hndd_client.experiment_page import Context, markdown, page, table_lines
from hndd_client.experiment_plan import (ExperimentError, Run, Setting, parse_run, plan, settle_setting,
                                         setting_with)
from hndd_client.experiment_processes import Children, Job, run_jobs
from hndd_client.experiment_results import direction, finished, measured, row_metrics, series, value_range

LAYERS = ("layer2.1.conv1", "layer3.1.conv1")


def row(run, layer, step, *, eye=0, paired=0, paired_sig=0, gray=0, gray_sig=0, complete=True, tested=True, **extra):
    """A `hndd summary --json` row with the keys the experiment reads."""
    significant = {"units_per_concept": {"eyeglasses": paired_sig} if paired_sig else {},
                   "units_per_subgroup": {"grayscale": gray_sig} if gray_sig else {}} if tested else None
    return {"run": run, "layer": layer, "step": step, "complete": complete, "units": 128 if layer == LAYERS[0] else 256,
            "units_per_region": {"eye": eye} if eye else {}, "units_per_concept": {"eyeglasses": paired} if paired else {},
            "units_per_subgroup": {"grayscale": gray}, "significant": significant, **extra}


def fixture_rows():
    """Eyeglasses P50 and P100, three seeds, two layers, steps 0 and 20; values chosen per seed."""
    rows = []
    for seed, (p50, p100) in enumerate([(1, 9), (4, 3), (2, 12)]):
        for percent, value in ((50, p50), (100, p100)):
            name = f"eyeglasses-P{percent}-seed{seed}"
            for layer in LAYERS:
                rows.append(row(name, layer, 0, eye=1, paired=1, paired_sig=0))
                rows.append(row(name, layer, 20, eye=value + 2, paired=value, paired_sig=max(0, value - 1)))
    return rows


def test_ranges_over_seeds_from_summary_rows():
    entries = measured(fixture_rows())
    p100 = series(entries, "eyeglasses", LAYERS[0], "paired", 20)[100]
    assert (p100.low, p100.median, p100.high, p100.seeds) == (3, 9, 12, 3)
    assert series(entries, "eyeglasses", LAYERS[1], "eye_region", 20)[50].text() == "3–6"
    assert series(entries, "eyeglasses", LAYERS[0], "paired_significant", 20)[50].median == 1
    assert series(entries, "eyeglasses", LAYERS[0], "paired", 0)[50].text() == "1"
    # P100 > P50 in seeds 0 and 2, not in seed 1
    assert direction(entries, "eyeglasses", LAYERS[0], "paired", 20, 50, 100) == (2, 3)


def test_latest_complete_row_wins_and_partial_rows_are_ignored():
    rows = fixture_rows()
    rows.append(row("eyeglasses-P50-seed0", LAYERS[0], 20, paired=50, complete=False))
    rows.append(row("eyeglasses-P50-seed0", LAYERS[0], 20, paired=7))  # a later complete row: the one kept
    rows.append(row("smile-P50", LAYERS[0], 20, paired=99))  # not an experiment run
    entries = measured(rows)
    assert series(entries, "eyeglasses", LAYERS[0], "paired", 20)[50].high == 7
    assert {e.run.name for e in entries} == {f"eyeglasses-P{p}-seed{s}" for p in (50, 100) for s in range(3)}


def test_finished_needs_the_last_step_in_every_layer():
    rows = [row("grayscale-P60-seed0", layer, 40) for layer in LAYERS]
    rows += [row("grayscale-P70-seed0", LAYERS[0], 40), row("grayscale-P80-seed0", LAYERS[0], 20)]
    rows += [row("grayscale-P90-seed0", layer, 40, complete=False) for layer in LAYERS]
    assert finished(rows, LAYERS, 40) == {"grayscale-P60-seed0"}


def test_untested_rows_and_beyond_untrained():
    assert row_metrics(row("x", LAYERS[0], 0, gray=5, tested=False))["biased_significant"] is None
    assert row_metrics(row("x", LAYERS[0], 0, gray=5))["beyond_untrained"] is None
    top = row("x", LAYERS[0], 0, gray_sig=4, beyond_untrained={"units_per_subgroup": {"grayscale": 3, "male": 9}})
    assert row_metrics(top)["beyond_untrained"] == 3
    nested = row("x", LAYERS[0], 0, gray_sig=4)
    nested["significant"]["beyond_untrained"] = {"units_per_subgroup": {"grayscale": 2}}
    assert row_metrics(nested)["beyond_untrained"] == 2


def test_value_range_median_of_even_count():
    r = value_range([4, 1, 10, 2])
    assert (r.low, r.median, r.high, r.text()) == (1, 3, 10, "1–10")
    assert value_range([]) is None


def test_table_and_page_hold_the_ranges():
    entries = measured(fixture_rows())
    lines = table_lines(entries, "eyeglasses", LAYERS, 20, ["paired", "paired_significant"])
    assert "| layer2.1.conv1 (128 units) | 100 | 3–12 (9) | 2–11 (8) |" in lines
    assert "| layer3.1.conv1 (256 units) | 50 | 1–4 (2) | 0–3 (1) |" in lines
    setting = Setting(dictionary_images=64, train_images=128, steps=20, every=20, layers=LAYERS)
    context = Context(setting, "Test CPU", 125.0, 6, 6, ["eyeglasses"], [50, 100], 3,
                      {"a": 10.0, "b": 30.0, "c": 20.0})
    text = markdown(entries, context)
    assert "a training run 10–30 s (median 20 s)" in text
    assert "layer2.1.conv1 2/3" in text  # the direction line, paper's count
    curves = {LAYERS[0]: {Run("eyeglasses", 50, s): np.array([0.9, 0.5, 0.1]) for s in range(3)}}
    html = page(entries, curves, context)
    assert html.count("<svg") == 2 * len(LAYERS)  # Fig. 11 per layer and Fig. 13 per layer
    assert "Test CPU" in html and "<polyline" in html


def test_svg_band_and_ticks():
    assert svg.nice_ticks(37) == [0, 10, 20, 30, 40]
    assert svg.nice_ticks(1.0) == [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    chart = svg.Chart("t", "x", "y", [svg.Line("a", [50, 100], [2, 8], [1, 5], [3, 9])])
    text = svg.render(chart)
    assert text.count("<polygon") == 1 and text.count("<circle") == 2
    assert "median 8 (seeds 5–9)" in text


def test_argument_errors(tmp_path):
    with pytest.raises(ExperimentError, match="unknown --scale"):
        setting_with("huge")
    with pytest.raises(ExperimentError, match="multiple of --every"):
        setting_with("demo", steps=30, every=7)
    with pytest.raises(ExperimentError, match="must not exceed"):
        setting_with("demo", steps=10, every=20)
    assert setting_with("demo", steps=40).every == 20  # a middle pass by default
    with pytest.raises(ExperimentError, match="not a percentage"):
        plan(["grayscale"], [50, 120], 3)
    with pytest.raises(ExperimentError, match="unknown experiment"):
        plan(["smile"], [50], 1)
    with pytest.raises(SystemExit) as stop:
        experiment.main(["run", "--dir", str(tmp_path), "--scale", "huge"])
    assert stop.value.code == 2
    settle_setting(str(tmp_path), setting_with("demo"))
    with pytest.raises(ExperimentError, match="steps 60"):
        settle_setting(str(tmp_path), setting_with("demo", steps=60))


def test_plan_names_seeds_and_order():
    runs = plan(["eyeglasses", "grayscale"], [50, 60, 70, 80, 90, 100], 3)
    assert len(runs) == 36 and len({r.set_seed for r in runs}) == 36
    assert [r.percent for r in runs[:12]] == [50] * 6 + [100] * 6  # the range's ends first
    assert [(r.percent, r.seed) for r in runs[12:20:2]] == [(60, 0), (70, 0), (80, 0), (90, 0)]  # then seed by seed
    assert parse_run("grayscale-P70-seed2") == Run("grayscale", 70, 2)
    assert parse_run("grayscale-P70") is None and parse_run("smile-P50-seed0") is None


def test_children_are_ended_by_their_own_pid(tmp_path):
    with Children() as children:
        process = children.start([sys.executable, "-c", "import time; time.sleep(60)"], str(tmp_path / "log"))
    assert process.poll() is not None  # ended on exit, not left running


def test_a_failing_job_stops_with_its_log(tmp_path):
    log = tmp_path / "run.log"
    job = Job("bad", [[sys.executable, "-c", "print('boom'); raise SystemExit(3)"]], str(log))
    with Children() as children, pytest.raises(ExperimentError, match="exit 3") as error:
        run_jobs(children, [job], 2, lambda job: None)
    assert "boom" in str(error.value)


def test_jobs_run_in_order_within_a_slot(tmp_path):
    marker = tmp_path / "order"
    steps = [[sys.executable, "-c", f"open({str(marker)!r}, 'a').write('{k}')"] for k in range(3)]
    done = []
    with Children() as children:
        run_jobs(children, [Job("ok", steps, str(tmp_path / "log"))], 2, lambda job: done.append(job.name))
    assert marker.read_text() == "012" and done == ["ok"]


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.learnable
@pytest.mark.skipif(not _torch_available(), reason="needs torch and torchvision (HNDD_WITH_TORCH=1 tools/setup)")
def test_tiny_end_to_end(hndd_binary, tmp_path):
    """1 P, 1 seed, 2 steps at 48 px: the folder ends with a page and the tables, and a second
    invocation redoes nothing. 32 s on a quiet 2-core machine, minutes under load: marked learnable."""
    folder = tmp_path / "e"
    command = [str(Path(__file__).resolve().parents[2] / "experiment"), "--dir", str(folder), "--scale", "demo",
               "--steps", "2", "--every", "2", "--images", "64", "--dictionary-images", "48", "--size", "48",
               "--percents", "100", "--seeds", "1", "--experiments", "grayscale"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HNDD_BIN": str(hndd_binary)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "grayscale, after training (step 2)" in (folder / "results.md").read_text()
    assert (folder / "experiment.html").read_text().count("<svg") == 6
    again = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HNDD_BIN": str(hndd_binary)})
    assert again.returncode == 0 and "1 runs already finished (kept), 0 to run" in again.stdout
    assert json.loads((folder / "setting.json").read_text())["steps"] == 2


def test_markdown_tables_become_html_tables():
    from hndd_client.experiment_page import markdown_html

    text = markdown_html("## a\n\n| x | y |\n|---|---|\n| 1 | 2–3 (2) |\n\n- note")
    assert text == ("<h3>a</h3>\n<table>\n<tr><th>x</th><th>y</th></tr>\n<tr><td>1</td><td>2–3 (2)</td></tr>\n"
                    "</table>\n<li>note</li>")


def test_compact_table_of_the_range_ends():
    from hndd_client.experiment_page import compact_lines

    lines = compact_lines(measured(fixture_rows()), "eyeglasses", LAYERS, 20, 50, 100)
    assert lines[0] == ("| layer | P = 50 | P = 100 | step 0 (untrained) | eye region P = 50 | "
                        "eye region P = 100 |")
    assert lines[2] == "| layer2.1.conv1 | 1–4 · 0–3 | 3–12 · 2–11 | 1 · 0 | 3–6 | 5–14 |"


def test_a_stop_request_lets_running_jobs_finish_and_starts_no_more(tmp_path):
    marker = tmp_path / "ran"
    jobs = [Job(f"j{k}", [[sys.executable, "-c", f"open({str(marker)!r}, 'a').write('{k}')"]], str(tmp_path / "log"))
            for k in range(4)]
    done = []
    with Children() as children:
        ran = run_jobs(children, jobs, 2, lambda job: done.append(job.name), stop_requested=lambda: len(done) >= 1)
    assert ran == 2 and sorted(done) == ["j0", "j1"] and sorted(marker.read_text()) == ["0", "1"]
