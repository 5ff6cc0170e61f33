"""`hndd serve` on a version 2 dictionary (raster masks of every shape: bilateral pairs, rings,
three runs a row, edge bands, empty present masks, striped images of more than 64 pieces) against
the exact reference: a trainer pushes a shuffled pass over ipc://, and the complete snapshot the
daemon writes meets docs/3-numbers.md's tolerances. tools/test runs Tests/reference twice, on the AVX-512
kernels and on the portable paths (HNDD_NO_AVX512, inherited by the daemon).

The daemon and trainer helpers are Tests/daemon's (daemon_harness.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import compare
import generate
import hnd_reference as ref
from generate import GenerationOptions, LayerShape

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
from daemon_harness import Daemon, ProcessRegistry, client_environment, complete_row, push_command  # noqa: E402

LAYER = "layer4.2.conv1"
RUN = "rasters"


def test_serve_on_raster_masks_meets_spec_tolerances(tmp_path: Path, hndd_binary: Path):
    options = GenerationOptions(n_images=900, mask_size=64, seed=109, rasters=True, edge_masks=15,
                                empty_masks=10, striped_images=3)
    dictionary, activations = tmp_path / "dictionary.h5", tmp_path / "activations.h5"
    generate.generate_case([LayerShape(LAYER, 32, 7, 7)], options, dictionary, activations)
    run_dir = Path(tempfile.mkdtemp(prefix="hndd-r-", dir="/tmp"))  # an ipc:// path must stay short
    processes = ProcessRegistry()
    try:
        daemon = Daemon(hndd_binary, run_dir, dictionary, processes)
        push = subprocess.run(push_command(run_dir, activations, RUN, 1, "--shuffle", "--seed", "3", "--batch-size", "64"),
                              env=client_environment(), capture_output=True, text=True, timeout=300)
        assert push.returncode == 0, f"push failed: {push.stderr}"
        daemon.wait_complete(RUN, 1)
        row = complete_row(daemon.snapshot_file, RUN, 1, layer=LAYER)
    finally:
        processes.kill_all()
        shutil.rmtree(run_dir, ignore_errors=True)

    loaded = ref.load_dictionary(dictionary)
    reference = ref.dissect_reference(loaded, activations, LAYER)
    assert (reference["region"] >= 0).sum() >= 3, "generated data localises too few units"
    assert row["images_seen"] == row["images_total"] == options.n_images
    failures = compare.check_against_reference(row, reference, loaded.subgroup_category, loaded.concept_region)
    print(f"serve on rasters / {LAYER}:\n{compare.format_summary(compare.summary(row, reference))}")
    assert failures == [], "\n".join(failures)
