"""Landmarks -> concept ellipses (one per side for bilateral concepts) -> docs/1-dictionary.md masks, on hand-made
landmark sets."""
import numpy as np
import pytest
from scipy import ndimage

from hndd_client.landmarks import (DEFAULT_CHI2, MARGIN, LandmarkError, check_landmarks, concept_ellipses,
                                   concept_masks, down_direction, ellipse_mask, inter_ocular_distance,
                                   outline_ellipse, outline_ellipses)
from hndd_client.taxonomy import Outline, load_taxonomy

TAXONOMY = load_taxonomy()


def hand_made_face(centre=(0.5, 0.5), scale=0.5, roll=0.0):
    """68 iBUG points laid out by hand: straight brows, hexagonal eyes, elliptic lips, round jaw."""
    p = np.zeros((68, 2))
    k = np.arange(17)
    p[0:17] = np.stack([-0.5 * np.cos(np.pi * k / 16), 0.6 * np.sin(np.pi * k / 16)], -1)
    p[17:22] = np.stack([np.linspace(-0.38, -0.1, 5), np.full(5, -0.2)], -1)
    p[22:27] = np.stack([np.linspace(0.1, 0.38, 5), np.full(5, -0.2)], -1)
    p[27:31] = np.stack([np.zeros(4), [-0.05, 0.02, 0.09, 0.16]], -1)
    p[31:36] = np.stack([np.linspace(-0.08, 0.08, 5), np.full(5, 0.2)], -1)
    angles = np.radians([180, 120, 60, 0, 300, 240])  # outer corner, upper lid, inner corner, lower lid
    p[36:42] = np.stack([-0.2 + 0.08 * np.cos(angles), -0.05 - 0.08 * np.sin(angles)], -1)
    p[42:48] = np.stack([0.2 - 0.08 * np.cos(angles), -0.05 - 0.08 * np.sin(angles)], -1)
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    p[48:60] = np.stack([-0.15 * np.cos(t), 0.38 - 0.05 * np.sin(t)], -1)
    t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    p[60:68] = np.stack([-0.1 * np.cos(t), 0.38 - 0.02 * np.sin(t)], -1)
    c, s = np.cos(roll), np.sin(roll)
    return p @ np.array([[c, s], [-s, c]]) * scale + np.asarray(centre)


def mahalanobis_squared(ellipse, points):
    cx, cy, sxx, sxy, syy = ellipse
    inverse = np.linalg.inv(np.array([[sxx, sxy], [sxy, syy]]))
    offsets = np.asarray(points) - [cx, cy]
    return np.einsum("ni,ij,nj->n", offsets, inverse, offsets)


def half_axes(ellipse, chi2=DEFAULT_CHI2):
    _, _, sxx, sxy, syy = ellipse
    values, vectors = np.linalg.eigh(np.array([[sxx, sxy], [sxy, syy]]))
    return np.sqrt(chi2 * values), vectors


def convex_hull(points):
    """Hull vertices in counter-clockwise order (Andrew's monotone chain); 2 points if collinear."""
    ordered = sorted(map(tuple, points))
    cross = lambda o, a, b: (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    lower, upper = [], []
    for point in ordered:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], point) <= 1e-15:
            lower.pop()
        lower.append(point)
    for point in reversed(ordered):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], point) <= 1e-15:
            upper.pop()
        upper.append(point)
    hull = lower[:-1] + upper[:-1]
    return np.array(hull if len(hull) >= 3 else [ordered[0], ordered[-1]])


def distance_to_hull(queries, points):
    """Distance of each query point to the convex hull of ``points`` (0 inside)."""
    polygon = convex_hull(points)
    starts, ends = polygon, np.roll(polygon, -1, axis=0)
    edges = ends - starts
    lengths = np.maximum((edges * edges).sum(-1), 1e-18)
    t = np.clip(((queries[:, None, :] - starts) * edges).sum(-1) / lengths, 0, 1)
    distance = np.linalg.norm(queries[:, None, :] - (starts + t[..., None] * edges), axis=-1).min(axis=1)
    if len(polygon) >= 3:
        cross = edges[None, :, 0] * (queries[:, None, 1] - starts[None, :, 1]) - \
            edges[None, :, 1] * (queries[:, None, 0] - starts[None, :, 0])
        distance[(cross >= 0).all(axis=1)] = 0.0  # counter-clockwise hull: inside is left of every edge
    return distance


