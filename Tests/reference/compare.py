"""Compares an hndd snapshot row (docs/4-snapshots.md) with the exact reference, at docs/3-numbers.md's tolerances.

- Stage I probabilities within 1e-5 (every one); a biased flag must match unless the reference
  probability lies within that tolerance of the 1/S_g + 0.05 boundary.
- IoU within 0.01 for at least 99 % of (unit, concept) pairs.
- Region and Network Dissection labels equal for at least 98 % of units.
- Stage III probabilities within 0.01 for at least 99 % of pairs; a pair whose paired flag
  differs counts as a miss unless the reference probability is within 0.01 of 1.5/K_r.
- Thresholds T_u: the manual (docs/3-numbers.md) gives no tolerance because T_u is an exact order statistic; it is
  checked to float32 rounding (relative 1e-5, absolute 1e-6).

CLI (closing-note figures):
    python3 Tests/reference/compare.py --dictionary D.h5 --activations A.h5 --snapshot S.h5 [--layer L]...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import h5py
import numpy as np

import hnd_reference
import significance_reference

STAGE_ONE_TOLERANCE = 1e-5
IOU_TOLERANCE = 0.01
IOU_MIN_FRACTION = 0.99
LABEL_MIN_FRACTION = 0.98
STAGE_THREE_TOLERANCE = 0.01
STAGE_THREE_MIN_FRACTION = 0.99
THRESHOLD_RTOL = 1e-5
THRESHOLD_ATOL = 1e-6
#: Adjusted p-values (issue 17): relative agreement of Stage I's (exact on both sides), of Stage
#: III's (through the IoU sketch) for SIGNIFICANCE_MIN_FRACTION of pairs, and a floor for float32.
P_RELATIVE = 1e-3
LOCAL_P_RELATIVE = 0.05
SIGNIFICANCE_MIN_FRACTION = 0.99
P_ABSOLUTE = 1e-30

#: docs/4-snapshots.md per-layer datasets: name -> (numpy dtype kind and size, or "str"; trailing shape key).
SNAPSHOT_DATASETS: dict[str, tuple[Union[str, np.dtype], tuple[str, ...]]] = {
    "run": ("str", ()),
    "step": (np.dtype(np.int64), ()),
    "images_seen": (np.dtype(np.int64), ()),
    "images_total": (np.dtype(np.int64), ()),
    "complete": (np.dtype(np.uint8), ()),
    "time_unix": (np.dtype(np.float64), ()),
    "threshold": (np.dtype(np.float32), ("C",)),
    "global_prob": (np.dtype(np.float32), ("C", "G")),
    "global_biased": (np.dtype(np.uint8), ("C", "G")),
    "iou": (np.dtype(np.float32), ("C", "L")),
    "region": (np.dtype(np.int32), ("C",)),
    "local_prob": (np.dtype(np.float32), ("C", "L")),
    "local_paired": (np.dtype(np.uint8), ("C", "L")),
    "netdissect_concept": (np.dtype(np.int32), ("C",)),
    "global_p": (np.dtype(np.float32), ("C", "G")),
    "global_significant": (np.dtype(np.uint8), ("C", "G")),
    "local_p": (np.dtype(np.float32), ("C", "L")),
    "local_significant": (np.dtype(np.uint8), ("C", "L")),
    "global_change_p": (np.dtype(np.float32), ("C", "G")),
    "global_beyond_untrained": (np.dtype(np.uint8), ("C", "G")),
}


def read_snapshot_row(path: Union[str, Path], layer: str, row: int = -1) -> dict[str, Any]:
    """One row of ``/layers/<layer>`` as a dict: arrays for per-unit data, Python scalars otherwise."""
    with h5py.File(path, "r") as file:
        group = file[f"/layers/{layer}"]
        result: dict[str, Any] = {}
        for name in group:
            dataset = group[name]
            if not isinstance(dataset, h5py.Dataset) or dataset.shape == () or dataset.shape[0] == 0:
                continue
            if h5py.check_string_dtype(dataset.dtype) is not None:
                result[name] = dataset.asstr()[row]
            else:
                value = dataset[row]
                result[name] = value.item() if np.ndim(value) == 0 else np.asarray(value)
        result["units"] = int(group.attrs["units"]) if "units" in group.attrs else None
    return result


def _shape_failures(snapshot_row: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    failures = []
    for key in hnd_reference.SNAPSHOT_ROW_KEYS:
        if key not in snapshot_row:
            failures.append(f"{key}: missing from the snapshot row")
        elif np.shape(snapshot_row[key]) != np.shape(reference[key]):
            failures.append(f"{key}: shape {np.shape(snapshot_row[key])}, reference has {np.shape(reference[key])}")
    return failures


def _worst(errors: np.ndarray) -> tuple[float, tuple[int, ...]]:
    if errors.size == 0:
        return 0.0, ()
    finite = np.where(np.isnan(errors), np.inf, errors)
    index = np.unravel_index(int(np.argmax(finite)), errors.shape)
    return float(finite[index]), tuple(int(i) for i in index)


def _same_or_both_nan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def summary(snapshot_row: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Measured worst errors and agreement fractions (rows must have the reference's shapes)."""
    got = {key: np.asarray(snapshot_row[key]) for key in hnd_reference.SNAPSHOT_ROW_KEYS}
    ref = {key: np.asarray(reference[key]) for key in hnd_reference.SNAPSHOT_ROW_KEYS}
    n_units = ref["threshold"].shape[0]

    threshold_ref = ref["threshold"].astype(np.float64)
    threshold_got = got["threshold"].astype(np.float64)
    threshold_error = np.where(_same_or_both_nan(threshold_ref, threshold_got), 0.0, np.abs(threshold_got - threshold_ref))
    threshold_allowed = THRESHOLD_ATOL + THRESHOLD_RTOL * np.abs(threshold_ref)
    threshold_bad = ~(threshold_error <= threshold_allowed)

    global_error = np.abs(got["global_prob"].astype(np.float64) - ref["global_prob"].astype(np.float64))
    biased_differs = got["global_biased"].astype(bool) != ref["global_biased"].astype(bool)

    iou_error = np.abs(got["iou"].astype(np.float64) - ref["iou"].astype(np.float64))
    iou_ok = iou_error <= IOU_TOLERANCE

    local_error = np.abs(got["local_prob"].astype(np.float64) - ref["local_prob"].astype(np.float64))
    paired_differs = got["local_paired"].astype(bool) != ref["local_paired"].astype(bool)

    return {
        "units": int(n_units),
        "threshold_max_abs_error": _worst(threshold_error)[0],
        "threshold_units_off": int(threshold_bad.sum()),
        "global_prob_max_abs_error": _worst(global_error)[0],
        "global_prob_values_off": int((global_error > STAGE_ONE_TOLERANCE).sum()),
        "global_biased_flags_differing": int(biased_differs.sum()),
        "iou_max_abs_error": _worst(iou_error)[0],
        "iou_fraction_within_tolerance": float(iou_ok.mean()) if iou_ok.size else 1.0,
        "region_agreement": float((got["region"] == ref["region"]).mean()) if n_units else 1.0,
        "netdissect_agreement": float((got["netdissect_concept"] == ref["netdissect_concept"]).mean()) if n_units else 1.0,
        "local_prob_max_abs_error": _worst(local_error)[0],
        "local_prob_fraction_within_tolerance": float((local_error <= STAGE_THREE_TOLERANCE).mean()) if local_error.size else 1.0,
        "local_paired_flags_differing": int(paired_differs.sum()),
        "images_seen": (int(got["images_seen"]), int(ref["images_seen"])),
        "images_total": (int(got["images_total"]), int(ref["images_total"])),
        "reference_localised_units": int((ref["region"] >= 0).sum()),
        "reference_paired_units": int(ref["local_paired"].astype(bool).any(axis=1).sum()),
        "reference_biased_units": int(ref["global_biased"].astype(bool).any(axis=1).sum()),
    }


