"""68 iBUG landmarks -> the Gaussian ellipses of local concepts (paper §3.1.1, docs/1-dictionary.md).

Each local concept of the taxonomy names the landmarks that outline its region
(``outline.landmarks`` in ``data/taxonomy.json``). Attributes and action units use the landmarks
of the part they live on, as the paper does: eyeglasses the eyes and brows, AU12 the mouth
corners, a goatee the chin and mouth. Coordinates are normalised image coordinates (x right,
y down, [0, 1]) of a square image.

Scaling choice. The paper takes the mean μ and covariance Σ₀ of the points and keeps the pixels
inside the χ² = 5.991 (95 %) contour. With the raw covariance that contour is about 1.7 times
the radius of a ring of points (an eye outline): the mask would spill well past the region. So
the covariance is rescaled so that the χ² contour passes just outside the outermost point:

    Σ = s·Σ₀,  s = MARGIN² · max_i (p_i−μ)ᵀ Σ₀⁺ (p_i−μ) / χ²

(Σ₀⁺ is the pseudo-inverse, so collinear points work). Every landmark then lies inside the mask
and so does their convex hull, since the ellipse is convex; the outermost point sits at
1/MARGIN of the boundary, so the mask reaches MARGIN−1 = 10 % past the region. Nearly collinear
sets (a brow, two mouth corners) would give a sliver, so each half-axis is then raised to at
least ``min_half_axis`` inter-ocular distances (the region's thickness). ``shift_down`` moves the
centre towards the chin for regions that sit just below their landmarks (bags under the eyes,
double chin). Because Σ is scaled against the file's χ², the mask does not depend on the
χ² value chosen.

Bilateral concepts (an outline with ``sides``: high cheekbones, arched eyebrows, …) get one such
ellipse per side, as the published Face Dictionary draws them, and their mask is the union
(``concept_masks``): it does not cover the nose between two cheeks. A version-1 file can hold one
ellipse per concept only, so ``concept_ellipses`` leaves bilateral concepts NaN.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .taxonomy import LANDMARK_COUNT, Outline, Taxonomy

DEFAULT_CHI2 = 5.991
MARGIN = 1.1
RIGHT_EYE_POINTS = tuple(range(36, 42))  # subject's right eye: image left on a frontal face
LEFT_EYE_POINTS = tuple(range(42, 48))
CHIN_POINT = 8


class LandmarkError(ValueError):
    """Landmarks that cannot give ellipses (wrong shape, not finite, eyes on top of each other)."""


def check_landmarks(landmarks, where: str = "landmarks") -> np.ndarray:
    """Returns ``landmarks`` as a float64 [68, 2] array, or raises a LandmarkError naming ``where``."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (LANDMARK_COUNT, 2):
        raise LandmarkError(f"{where}: expected {LANDMARK_COUNT} (x, y) points, got an array of shape {points.shape}")
    if not np.all(np.isfinite(points)):
        bad = int(np.argwhere(~np.isfinite(points))[0][0])
        raise LandmarkError(f"{where}: point {bad} is not a finite number")
    if inter_ocular_distance(points) <= 1e-9:
        raise LandmarkError(f"{where}: the two eye centres coincide; these are not face landmarks")
    return points


def eye_centres(landmarks: np.ndarray):
    """(subject's right eye centre, subject's left eye centre)."""
    return landmarks[list(RIGHT_EYE_POINTS)].mean(axis=0), landmarks[list(LEFT_EYE_POINTS)].mean(axis=0)


def inter_ocular_distance(landmarks: np.ndarray) -> float:
    right, left = eye_centres(landmarks)
    return float(np.linalg.norm(left - right))


def down_direction(landmarks: np.ndarray) -> np.ndarray:
    """Unit vector perpendicular to the eye line, pointing towards the chin (follows head roll)."""
    right, left = eye_centres(landmarks)
    across = (left - right) / np.linalg.norm(left - right)
    down = np.array([-across[1], across[0]])
    if np.dot(landmarks[CHIN_POINT] - (right + left) / 2, down) < 0:
        down = -down
    return down