def test_hull_helper_on_a_square_and_a_segment():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], dtype=float)
    queries = np.array([[0.5, 0.5], [2.0, 0.5], [-1.0, -1.0]])
    np.testing.assert_allclose(distance_to_hull(queries, square), [0.0, 1.0, np.sqrt(2)])
    segment = np.array([[0, 0], [0.5, 0], [1, 0]], dtype=float)
    np.testing.assert_allclose(distance_to_hull(np.array([[0.5, 0.3], [2.0, 0.0]]), segment), [0.3, 1.0])


def grid_centres(size):
    rows, columns = np.mgrid[:size, :size]
    return np.stack([(columns + 0.5) / size, (rows + 0.5) / size], -1)


def test_ring_of_points_gives_a_circle_ten_percent_wider():
    face = hand_made_face()
    ellipse = outline_ellipse(face, TAXONOMY.concept("left_eye").outline)
    ring = face[42:48]
    np.testing.assert_allclose(ellipse[:2], ring.mean(axis=0), atol=1e-12)
    radius = np.linalg.norm(ring - ring.mean(axis=0), axis=1).max()
    axes, _ = half_axes(ellipse)
    np.testing.assert_allclose(axes, [MARGIN * radius] * 2, rtol=1e-9)
    # every point sits at exactly 1/MARGIN of the boundary
    np.testing.assert_allclose(mahalanobis_squared(ellipse, ring), DEFAULT_CHI2 / MARGIN ** 2, rtol=1e-9)


def test_straight_brow_gets_length_from_points_and_thickness_from_the_floor():
    face = hand_made_face(roll=0.4)
    outline = TAXONOMY.concept("right_brow").outline
    ellipse = outline_ellipse(face, outline)
    brow = face[17:22]
    axes, vectors = half_axes(ellipse)
    along = brow[-1] - brow[0]
    half_length = np.linalg.norm(along) / 2
    thickness = outline.min_half_axis * inter_ocular_distance(face)
    np.testing.assert_allclose(sorted(axes), sorted([MARGIN * half_length, thickness]), rtol=1e-9)
    long_axis = vectors[:, np.argmax(axes)]
    assert abs(abs(long_axis @ along) / np.linalg.norm(along) - 1) < 1e-9  # follows the rolled brow


def test_points_on_an_ellipse_give_the_same_ellipse_scaled():
    face = hand_made_face(roll=-0.3)
    ellipse = outline_ellipse(face, TAXONOMY.concept("mouth").outline)
    axes, _ = half_axes(ellipse)
    scale = 0.5  # hand_made_face's scale; the lips are an ellipse of half-axes 0.15 x 0.05
    np.testing.assert_allclose(sorted(axes), [MARGIN * 0.05 * scale, MARGIN * 0.15 * scale], rtol=1e-9)


@pytest.mark.parametrize("roll", [0.0, 0.35, -0.5])
def test_every_concept_mask_covers_its_points_and_not_far_beyond(roll):
    face = hand_made_face(roll=roll)
    size = 448
    centres = grid_centres(size).reshape(-1, 2)
    scale = inter_ocular_distance(face)
    for concept, outline in ((c, piece) for c in TAXONOMY.concepts for piece in c.outline.pieces):
        points = face[list(outline.landmarks)]
        ellipse = outline_ellipse(face, outline)
        if outline.shift_down == 0:
            assert mahalanobis_squared(ellipse, points).max() <= DEFAULT_CHI2 / MARGIN ** 2 * (1 + 1e-9), concept.name
            rows = np.floor(points[:, 1] * size).astype(int)
            columns = np.floor(points[:, 0] * size).astype(int)
            mask = ellipse_mask(ellipse, size)
            assert mask[rows, columns].all(), f"{concept.name}: a landmark's grid cell is outside the mask"
        else:  # shifted regions: the centre moved by exactly shift_down inter-ocular distances
            shifted = points.mean(axis=0) + outline.shift_down * scale * down_direction(face)
            np.testing.assert_allclose(ellipse[:2], shifted, atol=1e-12)
            mask = ellipse_mask(ellipse, size)
        reach = np.linalg.norm(points - points.mean(axis=0), axis=1).max()
        allowed = 0.75 * reach + outline.min_half_axis * scale + outline.shift_down * scale + 1.5 / size
        beyond = distance_to_hull(centres[mask.reshape(-1)], points)
        assert beyond.max() <= allowed, f"{concept.name}: mask reaches {beyond.max():.3f} past its landmarks"