def check_against_reference(
    snapshot_row: dict[str, Any],
    reference: dict[str, Any],
    subgroup_category: Optional[np.ndarray] = None,
    concept_region: Optional[np.ndarray] = None,
) -> list[str]:
    """Human-readable failures of docs/3-numbers.md's tolerances; an empty list means the row passes.

    ``subgroup_category`` / ``concept_region`` (from the dictionary) locate the flag boundaries
    1/S_g + 0.05 and 1.5/K_r; without them they are inferred from the reference's shapes as best
    possible (flags are then compared only where the reference probability is 0.01 away from
    every boundary used by docs/3-numbers.md for 2 to 64 members).
    """
    failures = _shape_failures(snapshot_row, reference)
    if failures:
        return failures
    got = {key: np.asarray(snapshot_row[key]) for key in hnd_reference.SNAPSHOT_ROW_KEYS}
    ref = {key: np.asarray(reference[key]) for key in hnd_reference.SNAPSHOT_ROW_KEYS}
    n_units = ref["threshold"].shape[0]

    for key in ("images_seen", "images_total"):
        if int(got[key]) != int(ref[key]):
            failures.append(f"{key}: snapshot has {int(got[key])}, reference {int(ref[key])}")

    # Thresholds: exact order statistics, so float32 rounding only.
    threshold_ref = ref["threshold"].astype(np.float64)
    threshold_got = got["threshold"].astype(np.float64)
    threshold_error = np.where(_same_or_both_nan(threshold_ref, threshold_got), 0.0, np.abs(threshold_got - threshold_ref))
    threshold_bad = ~(threshold_error <= THRESHOLD_ATOL + THRESHOLD_RTOL * np.abs(threshold_ref))
    if threshold_bad.any():
        unit = int(np.argmax(np.where(threshold_bad, np.nan_to_num(threshold_error, nan=np.inf), -1)))
        failures.append(
            f"threshold: {int(threshold_bad.sum())} of {n_units} units differ beyond float32 rounding; "
            f"worst unit {unit}: snapshot {threshold_got[unit]!r}, reference {threshold_ref[unit]!r}"
        )

    # Stage I.
    global_ref = ref["global_prob"].astype(np.float64)
    global_error = np.abs(got["global_prob"].astype(np.float64) - global_ref)
    worst, where = _worst(global_error)
    if not worst <= STAGE_ONE_TOLERANCE:
        failures.append(
            f"global_prob: {int((~(global_error <= STAGE_ONE_TOLERANCE)).sum())} of {global_error.size} values "
            f"differ by more than {STAGE_ONE_TOLERANCE:g}; worst {worst:.3g} at unit {where[0]}, subgroup {where[1]} "
            f"(snapshot {got['global_prob'][where]:.6f}, reference {global_ref[where]:.6f})"
        )
    bias_boundary = _bias_boundaries(subgroup_category, global_ref.shape[1])
    biased_differs = got["global_biased"].astype(bool) != ref["global_biased"].astype(bool)
    near_bias_boundary = _near_any(global_ref, bias_boundary, STAGE_ONE_TOLERANCE)
    biased_wrong = biased_differs & ~near_bias_boundary
    if biased_wrong.any():
        unit, subgroup = (int(i) for i in np.argwhere(biased_wrong)[0])
        failures.append(
            f"global_biased: {int(biased_wrong.sum())} flags differ away from the 1/S_g+0.05 boundary; "
            f"first at unit {unit}, subgroup {subgroup} (snapshot {int(got['global_biased'][unit, subgroup])}, "
            f"reference {int(ref['global_biased'][unit, subgroup])}, reference P {global_ref[unit, subgroup]:.6f})"
        )

    # Stage II.
    iou_ref = ref["iou"].astype(np.float64)
    iou_error = np.abs(got["iou"].astype(np.float64) - iou_ref)
    iou_ok = iou_error <= IOU_TOLERANCE
    if iou_ok.size and iou_ok.mean() < IOU_MIN_FRACTION:
        worst, where = _worst(iou_error)
        failures.append(
            f"iou: only {iou_ok.mean():.2%} of (unit, concept) pairs within {IOU_TOLERANCE} (need {IOU_MIN_FRACTION:.0%}); "
            f"worst {worst:.3g} at unit {where[0]}, concept {where[1]} "
            f"(snapshot {got['iou'][where]:.4f}, reference {iou_ref[where]:.4f})"
        )
    for key, meaning in (("region", "region"), ("netdissect_concept", "Network Dissection concept")):
        agree = got[key] == ref[key]
        if n_units and agree.mean() < LABEL_MIN_FRACTION:
            unit = int(np.argmin(agree))
            failures.append(
                f"{key}: {meaning} agrees for only {agree.mean():.2%} of units (need {LABEL_MIN_FRACTION:.0%}); "
                f"e.g. unit {unit}: snapshot {int(got[key][unit])}, reference {int(ref[key][unit])}"
            )

    # Stage III.
    local_ref = ref["local_prob"].astype(np.float64)
    local_error = np.abs(got["local_prob"].astype(np.float64) - local_ref)
    pairing_boundary = _pairing_boundaries(concept_region, local_ref.shape[1])
    paired_differs = got["local_paired"].astype(bool) != ref["local_paired"].astype(bool)
    paired_wrong = paired_differs & ~_near_any(local_ref, pairing_boundary, STAGE_THREE_TOLERANCE)
    local_ok = (local_error <= STAGE_THREE_TOLERANCE) & ~paired_wrong
    if local_ok.size and local_ok.mean() < STAGE_THREE_MIN_FRACTION:
        worst, where = _worst(local_error)
        failures.append(
            f"local_prob/local_paired: only {local_ok.mean():.2%} of (unit, concept) pairs agree "
            f"(probability within {STAGE_THREE_TOLERANCE} and paired flag equal; need {STAGE_THREE_MIN_FRACTION:.0%}); "
            f"{int(paired_wrong.sum())} paired flags differ; worst probability error {worst:.3g} at unit {where[0]}, "
            f"concept {where[1]} (snapshot {got['local_prob'][where]:.4f}, reference {local_ref[where]:.4f})"
        )
    if "global_p" in reference:
        failures += significance_failures(snapshot_row, reference, biased_wrong | near_bias_boundary, ~local_ok)
    return failures


