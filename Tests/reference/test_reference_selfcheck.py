"""Checks of the NumPy reference itself, so that comparing hndd against it means something.

Hand-computed cases for each rule of docs/3-numbers.md, a plain-loops re-implementation on a tiny random
case, invariances (row order, chunking, partial passes), the generator's files and realism, and
that compare.py notices perturbed snapshots.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

import compare
import generate
import hnd_reference as ref


# ---------------------------------------------------------------------------------------------
# Hand-computed rules
# ---------------------------------------------------------------------------------------------

def test_bilinear_matches_hand_computed_values_with_edge_clamping():
    # A linear ramp a[y, x] = 8y + 4x; interpolating a linear function is exact except where
    # the source index is clamped at the borders: along 2 -> 4 the sources are
    # -0.25 (clamped to 0), 0.25, 0.75, 1.25 (upper neighbour clamped), i.e. 0, .25, .75, 1.
    ramp = np.array([[0.0, 4.0], [8.0, 12.0]], dtype=np.float32)
    expected = np.array([[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10], [8, 9, 11, 12]], dtype=np.float32)
    np.testing.assert_array_equal(ref.upsample_bilinear(ramp, 4, 4), expected)


def test_bilinear_non_square_input_and_fractional_scale():
    # 3 rows -> 4: sources (d + .5) * .75 - .5 = -.125 (clamped), .625, 1.375, 2.125 (i0 = i1 = 2),
    # so rows 8y give 0, 5, 11, 16; 2 columns -> 4 give 4x = 0, 1, 3, 4.
    ramp = (8 * np.arange(3)[:, None] + 4 * np.arange(2)[None, :]).astype(np.float32)
    expected = np.array([0, 5, 11, 16], dtype=np.float32)[:, None] + np.array([0, 1, 3, 4], dtype=np.float32)
    np.testing.assert_array_equal(ref.upsample_bilinear(ramp, 4, 4), expected)


def test_bilinear_mixes_four_corners_with_torch_weights():
    # Checkerboard: output (1, 1) has source (.25, .25): .75*(.75*0 + .25*1) + .25*(.75*1 + .25*0) = .375.
    board = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    up = ref.upsample_bilinear(board, 4, 4)
    assert up[1, 1] == np.float32(0.375)
    assert up[0, 0] == 0.0 and up[0, 3] == 1.0  # clamped corners copy the source corner
    assert up.dtype == np.float32


def test_bilinear_keeps_power_of_two_constants_exact():
    # Dead units: a constant -1 map must stay exactly -1 so that "Up > T" is false everywhere.
    dead = np.full((5, 9), -1.0, dtype=np.float32)
    assert (ref.upsample_bilinear(dead, 56, 56) == -1.0).all()


def test_circle_mask_is_the_central_block():
    # Centre (.5, .5), variance .01: radius sqrt(5.991 * .01) = .245; on a 4x4 grid the centres
    # .375/.625 are .177 away (inside), every other centre at least .395 (outside).
    ellipse = np.array([[[0.5, 0.5, 0.01, 0.0, 0.01]]], dtype=np.float32)
    mask = ref.concept_masks(ellipse, np.array([[1]], np.int8), 4, 5.991).reshape(4, 4)
    expected = np.zeros((4, 4), dtype=bool)
    expected[1:3, 1:3] = True
    np.testing.assert_array_equal(mask, expected)


def test_tilted_mask_orientation_follows_x_right_y_down():
    # sxx = syy = .05, sxy = .045: long axis along x = y (top-left to bottom-right).
    # Pixel (row 0, col 0): d = (.05*.140625*2 - 2*.045*.140625) / .000475 = 2.96 -> inside;
    # pixel (row 0, col 3): d = (.0140625 + .01265625) / .000475 = 56.25 -> outside.
    ellipse = np.array([[[0.5, 0.5, 0.05, 0.045, 0.05]]], dtype=np.float32)
    mask = ref.concept_masks(ellipse, np.array([[1]], np.int8), 4, 5.991).reshape(4, 4)
    assert mask[0, 0] and mask[3, 3]
    assert not mask[0, 3] and not mask[3, 0]
    # A wide, flat ellipse along the top row covers pixels of row 0 only (row index = y).
    flat = np.array([[[0.5, 0.125, 0.2, 0.0, 0.001]]], dtype=np.float32)
    rows = ref.concept_masks(flat, np.array([[1]], np.int8), 4, 5.991).reshape(4, 4)
    assert rows[0].all() and not rows[1:].any()


@pytest.mark.parametrize(
    "params",
    [
        (0.5, 0.5, 0.02, 0.02, 0.02),  # rank one: det exactly 0
        (0.5, 0.5, 0.0, 0.0, 0.02),  # zero variance along x
        (0.5, 0.5, 0.0, 0.0, 0.0),  # a point
        (0.5, 0.5, -0.02, 0.0, -0.02),  # negative definite: det > 0 but not a covariance
    ],
)
def test_singular_or_indefinite_ellipse_gives_empty_mask(params):
    ellipse = np.array([[params]], dtype=np.float32)
    assert not ref.concept_masks(ellipse, np.array([[1]], np.int8), 8, 5.991).any()


def test_absent_or_unannotated_concepts_have_empty_masks():
    ellipse = np.tile(np.array([0.5, 0.5, 0.02, 0.0, 0.02], np.float32), (1, 3, 1))
    masks = ref.concept_masks(ellipse, np.array([[1, 0, -1]], np.int8), 8, 5.991)
    assert masks[0, 0].any() and not masks[0, 1].any() and not masks[0, 2].any()


def test_present_concept_with_nan_ellipse_is_rejected():
    dictionary = _tiny_dictionary(np.array([[1]], np.int8), np.full((1, 1, 5), np.nan, np.float32))
    with pytest.raises(ref.ReferenceInputError, match="ellipse"):
        dictionary.validate()


def test_threshold_is_numpy_linear_quantile_over_the_local_set_only():
    # Ten values 0..9 in the local image: the 0.75 quantile sits at position 9 * .75 = 6.75.
    # A second image outside the local set holds 1000s and must not move it.
    maps = np.stack([np.arange(10, dtype=np.float32).reshape(1, 2, 5), np.full((1, 2, 5), 1000, np.float32)])
    thresholds = ref.activation_thresholds(maps[:1], quantile=0.25)
    assert thresholds[0] == np.float32(6.75)
    # Through the whole pipeline: image 1 has only unannotated concepts, so it is not in D_L.
    dictionary = _tiny_dictionary(
        np.array([[0], [-1]], np.int8), np.full((2, 1, 5), np.nan, np.float32), mask_size=4
    )
    row = ref.dissect_arrays(dictionary, maps, quantile=0.25)
    assert row["threshold"][0] == np.float32(6.75)
    # q = 0.005 on 0..199: position 199 * .995 = 198.005.
    many = np.arange(200, dtype=np.float32).reshape(1, 1, 10, 20)
    assert ref.activation_thresholds(many, 0.005)[0] == np.float32(198.005)


def test_stage_one_ranks_ties_min_max_and_the_inclusive_bias_rule():
    # MS = 0, 2, 3, 4, 4 with subgroups a, b, a, a, b (one category of two subgroups).
    # lo = 0, hi = 4 -> MS' = 0, .5, .75, 1, 1; ranks 1, 2, 3, 4.5, 4.5 (tie averaged).
    # CS_a = (0 + 2.25 + 4.5) / 3 = 2.25; CS_b = (1 + 4.5) / 2 = 2.75; P = .45, .55.
    # .55 >= 1/2 + .05 -> biased toward b (the rule is inclusive).
    scores = np.array([[0.0], [2.0], [3.0], [4.0], [4.0]], dtype=np.float32)
    labels = np.array([[0], [1], [0], [0], [1]])
    probability, biased = ref.stage_one(scores, labels, np.array([0, 0]))
    np.testing.assert_allclose(probability[0], [0.45, 0.55], rtol=0, atol=1e-15)
    assert biased[0].tolist() == [False, True]


def test_stage_one_uses_the_dictionary_subgroup_count_not_the_present_one():
    # Same scores in a four-subgroup category where only subgroups 0 and 1 occur: the bias
    # boundary is 1/4 + .05 = .30, so both .45 and .55 are biased; subgroups 2, 3 have N_s = 0.
    scores = np.array([[0.0], [2.0], [3.0], [4.0], [4.0]], dtype=np.float32)
    labels = np.array([[0], [1], [0], [0], [1]])
    probability, biased = ref.stage_one(scores, labels, np.array([0, 0, 0, 0]))
    np.testing.assert_allclose(probability[0], [0.45, 0.55, 0.0, 0.0], rtol=0, atol=1e-15)
    assert biased[0].tolist() == [True, True, False, False]


def test_stage_one_constant_scores_or_unlabelled_category_give_zero():
    scores = np.array([[1.0, 0.0], [1.0, 5.0], [1.0, 2.0], [7.0, 1.0]], dtype=np.float32)
    # Category 0 labels images 0-2 only: unit 0 is constant there (hi == lo) even though image 3 differs.
    # Category 1 labels nobody.
    labels = np.array([[0, -1], [1, -1], [1, -1], [-1, -1]])
    probability, biased = ref.stage_one(scores, labels, np.array([0, 0, 1, 1]))
    assert (probability[0] == 0).all() and not biased[0].any()
    assert (probability[:, 2:] == 0).all()
    # Unit 1 over images 0-2: MS = 0, 5, 2 -> MS' = 0, 1, .4; ranks 1, 3, 2: CS_0 = 0, CS_1 = (3 + .8) / 2.
    np.testing.assert_allclose(probability[1, :2], [0.0, 1.0])


def test_bias_and_pairing_boundaries():
    assert ref.is_biased(0.30, 4) and not ref.is_biased(np.nextafter(0.30, 0), 4)
    assert ref.is_biased(0.55, 2) and not ref.is_biased(0.5499999, 2)
    assert not ref.is_paired(0.5, 3) and ref.is_paired(np.nextafter(0.5, 1), 3)
    assert not ref.is_paired(1.0, 1)  # a one-concept region can never pair (1 < 1.5)


def test_stage_three_hand_computed_with_strict_pairing():
    # Concepts c0, c1, c2 in region 0 (K = 3), c3 in region 1. Images (labels for c0..c3, MS):
    #   n0: 1, 0, 0, 0   MS 1
    #   n1: 1, 1, 0,-1   MS 3
    #   n2: 0, 0, 0, 1   MS 5   (in D_L, not in D_0)
    #   n3: -1,-1,-1,-1  MS 100 (outside D_L: ignored everywhere)
    #   n4: 0, 1, 0, 0   MS 3
    # Over D_L: lo 1, hi 5 -> MS' n0 0, n1 .5, n4 .5. D_0 = {n0, n1, n4}: ranks 1, 2.5, 2.5.
    # CS_c0 = (0 + 1.25) / 2 = .625, CS_c1 = (1.25 + 1.25) / 2 = 1.25, CS_c2 = 0 (N = 0).
    # Times IoU .25, .125, .5: .15625, .15625, 0 -> P = .5, .5, 0; .5 is not > 1.5/3 -> unpaired.
    labels = np.array([[1, 0, 0, 0], [1, 1, 0, -1], [0, 0, 0, 1], [-1, -1, -1, -1], [0, 1, 0, 0]], np.int8)
    scores = np.array([[1.0], [3.0], [5.0], [100.0], [3.0]], dtype=np.float32)
    iou = np.array([[0.25, 0.125, 0.5, 0.0]])
    probability, paired = ref.stage_three(scores, labels, np.array([0, 0, 0, 1]), 2, iou, np.array([0]))
    np.testing.assert_array_equal(probability[0], [0.5, 0.5, 0.0, 0.0])
    assert not paired.any()
    # With four concepts in region 0 the boundary drops to 1.5/4 = .375 and both pair.
    probability, paired = ref.stage_three(scores, labels, np.array([0, 0, 0, 0]), 1, np.array([[0.25, 0.125, 0.5, 0.0]]), np.array([0]))
    assert paired[0, :2].all() and not paired[0, 2:].any()


def test_stage_three_unlocalised_or_constant_units_get_zero():
    labels = np.array([[1, 0], [0, 1], [1, 1]], np.int8)
    scores = np.array([[2.0, 4.0], [2.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    iou = np.full((2, 2), 0.3)
    probability, paired = ref.stage_three(scores, labels, np.array([0, 0]), 1, iou, np.array([0, -1]))
    assert (probability == 0).all() and not paired.any()  # unit 0 constant, unit 1 unlocalised


def test_iou_pools_over_annotated_images_only():
    # Every image has the ramp map of the bilinear test; with T = 6.5 its 4x4 upsampling
    # [[0,1,3,4],[2,3,5,6],[6,7,9,10],[8,9,11,12]] gives |M| = 7 (row 2 cols 1-3, row 3).
    # Concept 0: a circle of variance .011 at (.875, .875) covers (3,3), (3,2), (2,3) -> |L| = 3, all in M.
    #   image 0: c0 present; image 1: c0 absent (annotated); image 2: c0 unannotated (c1 annotated).
    #   IoU_c0 = 3 / (7 + 7 + 3 - 3) = 3/14.  Concept 1: only image 2 annotated, absent -> 0 / 7 = 0.
    ramp = np.array([[0.0, 4.0], [8.0, 12.0]], dtype=np.float32)
    maps = np.broadcast_to(ramp, (3, 1, 2, 2)).copy()
    labels = np.array([[1, -1], [0, -1], [-1, 0]], np.int8)
    ellipse = np.full((3, 2, 5), np.nan, np.float32)
    ellipse[0, 0] = (0.875, 0.875, 0.011, 0.0, 0.011)
    counts = ref.overlap_counts(maps, labels, ellipse, np.array([6.5], np.float32), 4, 5.991)
    np.testing.assert_array_equal(counts.intersection, [[3, 0]])
    np.testing.assert_array_equal(counts.activation_in_concept_set, [[14, 7]])
    np.testing.assert_array_equal(counts.concept_area, [3, 0])
    np.testing.assert_allclose(counts.iou(), [[3 / 14, 0.0]])


def test_region_and_netdissect_label_use_first_maximum_and_inclusive_floor():
    iou = np.array([[0.04, 0.04, 0.01], [0.039, 0.0, 0.0], [0.0, 0.1, 0.1], [0.0, 0.0, 0.0]])
    region, concept = ref.stage_two_labels(iou, np.array([2, 1, 0]), 0.04)
    assert concept.tolist() == [0, -1, 1, -1]
    assert region.tolist() == [2, -1, 1, -1]


# ---------------------------------------------------------------------------------------------
# A plain-loops re-implementation on a tiny random case
# ---------------------------------------------------------------------------------------------

def _naive_rank(values: list[float]) -> list[float]:
    return [sum(1 for w in values if w < v) + (sum(1 for w in values if w == v) + 1) / 2 for v in values]


def _naive_probabilities(scores: list[float], normalise_scores: list[float], groups: list[list[int]], ranked: list[int]):
    """CS per group over the ranked images (indices into scores), MS' from normalise_scores' range."""
    low, high = min(normalise_scores), max(normalise_scores)
    if high == low:
        return [0.0] * len(groups), False
    ranks = dict(zip(ranked, _naive_rank([scores[i] for i in ranked])))
    concentration = []
    for members in groups:
        if not members:
            concentration.append(0.0)
            continue
        concentration.append(sum(ranks[i] * (scores[i] - low) / (high - low) for i in members) / len(members))
    return concentration, True


def _naive_upsample_pixel(a: np.ndarray, i: int, j: int, size: int) -> np.float32:
    def source(d: int, n_in: int):
        s = (np.float32(d) + np.float32(0.5)) * (np.float32(n_in) / np.float32(size)) - np.float32(0.5)
        s = max(s, np.float32(0.0))
        i0 = min(int(math.floor(s)), n_in - 1)
        l1 = np.float32(s - np.float32(i0))
        return i0, min(i0 + 1, n_in - 1), np.float32(1.0) - l1, l1

    y0, y1, ly0, ly1 = source(i, a.shape[0])
    x0, x1, lx0, lx1 = source(j, a.shape[1])
    return ly0 * (lx0 * a[y0, x0] + lx1 * a[y0, x1]) + ly1 * (lx0 * a[y1, x0] + lx1 * a[y1, x1])


def _naive_dissect(d: ref.FaceDictionary, maps: np.ndarray, quantile: float, floor: float) -> dict:
    n_images, n_units = maps.shape[:2]
    size = d.mask_size
    n_concepts = len(d.concepts)
    scores = [[float(maps[n, u].max()) for n in range(n_images)] for u in range(n_units)]
    local = [n for n in range(n_images) if (d.local_label[n] >= 0).any()]

    global_prob = np.zeros((n_units, len(d.subgroups)))
    for u in range(n_units):
        for g in range(len(d.categories)):
            labelled = [n for n in range(n_images) if d.global_label[n, g] >= 0]
            subgroups = [s for s in range(len(d.subgroups)) if d.subgroup_category[s] == g]
            if not labelled:
                continue
            groups = [[n for n in labelled if d.global_label[n, g] == s] for s in subgroups]
            cs, ok = _naive_probabilities(scores[u], [scores[u][n] for n in labelled], groups, labelled)
            total = sum(cs)
            for s, value in zip(subgroups, cs):
                global_prob[u, s] = value / total if ok and total > 0 else 0.0

    thresholds = []
    for u in range(n_units):
        values = sorted(float(v) for n in local for v in maps[n, u].ravel())
        position = (len(values) - 1) * (1 - quantile)
        k = int(math.floor(position))
        upper = values[min(k + 1, len(values) - 1)]
        thresholds.append(np.float32(values[k] + (upper - values[k]) * (position - k)))

    def in_mask(n: int, c: int, i: int, j: int) -> bool:
        if d.masks is not None:  # docs/1-dictionary.md rasters: bit 7 - (j mod 8) of byte j // 8 of row i
            return bool(int(d.masks[n, c, i, j // 8]) >> (7 - j % 8) & 1)
        if d.local_label[n, c] != 1:
            return False
        cx, cy, sxx, sxy, syy = (float(v) for v in d.ellipse[n, c])
        det = sxx * syy - sxy * sxy
        if not det > 0 or not sxx > 0:
            return False
        dx, dy = (j + 0.5) / size - cx, (i + 0.5) / size - cy
        return (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / det <= d.ellipse_chi2

    iou = np.zeros((n_units, n_concepts))
    for u in range(n_units):
        for c in range(n_concepts):
            inter = union = 0
            for n in range(n_images):
                if d.local_label[n, c] < 0:
                    continue
                for i in range(size):
                    for j in range(size):
                        active = _naive_upsample_pixel(maps[n, u], i, j, size) > thresholds[u]
                        concept = in_mask(n, c, i, j)
                        inter += active and concept
                        union += active or concept
            iou[u, c] = inter / union if union else 0.0

    region = np.full(n_units, -1)
    concept_label = np.full(n_units, -1)
    local_prob = np.zeros((n_units, n_concepts))
    for u in range(n_units):
        best = max(range(n_concepts), key=lambda c: (iou[u, c], -c))
        if iou[u, best] < floor:
            continue
        r = d.concept_region[best]
        region[u], concept_label[u] = r, best
        concepts = [c for c in range(n_concepts) if d.concept_region[c] == r]
        region_set = [n for n in range(n_images) if any(d.local_label[n, c] == 1 for c in concepts)]
        groups = [[n for n in region_set if d.local_label[n, c] == 1] for c in concepts]
        cs, ok = _naive_probabilities(scores[u], [scores[u][n] for n in local], groups, region_set)
        cs = [value * iou[u, c] for value, c in zip(cs, concepts)]
        total = sum(cs)
        for c, value in zip(concepts, cs):
            local_prob[u, c] = value / total if ok and total > 0 else 0.0
    return {"threshold": np.array(thresholds), "global_prob": global_prob, "iou": iou, "region": region,
            "netdissect_concept": concept_label, "local_prob": local_prob}


def _random_tiny_case(seed: int):
    rng = np.random.default_rng(seed)
    n_images, n_units, height, width = 14, 4, 2, 3
    concept_region = np.array([0, 0, 0, 1, 1])
    labels = rng.choice([-1, 0, 1, 1], size=(n_images, 5)).astype(np.int8)
    labels[0] = -1  # outside the local set
    labels[1] = [1, -1, -1, 1, -1]  # another annotation pattern
    ellipse = np.full((n_images, 5, 5), np.nan, np.float32)
    for n, c in np.argwhere(labels == 1):
        sxx, syy = rng.uniform(0.01, 0.05, size=2)
        sxy = rng.uniform(-0.7, 0.7) * math.sqrt(sxx * syy)
        ellipse[n, c] = (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), sxx, sxy, syy)
    n, c = np.argwhere(labels == 1)[0]
    ellipse[n, c, 2:] = 0.03  # a singular covariance on a present concept
    global_label = np.column_stack([
        rng.choice([-1, 0, 1], size=n_images),
        rng.choice([-1, 2, 3, 4], size=n_images),
        np.full(n_images, -1),  # a category nobody is labelled for
    ])
    dictionary = ref.FaceDictionary(
        categories=["gender", "age", "skin_tone"], subgroups=["f", "m", "young", "mid", "old", "light", "dark"],
        subgroup_category=np.array([0, 0, 1, 1, 1, 2, 2]), regions=["eye", "mouth"],
        concepts=["left_eye", "eyeglasses", "AU1", "lips", "AU12"], concept_region=concept_region,
        concept_type=np.zeros(5, np.int64), global_label=global_label, local_label=labels, ellipse=ellipse,
        mask_size=6, ellipse_chi2=5.991,
    )
    dictionary.validate()
    maps = (0.25 * rng.integers(-12, 40, size=(n_images, n_units, height, width))).astype(np.float32)  # ties in MS
    maps[:, 3] = -1.0  # a dead unit
    return dictionary, maps


def _with_random_rasters(dictionary: ref.FaceDictionary, seed: int) -> ref.FaceDictionary:
    """The same dictionary as version 2, with random raster masks (any shape) where present and an
    empty present mask; S = 6, so each packed row has two padding bits."""
    rng = np.random.default_rng(seed + 100)
    n, l, size = dictionary.n_images, len(dictionary.concepts), dictionary.mask_size
    bits = (rng.random((n, l, size, size)) < 0.4) & (dictionary.local_label == 1)[:, :, None, None]
    bits[tuple(np.argwhere(dictionary.local_label == 1)[0])] = False
    return dataclasses.replace(dictionary, version=2, masks=np.packbits(bits, axis=-1, bitorder="big"),
                               ellipse=np.full_like(dictionary.ellipse, np.nan))


@pytest.mark.parametrize("rasters", [False, True], ids=["ellipses", "rasters"])
@pytest.mark.parametrize("seed", [3, 5, 8])
def test_vectorised_reference_matches_plain_loops(seed, rasters):
    dictionary, maps = _random_tiny_case(seed)
    if rasters:
        dictionary = _with_random_rasters(dictionary, seed)
        dictionary.validate()
    quantile, floor = 0.1, 0.02
    naive = _naive_dissect(dictionary, maps, quantile, floor)
    fast = ref.dissect_arrays(dictionary, maps, quantile=quantile, iou_floor=floor)
    np.testing.assert_allclose(fast["threshold"], naive["threshold"], rtol=1e-6)
    np.testing.assert_allclose(fast["global_prob"], naive["global_prob"], atol=1e-6)
    np.testing.assert_allclose(fast["iou"], naive["iou"], atol=1e-6)
    np.testing.assert_array_equal(fast["region"], naive["region"])
    np.testing.assert_array_equal(fast["netdissect_concept"], naive["netdissect_concept"])
    np.testing.assert_allclose(fast["local_prob"], naive["local_prob"], atol=1e-6)
    assert fast["iou"].max() > 0 and (fast["region"] >= 0).any(), "the tiny case should localise something"


# ---------------------------------------------------------------------------------------------
# Invariances and partial passes
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_case():
    options = generate.GenerationOptions(n_images=240, mask_size=32, seed=5, singular_ellipses=6,
                                         absent_concept="AU15", negative=True, dead_units=2)
    return generate.generate_case([generate.LayerShape("conv", 24, 5, 6)], options)


def _assert_rows_close(a: dict, b: dict, atol: float = 1e-6) -> None:
    for key in ref.SNAPSHOT_ROW_KEYS:
        np.testing.assert_allclose(np.asarray(a[key], float), np.asarray(b[key], float), atol=atol, err_msg=key)


def test_row_order_and_chunk_size_do_not_change_the_result(small_case):
    maps, ids = small_case.layers["conv"]
    baseline = ref.dissect_reference(small_case.dictionary, maps, image_ids=ids)
    order = np.argsort(ids)
    _assert_rows_close(baseline, ref.dissect_reference(small_case.dictionary, maps[order], image_ids=ids[order]))
    _assert_rows_close(baseline, ref.dissect_reference(small_case.dictionary, maps, image_ids=ids, chunk_bytes=1))


def test_partial_pass_equals_dissecting_a_dictionary_of_the_images_seen(small_case):
    maps, ids = small_case.layers["conv"]
    seen = slice(0, 90)
    partial = ref.dissect_reference(small_case.dictionary, maps[seen], image_ids=ids[seen])
    assert partial["images_seen"] == 90 and partial["images_total"] == 240
    subset = dict(small_case.dictionary)
    for key in ("global_label", "local_label", "ellipse"):
        subset[key] = np.asarray(small_case.dictionary[key])[ids[seen]]
    restricted = ref.dissect_reference(subset, maps[seen], image_ids=np.arange(90), images_total=240)
    _assert_rows_close(partial, restricted)
    full = ref.dissect_reference(small_case.dictionary, maps, image_ids=ids)
    assert not np.allclose(partial["global_prob"], full["global_prob"]), "a partial pass should differ from the full one"


def test_reference_rejects_bad_image_ids_and_non_finite_maps(small_case):
    maps, ids = small_case.layers["conv"]
    with pytest.raises(ref.ReferenceInputError, match="more than once"):
        ref.dissect_reference(small_case.dictionary, maps[:3], image_ids=np.array([ids[0], ids[1], ids[0]]))
    with pytest.raises(ref.ReferenceInputError, match="dictionary has 240"):
        ref.dissect_reference(small_case.dictionary, maps[:1], image_ids=np.array([240]))
    broken = maps[:4].copy()
    broken[2, 0, 0, 0] = np.nan
    with pytest.raises(ref.ReferenceInputError, match="row 2"):
        ref.dissect_reference(small_case.dictionary, broken, image_ids=ids[:4])


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------

def test_generated_files_follow_the_spec_and_read_back_identically(tmp_path: Path):
    dictionary_path, activations_path = tmp_path / "dict.h5", tmp_path / "acts.h5"
    options = generate.GenerationOptions(n_images=120, mask_size=24, seed=9, dtype="float16",
                                         unlabelled_category="skin_tone", singular_ellipses=3)
    case = generate.generate_case(
        [generate.LayerShape("layer3.0", 6, 5, 9), generate.LayerShape("layer4.2.conv1", 8, 3, 3)],
        options, dictionary_path, activations_path,
    )
    with h5py.File(dictionary_path, "r") as file:
        assert file.attrs["format"] == "hndd-dictionary" and int(file.attrs["version"]) == 1
        assert int(file.attrs["mask_size"]) == 24 and float(file.attrs["ellipse_chi2"]) == pytest.approx(5.991)
        for name in ("/global/categories", "/global/subgroups", "/local/regions", "/local/concepts"):
            assert h5py.check_string_dtype(file[name].dtype).encoding == "utf-8"
            assert h5py.check_string_dtype(file[name].dtype).length is None
        assert file["/images/global_label"].dtype == np.int32 and file["/images/local_label"].dtype == np.int8
        assert file["/images/ellipse"].shape == (120, len(generate.CONCEPTS), 5)
        assert (file["/images/global_label"][:, 3] == -1).all()
    with h5py.File(activations_path, "r") as file:
        assert file["/layers/layer3.0/activations"].dtype == np.float16
        assert file["/layers/layer3.0/activations"].shape == (120, 6, 5, 9)
        ids = file["/layers/layer3.0/image_ids"][...]
        assert sorted(ids.tolist()) == list(range(120)) and ids.tolist() != list(range(120))
    assert ref.list_layers(activations_path) == ["layer3.0", "layer4.2.conv1"]
    loaded = ref.load_dictionary(dictionary_path)
    np.testing.assert_array_equal(loaded.local_label, case.dictionary["local_label"])
    for layer, (maps, ids) in case.layers.items():
        file_maps, file_ids = ref.load_activations(activations_path, layer)
        np.testing.assert_array_equal(file_maps, maps)
        np.testing.assert_array_equal(file_ids, ids)
    from_file = ref.dissect_reference(dictionary_path, activations_path, "layer3.0")
    in_memory = ref.dissect_reference(case.dictionary, *case.layers["layer3.0"][:1], image_ids=case.layers["layer3.0"][1])
    _assert_rows_close(from_file, in_memory, atol=0)


def test_generated_raster_files_follow_the_spec_and_read_back_identically(tmp_path: Path):
    dictionary_path, activations_path = tmp_path / "dict.h5", tmp_path / "acts.h5"
    options = generate.GenerationOptions(n_images=150, mask_size=30, seed=10, rasters=True, nan_ellipses=True,
                                         edge_masks=10, empty_masks=4, striped_images=2)
    case = generate.generate_case([generate.LayerShape("layer3.0", 6, 5, 5)], options, dictionary_path, activations_path)
    with h5py.File(dictionary_path, "r") as file:
        assert int(file.attrs["version"]) == 2
        masks = file["/images/masks"]
        assert masks.shape == (150, len(generate.CONCEPTS), 30, 4) and masks.dtype == np.uint8
        assert np.isnan(file["/images/ellipse"][...]).all()
        assert file["/images/source"].asstr()[3] == "synthetic/000003.png"
        bits = np.unpackbits(masks[...], axis=-1, bitorder="big")
    labels = case.dictionary["local_label"]
    assert not bits[..., 30:].any() and not bits[labels != 1].any()
    pixels = bits[..., :30].reshape(150, len(generate.CONCEPTS), 30, 30)
    assert ((labels == 1) & ~pixels.any(axis=(2, 3))).sum() >= 4  # empty present masks
    assert pixels[:, :, :, 0].any() and pixels[:, :, 0, :].any() and pixels[:, :, :, -1].any() and pixels[:, :, -1, :].any()
    runs = (np.diff(pixels.astype(np.int8), axis=-1, prepend=0) == 1).sum(axis=-1)  # runs a row
    assert runs.max() == 15 and runs.max(axis=2).sum(axis=1).max() > 64  # striped images: > 64 pieces
    bilateral = generate.taxonomy()["concepts"].index("arched_eyebrows")
    assert (runs[:, bilateral] == 2).any()
    loaded = ref.load_dictionary(dictionary_path)
    np.testing.assert_array_equal(loaded.masks, case.dictionary["masks"])
    from_file = ref.dissect_reference(dictionary_path, activations_path, "layer3.0")
    in_memory = ref.dissect_reference(case.dictionary, *case.layers["layer3.0"][:1], image_ids=case.layers["layer3.0"][1])
    _assert_rows_close(from_file, in_memory, atol=0)


def test_generated_data_gives_a_non_trivial_dissection():
    options = generate.GenerationOptions(n_images=500, mask_size=56, seed=2)
    case = generate.generate_case([generate.LayerShape("conv", 40, 7, 7)], options)
    maps, ids = case.layers["conv"]
    row = ref.dissect_reference(case.dictionary, maps, image_ids=ids)
    roles = case.unit_roles["conv"]
    localised = row["region"] >= 0
    assert localised.mean() > 0.3, f"only {localised.mean():.0%} of units localised"
    assert row["local_paired"].any(axis=1).sum() >= 5
    assert row["global_biased"].any(axis=1).sum() >= 5
    concept_region = np.asarray(case.dictionary["concept_region"])
    # Units built as detectors of a non-part concept should mostly land in that concept's region.
    detectors = [u for u, role in enumerate(roles)
                 if role["kind"] in ("local", "mixed") and generate.CONCEPTS[role["concept"]].kind != generate.PART]
    right_region = [row["region"][u] == concept_region[roles[u]["concept"]] for u in detectors]
    assert np.mean(right_region) > 0.7
    # Units built to prefer a subgroup should mostly be flagged biased toward it.
    global_units = [u for u, role in enumerate(roles) if role["kind"] == "global"]
    flagged = [row["global_biased"][u, roles[u]["subgroup"]] for u in global_units]
    assert np.mean(flagged) > 0.7


# ---------------------------------------------------------------------------------------------
# compare.py notices what it should
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_row():
    options = generate.GenerationOptions(n_images=150, mask_size=28, seed=7)
    case = generate.generate_case([generate.LayerShape("conv", 64, 7, 7)], options)
    maps, ids = case.layers["conv"]
    dictionary = ref.FaceDictionary.from_mapping(case.dictionary)
    return dictionary, ref.dissect_reference(dictionary, maps, image_ids=ids)


def _copy(row: dict) -> dict:
    return {key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in row.items()}


def _check(row: dict, reference: dict, dictionary: ref.FaceDictionary) -> list[str]:
    return compare.check_against_reference(row, reference, dictionary.subgroup_category, dictionary.concept_region)


def test_compare_accepts_the_reference_itself(reference_row):
    dictionary, reference = reference_row
    assert _check(_copy(reference), reference, dictionary) == []
    assert compare.check_against_reference(_copy(reference), reference) == []
    measured = compare.summary(reference, reference)
    assert measured["iou_fraction_within_tolerance"] == 1.0 and measured["region_agreement"] == 1.0


def test_compare_flags_stage_one_errors(reference_row):
    dictionary, reference = reference_row
    row = _copy(reference)
    row["global_prob"][3, 1] += 2e-5
    failures = _check(row, reference, dictionary)
    assert len(failures) == 1 and "global_prob" in failures[0] and "unit 3, subgroup 1" in failures[0]
    row = _copy(reference)
    unit, subgroup = np.argwhere(np.abs(reference["global_prob"] - 0.3) > 0.05)[0]
    row["global_biased"][unit, subgroup] ^= 1
    assert any("global_biased" in f for f in _check(row, reference, dictionary))


def test_compare_iou_fraction_boundary(reference_row):
    dictionary, reference = reference_row
    n_pairs = reference["iou"].size
    flat = np.arange(n_pairs)
    row = _copy(reference)
    row["iou"].reshape(-1)[flat[: int(0.009 * n_pairs)]] += 0.02  # 0.9 % off: allowed
    assert not any(f.startswith("iou") for f in _check(row, reference, dictionary))
    row = _copy(reference)
    row["iou"].reshape(-1)[flat[: int(0.011 * n_pairs) + 1]] += 0.02  # 1.1 % off: not allowed
    assert any(f.startswith("iou") for f in _check(row, reference, dictionary))


def test_compare_label_fraction_boundary(reference_row):
    dictionary, reference = reference_row
    row = _copy(reference)
    row["region"][0] = 4 if row["region"][0] != 4 else 3  # 1 of 64 units = 1.6 %: allowed
    assert _check(row, reference, dictionary) == []
    row["region"][1] = 4 if row["region"][1] != 4 else 3  # 2 of 64 = 3.1 %: not allowed
    assert any(f.startswith("region") for f in _check(row, reference, dictionary))
    row = _copy(reference)
    row["netdissect_concept"][:2] += 1
    assert any(f.startswith("netdissect_concept") for f in _check(row, reference, dictionary))


def test_compare_flags_stage_three_threshold_and_counts(reference_row):
    dictionary, reference = reference_row
    row = _copy(reference)
    row["local_prob"].reshape(-1)[: int(0.02 * reference["local_prob"].size)] += 0.05
    assert any(f.startswith("local_prob") for f in _check(row, reference, dictionary))
    row = _copy(reference)
    row["threshold"][5] *= 1.001
    assert any(f.startswith("threshold") and "unit 5" in f for f in _check(row, reference, dictionary))
    row = _copy(reference)
    row["images_seen"] -= 1
    assert any(f.startswith("images_seen") for f in _check(row, reference, dictionary))
    row = _copy(reference)
    row["iou"] = row["iou"][:, :-1]
    assert any("iou: shape" in f for f in _check(row, reference, dictionary))


def _tiny_dictionary(local_label: np.ndarray, ellipse: np.ndarray, mask_size: int = 8) -> ref.FaceDictionary:
    n_images, n_concepts = local_label.shape
    return ref.FaceDictionary(
        categories=["gender"], subgroups=["female", "male"], subgroup_category=np.array([0, 0]),
        regions=["eye"], concepts=[f"c{k}" for k in range(n_concepts)], concept_region=np.zeros(n_concepts, np.int64),
        concept_type=np.zeros(n_concepts, np.int64), global_label=np.full((n_images, 1), -1),
        local_label=local_label, ellipse=ellipse, mask_size=mask_size,
    )


def test_raster_bits_are_big_endian_rows_and_checked():
    # S = 10: two bytes a row, six padding bits. Byte 1 = 0b1000_0000 is column 8 of its row.
    labels = np.array([[1, 0]], np.int8)
    packed = np.zeros((1, 2, 10, 2), np.uint8)
    packed[0, 0, 3, 1] = 0x80
    packed[0, 0, 0, 0] = 0x01  # column 7
    d = dataclasses.replace(_tiny_dictionary(labels, np.full((1, 2, 5), np.nan, np.float32), mask_size=10),
                            version=2, masks=packed, image_sources=["a/b.png"])
    d.validate()
    mask = d.concept_masks(np.array([0]))[0].reshape(2, 10, 10)
    assert np.argwhere(mask[0]).tolist() == [[0, 7], [3, 8]] and not mask[1].any()
    stray = packed.copy()
    stray[0, 1, 5, 0] = 0x40  # concept 1, which image 0 does not have
    padding = packed.copy()
    padding[0, 0, 9, 1] = 0x20  # column 10 of a 10-wide grid
    for broken, message in ((dict(masks=stray), r"image 0 \(a/b.png\), concept 'c1': mask pixels set where local_label is 0"),
                            (dict(masks=padding), r"image 0 \(a/b.png\), concept 'c0': padding"),
                            (dict(version=1), "version 2"),
                            (dict(masks=packed[..., :1]), "shape")):
        with pytest.raises(ref.ReferenceInputError, match=message):
            dataclasses.replace(d, **broken).validate()


# ---------------------------------------------------------------------------------------------
# Significance (issue 17)
# ---------------------------------------------------------------------------------------------

def _planted_stage_one(seed: int, n: int = 400, units: int = 12, effect: float = 0.4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=(n, 1))
    scores = rng.standard_normal((n, units))
    scores[:, : units // 3] += effect * (labels == 0)  # the first third respond to subgroup 0
    category = np.zeros(4, dtype=np.int64)
    probability, _ = ref.stage_one(scores, labels, category)
    return scores, labels, category, probability


@pytest.mark.parametrize("seed", [1, 2])
def test_significance_analytic_matches_explicit_permutations(seed):
    import significance_reference as sig
    scores, labels, category, probability = _planted_stage_one(seed)
    analytic = sig.stage_one_pvalues(scores, labels, category, probability)
    b = 3000
    permuted = sig.permutation_pvalues(scores, labels, category, probability, b, seed)
    tolerance = 4 * np.sqrt(np.maximum(permuted, 1 / b) * (1 - permuted) / b) + 0.01
    assert np.all(np.abs(analytic - permuted) <= tolerance), np.max(np.abs(analytic - permuted))
    assert (permuted < 0.05).sum() >= 3, "the planted units give small p-values"


def test_significance_planted_units_survive_bh_and_noise_does_not():
    import significance_reference as sig
    scores, labels, category, probability = _planted_stage_one(3, n=800, units=30, effect=0.8)
    adjusted = sig.adjust(sig.stage_one_pvalues(scores, labels, category, probability))
    assert np.all(adjusted[:10, 0] < 1e-3)
    assert (adjusted[10:] <= sig.FALSE_DISCOVERY_RATE).sum() <= 1


def test_compare_flags_perturbed_p_values(reference_row):
    dictionary, row = reference_row
    assert "global_p" in row, "a complete pass carries the significance tests"
    assert _check(row, row, dictionary) == []
    bad = dict(row, global_p=row["global_p"] * np.float32(1.5))
    assert any("global_p" in f for f in _check(bad, row, dictionary))
