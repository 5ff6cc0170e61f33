"""NumPy reference for the significance of Stage I and Stage III (issue 17), independent of the engine.

The null: the labels carry no information. Stage I permutes the subgroup labels within D_g,
Stage III the images' concept-presence vectors within D_r; the rank weights w_n = R_n·MS'_n stay
fixed. P_k >= p is the event X = sum_n w_n h_{pi(n)} >= 0 with h an explicit per-image vector
(built here image by image, not from counts as the engine does), and X's permutation mean and
variance are Hoeffding's: E = sum(w) sum(h) / n, Var = sum((w - w̄)^2) sum((h - h̄)^2) / (n - 1).
p = P(Z >= -E / sd) (``scipy.stats.norm.sf``). Benjamini-Hochberg comes from SciPy
(``scipy.stats.false_discovery_control``), not from a re-implementation.

:func:`permutation_pvalues` computes the same p-values by explicit permutations, for the
self-check that the normal approximation holds on the test cases.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.stats import false_discovery_control, norm

import hnd_reference

#: q of Benjamini-Hochberg: a biased/paired unit is significant when its adjusted p is at most this.
FALSE_DISCOVERY_RATE = 0.05


def _weights(max_score: np.ndarray, normalise_over: np.ndarray, rank_over: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """w [n_rank, C] = rank over rank_over * min-max normalised over normalise_over; varying [C]."""
    scores = max_score.astype(np.float64)
    low = scores[normalise_over].min(axis=0)
    spread = scores[normalise_over].max(axis=0) - low
    varying = spread > 0
    ranked = scores[rank_over]
    return hnd_reference.average_ranks(ranked) * ((ranked - low) / np.where(varying, spread, 1.0)), varying


def _upper_tail(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """P(sum_n w_n h_pi(n) >= 0) for each column of w [n, C], one h [n]; 1 where X cannot vary."""
    n = w.shape[0]
    if n < 2:
        return np.ones(w.shape[1])
    mean = w.sum(axis=0) * h.sum() / n
    variance = ((w - w.mean(axis=0)) ** 2).sum(axis=0) * ((h - h.mean()) ** 2).sum() / (n - 1)
    scale = (w ** 2).sum(axis=0) * (h ** 2).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        p = norm.sf(-mean / np.sqrt(variance))
    return np.where(variance > 1e-20 * scale, p, 1.0)


def _category_sets(global_label, subgroup_category):
    """Per category with subgroups and labelled images: its subgroups, the mask of D_g and the
    labels of D_g."""
    for category in range(global_label.shape[1]):
        subgroups = np.nonzero(subgroup_category == category)[0]
        labels = global_label[:, category]
        labelled = labels >= 0
        if subgroups.size == 0 or not labelled.any():
            continue
        yield subgroups, labelled, labels[labelled]


def _labelled_categories(max_score, global_label, subgroup_category):
    """Per category with subgroups and labelled images (D_g): its subgroups, the labels of D_g,
    the rank weights w [|D_g|, C] and which units vary over D_g."""
    for subgroups, labelled, image_labels in _category_sets(global_label, subgroup_category):
        w, varying = _weights(max_score, labelled, labelled)
        yield subgroups, image_labels, w, varying


def stage_one_pvalues(max_score, global_label, subgroup_category, probability) -> np.ndarray:
    """Raw p [C, G] of Stage I's probabilities [C, G] (float64); NaN where a unit's category
    probabilities are all 0 (not tested)."""
    n_units, n_subgroups = max_score.shape[1], len(subgroup_category)
    p = np.full((n_units, n_subgroups), np.nan)
    for subgroups, image_labels, w, varying in _labelled_categories(max_score, global_label, subgroup_category):
        counts = {s: int((image_labels == s).sum()) for s in subgroups}
        tested = varying & (probability[:, subgroups].sum(axis=1) > 0)
        for s in subgroups:
            for u in np.nonzero(tested)[0]:
                if counts[s] == 0:
                    p[u, s] = 1.0
                    continue
                a = {t: (1.0 if t == s else 0.0) - probability[u, s] for t in subgroups}
                h = np.array([a[t] / counts[t] for t in image_labels])
                p[u, s] = _upper_tail(w[:, u:u + 1], h)[0]
    return p


def stage_three_pvalues(max_score, local_label, concept_region, n_regions, iou, region, probability) -> np.ndarray:
    """Raw p [C, L] of Stage III's probabilities [C, L]; NaN outside the unit's region and for
    units whose region probabilities are all 0."""
    n_units, n_concepts = iou.shape
    p = np.full((n_units, n_concepts), np.nan)
    local_set = (local_label >= 0).any(axis=1)
    present = local_label == 1
    for r in range(n_regions):
        units = np.nonzero(region == r)[0]
        concepts = np.nonzero(concept_region == r)[0]
        region_set = present[:, concepts].any(axis=1)
        if units.size == 0 or concepts.size == 0 or not region_set.any():
            continue
        w, varying = _weights(max_score[:, units], local_set, region_set)
        x = present[region_set][:, concepts].astype(np.float64)  # [n_r, K]
        counts = x.sum(axis=0)
        for i, u in enumerate(units):
            if not varying[i] or probability[u, concepts].sum() <= 0:
                continue
            for k, c in enumerate(concepts):
                if counts[k] == 0:
                    p[u, c] = 1.0
                    continue
                a = iou[u, concepts] * ((np.arange(concepts.size) == k) - probability[u, c])
                h = x @ np.where(counts > 0, a / np.where(counts > 0, counts, 1.0), 0.0)
                p[u, c] = _upper_tail(w[:, i:i + 1], h)[0]
    return p


def adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p over the tested (non-NaN) entries; untested entries get 1."""
    adjusted = np.ones_like(p, dtype=np.float64)
    tested = ~np.isnan(p)
    if tested.any():
        adjusted[tested] = false_discovery_control(p[tested], method="bh")
    return adjusted