def _p_close(got: np.ndarray, ref: np.ndarray, relative: float) -> np.ndarray:
    """Adjusted p-values agree: relative error `relative`, with a floor for float32 underflow."""
    return np.abs(got.astype(np.float64) - ref.astype(np.float64)) <= P_ABSOLUTE + relative * np.abs(ref.astype(np.float64))


def significance_failures(snapshot_row: dict[str, Any], reference: dict[str, Any], global_excused: np.ndarray,
                          local_excused: np.ndarray) -> list[str]:
    """Issue 17's datasets of a complete row: every Stage I adjusted p within P_RELATIVE (both are
    exact), Stage III's for SIGNIFICANCE_MIN_FRACTION of the pairs within LOCAL_P_RELATIVE (its IoU
    is a sketch's); a significant flag may differ only where the paper's flag or probability is
    excused above, or the reference p lies within P_RELATIVE of q."""
    failures = []
    for key in ("global_p", "global_significant", "local_p", "local_significant"):
        if key not in snapshot_row:
            return [f"{key}: missing from a complete snapshot row"]
    q = significance_reference.FALSE_DISCOVERY_RATE
    for stage, relative, excused in (("global", P_RELATIVE, global_excused), ("local", LOCAL_P_RELATIVE, local_excused)):
        got_p, ref_p = np.asarray(snapshot_row[f"{stage}_p"]), np.asarray(reference[f"{stage}_p"])
        close = _p_close(got_p, ref_p, relative) | excused
        flags_differ = np.asarray(snapshot_row[f"{stage}_significant"]).astype(bool) != reference[f"{stage}_significant"].astype(bool)
        flags_wrong = flags_differ & ~excused & ~_p_close(np.full_like(ref_p, q), ref_p, P_RELATIVE)
        needed = 1.0 if stage == "global" else SIGNIFICANCE_MIN_FRACTION
        if close.size and (close.mean() < needed or flags_wrong.mean() > 1 - needed):
            unit, column = (int(i) for i in np.argwhere(~close | flags_wrong)[0])
            failures.append(
                f"{stage}_p/{stage}_significant: {int((~close).sum())} of {close.size} adjusted p-values differ beyond "
                f"{relative:g} relative, {int(flags_wrong.sum())} flags differ; first at unit {unit}, column {column} "
                f"(snapshot {got_p[unit, column]:.4g}, reference {ref_p[unit, column]:.4g})")
    return failures


