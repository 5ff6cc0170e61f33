"""The report on a version 2 dictionary: each featured unit's probe images outline the raster mask
of its concept — the boundary of any shape (two ellipses, rings, edge bands), drawn as the sides
between mask and non-mask pixels — and say so when a present mask is empty."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

import generate
from report_helpers import add_pixels

OUTLINE = re.compile(r'<g transform="[^"]*" clip-path="url\(#unit-square\)"><path d="([^"]*)"[^>]*/><path d="[^"]*"[^>]*/>'
                     r'<title>([^<]+) in image (\d+)</title></g>')


def boundary(mask: np.ndarray) -> set[tuple[str, int, int]]:
    """The unit sides between a pixel of `mask` (S×S) and one outside it or off the grid:
    ("h", y, x) is the side from (x, y) to (x + 1, y); ("v", x, y) from (x, y) to (x, y + 1)."""
    padded = np.pad(mask, 1)
    horizontal = padded[1:, 1:-1] != padded[:-1, 1:-1]  # [S + 1, S]: between rows y - 1 and y
    vertical = padded[1:-1, 1:] != padded[1:-1, :-1]  # [S, S + 1]: between columns x - 1 and x
    return ({("h", int(y), int(x)) for y, x in np.argwhere(horizontal)}
            | {("v", int(x), int(y)) for y, x in np.argwhere(vertical)})


def drawn(path: str, size: int) -> set[tuple[str, int, int]]:
    """The unit sides of an outline's path data (segments `Mx yHx2` and `Mx yVy2`, normalised)."""
    sides = set()
    for x, y, kind, end in re.findall(r"M([-\d.]+) ([-\d.]+)([HV])([-\d.]+)", path):
        x, y, end = (round(float(v) * size) for v in (x, y, end))
        if kind == "H":
            sides |= {("h", y, k) for k in range(x, end)}
        else:
            sides |= {("v", x, k) for k in range(y, end)}
    return sides


def test_probe_images_outline_raster_masks(tmp_path: Path, run_hndd, report):
    dictionary, activations, snapshots = tmp_path / "D.h5", tmp_path / "A.h5", tmp_path / "S.h5"
    options = generate.GenerationOptions(n_images=400, mask_size=56, seed=12, rasters=True, edge_masks=20, empty_masks=10)
    generate.generate_case([generate.LayerShape("layer4.2.conv1", 48, 7, 7)], options, dictionary, activations)
    add_pixels(dictionary, size=96)
    done = run_hndd(["dissect", "--dictionary", dictionary, "--activations", activations, "--out", snapshots])
    assert done.returncode == 0, done.stderr
    page = report(snapshots, tmp_path / "r.html", "--dictionary", dictionary)
    with h5py.File(dictionary, "r") as d:
        bits = np.unpackbits(d["images/masks"][...], axis=-1, bitorder="big")[..., :56].astype(bool)
        concepts = list(d["local/concepts"].asstr()[...])
    outlines = OUTLINE.findall(page.layers["layer4.2.conv1"].body)
    assert outlines, "no raster outline on the page"
    shapes = 0
    for path, concept, image in outlines:
        mask = bits[int(image), concepts.index(concept)]
        assert mask.any()
        assert drawn(path, 56) == boundary(mask), f"{concept} in image {image}"
        shapes += len(path.split("M")) > 5
    assert shapes > 0
    assert "<ellipse" not in page.layers["layer4.2.conv1"].body