def test_sides_follow_the_subject():
    ellipses = concept_ellipses(hand_made_face(), TAXONOMY)
    index = TAXONOMY.concept_index
    assert ellipses[index("left_eye"), 0] > 0.5 > ellipses[index("right_eye"), 0]
    assert ellipses[index("left_cheek"), 0] > 0.5 > ellipses[index("right_cheek"), 0]
    size = 112
    left, right = (ellipse_mask(ellipses[index(name)], size) for name in ("left_eye", "right_eye"))
    nose = ellipse_mask(ellipses[index("nose")], size)
    assert left.any() and right.any() and not (left & right).any()
    assert not (left & ellipse_mask(ellipses[index("mouth")], size)).any()
    assert (nose & ellipse_mask(ellipses[index("AU9")], size)).sum() >= 0.5 * nose.sum()


def test_rotating_the_landmarks_rotates_the_ellipses():
    straight, rolled = hand_made_face(roll=0.0), hand_made_face(roll=0.6)
    c, s = np.cos(0.6), np.sin(0.6)
    rotation = np.array([[c, -s], [s, c]])  # hand_made_face rotates row vectors by its transpose
    for concept, outline in ((c, piece) for c in TAXONOMY.concepts for piece in c.outline.pieces):
        a = outline_ellipse(straight, outline)
        b = outline_ellipse(rolled, outline)
        centre = rotation @ (a[:2] - 0.5) + 0.5
        np.testing.assert_allclose(b[:2], centre, atol=1e-12, err_msg=concept.name)
        sigma = rotation @ np.array([[a[2], a[3]], [a[3], a[4]]]) @ rotation.T
        np.testing.assert_allclose([b[2], b[3], b[4]], [sigma[0, 0], sigma[0, 1], sigma[1, 1]], atol=1e-12,
                                   err_msg=concept.name)


def test_mask_is_the_spec_formula_cell_by_cell():
    rng = np.random.default_rng(3)
    for _ in range(20):
        cx, cy = rng.uniform(0.2, 0.8, 2)
        a, b, angle = rng.uniform(0.03, 0.2), rng.uniform(0.01, 0.1), rng.uniform(0, np.pi)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        sigma = rotation @ np.diag([a * a, b * b]) @ rotation.T
        ellipse = [cx, cy, sigma[0, 0], sigma[0, 1], sigma[1, 1]]
        size = int(rng.integers(8, 120))
        chi2 = float(rng.uniform(1, 9))
        expected = np.zeros((size, size), dtype=bool)
        inverse = np.linalg.inv(sigma)
        for i in range(size):
            for j in range(size):
                d = np.array([(j + 0.5) / size - cx, (i + 0.5) / size - cy])
                expected[i, j] = d @ inverse @ d <= chi2
        np.testing.assert_array_equal(ellipse_mask(ellipse, size, chi2), expected)


