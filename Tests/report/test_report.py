"""`hndd report`: the numbers on the page against the snapshot file, the timeline, the probe-image
strips, large files, a file a running daemon keeps replacing, bad input, and a real browser."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from report_helpers import (REPO_ROOT, Page, chromium_binary, expected_counts, row_table, training_activations,
                      write_synthetic_snapshots)


def assert_matches_file(section, snapshots: Path, layer: str, row: int) -> None:
    expected = expected_counts(snapshots, layer, row)
    assert section.row == row
    assert section.stats == {"interpretable": expected.interpretable, "biased": expected.biased,
                             "paired": expected.paired, "localised": expected.localised,
                             "netdissect": expected.netdissect}
    bars = section.concept_bars()
    shown = {c for c in expected.concept_units if expected.concept_units[c] or expected.concept_netdissect[c]}
    assert set(bars) == shown, "a bar for every concept with HND or baseline units, and no other"
    for concept, (hnd, baseline) in bars.items():
        assert (hnd, baseline) == (expected.concept_units[concept], expected.concept_netdissect[concept]), concept


def assert_self_contained(text: str) -> None:
    """No script, style sheet, font or image from anywhere else: the page works offline."""
    assert not re.search(r"<(script|link|iframe|img)[^>]*\s(src|href)=", text)
    references = re.findall(r'(?:src|href)="([^"#][^"]*)"', text)
    assert all(r.startswith("data:image/png;base64,") for r in references), references[:5]
    assert "@import" not in text and "url(http" not in text


# ---------------------------------------------------------------------------------------------
# A file made by `hndd dissect`: five complete passes and a partial one


def test_numbers_match_the_latest_complete_snapshot(timeline_case, report, tmp_path):
    page = report(timeline_case.snapshots, tmp_path / "r.html")
    assert set(page.layers) == set(timeline_case.layers)
    for layer in timeline_case.layers:
        rows = row_table(timeline_case.snapshots, layer)
        latest_complete = int(np.flatnonzero(rows["complete"])[-1])
        assert not rows["complete"][-1], "the fixture's last row is the partial pass"
        section = page.layers[layer]
        assert section.complete and section.step == timeline_case.steps[-1]
        assert section.units == h5py.File(timeline_case.snapshots, "r")[f"layers/{layer}/threshold"].shape[1]
        assert_matches_file(section, timeline_case.snapshots, layer, latest_complete)
        assert section.unit_rows() == list(range(section.units)), "one table row per unit, in order"
    assert_self_contained(page.text)


def test_timeline_has_every_complete_pass_and_marks_the_partial_one(timeline_case, report, tmp_path):
    page = report(timeline_case.snapshots, tmp_path / "r.html")
    for layer in timeline_case.layers:
        section = page.layers[layer]
        series = section.series()
        rows = row_table(timeline_case.snapshots, layer)
        complete_rows = np.flatnonzero(rows["complete"])
        expected = [expected_counts(timeline_case.snapshots, layer, int(r)) for r in complete_rows]
        steps = [float(s) for s in rows["step"][complete_rows]]
        assert series["interpretable"] == (steps, [float(e.interpretable) for e in expected])
        assert series["biased"] == (steps, [float(e.biased) for e in expected])
        assert series["netdissect"] == (steps, [float(e.netdissect) for e in expected])
        assert series["paired"] == (steps, [float(e.paired) for e in expected])
        assert series["region:eye"] == (steps, [float(e.region_units["eye"]) for e in expected])
        assert series["subgroup:0"] == (steps, [float(e.subgroup_units[0]) for e in expected])
        # More units are trained at every step: the timeline must show the growth.
        values = series["interpretable"][1]
        assert values[-1] > values[0]
        # The partial pass: listed and marked, not a point of any line.
        assert f"partial pass at step {timeline_case.partial_step}" in section.body
        assert section.body.count('badge partial') == 1
        assert all(float(timeline_case.partial_step) not in xs for xs, _ in series.values())


def test_step_selects_that_snapshot(timeline_case, report, tmp_path):
    step = timeline_case.steps[1]
    page = report(timeline_case.snapshots, tmp_path / "r.html", "--step", step, "--layer", "layer3")
    assert list(page.layers) == ["layer3"]
    section = page.layers["layer3"]
    assert section.step == step and section.complete
    assert_matches_file(section, timeline_case.snapshots, "layer3", 1)
    assert f"shown: step {step}" in section.body


def test_step_of_a_partial_pass_is_shown_with_a_warning(timeline_case, report, tmp_path):
    page = report(timeline_case.snapshots, tmp_path / "r.html", "--step", timeline_case.partial_step)
    for layer in timeline_case.layers:
        section = page.layers[layer]
        assert section.step == timeline_case.partial_step and not section.complete
        assert "This snapshot is partial" in section.body
        assert_matches_file(section, timeline_case.snapshots, layer, len(row_table(timeline_case.snapshots, layer)["step"]) - 1)


def test_timeline_follows_the_run_of_the_shown_snapshot(timeline_case, run_hndd, report, tmp_path):
    snapshots = tmp_path / "two-runs.h5"
    shutil.copy(timeline_case.snapshots, snapshots)
    done = run_hndd(["dissect", "--dictionary", timeline_case.dictionary, "--activations", timeline_case.activations,
                     "--out", snapshots, "--step", 7, "--run", "second", "--layer", "layer3"])
    assert done.returncode == 0, done.stderr
    page = report(snapshots, tmp_path / "r.html", "--layer", "layer3")
    section = page.layers["layer3"]
    assert section.step == 7
    assert section.series()["interpretable"][0] == [7.0], "only the shown run's passes"
    assert "Other runs in this file: “train” (6 rows)" in section.body
    earlier = report(snapshots, tmp_path / "r2.html", "--layer", "layer3", "--step", timeline_case.steps[2])
    assert earlier.layers["layer3"].series()["interpretable"][0] == [float(s) for s in timeline_case.steps]


def test_names_are_escaped(small_dictionary, report, tmp_path):
    snapshots = tmp_path / "odd.h5"
    name = 'blocks.<1>&"fc"'
    write_synthetic_snapshots(snapshots, small_dictionary, name, units=8, rows=2, seed=7)
    page = report(snapshots, tmp_path / "r.html")
    assert list(page.layers) == [name]
    assert name not in page.text, "raw markup characters never reach the page"
    assert "blocks.&lt;1&gt;&amp;&quot;fc&quot;" in page.text


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """The report's thumbnail rule: rounded mean of factor×factor blocks, partial edge blocks dropped."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[:h * factor, :w * factor].astype(np.int64).reshape(h, factor, w, factor, 3).sum((1, 3))
    n = factor * factor
    return ((blocks + n // 2) // n).astype(np.uint8)


def test_unit_strip_shows_its_top_images_as_valid_pngs(timeline_case, report, tmp_path):
    layer, unit = "layer4.2.conv1", 5
    page = report(timeline_case.snapshots, tmp_path / "r.html", "--dictionary", timeline_case.dictionary,
                  "--unit", unit, "--layer", layer)
    section = page.layers[layer]
    with h5py.File(timeline_case.snapshots, "r") as f:
        row = int(np.flatnonzero(f[f"layers/{layer}/complete"][()])[-1])
        top = [int(i) for i in f[f"layers/{layer}/top_images"][row, unit] if i >= 0]
    assert top, "the engine recorded top images"
    assert section.strip_images() == top, "the unit's top images, largest first"
    thumbnails = page.thumbnails()
    assert set(thumbnails) == set(top), "each image embedded once"
    factor = -(-96 // 64)  # pixels are 96 px; thumbnails at most 64 px
    for image_id, png in thumbnails.items():
        decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        np.testing.assert_array_equal(decoded, block_mean(timeline_case.pixels[image_id], factor))
    assert f"<h4>Unit {unit}</h4>" in section.body
    assert 'class="interp chosen"' in section.body or 'class="chosen"' in section.body
    assert_self_contained(page.text)


def test_featured_units_outline_their_concept(timeline_case, report, tmp_path):
    page = report(timeline_case.snapshots, tmp_path / "r.html", "--dictionary", timeline_case.dictionary)
    with h5py.File(timeline_case.dictionary, "r") as d:
        label = d["images/local_label"][()]
        concepts = [c.decode() if isinstance(c, bytes) else c for c in d["local/concepts"][()]]
    for layer in timeline_case.layers:
        section = page.layers[layer]
        units = [int(u) for u in re.findall(r"<h4>Unit (\d+)</h4>", section.body)]
        assert 1 <= len(units) <= 4
        # Every outline names its concept and the image, and the concept is present there.
        for concept, image in re.findall(r"<title>([^<]+) in image (\d+)</title>", section.body):
            assert label[int(image), concepts.index(concept)] == 1


# ---------------------------------------------------------------------------------------------
# Large files


def test_layer_of_2048_units(small_dictionary, report, tmp_path):
    snapshots = tmp_path / "wide.h5"
    write_synthetic_snapshots(snapshots, small_dictionary, "layer4", units=2048, rows=4, seed=4)
    started = time.monotonic()
    page = report(snapshots, tmp_path / "r.html")
    seconds = time.monotonic() - started
    section = page.layers["layer4"]
    assert_matches_file(section, snapshots, "layer4", 3)
    assert section.unit_rows() == list(range(2048))
    assert section.body.count("<details") == 8, "256 units a page"
    size = len(page.text.encode())
    print(f"\n2,048 units × 4 rows: {size / 1e6:.2f} MB in {seconds:.1f} s")
    assert size < 1_500_000
    # Fig. 12 draws each curve as one thinned polyline, not 2,048 marks.
    assert section.body.count("<circle") < 100


def test_hundreds_of_rows(small_dictionary, report, tmp_path):
    snapshots = tmp_path / "long.h5"
    write_synthetic_snapshots(snapshots, small_dictionary, "layer4", units=128, rows=320, partial_every=7, seed=5)
    started = time.monotonic()
    page = report(snapshots, tmp_path / "r.html")
    seconds = time.monotonic() - started
    section = page.layers["layer4"]
    rows = row_table(snapshots, "layer4")
    complete = np.flatnonzero(rows["complete"])
    assert section.row == complete[-1]
    assert_matches_file(section, snapshots, "layer4", int(complete[-1]))
    steps, values = section.series()["interpretable"]
    assert steps == [float(s) for s in rows["step"][complete]]
    assert values == [float(expected_counts(snapshots, "layer4", int(r)).interpretable) for r in complete[::1]]
    assert section.body.count("partial pass at step") == int((~rows["complete"]).sum())
    size = len(page.text.encode())
    print(f"\n128 units × 320 rows: {size / 1e6:.2f} MB in {seconds:.1f} s")
    assert size < 1_000_000


# ---------------------------------------------------------------------------------------------
# A file the daemon keeps replacing while the report reads it


def test_file_replaced_while_reporting(timeline_case, run_hndd, tmp_path):
    """The daemon appends by writing a copy and renaming it over the file; reports taken meanwhile
    must each see one whole version."""
    live = tmp_path / "live.h5"
    shutil.copy(timeline_case.snapshots, live)
    writer = subprocess.Popen([sys.executable, "-c", REPLACER, str(live), "40"], stderr=subprocess.PIPE, text=True)
    try:
        reports = 0
        while writer.poll() is None and reports < 12:
            done = run_hndd(["report", live, "--out", tmp_path / "live.html"])
            assert done.returncode == 0, done.stderr
            page = Page((tmp_path / "live.html").read_text())
            assert set(page.layers) == set(timeline_case.layers)
            reports += 1
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0, writer.stderr.read()
    assert reports >= 3


#: Appends a copy of the last complete row N times, each time by copy + rename (as SnapshotFile does).
REPLACER = r"""
import os, shutil, sys, h5py
path, times = sys.argv[1], int(sys.argv[2])
for i in range(times):
    temporary = path + ".writing"
    shutil.copy(path, temporary)
    with h5py.File(temporary, "r+") as f:
        for layer in f["layers"].values():
            last = layer["step"].shape[0]
            for name, dataset in layer.items():
                data = dataset[()]
                del layer[name]
                grown = data[list(range(last)) + [last - 2]]
                if name == "step":
                    grown[-1] = data.max() + 1
                layer.create_dataset(name, data=grown)
    os.replace(temporary, path)
"""


def test_running_daemon(timeline_case, hndd_binary, run_hndd, tmp_path):
    """`hndd serve` fed by `hndd_client push`: report between passes and after a timed-out one."""
    python_dir = REPO_ROOT / "tools" / "python"
    if not (python_dir / "hndd_client" / "push.py").is_file():
        pytest.fail("tools/python/hndd_client is missing")
    run_dir = Path(f"/tmp/hndr-{os.getpid()}")
    shutil.rmtree(run_dir, ignore_errors=True)
    snapshots = tmp_path / "served.h5"
    log = open(tmp_path / "daemon.log", "w")  # a file, not a pipe: the daemon must never block on its log
    daemon = subprocess.Popen([str(hndd_binary), "serve", "--dictionary", str(timeline_case.dictionary), "--run-dir", str(run_dir),
                               "--out", str(snapshots), "--pass-timeout", "1.5", "--snapshot-interval", "0.3"],
                              stdout=subprocess.DEVNULL, stderr=log, text=True)
    env = dict(os.environ, PYTHONPATH=str(python_dir) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def push(activations: Path, step: int) -> None:
        done = subprocess.run([sys.executable, "-m", "hndd_client", "push", "--activations", str(activations),
                               "--run-dir", str(run_dir), "--run", "live", "--step", str(step), "--layer", "layer3"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    def rows_written() -> int:
        try:
            with h5py.File(snapshots, "r") as f:
                return f["layers/layer3/step"].shape[0]
        except (OSError, KeyError):
            return 0

    def wait_for_rows(count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while rows_written() < count:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"the daemon wrote {rows_written()} of {count} rows"
            time.sleep(0.1)

    try:
        full = tmp_path / "full.h5"
        training_activations(timeline_case.activations, full, trained=1.0, seed=1)
        half = tmp_path / "half.h5"
        training_activations(timeline_case.activations, half, trained=1.0, seed=1, keep_rows=150)
        for i, step in enumerate((10, 20)):
            push(full, step)
            wait_for_rows(i + 1)
            done = run_hndd(["report", snapshots, "--out", tmp_path / "live.html"])
            assert done.returncode == 0, done.stderr
            section = Page((tmp_path / "live.html").read_text()).layers["layer3"]
            assert section.step == step and section.complete
        push(half, 30)  # never completed: written partial after the pass timeout
        wait_for_rows(3)
        done = run_hndd(["report", snapshots, "--out", tmp_path / "live.html"])
        assert done.returncode == 0, done.stderr
        section = Page((tmp_path / "live.html").read_text()).layers["layer3"]
        assert section.step == 20 and section.complete, "the latest complete pass, not the partial one"
        assert "partial pass at step 30" in section.body
        assert_matches_file(section, snapshots, "layer3", 1)
    finally:
        daemon.send_signal(signal.SIGINT)
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        shutil.rmtree(run_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Bad input: one clear line on stderr, non-zero exit, no page


def run_failing(run_hndd, tmp_path, arguments, *needles):
    out = tmp_path / "bad.html"
    done = run_hndd(["report", *arguments, "--out", out])
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hndd: error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists()
    return lines[0]


def test_not_an_hdf5_file(run_hndd, tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5\n")
    run_failing(run_hndd, tmp_path, [text], str(text), "not an HDF5 file")
    run_failing(run_hndd, tmp_path, [tmp_path / "missing.h5"], "no such file")


def test_not_a_snapshot_file(timeline_case, run_hndd, tmp_path):
    run_failing(run_hndd, tmp_path, [timeline_case.dictionary], "not a hndd snapshot file", '"hndd-dictionary"')
    run_failing(run_hndd, tmp_path, [timeline_case.activations], "not a hndd snapshot file", "no format attribute")


def test_empty_snapshot_file(timeline_case, run_hndd, tmp_path):
    empty = tmp_path / "empty.h5"
    with h5py.File(timeline_case.snapshots, "r") as source, h5py.File(empty, "w") as f:
        for key, value in source.attrs.items():
            f.attrs[key] = value
        source.copy("global", f)
        source.copy("local", f)
    run_failing(run_hndd, tmp_path, [empty], "no snapshots yet")
    with h5py.File(empty, "a") as f:
        f.create_group("layers")
    run_failing(run_hndd, tmp_path, [empty], "no snapshots yet")


def test_missing_layer_lists_the_layers(timeline_case, run_hndd, tmp_path):
    line = run_failing(run_hndd, tmp_path, [timeline_case.snapshots, "--layer", "fc9"], 'no layer "fc9"')
    for layer in timeline_case.layers:
        assert layer in line


def test_missing_step_lists_the_steps(timeline_case, run_hndd, tmp_path):
    run_failing(run_hndd, tmp_path, [timeline_case.snapshots, "--step", "777"], "no snapshot at step 777",
                ", ".join(str(s) for s in timeline_case.steps))


def test_bad_unit_and_dictionary(timeline_case, small_dictionary, run_hndd, tmp_path):
    run_failing(run_hndd, tmp_path, [timeline_case.snapshots, "--unit", "48", "--layer", "layer4.2.conv1"],
                "--unit 48", "48 units")
    with h5py.File(timeline_case.dictionary, "r") as d, h5py.File(tmp_path / "nopix.h5", "w") as f:
        for key, value in d.attrs.items():
            f.attrs[key] = value
        for name in ("global", "local"):
            d.copy(name, f)
        for name in ("global_label", "local_label", "ellipse"):
            d.copy(f"images/{name}", f, name=f"images/{name}")
    run_failing(run_hndd, tmp_path, [timeline_case.snapshots, "--dictionary", tmp_path / "nopix.h5"], "/images/pixels")


# ---------------------------------------------------------------------------------------------
# A real browser


def screenshot(page: Path, png: Path, height: int) -> Image.Image:
    browser = chromium_binary()
    if browser is None:
        pytest.fail("Chromium is needed for the browser test: apt-get install chromium (tools/setup does)", pytrace=False)
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={png}", f"--window-size=1280,{height}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
    return Image.open(png).convert("RGB")


def test_renders_in_chromium(timeline_case, report, tmp_path):
    out = tmp_path / "report.html"
    report(timeline_case.snapshots, out, "--dictionary", timeline_case.dictionary, "--layer", "layer4.2.conv1")
    image = screenshot(out, tmp_path / "report.png", 9000)
    pixels = np.asarray(image).reshape(-1, 3)
    non_white = (pixels < 245).any(1).mean()
    colours = len(np.unique(pixels[::7], axis=0))
    print(f"\nscreenshot {tmp_path / 'report.png'}: {non_white:.1%} non-white, {colours} colours")
    assert non_white > 0.04, "the page looks blank"
    assert colours > 200, "charts and thumbnails should bring many colours"
    # The strip's thumbnails were decoded and drawn: some band of the page holds their colours.
    assert (np.abs(pixels.astype(int) - np.array([226, 190, 160])).sum(1) < 40).any(), "no face-coloured pixel"