def significance(max_score, dictionary_labels, row: dict, iou64: Optional[np.ndarray] = None) -> dict:
    """The four significance datasets of a complete row, from its max scores [N, C] and the
    reference's probabilities. ``dictionary_labels`` = (global_label, subgroup_category,
    local_label, concept_region, n_regions)."""
    global_label, subgroup_category, local_label, concept_region, n_regions = dictionary_labels
    iou = row["iou"].astype(np.float64) if iou64 is None else iou64
    global_raw = stage_one_pvalues(max_score, global_label, subgroup_category, row["global_prob"].astype(np.float64))
    local_raw = stage_three_pvalues(max_score, local_label, concept_region, n_regions, iou, row["region"],
                                    row["local_prob"].astype(np.float64))
    global_p, local_p = adjust(global_raw), adjust(local_raw)
    return {
        "global_p": global_p.astype(np.float32),
        "global_significant": (row["global_biased"].astype(bool) & (global_p <= FALSE_DISCOVERY_RATE)).astype(np.uint8),
        "local_p": local_p.astype(np.float32),
        "local_significant": (row["local_paired"].astype(bool) & (local_p <= FALSE_DISCOVERY_RATE)).astype(np.uint8),
        "global_raw_p": global_raw,
        "local_raw_p": local_raw,
    }


def permutation_pvalues(max_score, global_label, subgroup_category, probability, permutations: int, seed: int) -> np.ndarray:
    """Stage I raw p [C, G] by explicit permutations: (1 + #{b: P_b >= P}) / (B + 1)."""
    rng = np.random.default_rng(seed)
    n_units, n_subgroups = max_score.shape[1], len(subgroup_category)
    p = np.full((n_units, n_subgroups), np.nan)
    for subgroups, image_labels, w, varying in _labelled_categories(max_score, global_label, subgroup_category):
        counts = np.array([(image_labels == s).sum() for s in subgroups], dtype=np.float64)
        exceed = np.zeros((n_units, subgroups.size))
        for _ in range(permutations):
            shuffled = rng.permutation(image_labels)
            onehot = (shuffled[:, None] == subgroups[None, :]).astype(np.float64)
            means = (w.T @ onehot) / np.where(counts > 0, counts, 1.0)
            total = means.sum(axis=1, keepdims=True)
            permuted = np.where(total > 0, means / np.where(total > 0, total, 1.0), 0.0)
            exceed += permuted >= probability[:, subgroups] - 1e-9
        tested = varying & (probability[:, subgroups].sum(axis=1) > 0)
        p[np.ix_(tested, subgroups)] = (1 + exceed[tested]) / (permutations + 1)
    return p


# ---------------------------------------------------------------------------------------------
# Beyond the untrained network: did P_k rise since the baseline pass by more than chance?
# ---------------------------------------------------------------------------------------------
# D(pi) = P_k(t; pi) - P_k(0; pi) with the SAME label permutation pi for both passes. Its
# first-order expansion around the observed labels is X(pi) = sum_n d(n, pi(n)) with
# d(n, i) = sum_j c_nj x_ij / N_j, c_nj = a^t_j w_t(n) / T_t - a^0_j w_0(n) / T_0,
# a^x_j = [j == k] - P_k(x) (the totals T move with the labels too). Here d is built as an
# explicit [n, n] matrix, image by image, and X's permutation mean and variance come from
# Hoeffding's general formula for sum_n d(n, pi(n)): E = sum(d) / n,
# Var = sum((d - row mean - column mean + grand mean)^2) / (n - 1).


