"""The daemon's baseline pass for "biased beyond the untrained network" (docs/3-numbers.md): a
run's first complete pass of a layer is the baseline of its later passes, and stays so across a
restart (the checkpoint keeps it even when no pass is open)."""

from __future__ import annotations

import json
import subprocess

import numpy as np

from daemon_harness import complete_row

RUN = "baseline"


def test_first_complete_pass_is_the_baseline_across_a_restart(dataset, run_dir, start_daemon, push, hndd_binary):
    daemon = start_daemon(run_dir)
    push(run_dir, dataset.activations, RUN, 0, "--batch-size", "200")
    daemon.wait_complete(RUN, 0)
    push(run_dir, dataset.activations, RUN, 5, "--batch-size", "200")
    daemon.wait_complete(RUN, 5)
    assert daemon.terminate() == 0
    daemon = start_daemon(run_dir)
    push(run_dir, dataset.activations, RUN, 7, "--batch-size", "200")
    daemon.wait_complete(RUN, 7)
    daemon.flush()
    for step in (0, 5, 7):
        row = complete_row(daemon.snapshot_file, RUN, step)
        # The same activations at every step: nothing changed since the baseline.
        assert (row["global_change_p"] == 1).all(), f"step {step}: change p {row['global_change_p'].min()}"
        assert not row["global_beyond_untrained"].any()
    summary = subprocess.run([str(hndd_binary), "summary", str(daemon.snapshot_file), "--json", "--run", RUN],
                             capture_output=True, text=True, timeout=60)
    assert summary.returncode == 0, summary.stderr
    lines = [json.loads(text) for text in summary.stdout.splitlines()]
    assert [line["beyond_untrained"]["units"] for line in lines if line["complete"]] == [0, 0, 0]


def test_keep_baseline_weights_bounds_the_run_layers_whose_weights_stay_built(dataset, run_dir, start_daemon, push):
    """With room for one run-layer's weights, a second run evicts the first's, so the first run's next
    pass builds them again: three builds for A0, B0, A1 where the default limit builds two."""
    daemon = start_daemon(run_dir, "--keep-baseline-weights", "1")
    for run, step in (("a", 0), ("b", 0), ("a", 1)):
        push(run_dir, dataset.activations, run, step, "--batch-size", "200")
        daemon.wait_complete(run, step)
    daemon.flush()
    built = [line for line in daemon.log().splitlines() if "baseline weights built" in line]
    assert [("baseline=run a," in line, "baseline=run b," in line) for line in built] == \
        [(True, False), (False, True), (True, False)], "\n".join(built)
    row = complete_row(daemon.snapshot_file, "a", 1)
    assert (row["global_change_p"] == 1).all()  # the rebuilt weights test the same maxima alike


def test_keep_baseline_weights_must_be_positive(hndd_binary, dataset, run_dir):
    refused = subprocess.run([str(hndd_binary), "serve", "--dictionary", str(dataset.dictionary), "--run-dir",
                              str(run_dir), "--keep-baseline-weights", "0"], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "--keep-baseline-weights must be at least 1, got 0" in refused.stderr
