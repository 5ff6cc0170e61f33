""""Biased beyond the untrained network" (docs/3-numbers.md): `hndd dissect --baseline` against
the NumPy reference (significance_reference.beyond_untrained), planted cases, the false-discovery
rate of units whose change is unrelated to the labels, and the normal approximation against
explicit joint permutations.

Needs the built binary for the dissect comparison ($HNDD_BIN, else <repo>/.build/release/hndd).
Run: python3 -m pytest Tests/reference/test_baseline_vs_reference.py -v
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import compare
import generate
import hnd_reference as ref
import significance_reference as sig
from generate import GenerationOptions, LayerShape

LAYER = "layer4.2.conv1"
Q = sig.FALSE_DISCOVERY_RATE


def _planted_case(tmp_path: Path, seed: int = 211):
    """A generated layer ("now") and its baseline: the first quarter of the units identical to
    now, the rest with their maps moved to other images at random (so the labels carry nothing at
    the baseline, and the generated biased units became biased since)."""
    options = GenerationOptions(n_images=500, mask_size=48, seed=seed)
    case = generate.generate_case([LayerShape(LAYER, 32, 7, 7)], options, tmp_path / "dictionary.h5", tmp_path / "now.h5")
    rows, ids = case.layers[LAYER]
    rng = np.random.default_rng(seed + 1)
    baseline = rows.copy()
    identical = np.arange(8)
    for unit in range(8, rows.shape[1]):
        baseline[:, unit] = rows[rng.permutation(rows.shape[0]), unit]
    generate.write_activations(tmp_path / "baseline.h5", {LAYER: (baseline, ids)}, "float32")
    return case, rows, baseline, ids, identical


def _max_scores(rows: np.ndarray, ids: np.ndarray, n_images: int) -> np.ndarray:
    """[N, C] in dictionary image order."""
    scores = np.empty((n_images, rows.shape[1]), np.float32)
    scores[ids] = rows.reshape(rows.shape[0], rows.shape[1], -1).max(axis=2)
    return scores


def test_dissect_baseline_matches_reference(run_hndd, tmp_path: Path):
    case, rows, baseline, ids, identical = _planted_case(tmp_path)
    out = tmp_path / "snapshots.h5"
    result = run_hndd(["dissect", "--dictionary", tmp_path / "dictionary.h5", "--activations", tmp_path / "now.h5",
                       "--baseline", tmp_path / "baseline.h5", "--out", out, "--layer", LAYER])
    assert result.returncode == 0, f"hndd dissect --baseline exited {result.returncode}: {result.stderr.strip()}"
    row = compare.read_snapshot_row(out, LAYER)

    dictionary = ref.load_dictionary(tmp_path / "dictionary.h5")
    reference = ref.dissect_reference(dictionary, tmp_path / "now.h5", LAYER)
    n = dictionary.n_images
    expected = sig.beyond_untrained(_max_scores(rows, ids, n), _max_scores(baseline, ids, n),
                                    dictionary.global_label, dictionary.subgroup_category, reference)

    got_p, ref_p = row["global_change_p"].astype(np.float64), expected["global_change_p"].astype(np.float64)
    close = np.abs(got_p - ref_p) <= 1e-30 + 1e-5 * np.abs(ref_p)
    assert close.all(), (f"{int((~close).sum())} adjusted change p-values differ beyond 1e-5 relative; first at "
                         f"{tuple(np.argwhere(~close)[0])}: hndd {got_p[~close][0]:.6g}, reference {ref_p[~close][0]:.6g}")
    assert (row["global_beyond_untrained"] == expected["global_beyond_untrained"]).all(), "beyond-untrained flags differ"

    # Planted: the identical units cannot have changed (p = 1, no flag); the generated biased
    # units that lost their bias at the baseline are found.
    assert (got_p[identical] == 1).all(), "a unit identical to its baseline has a change p below 1"
    assert not row["global_beyond_untrained"][identical].any()
    roles = case.unit_roles[LAYER]
    planted = [u for u in range(8, len(roles)) if roles[u]["kind"] == "global" and row["global_significant"][u, roles[u]["subgroup"]]]
    assert planted, "the generated data has no significantly biased global unit outside the identical ones"
    found = [u for u in planted if row["global_beyond_untrained"][u, roles[u]["subgroup"]]]
    assert len(found) == len(planted), f"planted units {planted}, found beyond the untrained network: {found}"
    # The counts: `hndd summary --json`'s beyond_untrained is the flags' (SnapshotSummary).
    summary = run_hndd(["summary", out, "--json"])
    assert summary.returncode == 0, summary.stderr
    beyond = json.loads(summary.stdout.splitlines()[0])["beyond_untrained"]
    flags = row["global_beyond_untrained"].astype(bool)
    assert beyond["units"] == int(flags.any(axis=1).sum())
    categories = ref.load_dictionary(tmp_path / "dictionary.h5").categories
    assert beyond["units_per_category"] == {
        name: int(flags[:, dictionary.subgroup_category == g].any(axis=1).sum()) for g, name in enumerate(categories)}
    print(f"planted {len(planted)} units biased since the baseline, all found; "
          f"{int(row['global_beyond_untrained'].any(axis=1).sum())} units beyond untrained in all")


def test_dissect_without_baseline_writes_untested(run_hndd, tmp_path: Path):
    _planted_case(tmp_path)
    out = tmp_path / "snapshots.h5"
    result = run_hndd(["dissect", "--dictionary", tmp_path / "dictionary.h5", "--activations", tmp_path / "now.h5",
                       "--out", out, "--layer", LAYER])
    assert result.returncode == 0, result.stderr
    row = compare.read_snapshot_row(out, LAYER)
    assert np.isnan(row["global_change_p"]).all() and not row["global_beyond_untrained"].any()
    summary = run_hndd(["summary", out, "--json"])
    assert json.loads(summary.stdout.splitlines()[0])["beyond_untrained"] is None


def test_dissect_baseline_of_other_shape_is_refused(run_hndd, tmp_path: Path):
    case, rows, _, ids, _ = _planted_case(tmp_path)
    generate.write_activations(tmp_path / "short.h5", {LAYER: (rows[:, :16], ids)}, "float32")
    result = run_hndd(["dissect", "--dictionary", tmp_path / "dictionary.h5", "--activations", tmp_path / "now.h5",
                       "--baseline", tmp_path / "short.h5", "--out", tmp_path / "s.h5", "--layer", LAYER])
    assert result.returncode != 0 and "short.h5" in result.stderr, result.stderr


def _labels(rng, n, sizes=(0.4, 0.3, 0.2, 0.1)):
    table = np.full((n, 1), -1, dtype=np.int32)
    table[:, 0] = rng.choice(len(sizes), size=n, p=sizes)
    return table, np.zeros(len(sizes), dtype=np.int32)


def test_unrelated_change_false_discovery_rate():
    """Units re-drawn at random between the passes (the change carries no label information):
    over many seeds, the share of layers with any discovery at q = 0.05 stays near q or below
    (BH controls the FDR; with every null true, FDR = the chance of any discovery)."""
    rng = np.random.default_rng(5)
    seeds, any_discovery, raw = 60, 0, []
    for _ in range(seeds):
        labels, category = _labels(rng, 160)
        bias = 0.5 * (labels[:, 0] == 1)  # biased at both passes alike: not a change
        now = (rng.gamma(2.0, size=(160, 12)) + bias[:, None]).astype(np.float32)
        base = (rng.gamma(2.0, size=(160, 12)) + bias[:, None]).astype(np.float32)
        p, _ = sig.change_pvalues(now, base, labels, category)
        raw.append(p.ravel())
        any_discovery += bool((sig.adjust(p) <= Q).any())
    raw = np.concatenate(raw)
    assert any_discovery / seeds <= 2.5 * Q, f"{any_discovery} of {seeds} null layers had a discovery at q = {Q}"
    # The raw p-values are calibrated: about 5 % below 0.05.
    assert abs((raw <= 0.05).mean() - 0.05) < 0.02, f"{(raw <= 0.05).mean():.3f} of null raw p-values are at most 0.05"


def test_normal_approximation_against_joint_permutations():
    """Explicit joint permutations (P of both passes recomputed from scratch) against the analytic
    p-value on cases of a few hundred images, from no change to a clear one."""
    rng = np.random.default_rng(9)
    labels, category = _labels(rng, 240)
    base = rng.normal(size=(240, 4)).astype(np.float32) + 0.3 * (labels[:, [0]] == 1)
    now = 0.6 * base + 0.8 * rng.normal(size=(240, 4)).astype(np.float32)
    now[:, 1] += 0.25 * (labels[:, 0] == 3)
    now[:, 2] += 0.5 * (labels[:, 0] == 0)
    analytic, _ = sig.change_pvalues(now, base, labels, category)
    worst = 0.0
    for unit, subgroup in ((0, 1), (1, 3), (2, 0), (3, 2)):
        permuted = sig.change_permutation_pvalue(now, base, labels, category, unit, subgroup, permutations=1000, seed=unit)
        worst = max(worst, abs(permuted - analytic[unit, subgroup]))
        print(f"unit {unit}, subgroup {subgroup}: analytic {analytic[unit, subgroup]:.4f}, permutations {permuted:.4f}")
    assert worst <= 0.03, f"largest |analytic - permutation| {worst:.4f}"


def test_identical_baseline_gives_one():
    rng = np.random.default_rng(3)
    labels, category = _labels(rng, 100)
    now = rng.normal(size=(100, 5)).astype(np.float32) + (labels[:, [0]] == 2)
    p, rise = sig.change_pvalues(now, now.copy(), labels, category)
    assert (p == 1).all() and (rise == 0).all()