def _hoeffding_upper_tail(d: np.ndarray) -> float:
    """P(sum_n d[n, pi(n)] >= 0) for a uniform permutation pi (normal tail); 1 if it cannot vary."""
    n = d.shape[0]
    if n < 2:
        return 1.0
    mean = d.sum() / n
    centred = d - d.mean(axis=1, keepdims=True) - d.mean(axis=0, keepdims=True) + d.mean()
    variance = (centred ** 2).sum() / (n - 1)
    if variance <= 1e-12 * (d ** 2).sum():
        return 1.0
    return float(norm.sf(-mean / np.sqrt(variance)))


def _category_terms(max_score, labelled, image_labels, subgroups):
    """Per unit: w / T over D_g ([n, C], 0 for units that do not vary) and P of the category's
    subgroups ([C, S]), from the reference's own Stage I (`hnd_reference.stage_one` conventions)."""
    w, varying = _weights(max_score, labelled, labelled)
    w = np.where(varying[None, :], w, 0.0)
    counts = np.array([(image_labels == s).sum() for s in subgroups], dtype=np.float64)
    onehot = (image_labels[:, None] == subgroups[None, :]).astype(np.float64)
    cs = (onehot.T @ w) / np.where(counts > 0, counts, 1.0)[:, None]  # [S, C]
    total = cs.sum(axis=0)
    scaled = w / np.where(total > 0, total, 1.0)[None, :]
    probability = np.where(total > 0, cs / np.where(total > 0, total, 1.0), 0.0).T
    return scaled, probability, counts


def change_pvalues(max_now, max_base, global_label, subgroup_category):
    """Raw one-sided p [C, G] of "P rose since the baseline" and the change D [C, G]; NaN where
    the current unit does not vary over D_g (the engine skips those)."""
    n_units, n_subgroups = max_now.shape[1], len(subgroup_category)
    p = np.full((n_units, n_subgroups), np.nan)
    rise = np.zeros((n_units, n_subgroups))
    for subgroups, labelled, image_labels in _category_sets(global_label, subgroup_category):
        u, p_now, counts = _category_terms(max_now, labelled, image_labels, subgroups)
        v, p_base, _ = _category_terms(max_base, labelled, image_labels, subgroups)
        _, now_varying = _weights(max_now, labelled, labelled)
        position = np.searchsorted(subgroups, image_labels)
        for unit in np.nonzero(now_varying)[0]:
            for i, s in enumerate(subgroups):
                rise[unit, s] = p_now[unit, i] - p_base[unit, i]
                if counts[i] == 0:
                    p[unit, s] = 1.0
                    continue
                a_now = (np.arange(subgroups.size) == i) - p_now[unit, i]
                a_base = (np.arange(subgroups.size) == i) - p_base[unit, i]
                # h_i per image i (the label moved onto image n by the permutation): x_ij / N_j.
                h_now = a_now[position] / counts[position]
                h_base = a_base[position] / counts[position]
                d = np.outer(u[:, unit], h_now) - np.outer(v[:, unit], h_base)
                p[unit, s] = _hoeffding_upper_tail(d)
    return p, rise


def beyond_untrained(max_now, max_base, global_label, subgroup_category, row: dict) -> dict:
    """`global_change_p` (BH-adjusted over the layer's tested units x subgroups, 1 untested) and
    `global_beyond_untrained` (biased, significant, change-p <= q, D > 0) of a complete row that
    holds the reference's `global_biased` and `global_significant`."""
    raw, rise = change_pvalues(max_now, max_base, global_label, subgroup_category)
    adjusted = adjust(raw)
    flags = (row["global_biased"].astype(bool) & row["global_significant"].astype(bool)
             & (adjusted <= FALSE_DISCOVERY_RATE) & (rise > 0))
    return {"global_change_p": adjusted.astype(np.float32), "global_beyond_untrained": flags.astype(np.uint8),
            "global_change_raw_p": raw, "global_change": rise}


def change_permutation_pvalue(max_now, max_base, global_label, subgroup_category, unit: int, subgroup: int,
                              permutations: int, seed: int) -> float:
    """One (unit, subgroup)'s raw change p by explicit joint permutations of the labels (the same
    permutation for both passes, P recomputed from scratch): (1 + #{b: D_b >= D}) / (B + 1)."""
    import hnd_reference
    category = int(subgroup_category[subgroup])
    labels = global_label[:, category]
    labelled = labels >= 0
    now, base = max_now[labelled][:, [unit]], max_base[labelled][:, [unit]]

    def change(image_labels):
        table = np.full((image_labels.size, global_label.shape[1]), -1, dtype=global_label.dtype)
        table[:, category] = image_labels
        p_now, _ = hnd_reference.stage_one(now, table, subgroup_category)
        p_base, _ = hnd_reference.stage_one(base, table, subgroup_category)
        return p_now[0, subgroup] - p_base[0, subgroup]

    observed = change(labels[labelled])
    rng = np.random.default_rng(seed)
    exceed = sum(change(rng.permutation(labels[labelled])) >= observed - 1e-12 for _ in range(permutations))
    return (1 + exceed) / (permutations + 1)
