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