def _bias_boundaries(subgroup_category: Optional[np.ndarray], n_subgroups: int) -> np.ndarray:
    """Per subgroup column, the bias boundaries 1/S_g + 0.05 that may apply: [G, k]."""
    if subgroup_category is not None:
        sizes = np.bincount(np.asarray(subgroup_category))[np.asarray(subgroup_category)]
        return (1.0 / sizes + hnd_reference.BIAS_MARGIN)[:, None]
    candidates = 1.0 / np.arange(1, max(2, n_subgroups) + 1) + hnd_reference.BIAS_MARGIN
    return np.broadcast_to(candidates, (n_subgroups, candidates.size))


def _pairing_boundaries(concept_region: Optional[np.ndarray], n_concepts: int) -> np.ndarray:
    """Per concept column, the pairing boundaries 1.5/K_r that may apply: [L, k]."""
    if concept_region is not None:
        sizes = np.bincount(np.asarray(concept_region))[np.asarray(concept_region)]
        return (hnd_reference.PAIRING_FACTOR / sizes)[:, None]
    candidates = hnd_reference.PAIRING_FACTOR / np.arange(1, max(1, n_concepts) + 1)
    return np.broadcast_to(candidates, (n_concepts, candidates.size))


def _near_any(probability: np.ndarray, boundaries: np.ndarray, tolerance: float) -> np.ndarray:
    """[C, K] mask: the probability lies within tolerance of one of its column's boundaries [K, k]."""
    return (np.abs(probability[:, :, None] - boundaries[None, :, :]) <= tolerance).any(axis=2)


