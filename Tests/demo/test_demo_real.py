"""`tools/demo --real ../shared/data/real-faces --quick` end to end: a dictionary of real faces
with dlib landmarks, two gender-skewed smile classifiers trained while hndd watches three
layers, tables that say what the snapshot file holds, and the held-out accuracy of each run.
Skips, saying so, where the real faces or the detector are absent."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from test_demo_quick import DEMO_TIMEOUT_SECONDS, REPO, complete_rows, strings

sys.path.insert(0, str(REPO / "Tests"))
from real_faces import REAL_FACES, require_real_faces  # noqa: E402

RUNS = ("smile-P50", "smile-P90")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    require_real_faces()
    out = tmp_path_factory.mktemp("demo-real") / "hndd-demo"
    extra = os.environ.get("HNDD_DEMO_ARGS", "").split()
    result = subprocess.run([str(REPO / "tools" / "demo"), "--real", str(REAL_FACES), "--quick", "--no-live",
                             "--dir", str(out), *extra], cwd=out.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=DEMO_TIMEOUT_SECONDS)
    assert result.returncode == 0, f"tools/demo --real --quick failed:\n{result.stdout[-6000:]}"
    return result.stdout, out


def table_rows(stdout, title_start):
    """{step: cells} of the first Markdown table after the line starting with title_start."""
    lines = stdout.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith(title_start))
    header, rows = None, {}
    for line in lines[start + 1:]:
        if line.startswith("| step"):
            header = [cell.strip() for cell in line.strip("|").split("|")]
        elif header and re.match(r"^\| -?\d+ \|", line):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[int(cells[0])] = cells[1:]
        elif header and not line.strip():
            break
    return header, rows


def test_gender_table_says_what_the_snapshot_file_holds(demo):
    stdout, out = demo
    header, rows = table_rows(stdout, "Smile classifier on real CelebA faces")
    with h5py.File(out / "snapshots.h5", "r") as file:
        subgroups = strings(file["global/subgroups"])
        female, male = subgroups.index("female"), subgroups.index("male")
        assert len(file["layers"]) == 3
        checked = 0
        for column, label in enumerate(header[1:]):
            layer, percent = label.rsplit(" P=", 1)
            group = file["layers"][layer]
            passes = complete_rows(group, f"smile-P{percent}")
            assert len(passes) >= 2 and min(passes) == 0, (label, sorted(passes))
            for step, row in passes.items():
                biased = group["global_biased"][row]
                assert rows[step][column] == f"{int(biased[:, female].sum())}/{int(biased[:, male].sum())}"
                checked += 1
    assert checked >= 3 * 2 * 2


def test_held_out_accuracy_of_both_runs_is_printed_and_recorded(demo):
    stdout, out = demo
    summaries = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines() if line.strip()]
    tested = {row["run"]: row["test"] for row in summaries if row.get("test")}
    assert set(tested) == set(RUNS)
    for run, test in tested.items():
        assert test["images"] == 160 and len(test["cells"]) == 4
        assert f"| {run} | {summaries[0]['steps']} | {100 * test['accuracy']:.1f} % |" in stdout
    assert "Units paired with `no_beard` / with `rosy_cheeks`" in stdout
    assert "none of the 300 dictionary images" in stdout