def outline_ellipse(landmarks: np.ndarray, outline: Outline, chi2: float = DEFAULT_CHI2) -> np.ndarray:
    """``cx, cy, sxx, sxy, syy`` (float64) of a one-ellipse outline; see the module doc."""
    if outline.sides:
        raise ValueError("a bilateral outline has one ellipse per side: use outline_ellipses")
    points = landmarks[list(outline.landmarks)]
    scale = inter_ocular_distance(landmarks)
    centre = points.mean(axis=0)
    offsets = points - centre
    covariance = offsets.T @ offsets / len(points)

    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    significant = eigenvalues > 1e-12 * max(float(eigenvalues.max()), 1e-300)
    coordinates = offsets @ eigenvectors  # points in the covariance's principal axes
    squared_distances = (coordinates[:, significant] ** 2 / eigenvalues[significant]).sum(axis=1)
    stretch = MARGIN ** 2 * float(squared_distances.max(initial=0.0)) / chi2
    eigenvalues = np.where(significant, eigenvalues * stretch, 0.0)

    floor = (outline.min_half_axis * scale) ** 2 / chi2  # half-axis a = sqrt(chi2 * eigenvalue)
    eigenvalues = np.maximum(eigenvalues, floor)
    sigma = eigenvectors @ np.diag(eigenvalues) @ eigenvectors.T

    centre = centre + outline.shift_down * scale * down_direction(landmarks)
    return np.array([centre[0], centre[1], sigma[0, 0], (sigma[0, 1] + sigma[1, 0]) / 2, sigma[1, 1]])


def outline_ellipses(landmarks: np.ndarray, outline: Outline, chi2: float = DEFAULT_CHI2) -> np.ndarray:
    """[pieces, 5] float64: one ellipse per side of a bilateral outline, else the one ellipse."""
    return np.stack([outline_ellipse(landmarks, piece, chi2) for piece in outline.pieces])


def _present_flags(taxonomy: Taxonomy, present) -> list:
    flags = [True] * len(taxonomy.concepts) if present is None else list(present)
    if len(flags) != len(taxonomy.concepts):
        raise ValueError(f"present has {len(flags)} flags for {len(taxonomy.concepts)} concepts")
    return flags


def concept_ellipses(landmarks, taxonomy: Taxonomy, chi2: float = DEFAULT_CHI2,
                     present: Iterable[bool] = None, where: str = "landmarks") -> np.ndarray:
    """[L, 5] float32 ellipses for every one-ellipse concept; NaN rows where ``present`` is false
    and for bilateral concepts (several ellipses: their mask is in ``concept_masks``)."""
    points = check_landmarks(landmarks, where)
    ellipses = np.full((len(taxonomy.concepts), 5), np.nan, dtype=np.float32)
    for index, (concept, is_present) in enumerate(zip(taxonomy.concepts, _present_flags(taxonomy, present))):
        if is_present and not concept.outline.sides:
            ellipses[index] = outline_ellipse(points, concept.outline, chi2)
    return ellipses


def concept_masks(landmarks, taxonomy: Taxonomy, size: int, chi2: float = DEFAULT_CHI2,
                  present: Iterable[bool] = None, where: str = "landmarks") -> np.ndarray:
    """[L, size, size] bool: each present concept's mask, the union of its ellipses' docs/1-dictionary.md
    masks (each by the exact pixel-centre test); empty where ``present`` is false."""
    points = check_landmarks(landmarks, where)
    masks = np.zeros((len(taxonomy.concepts), size, size), dtype=bool)
    for index, (concept, is_present) in enumerate(zip(taxonomy.concepts, _present_flags(taxonomy, present))):
        if is_present:
            for ellipse in outline_ellipses(points, concept.outline, chi2):  # as a file stores it: float32
                masks[index] |= ellipse_mask(ellipse.astype(np.float32), size, chi2)
    return masks


def ellipse_mask(ellipse, size: int, chi2: float = DEFAULT_CHI2) -> np.ndarray:
    """docs/1-dictionary.md mask on the size×size grid: centres ((j+.5)/S, (i+.5)/S) with Mahalanobis² ≤ χ².

    NaN ellipses (absent concepts) and singular covariances give an empty mask.
    """
    cx, cy, sxx, sxy, syy = (float(v) for v in ellipse)
    mask = np.zeros((size, size), dtype=bool)
    determinant = sxx * syy - sxy * sxy
    if not np.isfinite([cx, cy, sxx, sxy, syy]).all() or determinant <= 0.0:
        return mask
    centres = (np.arange(size) + 0.5) / size
    dx = centres[None, :] - cx  # columns: x
    dy = centres[:, None] - cy  # rows: y
    squared = (syy * dx * dx - 2.0 * sxy * dx * dy + sxx * dy * dy) / determinant
    return squared <= chi2