def check_snapshot_file(
    path: Union[str, Path],
    dictionary_path: Union[str, Path],
    layer_units: dict[str, int],
    expected_rows: Optional[int] = None,
    require_complete: bool = True,
) -> list[str]:
    """Structure of a docs/4-snapshots.md file: attributes, copied dictionary groups, per-layer datasets.

    ``layer_units`` maps each expected layer to its unit count C. With ``require_complete`` the
    last row must be complete with images_seen == images_total.
    """
    failures: list[str] = []
    with h5py.File(path, "r") as snapshot, h5py.File(dictionary_path, "r") as dictionary:
        if _attribute_text(snapshot.attrs.get("format")) != "hndd-snapshots":
            failures.append(f"/ attribute format is {snapshot.attrs.get('format')!r}, expected 'hndd-snapshots'")
        if snapshot.attrs.get("version") is None or int(snapshot.attrs["version"]) != 1:
            failures.append(f"/ attribute version is {snapshot.attrs.get('version')!r}, expected 1")
        for group_name in ("global", "local"):
            for name, item in dictionary[group_name].items():
                full = f"/{group_name}/{name}"
                if full not in snapshot:
                    failures.append(f"{full}: not copied from the dictionary")
                    continue
                if not _same_dataset(snapshot[full], item):
                    failures.append(f"{full}: differs from the dictionary's")
        sizes = {
            "G": dictionary["/global/subgroups"].shape[0],
            "L": dictionary["/local/concepts"].shape[0],
        }
        for layer, units in layer_units.items():
            group_name = f"/layers/{layer}"
            if group_name not in snapshot:
                failures.append(f"{group_name}: missing")
                continue
            group = snapshot[group_name]
            if "units" not in group.attrs or int(group.attrs["units"]) != units:
                failures.append(f"{group_name}: attribute units is {group.attrs.get('units')!r}, expected {units}")
            rows = None
            for name, (dtype, trailing) in SNAPSHOT_DATASETS.items():
                if name not in group:
                    failures.append(f"{group_name}/{name}: missing")
                    continue
                dataset = group[name]
                if dtype == "str":
                    if h5py.check_string_dtype(dataset.dtype) is None:
                        failures.append(f"{group_name}/{name}: type {dataset.dtype}, expected a string")
                elif dataset.dtype != dtype:
                    failures.append(f"{group_name}/{name}: type {dataset.dtype}, expected {dtype}")
                expected_trailing = tuple({"C": units, **sizes}[axis] for axis in trailing)
                if dataset.ndim != 1 + len(trailing) or dataset.shape[1:] != expected_trailing:
                    failures.append(f"{group_name}/{name}: shape {dataset.shape}, expected (T,) + {expected_trailing}")
                rows = dataset.shape[0] if rows is None else rows
                if dataset.shape and dataset.shape[0] != rows:
                    failures.append(f"{group_name}/{name}: {dataset.shape[0]} rows, other datasets have {rows}")
            if expected_rows is not None and rows is not None and rows != expected_rows:
                failures.append(f"{group_name}: {rows} snapshot rows, expected {expected_rows}")
            if require_complete and rows:
                if "complete" in group and int(group["complete"][-1]) != 1:
                    failures.append(f"{group_name}/complete: last row is {int(group['complete'][-1])}, expected 1")
                if "images_seen" in group and "images_total" in group:
                    seen, total = int(group["images_seen"][-1]), int(group["images_total"][-1])
                    if seen != total:
                        failures.append(f"{group_name}: last row has images_seen {seen} != images_total {total}")
    return failures


