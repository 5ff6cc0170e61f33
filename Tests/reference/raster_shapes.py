"""Raster masks (docs/1-dictionary.md version 2) for the synthetic dictionary: the shapes the published Face
Dictionary draws and the awkward ones a raster may hold.

Every concept's mask is built from its latent ellipse: most stay that one ellipse; bilateral
concepts become two ellipses, one per side, as the authors draw them; eyeglasses two rings (holes,
four runs a row); AU6 three blobs across the face (rows with three runs). On top of that, chosen
present masks are replaced by bands on the grid's edges (left, top, right, bottom, then a frame
touching all four), others are left empty, and on chosen *striped* images every present mask is
one-pixel stripes (S/2 runs a row: more than 64 pieces on one image for any S ≥ 28 with a few
concepts present). `draw` returns the packed [N, L, S, ⌈S/8⌉] uint8 array docs/1-dictionary.md stores.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

#: Bilateral concepts: each side's horizontal offset from the concept's centre, and the scale of
#: each side's variance along x against the concept's one ellipse (apart at every S).
BILATERAL = {
    "arched_eyebrows": (0.14, 0.04),
    "bags_under_eyes": (0.13, 0.05),
    "rosy_cheeks": (0.2, 0.06),
    "high_cheekbones": (0.19, 0.05),
}
#: Two rings, one per eye: offset, (x, y) variance scales of the outer and the inner ellipse.
RINGS = {"eyeglasses": (0.135, (0.16, 1.0), (0.06, 0.35))}
#: Three blobs across: spacing, variance scale along x.
TRIPLES = {"AU6": (0.2, 0.02)}


@dataclasses.dataclass(frozen=True)
class SubEllipse:
    """One ellipse of a shape: the concept's own moved by `dx`, its variances scaled by
    (`sx`, `sy`); a `hole` is cut out of the others."""

    dx: float
    sx: float = 1.0
    sy: float = 1.0
    hole: bool = False


def sub_ellipses(concept: str) -> list[SubEllipse]:
    """The ellipses a concept's shape is made of (one, the concept's own, for most)."""
    if concept in BILATERAL:
        dx, sx = BILATERAL[concept]
        return [SubEllipse(-dx, sx), SubEllipse(dx, sx)]
    if concept in RINGS:
        dx, outer, inner = RINGS[concept]
        return [SubEllipse(-dx, *outer), SubEllipse(dx, *outer), SubEllipse(-dx, *inner, True), SubEllipse(dx, *inner, True)]
    if concept in TRIPLES:
        spacing, sx = TRIPLES[concept]
        return [SubEllipse(-spacing, sx), SubEllipse(0.0, sx), SubEllipse(spacing, sx)]
    return [SubEllipse(0.0)]


def moved(ellipse: np.ndarray, part: SubEllipse) -> np.ndarray:
    """Ellipses [..., 5] moved by part.dx, their variances scaled (the covariance stays definite)."""
    out = np.array(ellipse, dtype=np.float64, copy=True)
    out[..., 0] += part.dx
    out[..., 2] *= part.sx
    out[..., 3] *= np.sqrt(part.sx * part.sy)
    out[..., 4] *= part.sy
    return out


def _inside(ellipse: np.ndarray, mask_size: int, chi2: float) -> np.ndarray:
    """docs/1-dictionary.md's pixel test for ellipses [k, 5] on the S×S grid: [k, S, S] bool."""
    centres = (np.arange(mask_size) + 0.5) / mask_size
    cx, cy, sxx, sxy, syy = (ellipse[:, i, None, None] for i in range(5))
    dx = centres[None, None, :] - cx
    dy = centres[None, :, None] - cy
    det = sxx * syy - sxy * sxy
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / det
    return (distance <= chi2) & (det > 0) & (sxx > 0)


