"""Reading a snapshot file (docs/4-snapshots.md) from Python and notebooks, while the daemon writes it or not.

    from hndd_client import snapshots
    with snapshots.open("run/snapshots.h5") as f:
        f.layers, f.runs(), f.steps("layer3.1.conv1", run="eyeglasses-P100")
        f.units("layer3.1.conv1", run="eyeglasses-P100")      # pandas: one row per (run, step, unit)
        f.counts("layer3.1.conv1")                            # pandas: per-step counts, hndd's own
        f.values("layer3.1.conv1", "iou", steps=[120, 160])   # numpy, only the rows asked for
        f.xarray("layer3.1.conv1", "global_prob")             # the same as an xarray.DataArray

No flag is needed while `hndd serve` writes: `S.h5` is an index that the daemon replaces as a
whole on every append, so an open file is one consistent version of it; `refresh()` opens the
newest. Rows are chosen as `hndd report` chooses them: per (run, step) the latest complete row
(with ``complete=False``, the latest row, complete or not).

The counts are not computed here: `counts` runs `hndd summary --json` (the engine's
`SnapshotSummary`, which every view of hndd shows). `units` only names what the file stores per
unit (its region, Network Dissection label, biased subgroups and paired concepts; interpretable
is docs/3-numbers.md's "biased or paired"), and a test checks that its sums are `counts`' numbers.

pandas (tables) and xarray (`xarray`) are optional: ``pip install "hndd-client[notebook]"``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import h5py
import numpy as np

#: The per-unit datasets `values` reads, with the names of their axes after (step, unit).
VALUE_AXES = {"threshold": (), "global_prob": ("subgroup",), "global_biased": ("subgroup",), "iou": ("concept",),
              "local_prob": ("concept",), "local_paired": ("concept",), "region": (), "netdissect_concept": (),
              "top_images": ("rank",), "global_p": ("subgroup",), "global_significant": ("subgroup",),
              "local_p": ("concept",), "local_significant": ("concept",), "global_change_p": ("subgroup",),
              "global_beyond_untrained": ("subgroup",)}
BOOKKEEPING = ("step", "images_seen", "images_total", "complete", "time_unix")


class SnapshotsError(Exception):
    """A snapshot file or a request that cannot be read; the message names the file and what."""


def open(path, hndd: Optional[str] = None) -> "SnapshotFile":  # noqa: A001 - the module's verb
    """Opens a snapshot file read-only. `hndd` is the binary `counts` runs (default: $HNDD_BIN,
    `hndd` on the PATH, or this checkout's build)."""
    return SnapshotFile(path, hndd=hndd)


def _pandas():
    try:
        import pandas
    except ImportError:
        raise SnapshotsError("hndd_client.snapshots tables need pandas: pip install pandas "
                             "(or pip install \"hndd-client[notebook]\")") from None
    return pandas


@dataclass
class StepValues:
    """One dataset's values for the rows asked for: `values[i]` is row `row[i]`, the pass
    (`run[i]`, `step[i]`); `dims` names the axes of `values`, `coords` the names along them."""

    values: np.ndarray
    run: np.ndarray
    step: np.ndarray
    row: np.ndarray
    dims: tuple
    coords: Dict[str, list]


class SnapshotFile:
    def __init__(self, path, hndd: Optional[str] = None):
        self.path = str(path)
        self._hndd = hndd
        self._file = None
        self.refresh()

    # -- the file ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Opens the newest version of the file (the rows appended since are then seen)."""
        self.close()
        if not os.path.isfile(self.path):
            raise SnapshotsError(f"{self.path}: no such file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise SnapshotsError(f"{self.path}: not an HDF5 file ({error})") from None
        fmt = self._file.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != "hndd-snapshots":
            raise SnapshotsError(f"{self.path}: not a hndd snapshot file (format attribute {fmt!r})")
        self.taxonomy = {name: _strings(self._file[group + "/" + name][()]) for group, names in
                         (("global", ("categories", "subgroups")), ("local", ("regions", "concepts"))) for name in names}
        for group, name in (("global", "subgroup_category"), ("local", "concept_region"), ("local", "concept_type")):
            self.taxonomy[name] = self._file[group + "/" + name][()].astype(int).tolist()
        layers = self._file.get("layers", {})
        self._rows = {}
        for name in layers:
            group = layers[name]
            if "step" in group and group["step"].shape[0] > 0:
                rows = {key: group[key][()] for key in BOOKKEEPING}
                rows["run"] = np.array(_strings(group["run"][()]), dtype=object)
                rows["complete"] = rows["complete"].astype(bool)
                self._rows[name] = rows

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def layers(self) -> List[str]:
        """The layers that hold at least one row, in file order."""
        return list(self._rows)

    def units_of(self, layer: str) -> int:
        return int(self._group(layer).attrs["units"])

    # -- rows ----------------------------------------------------------------------------------

    def runs(self, layer: Optional[str] = None) -> List[str]:
        """The runs with rows (in `layer`, or in any layer), in order of their first row."""
        names: List[str] = []
        for name in ([layer] if layer else self.layers):
            for run in self._layer_rows(name)["run"]:
                if run not in names:
                    names.append(run)
        return names

    def steps(self, layer: str, run: Optional[str] = None, complete: bool = True) -> np.ndarray:
        """The steps of `layer` (of `run`) with a row — a complete one unless `complete=False`."""
        return self._layer_rows(layer)["step"][self._select(layer, run, None, complete)]

    def rows(self, layer: Optional[str] = None):
        """Every row's bookkeeping (layer, row, run, step, images_seen, images_total, complete,
        time_unix) as a pandas DataFrame."""
        pandas = _pandas()
        frames = []
        for name in ([layer] if layer else self.layers):
            rows = self._layer_rows(name)
            frame = pandas.DataFrame({"layer": name, "row": np.arange(len(rows["step"])), "run": rows["run"],
                                      **{key: rows[key] for key in BOOKKEEPING}})
            frames.append(frame)
        return pandas.concat(frames, ignore_index=True)

    def _select(self, layer: str, run: Optional[str], steps: Optional[Sequence[int]], complete: bool) -> np.ndarray:
        """Row indices, one per (run, step): the latest complete row, or the latest row at all
        with `complete=False`; ordered by run (first appearance) then step."""
        rows = self._layer_rows(layer)
        if run is not None and run not in set(rows["run"]):
            raise SnapshotsError(f"{self.path}: layer {layer}: no run {run!r}; runs: {', '.join(self.runs(layer))}")
        wanted = None if steps is None else {int(s) for s in np.atleast_1d(steps)}
        latest: Dict[tuple, int] = {}
        for i in range(len(rows["step"])):
            if run is not None and rows["run"][i] != run:
                continue
            if complete and not rows["complete"][i]:
                continue
            step = int(rows["step"][i])
            if wanted is None or step in wanted:
                latest[(rows["run"][i], step)] = i
        if wanted is not None:
            missing = sorted(wanted - {step for _, step in latest})
            if missing:
                raise SnapshotsError(f"{self.path}: layer {layer}: no {'complete ' if complete else ''}row at step(s) "
                                     f"{missing[:10]}{'…' if len(missing) > 10 else ''}")
        order = {name: k for k, name in enumerate(self.runs(layer))}
        return np.array([latest[key] for key in sorted(latest, key=lambda key: (order[key[0]], key[1]))], dtype=np.int64)

    # -- values --------------------------------------------------------------------------------

    def values(self, layer: str, name: str, run: Optional[str] = None, steps: Optional[Sequence[int]] = None,
               complete: bool = True) -> StepValues:
        """Dataset `name` (`iou`, `global_prob`, `local_prob`, … see VALUE_AXES) for the chosen
        rows only: shape [rows, units] plus the dataset's own axis."""
        if name not in VALUE_AXES:
            raise SnapshotsError(f"{self.path}: no per-unit dataset {name!r}; choose one of {', '.join(VALUE_AXES)}")
        dataset = self._group(layer).get(name)
        if dataset is None:
            raise SnapshotsError(f"{self.path}: /layers/{layer}/{name}: missing (the file predates it)")
        chosen = self._select(layer, run, steps, complete)
        rows = self._layer_rows(layer)
        values = _read_rows(dataset, chosen)
        dims = ("step", "unit") + VALUE_AXES[name]
        coords = {"unit": list(range(values.shape[1]))}
        for axis in VALUE_AXES[name]:
            coords[axis] = (self.taxonomy["subgroups"] if axis == "subgroup" else self.taxonomy["concepts"]
                            if axis == "concept" else list(range(values.shape[2])))
        return StepValues(values=values, run=rows["run"][chosen], step=rows["step"][chosen], row=chosen,
                          dims=dims, coords=coords)

    def xarray(self, layer: str, name: str, run: Optional[str] = None, steps: Optional[Sequence[int]] = None,
               complete: bool = True):
        """`values` as an xarray.DataArray with named axes; `run` and `row` are coordinates along step."""
        try:
            import xarray
        except ImportError:
            raise SnapshotsError("hndd_client.snapshots.xarray needs xarray: pip install xarray "
                                 "(or use values(), which returns numpy)") from None
        v = self.values(layer, name, run=run, steps=steps, complete=complete)
        coords = {"step": v.step, "run": ("step", v.run.astype(str)), "row": ("step", v.row), **v.coords}
        return xarray.DataArray(v.values, dims=v.dims, coords=coords, name=name, attrs={"layer": layer, "file": self.path})

    # -- tables --------------------------------------------------------------------------------

    def units(self, layer: str, run: Optional[str] = None, steps: Optional[Sequence[int]] = None, complete: bool = True):
        """One row per (run, step, unit): region, nd_label (the Network Dissection baseline's
        concept), interpretable (biased or paired), biased_subgroups, paired_concepts (names)."""
        pandas = _pandas()
        chosen = self._select(layer, run, steps, complete)
        group, rows, t = self._group(layer), self._layer_rows(layer), self.taxonomy
        region = _read_rows(group["region"], chosen)
        nd = _read_rows(group["netdissect_concept"], chosen)
        biased = _read_rows(group["global_biased"], chosen) != 0
        paired = _read_rows(group["local_paired"], chosen) != 0
        n, units = region.shape
        regions = np.array([None] + t["regions"], dtype=object)
        concepts = np.array([None] + t["concepts"], dtype=object)
        subgroups, concept_names = t["subgroups"], t["concepts"]
        return pandas.DataFrame({
            "run": np.repeat(rows["run"][chosen], units), "step": np.repeat(rows["step"][chosen], units),
            "row": np.repeat(chosen, units), "unit": np.tile(np.arange(units), n),
            "region": regions[region.ravel() + 1], "nd_label": concepts[nd.ravel() + 1],
            "interpretable": (biased.any(axis=2) | paired.any(axis=2)).ravel(),
            "biased_subgroups": [[subgroups[g] for g in np.flatnonzero(b)] for b in biased.reshape(n * units, -1)],
            "paired_concepts": [[concept_names[c] for c in np.flatnonzero(p)] for p in paired.reshape(n * units, -1)],
        })

    def counts(self, layer: Optional[str] = None, run: Optional[str] = None):
        """Per-row counts as `hndd summary --json` gives them (one owner: the engine's
        SnapshotSummary), one DataFrame row per file row, with its `row` index (of the file
        as opened: `refresh()` first if the daemon has appended since)."""
        pandas = _pandas()
        command = [self._binary(), "summary", self.path, "--json"] + (["--layer", layer] if layer else []) \
            + (["--run", run] if run else [])
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SnapshotsError(result.stderr.strip() or f"{' '.join(command)} failed")
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        # `hndd summary` prints the selected rows in file order, layer by layer: their indices.
        indices = {name: iter(i for i, r in enumerate(self._layer_rows(name)["run"]) if run is None or r == run)
                   for name in ([layer] if layer else self.layers)}
        for line in lines:
            line.pop("region", None)
            line.pop("netdissect_concept", None)
            line["row"] = next(indices[line["layer"]])
        return pandas.DataFrame(lines)

    # -- helpers -------------------------------------------------------------------------------

    def _group(self, layer: str):
        if layer not in self._rows:
            raise SnapshotsError(f"{self.path}: no layer {layer!r} with rows; layers: {', '.join(self.layers)}")
        return self._file["layers"][layer]

    def _layer_rows(self, layer: str) -> dict:
        self._group(layer)
        return self._rows[layer]

    def _binary(self) -> str:
        for candidate in (self._hndd, os.environ.get("HNDD_BIN"), shutil.which("hndd")):
            if candidate:
                return candidate
        repo = Path(__file__).resolve().parents[3]
        for flavour in ("release", "debug"):
            if (repo / ".build" / flavour / "hndd").exists():
                return str(repo / ".build" / flavour / "hndd")
        raise SnapshotsError("counts need the hndd binary: pass hndd=PATH to snapshots.open or set HNDD_BIN")


def _strings(values) -> List[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _read_rows(dataset, rows: np.ndarray) -> np.ndarray:
    """Rows `rows` (any order) of a dataset, reading runs of consecutive rows as slices."""
    if len(rows) == 0:
        return np.zeros((0,) + dataset.shape[1:], dtype=dataset.dtype)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    out = np.empty((len(rows),) + dataset.shape[1:], dtype=dataset.dtype)
    start = 0
    while start < len(ordered):
        end = start + 1
        while end < len(ordered) and ordered[end] == ordered[end - 1] + 1:
            end += 1
        out[order[start:end]] = dataset[int(ordered[start]):int(ordered[end - 1]) + 1]
        start = end
    return out