def _attribute_text(value: Any) -> Optional[str]:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attribute_text(value.item())
    return value if isinstance(value, str) else None


def _same_dataset(copied: Any, original: Any) -> bool:
    if not isinstance(copied, h5py.Dataset) or not isinstance(original, h5py.Dataset):
        return isinstance(copied, h5py.Group) == isinstance(original, h5py.Group)
    if copied.shape != original.shape:
        return False
    if h5py.check_string_dtype(original.dtype) is not None:
        if h5py.check_string_dtype(copied.dtype) is None:
            return False
        return list(copied.asstr()[...]) == list(original.asstr()[...])
    return bool(np.array_equal(copied[...], original[...]))


def format_summary(measured: dict[str, Any]) -> str:
    return json.dumps(measured, indent=2, default=lambda value: value.tolist() if hasattr(value, "tolist") else str(value))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Compare an hndd snapshot with the NumPy reference.")
    parser.add_argument("--dictionary", type=Path, required=True)
    parser.add_argument("--activations", type=Path, required=True)
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--layer", action="append", help="default: every layer of the activations file")
    parser.add_argument("--row", type=int, default=-1)
    parser.add_argument("--quantile", type=float, default=hnd_reference.DEFAULT_QUANTILE)
    parser.add_argument("--iou-floor", type=float, default=hnd_reference.DEFAULT_IOU_FLOOR)
    args = parser.parse_args(argv)
    dictionary = hnd_reference.load_dictionary(args.dictionary)
    failed = False
    for layer in args.layer or hnd_reference.list_layers(args.activations):
        reference = hnd_reference.dissect_reference(dictionary, args.activations, layer, args.quantile, args.iou_floor)
        row = read_snapshot_row(args.snapshot, layer, args.row)
        failures = check_against_reference(row, reference, dictionary.subgroup_category, dictionary.concept_region)
        print(f"== {layer}")
        if not _shape_failures(row, reference):
            print(format_summary(summary(row, reference)))
        for failure in failures:
            print(f"FAIL {failure}")
        failed |= bool(failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
