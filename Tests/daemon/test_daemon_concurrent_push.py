"""Issue 3, Done when #1: four trainer processes push disjoint, shuffled quarters of one probe pass
concurrently; the complete snapshot meets docs/3-numbers.md, and `hndd subscribe --json` sees partial
snapshots with non-decreasing images_seen on the way."""

from __future__ import annotations

import time

from daemon_harness import LAYER, JsonLinesReader, complete_row, wait_until

RUN = "quarters"
STEP = 1000
RANKS = 4


def test_four_ranks_push_shuffled_quarters_concurrently(dataset, run_dir, start_daemon, start_push, start_subscriber):
    daemon = start_daemon(run_dir, "--snapshot-interval", "0.2")
    subscriber = start_subscriber(run_dir, "--json")
    lines = JsonLinesReader(subscriber)
    # The SUB socket connects asynchronously: give it time before the first publication.
    time.sleep(1.0)
    assert subscriber.poll() is None, f"hndd subscribe exited early: {subscriber.stderr.read()}"

    pushers = [start_push(run_dir, dataset.activations, RUN, STEP, "--shuffle", "--seed", "7",
                          "--part", f"{rank}/{RANKS}", "--batch-size", "25")
               for rank in range(1, RANKS + 1)]
    for pusher in pushers:
        _, stderr = pusher.communicate(timeout=120)
        assert pusher.returncode == 0, f"push failed: {stderr}"

    entry = daemon.wait_complete(RUN, STEP)
    assert entry["images_seen"] == dataset.n_images
    assert entry["duplicates"] == 0, "disjoint quarters must not repeat an image"
    status = daemon.status()
    assert status["batches_accepted"] == RANKS * -(-dataset.n_images // (RANKS * 25))
    assert sum(status["rejected_batches"].values()) == 0, status["rejected_batches"]

    # The complete snapshot in the file meets docs/3-numbers.md against the exact reference.
    row = complete_row(daemon.snapshot_file, RUN, STEP)
    assert row["images_seen"] == row["images_total"] == dataset.n_images
    failures = dataset.failures(row)
    assert not failures, "complete snapshot vs reference:\n" + "\n".join(failures)

    # The subscriber saw partial snapshots with images_seen never decreasing, ending complete.
    seen = wait_until(lambda: [s for s in lines.snapshot() if s["complete"]] and lines.snapshot(), 10,
                      "hndd subscribe to print the complete snapshot")
    assert not lines.garbage, f"subscribe --json printed non-JSON lines: {lines.garbage[:3]}"
    assert all(s["layer"] == LAYER and s["run"] == RUN and s["step"] == STEP for s in seen), seen
    progress = [s["images_seen"] for s in seen]
    print(f"\nsubscriber saw images_seen {progress}")
    assert len(seen) >= 2, f"expected at least one partial snapshot before the complete one, saw {progress}"
    assert any(not s["complete"] and 0 < s["images_seen"] < dataset.n_images for s in seen), progress
    assert progress == sorted(progress), f"images_seen decreased: {progress}"
    assert seen[-1]["complete"] and seen[-1]["images_seen"] == dataset.n_images, seen[-1]
    assert all(not s["complete"] for s in seen[:-1]), "only the last snapshot of the pass may be complete"
    # The subscriber's summary of the complete pass agrees with the file's row.
    interpretable = int(((row["global_biased"] != 0).any(axis=1) | (row["local_paired"] != 0).any(axis=1)).sum())
    assert seen[-1]["interpretable_units"] == interpretable
    assert seen[-1]["region"] == row["region"].tolist()
