"""Fixtures of the `hndd report` tests: the binary, a snapshot file made by the real `hndd dissect`
(five passes of two layers and a partial one), and a dictionary for synthetic files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

REPORT_DIR = Path(__file__).resolve().parent
for directory in (REPORT_DIR, REPORT_DIR.parent / "reference", REPORT_DIR.parent):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

import generate  # noqa: E402  (Tests/reference/generate.py: synthetic dictionary and activations)
from hndd_testing import hndd_binary  # noqa: E402,F401  (the shared fixture)
from report_helpers import REPO_ROOT, Page, TimelineCase, add_pixels, training_activations  # noqa: E402

HNDD_TIMEOUT_SECONDS = float(os.environ.get("HNDD_TEST_TIMEOUT", "300"))


@pytest.fixture(scope="session")
def run_hndd(hndd_binary: Path):
    def run(arguments: Sequence[object]) -> subprocess.CompletedProcess:
        return subprocess.run([str(hndd_binary), *map(str, arguments)], capture_output=True, text=True,
                              timeout=HNDD_TIMEOUT_SECONDS)
    return run


@pytest.fixture(scope="session")
def report(run_hndd):
    """Runs `hndd report ARGS --out OUT`; asserts success; returns the page."""
    def make(snapshot: Path, out: Path, *arguments: object) -> "Page":
        done = run_hndd(["report", snapshot, "--out", out, *arguments])
        assert done.returncode == 0, f"hndd report failed: {done.stderr}"
        assert done.stderr == "", done.stderr
        return Page(out.read_text(encoding="utf-8"))
    return make


@pytest.fixture(scope="session")
def timeline_case(tmp_path_factory, run_hndd) -> TimelineCase:
    """Two layers dissected at five steps with more trained units each time, plus one partial pass (half the images)."""
    root = tmp_path_factory.mktemp("timeline")
    dictionary, activations, snapshots = root / "D.h5", root / "A.h5", root / "S.h5"
    layers = [generate.LayerShape("layer4.2.conv1", 48, 7, 7), generate.LayerShape("layer3", 24, 14, 14)]
    generate.generate_case(layers, generate.GenerationOptions(n_images=400, mask_size=56, seed=11),
                           dictionary_path=dictionary, activations_path=activations)
    pixels = add_pixels(dictionary, size=96)
    steps = [0, 500, 1000, 1500, 2000]
    for i, step in enumerate(steps):
        mixed = root / f"A{step}.h5"
        training_activations(activations, mixed, trained=0.2 + 0.2 * i, seed=step)
        done = run_hndd(["dissect", "--dictionary", dictionary, "--activations", mixed, "--out", snapshots,
                         "--step", step, "--run", "train"])
        assert done.returncode == 0, done.stderr
    partial_step = 2500
    half = root / "Ahalf.h5"
    training_activations(activations, half, trained=1.0, seed=9, keep_rows=200)
    done = run_hndd(["dissect", "--dictionary", dictionary, "--activations", half, "--out", snapshots,
                     "--step", partial_step, "--run", "train"])
    assert done.returncode == 0, done.stderr
    return TimelineCase(dictionary, activations, snapshots, [s.name for s in layers], steps, partial_step, pixels)


@pytest.fixture(scope="session")
def small_dictionary(tmp_path_factory) -> Path:
    """A dictionary (no pixels) whose taxonomy the synthetic snapshot files copy."""
    root = tmp_path_factory.mktemp("taxonomy")
    path = root / "D.h5"
    generate.generate_case([], generate.GenerationOptions(n_images=300, mask_size=28, seed=2), dictionary_path=path)
    return path