def shape_masks(concept: str, ellipse: np.ndarray, mask_size: int, chi2: float) -> np.ndarray:
    """The concept's shape around ellipses [k, 5]: [k, S, S] bool."""
    parts = sub_ellipses(concept)
    mask = np.zeros((len(ellipse), mask_size, mask_size), bool)
    for part in parts:
        if not part.hole:
            mask |= _inside(moved(ellipse, part), mask_size, chi2)
    for part in parts:
        if part.hole:
            mask &= ~_inside(moved(ellipse, part), mask_size, chi2)
    return mask


def edge_band(kind: int, mask_size: int) -> np.ndarray:
    """A band on the grid's edge: 0 left, 1 top, 2 right, 3 bottom, 4 a frame touching all four."""
    width = max(2, mask_size // 10)
    band = np.zeros((mask_size, mask_size), bool)
    if kind in (0, 4):
        band[:, :width] = True
    if kind in (1, 4):
        band[:width, :] = True
    if kind in (2, 4):
        band[:, -width:] = True
    if kind in (3, 4):
        band[-width:, :] = True
    return band


def stripes(mask_size: int) -> np.ndarray:
    """One-pixel stripes, a checkerboard: S/2 runs in every row."""
    rows, cols = np.mgrid[0:mask_size, 0:mask_size]
    return (rows + cols) % 2 == 0


@dataclasses.dataclass(frozen=True)
class Awkward:
    """Present masks replaced by edge bands or left empty, and images drawn in stripes."""

    edges: Sequence[tuple[int, int]] = ()
    empty: Sequence[tuple[int, int]] = ()
    striped_images: Sequence[int] = ()


def choose_awkward(local_label: np.ndarray, edge_masks: int, empty_masks: int, striped_images: int,
                   rng: np.random.Generator) -> Awkward:
    """Picks distinct present (image, concept) pairs for edge bands and empty masks, and images
    with several present concepts for stripes (none of them among the others)."""
    present = np.argwhere(local_label == 1)
    busy = np.flatnonzero((local_label == 1).sum(axis=1) >= 3)
    striped = rng.choice(busy, size=min(striped_images, busy.size), replace=False) if striped_images else np.zeros(0, int)
    present = present[~np.isin(present[:, 0], striped)]
    count = min(edge_masks + empty_masks, len(present))
    chosen = present[rng.choice(len(present), size=count, replace=False)] if count else np.zeros((0, 2), int)
    pairs = [(int(n), int(c)) for n, c in chosen]
    return Awkward(edges=pairs[:edge_masks], empty=pairs[edge_masks:], striped_images=[int(n) for n in striped])


def draw(ellipse: np.ndarray, local_label: np.ndarray, concepts: Sequence[str], mask_size: int, chi2: float,
         awkward: Awkward, chunk: int = 256) -> np.ndarray:
    """The packed masks [N, L, S, ⌈S/8⌉] of every present concept (zero elsewhere)."""
    n_images, n_concepts = local_label.shape
    packed = np.zeros((n_images, n_concepts, mask_size, (mask_size + 7) // 8), np.uint8)
    for start in range(0, n_images, chunk):
        stop = min(n_images, start + chunk)
        masks = np.zeros((stop - start, n_concepts, mask_size, mask_size), bool)
        for c, concept in enumerate(concepts):
            rows = np.flatnonzero(local_label[start:stop, c] == 1)
            if rows.size:
                masks[rows, c] = shape_masks(concept, ellipse[start + rows, c], mask_size, chi2)
        for n, c in awkward.edges:
            if start <= n < stop:
                masks[n - start, c] = edge_band(awkward.edges.index((n, c)) % 5, mask_size)
        for n, c in awkward.empty:
            if start <= n < stop:
                masks[n - start, c] = False
        for n in awkward.striped_images:
            if start <= n < stop:
                masks[n - start, local_label[n] == 1] = stripes(mask_size)
        packed[start:stop] = np.packbits(masks, axis=-1, bitorder="big")
    return packed
