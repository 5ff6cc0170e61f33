"""`tools/demo --quick` end to end: it must train all four biased runs while hndd watches, leave a
snapshot file with complete passes of every watched layer for both bias levels of both
experiments, and print bias tables that say what that file holds."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
RUNS = ("eyeglasses-P50", "eyeglasses-P100", "grayscale-P50", "grayscale-P100")
DEMO_TIMEOUT_SECONDS = float(os.environ.get("HNDD_DEMO_TIMEOUT", "1800"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Runs the quick demo once; yields (stdout, output directory, seconds)."""
    out = tmp_path_factory.mktemp("demo") / "hndd-demo"
    started = time.monotonic()
    extra = os.environ.get("HNDD_DEMO_ARGS", "").split()  # e.g. --no-setup when tools/setup already ran
    result = subprocess.run([str(REPO / "tools" / "demo"), "--quick", "--dir", str(out), *extra], cwd=out.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=DEMO_TIMEOUT_SECONDS)
    seconds = time.monotonic() - started
    print(f"tools/demo --quick took {seconds:.0f} s (load average {os.getloadavg()[0]:.1f})", file=sys.stderr)
    assert result.returncode == 0, f"tools/demo --quick failed:\n{result.stdout[-6000:]}"
    return result.stdout, out, seconds


def strings(dataset):
    return [value.decode() if isinstance(value, bytes) else str(value) for value in dataset[()]]


def complete_rows(group, run):
    """{step: row} of the complete passes of `run` in one layer group (last row wins)."""
    rows = {}
    for row, (name, step, complete) in enumerate(zip(strings(group["run"]), group["step"][()], group["complete"][()])):
        if name == run and complete == 1:
            rows[int(step)] = row
    return rows


def printed_tables(stdout):
    """{title word: (header cells, {step: cells})} of the Markdown tables the demo printed."""
    tables, title, header = {}, None, None
    for line in stdout.splitlines():
        if line.startswith("Eyeglasses bias") or line.startswith("Grayscale bias"):
            title, header = line.split()[0].lower(), None
        elif title and line.startswith("| step"):
            header = [cell.strip() for cell in line.strip("|").split("|")]
            tables[title] = (header, {})
        elif title and header and re.match(r"^\| -?\d+ \|", line):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            tables[title][1][int(cells[0])] = cells[1:]
    return tables


def test_snapshot_file_has_complete_passes_of_every_layer_for_both_bias_levels(demo):
    stdout, out, _ = demo
    snapshots = out / "snapshots.h5"
    assert f"snapshot file:  {snapshots}" in stdout
    with h5py.File(snapshots, "r") as file:
        assert file.attrs["format"] == "hndd-snapshots"
        layers = list(file["layers"])
        assert len(layers) >= 2, f"watched layers: {layers}"
        assert "grayscale" in strings(file["global/subgroups"]), "the colour-scheme category is in the dictionary"
        for layer in layers:
            group = file["layers"][layer]
            for run in RUNS:
                steps = sorted(complete_rows(group, run))
                assert len(steps) >= 2 and steps[0] == 0, f"{layer}, {run}: complete passes at steps {steps}"
                assert len(set(np.diff(steps))) == 1, f"{layer}, {run}: passes are not evenly spaced: {steps}"
                seen = group["images_seen"][()][list(complete_rows(group, run).values())]
                assert set(seen.tolist()) == set(group["images_total"][()][:1].tolist())


def test_printed_tables_say_what_the_snapshot_file_holds(demo):
    stdout, out, _ = demo
    tables = printed_tables(stdout)
    assert set(tables) == {"eyeglasses", "grayscale"}, f"tables printed: {sorted(tables)}"
    with h5py.File(out / "snapshots.h5", "r") as file:
        concepts, regions = strings(file["local/concepts"]), strings(file["local/regions"])
        subgroups = strings(file["global/subgroups"])
        glasses, eye, gray = concepts.index("eyeglasses"), regions.index("eye"), subgroups.index("grayscale")
        checked = 0
        for title, (header, rows) in tables.items():
            for column, label in enumerate(header[1:]):
                layer, percent = label.rsplit(" P=", 1)
                run = f"{title}-P{percent}"
                group = file["layers"][layer]
                for step, row in complete_rows(group, run).items():
                    # The paper's count · the significant ones (complete passes hold the tests).
                    if title == "eyeglasses":
                        paired = int(group["local_paired"][row][:, glasses].sum())
                        in_eye = int((group["region"][row] == eye).sum())
                        significant = int(group["local_significant"][row][:, glasses].sum())
                        expected = f"{paired}/{in_eye} · {significant}"
                    else:
                        significant = int(group["global_significant"][row][:, gray].sum())
                        expected = f"{int(group['global_biased'][row][:, gray].sum())} · {significant}"
                    assert rows[step][column] == expected, f"{label} at step {step}"
                    checked += 1
    assert checked >= 2 * 2 * 2 * 2  # two experiments x two bias levels x two layers x two passes
    assert (out / "results.md").read_text().count("| step |") == 2


def test_throughput_and_where_things_are_are_printed(demo):
    stdout, out, seconds = demo
    match = re.search(r"throughput: ([\d.]+) steps/s without watch, ([\d.]+) steps/s with watch .*: (-?[\d.]+) % slower",
                      stdout)
    assert match, "the throughput line is missing"
    baseline, watched, loss = map(float, match.groups())
    assert baseline > 0 and watched > 0
    # Rates are printed with 2 decimals and the loss with 1: the loss must lie within what the
    # rounded rates allow (at 0.5 steps/s, on a busy machine, that is more than a point).
    lowest = 100 * (1 - (watched + 0.005) / (baseline - 0.005)) - 0.05
    highest = 100 * (1 - (watched - 0.005) / (baseline + 0.005)) + 0.05
    assert lowest <= loss <= highest, (baseline, watched, loss)
    assert "same weights after training: yes" in stdout, "a probe pass changed what the model learned"
    cpu = re.search(r"CPU time of the training process: ([\d.]+) s per step without watch, ([\d.]+) s with watch: "
                    r"(-?[\d.]+) % more; hndd serve used ([\d.]+) CPU s per pass", stdout)
    assert cpu, "the CPU-time throughput line is missing"
    without, with_watch, extra, _ = map(float, cpu.groups())
    assert without > 0 and abs(100 * (with_watch / without - 1) - extra) < 0.6
    assert re.search(r"^report: +(\S+report\.html|not written \(.+\))$", stdout, re.M)
    assert re.search(r"seeds: dictionary \d+, sets eyeglasses-P50=\d+ ", stdout)
    assert "demo finished in" in stdout
    print(f"quick demo: {seconds:.0f} s; throughput {baseline:.2f} -> {watched:.2f} steps/s ({loss:.1f} % slower)",
          file=sys.stderr)