def test_empty_masks_for_absent_and_singular_ellipses():
    assert not ellipse_mask([np.nan] * 5, 112).any()
    assert not ellipse_mask([0.5, 0.5, 0.01, 0.01, 0.01], 112).any()  # determinant 0
    assert not ellipse_mask([0.5, 0.5, 0.0, 0.0, 0.0], 112).any()
    present = [c.name != "eyeglasses" for c in TAXONOMY.concepts]
    ellipses = concept_ellipses(hand_made_face(), TAXONOMY, present=present)
    one_ellipse = np.array([not c.outline.sides for c in TAXONOMY.concepts])
    assert np.isnan(ellipses[TAXONOMY.concept_index("eyeglasses")]).all()
    assert np.isfinite(np.delete(ellipses[one_ellipse], TAXONOMY.concept_index("eyeglasses"), axis=0)).all()
    assert np.isnan(ellipses[~one_ellipse]).all()  # bilateral: several ellipses, none stored
    masks = concept_masks(hand_made_face(), TAXONOMY, 64, present=present)
    assert not masks[TAXONOMY.concept_index("eyeglasses")].any()
    assert np.delete(masks, TAXONOMY.concept_index("eyeglasses"), axis=0).any(axis=(1, 2)).all()


@pytest.mark.parametrize("roll", [0.0, 0.3])
def test_bilateral_masks_are_one_ellipse_per_side(roll):
    """(That they stay off the nose is tested on rendered faces, test_synth: this face is not one.)"""
    face = hand_made_face(roll=roll)
    size = 112
    masks = concept_masks(face, TAXONOMY, size)
    bilateral = [c for c in TAXONOMY.concepts if c.outline.sides]
    assert len(bilateral) >= 4
    for concept in bilateral:
        mask = masks[TAXONOMY.concept_index(concept.name)]
        right, left = (ellipse_mask(e.astype(np.float32), size) for e in outline_ellipses(face, concept.outline))
        np.testing.assert_array_equal(mask, right | left)  # the union of the sides' docs/1-dictionary.md masks
        labels, count = ndimage.label(mask)
        assert count == 2, concept.name
        assert not (right & left).any(), concept.name
        # subject's right side first: on a frontal face it is on the image's left
        assert np.nonzero(right)[1].mean() < size / 2 < np.nonzero(left)[1].mean(), concept.name


def test_one_ellipse_masks_are_the_stored_float32_ellipse_by_the_spec_test():
    face = hand_made_face(roll=0.2)
    size = 96
    ellipses, masks = concept_ellipses(face, TAXONOMY), concept_masks(face, TAXONOMY, size)
    for index, concept in enumerate(TAXONOMY.concepts):
        if not concept.outline.sides:  # a reader of /images/ellipse alone draws the same mask, bit for bit
            np.testing.assert_array_equal(masks[index], ellipse_mask(ellipses[index], size), err_msg=concept.name)
    with pytest.raises(ValueError, match="outline_ellipses"):
        outline_ellipse(face, TAXONOMY.concept("high_cheekbones").outline)


def test_mask_does_not_depend_on_the_chi2_chosen():
    face = hand_made_face(roll=0.2)
    outline = TAXONOMY.concept("goatee").outline
    masks = [ellipse_mask(outline_ellipse(face, outline, chi2), 112, chi2) for chi2 in (2.0, 5.991, 9.21)]
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[1], masks[2])


def test_identical_points_give_a_disc_of_the_floor_radius():
    face = hand_made_face()
    face[30] = face[29]
    outline = Outline((29, 30), min_half_axis=0.1)
    axes, _ = half_axes(outline_ellipse(face, outline))
    np.testing.assert_allclose(axes, [0.1 * inter_ocular_distance(face)] * 2, rtol=1e-9)


@pytest.mark.parametrize("landmarks, message", [
    (np.zeros((67, 2)), "expected 68"),
    (np.zeros((68, 3)), "expected 68"),
    (np.where(np.arange(136).reshape(68, 2) == 81, np.nan, 0.5), "point 40 is not a finite number"),
    (np.full((68, 2), 0.5), "eye centres coincide"),
])
def test_bad_landmarks_are_refused(landmarks, message):
    with pytest.raises(LandmarkError, match=message):
        check_landmarks(landmarks, "image 7")
    with pytest.raises(LandmarkError, match="image 7"):
        concept_ellipses(landmarks, TAXONOMY, where="image 7")
