"""Helpers of the `hndd report` tests: reading the numbers the page exposes, computing what they
should be from the snapshot file, and making test data (the real `hndd dissect`, or synthetic docs/4-snapshots.md
§4 files for sizes the engine would take too long to produce in a test). A module of its own, not
conftest.py: several test directories have a conftest, and only one can be imported as `conftest`."""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

REPORT_DIR = Path(__file__).resolve().parent
REPO_ROOT = REPORT_DIR.parents[1]
TEXT = h5py.string_dtype("utf-8")


# ---------------------------------------------------------------------------------------------
# Reading the page: it exposes its numbers as data- attributes


@dataclass
class LayerSection:
    name: str
    units: int
    row: int
    step: int
    complete: bool
    body: str
    stats: dict = field(default_factory=dict)

    def concept_bars(self) -> dict[str, tuple[int, int]]:
        """concept -> (units paired by HND, units labelled by Network Dissection)."""
        return {html.unescape(m.group(1)): (int(m.group(2)), int(m.group(3)))
                for m in re.finditer(r'<g data-concept="([^"]*)" data-units="(\d+)" data-netdissect="(\d+)">', self.body)}

    def significant_stats(self) -> dict[str, int]:
        """The significant counts shown beside the paper's (issue 17)."""
        return {key: int(value.replace(",", "")) for key, value in
                re.findall(r'data-significant="(\w+)"[^>]*>([\d,]+)</b>', self.body)}

    def series(self) -> dict[str, tuple[list[float], list[float]]]:
        """Timeline series key -> (steps, values)."""
        found = {}
        for m in re.finditer(r'data-series="([^"]*)" data-x="([^"]*)" data-values="([^"]*)"', self.body):
            found[html.unescape(m.group(1))] = ([float(v) for v in m.group(2).split()],
                                                [float(v) for v in m.group(3).split()])
        return found

    def unit_rows(self) -> list[int]:
        return [int(u) for u in re.findall(r'<tr(?: class="[^"]*")?><td class="num">(\d+)</td><td class="num">', self.body)]

    def strip_images(self) -> list[int]:
        return [int(i) for i in re.findall(r'<use href="#probe-(\d+)"', self.body)]


class Page:
    def __init__(self, text: str):
        self.text = text
        self.layers: dict[str, LayerSection] = {}
        pattern = re.compile(r'<section id="[^"]*" data-layer="([^"]*)" data-units="(\d+)" data-row="(\d+)" '
                             r'data-step="(-?\d+)" data-complete="([01])">')
        matches = list(pattern.finditer(text))
        for i, m in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            section = LayerSection(html.unescape(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)),
                                   m.group(5) == "1", text[m.start():end])
            for key, value in re.findall(r'data-stat="(\w+)"><b>([\d,]+)</b>', section.body):
                section.stats[key] = int(value.replace(",", ""))
            self.layers[section.name] = section

    def thumbnails(self) -> dict[int, bytes]:
        import base64
        return {int(i): base64.b64decode(data)
                for i, data in re.findall(r'<image id="probe-(\d+)" width="\d+" height="\d+" href="data:image/png;base64,([^"]+)"', self.text)}


# ---------------------------------------------------------------------------------------------
# What the page should say, computed from the snapshot file with NumPy


@dataclass
class Expected:
    interpretable: int
    biased: int
    paired: int
    localised: int
    netdissect: int
    concept_units: dict[str, int]
    concept_netdissect: dict[str, int]
    region_units: dict[str, int]
    subgroup_units: list[int]


def expected_counts(path: Path, layer: str, row: int) -> Expected:
    with h5py.File(path, "r") as f:
        g = f[f"layers/{layer}"]
        biased = g["global_biased"][row].astype(bool)
        paired = g["local_paired"][row].astype(bool)
        region = g["region"][row]
        nd = g["netdissect_concept"][row]
        concepts = [c.decode() if isinstance(c, bytes) else c for c in f["local/concepts"][()]]
        regions = [r.decode() if isinstance(r, bytes) else r for r in f["local/regions"][()]]
    return Expected(
        interpretable=int((biased.any(1) | paired.any(1)).sum()),
        biased=int(biased.any(1).sum()),
        paired=int(paired.any(1).sum()),
        localised=int((region >= 0).sum()),
        netdissect=int((nd >= 0).sum()),
        concept_units={c: int(paired[:, i].sum()) for i, c in enumerate(concepts)},
        concept_netdissect={c: int((nd == i).sum()) for i, c in enumerate(concepts)},
        region_units={r: int((region == i).sum()) for i, r in enumerate(regions)},
        subgroup_units=[int(v) for v in biased.sum(0)],
    )


