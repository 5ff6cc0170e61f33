"""The experiment's measured values: hndd's own counts per run, layer and step, and their ranges over seeds.

Every count comes from `hndd summary --json` (the engine's SnapshotSummary); nothing is
re-derived here. Per-unit probabilities for the sorted curves (Fig. 13) are read as stored
(`global_prob`, `local_prob`) through `hndd_client.snapshots`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .experiment_plan import Run, parse_run

#: metric -> (what it counts, the experiment it belongs to). Values per row: see `row_metrics`.
METRICS = {
    "eye_region": ("units localised in the eye region (Stage II)", "eyeglasses"),
    "paired": ("units paired with eyeglasses (paper's rule)", "eyeglasses"),
    "paired_significant": ("of those, significantly paired (BH q = 0.05)", "eyeglasses"),
    "biased": ("units biased toward grayscale (paper's rule)", "grayscale"),
    "biased_significant": ("of those, significantly biased (BH q = 0.05)", "grayscale"),
    "beyond_untrained": ("significantly biased beyond the untrained network", "grayscale"),
}
CONCEPT, REGION, SUBGROUP = "eyeglasses", "eye", "grayscale"


def _beyond_untrained(row: dict) -> Optional[int]:
    """`beyond_untrained` of `hndd summary --json` where the binary provides it (at the top level
    or under "significant"; a count, or per subgroup), else None."""
    for holder in (row, row.get("significant") or {}):
        value = holder.get("beyond_untrained")
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            return int(value)
        if isinstance(value, dict):
            per_subgroup = value.get("units_per_subgroup", value)
            if isinstance(per_subgroup, dict):
                return int(per_subgroup.get(SUBGROUP, 0))
    return None


def row_metrics(row: dict) -> Dict[str, Optional[int]]:
    """The experiment's numbers in one `hndd summary --json` row (None: not in this row)."""
    significant = row.get("significant")
    return {
        "eye_region": int(row["units_per_region"].get(REGION, 0)),
        "paired": int(row["units_per_concept"].get(CONCEPT, 0)),
        "paired_significant": int(significant["units_per_concept"].get(CONCEPT, 0)) if significant else None,
        "biased": int(row["units_per_subgroup"].get(SUBGROUP, 0)),
        "biased_significant": int(significant["units_per_subgroup"].get(SUBGROUP, 0)) if significant else None,
        "beyond_untrained": _beyond_untrained(row),
    }


@dataclass(frozen=True)
class Measured:
    run: Run
    layer: str
    step: int
    units: int
    metrics: Dict[str, Optional[int]]


def measured(rows: Iterable[dict]) -> List[Measured]:
    """One entry per (run, layer, step) of the experiment's runs: the latest complete row."""
    latest: Dict[Tuple[str, str, int], dict] = {}
    for row in rows:
        if row.get("complete") and parse_run(row["run"]):
            latest[(row["run"], row["layer"], int(row["step"]))] = row
    return [Measured(parse_run(run), layer, step, int(row["units"]), row_metrics(row))
            for (run, layer, step), row in sorted(latest.items())]


def finished(rows: Iterable[dict], layers: Sequence[str], last_step: int) -> set:
    """Names of runs with a complete row at `last_step` in every layer: those are not redone."""
    have: Dict[str, set] = {}
    for row in rows:
        if row.get("complete") and int(row["step"]) == last_step:
            have.setdefault(row["run"], set()).add(row["layer"])
    return {run for run, seen in have.items() if set(layers) <= seen}


@dataclass(frozen=True)
class Range:
    """A value over seeds: minimum, median, maximum and the seeds it holds."""

    low: float
    median: float
    high: float
    seeds: int

    def text(self) -> str:
        if self.low == self.high:
            return f"{self.low:g}"
        return f"{self.low:g}–{self.high:g}"


def value_range(values: Sequence[float]) -> Optional[Range]:
    if not len(values):
        return None
    array = np.asarray(values, dtype=float)
    return Range(float(array.min()), float(np.median(array)), float(array.max()), len(array))


def series(entries: Sequence[Measured], experiment: str, layer: str, metric: str, step: int) -> Dict[int, Range]:
    """P -> the metric's range over seeds at `step` (only where the row has the metric)."""
    by_percent: Dict[int, List[int]] = {}
    for entry in entries:
        value = entry.metrics.get(metric)
        if entry.run.experiment == experiment and entry.layer == layer and entry.step == step and value is not None:
            by_percent.setdefault(entry.run.percent, []).append(value)
    return {percent: value_range(values) for percent, values in sorted(by_percent.items())}


def direction(entries: Sequence[Measured], experiment: str, layer: str, metric: str, step: int,
              low: int, high: int) -> Tuple[int, int]:
    """(seeds where the metric at P = high exceeds P = low, seeds with both): the paper's direction."""
    at = {(e.run.percent, e.run.seed): e.metrics.get(metric) for e in entries
          if e.run.experiment == experiment and e.layer == layer and e.step == step}
    seeds = sorted({seed for percent, seed in at if percent == low} & {seed for percent, seed in at if percent == high})
    pairs = [(at[(low, s)], at[(high, s)]) for s in seeds if at[(low, s)] is not None and at[(high, s)] is not None]
    return sum(1 for a, b in pairs if b > a), len(pairs)


def units_of(entries: Sequence[Measured], layer: str) -> Optional[int]:
    return next((e.units for e in entries if e.layer == layer), None)


def sorted_curves(snapshot_path: str, runs: Sequence[Run], layer: str, step: int, hndd: Optional[str] = None
                  ) -> Dict[Run, np.ndarray]:
    """Run -> its units' probability of the biased subgroup (grayscale: Stage I's P_s; eyeglasses:
    Stage III's P_c, 0 outside the eye region), sorted from high to low, at `step`."""
    from . import snapshots

    curves: Dict[Run, np.ndarray] = {}
    with snapshots.open(snapshot_path, hndd=hndd) as file:
        for run in runs:
            dataset = "global_prob" if run.experiment == "grayscale" else "local_prob"
            axis = "subgroup" if run.experiment == "grayscale" else "concept"
            values = file.values(layer, dataset, run=run.name, steps=[step])
            column = values.coords[axis].index(SUBGROUP if run.experiment == "grayscale" else CONCEPT)
            probabilities = np.nan_to_num(values.values[0, :, column].astype(float))
            curves[run] = np.sort(probabilities)[::-1]
    return curves


def curve_band(curves: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(min, median, max) over seeds at each rank of sorted curves of equal length."""
    stack = np.vstack(curves)
    return stack.min(axis=0), np.median(stack, axis=0), stack.max(axis=0)