def row_table(path: Path, layer: str) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        g = f[f"layers/{layer}"]
        return {"step": g["step"][()], "complete": g["complete"][()].astype(bool),
                "run": np.array([r.decode() if isinstance(r, bytes) else r for r in g["run"][()]])}


# ---------------------------------------------------------------------------------------------
# Test data


def add_pixels(dictionary: Path, size: int) -> np.ndarray:
    """Draws each image's present concepts (docs/1-dictionary.md ellipses) as coloured blobs on a face-coloured
    background and stores them as /images/pixels [N, size, size, 3]; returns the pixels."""
    with h5py.File(dictionary, "r+") as f:
        label = f["images/local_label"][()]
        ellipse = f["images/ellipse"][()].astype(np.float64)
        n, l = label.shape
        rng = np.random.default_rng(3)
        palette = rng.integers(40, 230, size=(l, 3))
        centres = (np.arange(size) + 0.5) / size
        px, py = np.meshgrid(centres, centres)
        pixels = np.empty((n, size, size, 3), dtype=np.uint8)
        base = np.array([226, 190, 160], dtype=np.float64)
        for i in range(n):
            image = np.broadcast_to(base * (0.8 + 0.2 * (i % 5) / 4), (size, size, 3)).copy()
            for c in np.flatnonzero(label[i] == 1):
                cx, cy, sxx, sxy, syy = ellipse[i, c]
                det = sxx * syy - sxy * sxy
                if not det > 0:
                    continue
                dx, dy = px - cx, py - cy
                inside = (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / det <= 5.991
                image[inside] = 0.5 * image[inside] + 0.5 * palette[c]
            pixels[i] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        f.create_dataset("images/pixels", data=pixels, chunks=(1, size, size, 3))
    return pixels


def training_activations(source: Path, target: Path, trained: float, seed: int, keep_rows: Optional[int] = None) -> None:
    """A copy of an activations file as if from earlier in training: only the first `trained`
    share of each layer's units keep their maps, the others fire noise, so dissection finds more
    as `trained` grows. `keep_rows` keeps only the first rows, so the pass is partial."""
    rng = np.random.default_rng(seed)
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        for name, group in src["layers"].items():
            maps = group["activations"][()].astype(np.float32)
            ids = group["image_ids"][()]
            kept = int(round(maps.shape[1] * trained))
            maps[:, kept:] = np.abs(rng.standard_normal(maps[:, kept:].shape)).astype(np.float32) * maps.std()
            if keep_rows is not None:
                maps, ids = maps[:keep_rows], ids[:keep_rows]
            dst.create_dataset(f"layers/{name}/activations", data=maps)
            dst.create_dataset(f"layers/{name}/image_ids", data=ids)


@dataclass
class TimelineCase:
    dictionary: Path
    activations: Path
    snapshots: Path
    layers: list[str]
    steps: list[int]
    partial_step: int
    pixels: np.ndarray


# ---------------------------------------------------------------------------------------------
# Synthetic docs/4-snapshots.md files for sizes the real engine would take too long to make in a test


def write_synthetic_snapshots(path: Path, taxonomy_from: Path, layer: str, units: int, rows: int,
                              partial_every: int = 0, seed: int = 0, top_k: int = 8) -> None:
    """A docs/4-snapshots.md file whose rows follow the rules of docs/3-numbers.md (biased iff P ≥ 1/S + 0.05, paired iff
    P > 1.5/K within the unit's region, the baseline label is the best IoU ≥ 0.04) with random
    probabilities; every `partial_every`-th row is partial. Steps are 100·row."""
    rng = np.random.default_rng(seed)
    with h5py.File(taxonomy_from, "r") as d:
        taxonomy = {name: d[name][()] for name in ("global/categories", "global/subgroups", "global/subgroup_category",
                                                     "local/regions", "local/concepts", "local/concept_region",
                                                     "local/concept_type")}
        n_images = d["images/local_label"].shape[0]
    subgroup_category = taxonomy["global/subgroup_category"]
    concept_region = taxonomy["local/concept_region"]
    g, l, r = len(subgroup_category), len(concept_region), len(taxonomy["local/regions"])
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "hndd-snapshots"
        f.attrs["version"] = np.int32(1)
        for name, values in taxonomy.items():
            if values.dtype.kind in "OSU":
                f.create_dataset(name, data=np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object), dtype=TEXT)
            else:
                f.create_dataset(name, data=values)
        group = f.create_group(f"layers/{layer}")
        group.attrs["units"] = np.int64(units)
        complete = np.ones(rows, dtype=np.uint8)
        if partial_every:
            complete[partial_every - 1::partial_every] = 0
        group.create_dataset("run", data=np.array(["long"] * rows, dtype=object), dtype=TEXT)
        group.create_dataset("step", data=np.arange(rows, dtype=np.int64) * 100)
        group.create_dataset("images_total", data=np.full(rows, n_images, dtype=np.int64))
        group.create_dataset("images_seen", data=np.where(complete == 1, n_images, n_images // 2).astype(np.int64))
        group.create_dataset("complete", data=complete)
        group.create_dataset("time_unix", data=1.7e9 + 60.0 * np.arange(rows))
        datasets = {
            "threshold": group.create_dataset("threshold", (rows, units), np.float32, chunks=(1, units), compression="gzip", compression_opts=1),
            "global_prob": group.create_dataset("global_prob", (rows, units, g), np.float32, chunks=(1, units, g), compression="gzip", compression_opts=1),
            "global_biased": group.create_dataset("global_biased", (rows, units, g), np.uint8, chunks=(1, units, g), compression="gzip", compression_opts=1),
            "iou": group.create_dataset("iou", (rows, units, l), np.float32, chunks=(1, units, l), compression="gzip", compression_opts=1),
            "region": group.create_dataset("region", (rows, units), np.int32, chunks=(1, units), compression="gzip", compression_opts=1),
            "local_prob": group.create_dataset("local_prob", (rows, units, l), np.float32, chunks=(1, units, l), compression="gzip", compression_opts=1),
            "local_paired": group.create_dataset("local_paired", (rows, units, l), np.uint8, chunks=(1, units, l), compression="gzip", compression_opts=1),
            "netdissect_concept": group.create_dataset("netdissect_concept", (rows, units), np.int32, chunks=(1, units), compression="gzip", compression_opts=1),
            "top_images": group.create_dataset("top_images", (rows, units, top_k), np.int64, chunks=(1, units, top_k), compression="gzip", compression_opts=1),
        }
        sizes = np.bincount(subgroup_category)
        region_sizes = np.bincount(concept_region, minlength=r)
        thresholds = 1.0 / sizes[subgroup_category] + 0.05
        # Each unit has fixed preferences; training sharpens them (plus a little noise per pass),
        # so the timeline moves smoothly, as a real one does.
        global_logits = rng.standard_normal((units, g))
        local_logits = rng.standard_normal((units, l))
        iou_base = rng.beta(0.6, 6.0, size=(units, l)) * rng.uniform(0, 1, size=(units, 1)) ** 2
        for t in range(rows):
            progress = t / max(rows - 1, 1)
            logits = global_logits * (0.03 + 0.1 * progress) + 0.05 * rng.standard_normal((units, g))
            global_prob = np.zeros((units, g), np.float32)
            for category in range(len(sizes)):
                members = np.flatnonzero(subgroup_category == category)
                e = np.exp(logits[:, members])
                global_prob[:, members] = e / e.sum(1, keepdims=True)
            iou = np.clip(iou_base * (0.3 + 0.7 * progress) + 0.005 * rng.standard_normal((units, l)), 0, 1).astype(np.float32)
            best = iou.argmax(1)
            localised = iou[np.arange(units), best] >= 0.04
            region = np.where(localised, concept_region[best], -1).astype(np.int32)
            local_prob = np.zeros((units, l), np.float32)
            for u in np.flatnonzero(localised):
                members = np.flatnonzero(concept_region == region[u])
                e = np.exp(local_logits[u, members] * (0.2 + 1.0 * progress))
                local_prob[u, members] = e / e.sum()
            paired = local_prob > (1.5 / region_sizes[concept_region])[None, :]
            datasets["threshold"][t] = rng.uniform(0.1, 5.0, units).astype(np.float32)
            datasets["global_prob"][t] = global_prob
            datasets["global_biased"][t] = (global_prob >= thresholds[None, :]).astype(np.uint8)
            datasets["iou"][t] = iou
            datasets["region"][t] = region
            datasets["local_prob"][t] = local_prob
            datasets["local_paired"][t] = paired.astype(np.uint8)
            datasets["netdissect_concept"][t] = np.where(localised, best, -1).astype(np.int32)
            datasets["top_images"][t] = np.stack([rng.choice(n_images, size=top_k, replace=False) for _ in range(units)])


def chromium_binary() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None
