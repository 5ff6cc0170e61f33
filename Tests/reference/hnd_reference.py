"""Exact two-pass NumPy reference for Hierarchical Network Dissection (docs/3-numbers.md).

Written to be obviously correct rather than fast, and independent of the Swift engine:
it keeps every activation map, computes the threshold with ``np.quantile`` over all raw values,
and upsamples every map it needs in full. Only the chunking over images (so that
2,000 × 64 × 112² upsampled maps are never in memory at once) is an optimisation.

Entry point: :func:`dissect_reference`, returning one snapshot row keyed like docs/4-snapshots.md.
It accepts files (docs/1-dictionary.md dictionary, docs/2-activations.md activations) or in-memory arrays; passing only
some images gives the *partial* snapshot over those images.

Masks are docs/1-dictionary.md's ellipses (version 1) or, when a version 2 file holds ``/images/masks``, its
bit-packed rasters, kept packed and unpacked with ``np.unpackbits`` a chunk of images at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Union

import h5py
import numpy as np
from scipy.stats import rankdata

DEFAULT_QUANTILE = 0.005
DEFAULT_IOU_FLOOR = 0.04
DEFAULT_ELLIPSE_CHI2 = 5.991
#: P_s >= 1/S_g + BIAS_MARGIN marks a unit biased toward subgroup s (Stage I).
BIAS_MARGIN = 0.05
#: P_c > PAIRING_FACTOR / K_r pairs a unit with local concept c (Stage III).
PAIRING_FACTOR = 1.5
#: Bytes of float32 upsampled maps processed at once in Stage II; a few MB stays in cache and
#: is faster than big chunks (2,000 × 64 × 7×7 → 112² takes about 12 s, 260 MB).
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
#: docs/1-dictionary.md versions: 1 (ellipses), 2 (raster masks may be present, and then define every mask).
SUPPORTED_VERSIONS = (1, 2)
#: Images whose packed masks are read and checked at once.
MASK_CHUNK_IMAGES = 256

SNAPSHOT_ROW_KEYS = (
    "threshold",
    "global_prob",
    "global_biased",
    "iou",
    "region",
    "local_prob",
    "local_paired",
    "netdissect_concept",
    "images_seen",
    "images_total",
)


class ReferenceInputError(ValueError):
    """Input that docs/1-dictionary.md/§2 does not allow; the message names the file, dataset and index."""


@dataclasses.dataclass(frozen=True)
class FaceDictionary:
    """The parts of a docs/1-dictionary.md Face Dictionary that dissection uses (pixels are not needed)."""

    categories: list[str]
    subgroups: list[str]
    subgroup_category: np.ndarray  # [G] int
    regions: list[str]
    concepts: list[str]
    concept_region: np.ndarray  # [L] int
    concept_type: np.ndarray  # [L] int
    global_label: np.ndarray  # [N, Gc] int32, global subgroup index or -1
    local_label: np.ndarray  # [N, L] int8: 1 present, 0 absent, -1 not annotated
    ellipse: np.ndarray  # [N, L, 5] float32: cx, cy, sxx, sxy, syy
    mask_size: int
    ellipse_chi2: float = DEFAULT_ELLIPSE_CHI2
    source: str = "<in-memory dictionary>"
    version: int = 1
    masks: Optional[np.ndarray] = None  # [N, L, S, ceil(S/8)] uint8, bit-packed rows (version 2)
    image_sources: Optional[list[str]] = None  # /images/source, each image's path

    def image_name(self, image: int) -> str:
        """'image 17', with its /images/source path when known: for messages."""
        if self.image_sources is not None and self.image_sources[image]:
            return f"image {image} ({self.image_sources[image]})"
        return f"image {image}"

    @property
    def n_images(self) -> int:
        return int(self.local_label.shape[0])

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> "FaceDictionary":
        """Builds a dictionary from a mapping with this class's field names (as generate.py returns)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {key: mapping[key] for key in fields if key in mapping}
        dictionary = cls(
            categories=[str(s) for s in values["categories"]],
            subgroups=[str(s) for s in values["subgroups"]],
            subgroup_category=np.asarray(values["subgroup_category"], dtype=np.int64),
            regions=[str(s) for s in values["regions"]],
            concepts=[str(s) for s in values["concepts"]],
            concept_region=np.asarray(values["concept_region"], dtype=np.int64),
            concept_type=np.asarray(values.get("concept_type", np.zeros(len(values["concepts"]))), dtype=np.int64),
            global_label=np.asarray(values["global_label"], dtype=np.int64),
            local_label=np.asarray(values["local_label"], dtype=np.int8),
            ellipse=np.asarray(values["ellipse"], dtype=np.float32),
            mask_size=int(values["mask_size"]),
            ellipse_chi2=float(values.get("ellipse_chi2", DEFAULT_ELLIPSE_CHI2)),
            source=str(values.get("source", "<in-memory dictionary>")),
            version=int(values.get("version", 1)),
            masks=None if values.get("masks") is None else np.asarray(values["masks"], dtype=np.uint8),
            image_sources=None if values.get("image_sources") is None else [str(s) for s in values["image_sources"]],
        )
        dictionary.validate()
        return dictionary

    def validate(self) -> None:
        """Raises ReferenceInputError for shapes and label indices that docs/1-dictionary.md rules out."""
        n_categories, n_subgroups = len(self.categories), len(self.subgroups)
        n_regions, n_concepts = len(self.regions), len(self.concepts)
        where = self.source

        def fail(dataset: str, problem: str) -> None:
            raise ReferenceInputError(f"{where}: {dataset}: {problem}")

        if self.subgroup_category.shape != (n_subgroups,):
            fail("/global/subgroup_category", f"shape {self.subgroup_category.shape}, expected ({n_subgroups},)")
        bad = np.nonzero((self.subgroup_category < 0) | (self.subgroup_category >= n_categories))[0]
        if bad.size:
            fail("/global/subgroup_category", f"index {bad[0]} is {self.subgroup_category[bad[0]]}, not a category")
        if self.concept_region.shape != (n_concepts,):
            fail("/local/concept_region", f"shape {self.concept_region.shape}, expected ({n_concepts},)")
        bad = np.nonzero((self.concept_region < 0) | (self.concept_region >= n_regions))[0]
        if bad.size:
            fail("/local/concept_region", f"index {bad[0]} is {self.concept_region[bad[0]]}, not a region")
        n_images = self.n_images
        if self.global_label.shape != (n_images, n_categories):
            fail("/images/global_label", f"shape {self.global_label.shape}, expected ({n_images}, {n_categories})")
        if self.local_label.shape != (n_images, n_concepts):
            fail("/images/local_label", f"shape {self.local_label.shape}, expected ({n_images}, {n_concepts})")
        if self.ellipse.shape != (n_images, n_concepts, 5):
            fail("/images/ellipse", f"shape {self.ellipse.shape}, expected ({n_images}, {n_concepts}, 5)")
        for category in range(n_categories):
            labels = self.global_label[:, category]
            labelled = labels >= 0
            wrong = labelled & (
                (labels >= n_subgroups) | (self.subgroup_category[np.clip(labels, 0, max(n_subgroups - 1, 0))] != category)
            )
            wrong |= labels < -1
            if wrong.any():
                image = int(np.nonzero(wrong)[0][0])
                fail(
                    "/images/global_label",
                    f"image {image}, category {self.categories[category]!r}: {labels[image]} is not a subgroup of that category",
                )
        bad_local = ~np.isin(self.local_label, (-1, 0, 1))
        if bad_local.any():
            image, concept = (int(i) for i in np.argwhere(bad_local)[0])
            fail("/images/local_label", f"image {image}, concept {concept}: {self.local_label[image, concept]} is not -1, 0 or 1")
        if self.version not in SUPPORTED_VERSIONS:
            fail("version", f"{self.version} is not one of {SUPPORTED_VERSIONS}")
        if self.image_sources is not None and len(self.image_sources) != n_images:
            fail("/images/source", f"{len(self.image_sources)} names for {n_images} images")
        if self.masks is not None:
            self.validate_masks(fail)
            return  # rasters define the masks: the ellipses are only informative
        present = self.local_label == 1
        not_finite = present & ~np.isfinite(self.ellipse).all(axis=2)
        if not_finite.any():
            image, concept = (int(i) for i in np.argwhere(not_finite)[0])
            fail("/images/ellipse", f"image {image}, concept {self.concepts[concept]!r} is present but its ellipse is not finite")
        if self.mask_size < 1:
            fail("mask_size", f"{self.mask_size} is not a positive grid size")

    def validate_masks(self, fail) -> None:
        """docs/1-dictionary.md raster rules: version 2, shape [N, L, S, ceil(S/8)] uint8, padding bits 0, and
        bits only where local_label = 1. Checked a chunk of images at a time."""
        expected = (self.n_images, len(self.concepts), self.mask_size, (self.mask_size + 7) // 8)
        if self.version < 2:
            fail("/images/masks", f"raster masks in a version {self.version} dictionary; they need version 2")
        if self.masks.shape != expected or self.masks.dtype != np.uint8:
            fail("/images/masks", f"shape {self.masks.shape} {self.masks.dtype}, expected {expected} uint8")
        for start in range(0, self.n_images, MASK_CHUNK_IMAGES):
            bits = np.unpackbits(self.masks[start:start + MASK_CHUNK_IMAGES], axis=-1, bitorder="big")
            padding = bits[..., self.mask_size:].any(axis=(2, 3))
            if padding.any():
                image, concept = (int(i) for i in np.argwhere(padding)[0])
                fail("/images/masks", f"{self.image_name(start + image)}, concept {self.concepts[concept]!r}: padding bits are set")
            labels = self.local_label[start:start + MASK_CHUNK_IMAGES]
            stray = bits[..., :self.mask_size].any(axis=(2, 3)) & (labels != 1)
            if stray.any():
                image, concept = (int(i) for i in np.argwhere(stray)[0])
                fail("/images/masks", f"{self.image_name(start + image)}, concept {self.concepts[concept]!r}: mask pixels set "
                                      f"where local_label is {labels[image, concept]}")

    def concept_masks(self, images: np.ndarray) -> np.ndarray:
        """Boolean masks [B, L, S*S] of dictionary images ``images``: the rasters when present, else
        the ellipses of the present concepts."""
        if self.masks is not None:
            bits = np.unpackbits(self.masks[images], axis=-1, bitorder="big")[..., :self.mask_size]
            return bits.reshape(len(images), len(self.concepts), -1).astype(bool)
        return concept_masks(self.ellipse[images], self.local_label[images], self.mask_size, self.ellipse_chi2)


def _read_strings(file: h5py.File, name: str) -> list[str]:
    return [str(s) for s in file[name].asstr()[...]]


def load_dictionary(path: Union[str, Path]) -> FaceDictionary:
    """Reads a docs/1-dictionary.md dictionary file."""
    path = Path(path)
    with h5py.File(path, "r") as file:
        required = (
            "/global/categories", "/global/subgroups", "/global/subgroup_category",
            "/local/regions", "/local/concepts", "/local/concept_region",
            "/images/global_label", "/images/local_label", "/images/ellipse",
        )
        for name in required:
            if name not in file:
                raise ReferenceInputError(f"{path}: {name}: dataset missing")
        if "mask_size" not in file.attrs:
            raise ReferenceInputError(f"{path}: attribute mask_size missing on /")
        version = int(file.attrs.get("version", 1))
        if version not in SUPPORTED_VERSIONS:
            raise ReferenceInputError(f"{path}: attribute version on /: {version} is not one of {SUPPORTED_VERSIONS}")
        masks = None
        if "/images/masks" in file:
            dataset = file["/images/masks"]
            if dataset.dtype != np.uint8:
                raise ReferenceInputError(f"{path}: /images/masks: dtype {dataset.dtype}, expected uint8")
            masks = np.empty(dataset.shape, np.uint8)
            for start in range(0, dataset.shape[0], MASK_CHUNK_IMAGES):
                masks[start:start + MASK_CHUNK_IMAGES] = dataset[start:start + MASK_CHUNK_IMAGES]
        dictionary = FaceDictionary(
            categories=_read_strings(file, "/global/categories"),
            subgroups=_read_strings(file, "/global/subgroups"),
            subgroup_category=file["/global/subgroup_category"][...].astype(np.int64),
            regions=_read_strings(file, "/local/regions"),
            concepts=_read_strings(file, "/local/concepts"),
            concept_region=file["/local/concept_region"][...].astype(np.int64),
            concept_type=(file["/local/concept_type"][...].astype(np.int64)
                          if "/local/concept_type" in file else np.zeros(0, np.int64)),
            global_label=file["/images/global_label"][...].astype(np.int64),
            local_label=file["/images/local_label"][...].astype(np.int8),
            ellipse=file["/images/ellipse"][...].astype(np.float32),
            mask_size=int(file.attrs["mask_size"]),
            ellipse_chi2=float(file.attrs.get("ellipse_chi2", DEFAULT_ELLIPSE_CHI2)),
            source=str(path),
            version=version,
            masks=masks,
            image_sources=_read_strings(file, "/images/source") if "/images/source" in file else None,
        )
    dictionary.validate()
    return dictionary


def load_activations(path: Union[str, Path], layer: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads ``/layers/<layer>`` of a docs/2-activations.md file: float32 maps [M, C, h, w] and int64 image ids [M]."""
    path = Path(path)
    with h5py.File(path, "r") as file:
        group_name = f"/layers/{layer}"
        if group_name not in file or "activations" not in file[group_name]:
            raise ReferenceInputError(f"{path}: {group_name}/activations: no such layer")
        maps = file[group_name]["activations"][...].astype(np.float32)
        if "image_ids" in file[group_name]:
            image_ids = file[group_name]["image_ids"][...].astype(np.int64)
        else:
            image_ids = np.arange(maps.shape[0], dtype=np.int64)
    return maps, image_ids


def list_layers(path: Union[str, Path]) -> list[str]:
    """Names of every layer (a group holding ``activations``) under /layers, nested names joined by '/'."""
    names: list[str] = []
    with h5py.File(path, "r") as file:
        layers = file.get("/layers")
        if layers is None:
            return names

        def visit(name: str, item: Any) -> None:
            if isinstance(item, h5py.Group) and "activations" in item:
                names.append(name)

        layers.visititems(visit)
    return names


# ---------------------------------------------------------------------------------------------
# Geometry: concept masks and bilinear upsampling
# ---------------------------------------------------------------------------------------------

def concept_masks(ellipse: np.ndarray, local_label: np.ndarray, mask_size: int, chi2: float) -> np.ndarray:
    """Boolean masks [B, L, S*S] (row-major pixels) of the present concepts of B images.

    Pixel (i, j) has centre ((j+0.5)/S, (i+0.5)/S) and is inside iff the squared Mahalanobis
    distance, computed in float64 from the float32 ellipse, is <= chi2. A covariance that is
    not positive definite (det <= 0, or sxx <= 0) gives an empty mask.
    """
    n_images, n_concepts = local_label.shape
    pixels = mask_size * mask_size
    masks = np.zeros((n_images, n_concepts, pixels), dtype=bool)
    centres = (np.arange(mask_size, dtype=np.float64) + 0.5) / mask_size
    pixel_x = np.tile(centres, mask_size)  # column index j varies fastest
    pixel_y = np.repeat(centres, mask_size)
    params = ellipse.astype(np.float64)
    cx, cy, sxx, sxy, syy = (params[..., k] for k in range(5))
    with np.errstate(invalid="ignore"):
        det = sxx * syy - sxy * sxy
        drawable = (local_label == 1) & (det > 0) & (sxx > 0)
    images, concepts = np.nonzero(drawable)
    if images.size == 0:
        return masks
    dx = pixel_x[None, :] - cx[images, concepts][:, None]
    dy = pixel_y[None, :] - cy[images, concepts][:, None]
    a = sxx[images, concepts][:, None]
    b = sxy[images, concepts][:, None]
    c = syy[images, concepts][:, None]
    distance = (c * dx * dx - 2 * b * dx * dy + a * dy * dy) / det[images, concepts][:, None]
    masks[images, concepts] = distance <= chi2
    return masks


@dataclasses.dataclass(frozen=True)
class LinearSourceIndex:
    """For each output position: the two source indices and their float32 weights."""

    low: np.ndarray
    high: np.ndarray
    weight_low: np.ndarray
    weight_high: np.ndarray


def linear_source_index(in_size: int, out_size: int) -> LinearSourceIndex:
    """torch ``interpolate(mode='bilinear', align_corners=False)`` indices and weights along one axis.

    src = (dst + 0.5) * (in/out) - 0.5 in float32, clamped below at 0; i0 = floor(src),
    i1 = min(i0 + 1, in - 1), l1 = src - i0, l0 = 1 - l1.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    destination = np.arange(out_size, dtype=np.float32)
    source = (destination + np.float32(0.5)) * scale - np.float32(0.5)
    source = np.maximum(source, np.float32(0.0))
    low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    weight_high = (source - low.astype(np.float32)).astype(np.float32)
    weight_low = (np.float32(1.0) - weight_high).astype(np.float32)
    return LinearSourceIndex(low, high, weight_low, weight_high)


def upsample_bilinear(maps: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
    """Upsamples float32 maps [..., h, w] to [..., out_height, out_width] like torch, in float32.

    value = l0y*(l0x*a[y0,x0] + l1x*a[y0,x1]) + l1y*(l0x*a[y1,x0] + l1x*a[y1,x1]);
    interpolating along x first and then along y performs exactly these operations.
    """
    maps = np.asarray(maps, dtype=np.float32)
    rows = linear_source_index(maps.shape[-2], out_height)
    cols = linear_source_index(maps.shape[-1], out_width)
    along_x = cols.weight_low * maps[..., cols.low] + cols.weight_high * maps[..., cols.high]
    top = along_x[..., rows.low, :]
    bottom = along_x[..., rows.high, :]
    return rows.weight_low[:, None] * top + rows.weight_high[:, None] * bottom


# ---------------------------------------------------------------------------------------------
# The three stages
# ---------------------------------------------------------------------------------------------

def average_ranks(values: np.ndarray) -> np.ndarray:
    """Column-wise ascending ranks starting at 1; ties share the average of their ranks."""
    return rankdata(values, method="average", axis=0).astype(np.float64)


def is_biased(probability: np.ndarray, n_subgroups: int) -> np.ndarray:
    """Stage I rule: P_s >= 1/S_g + 0.05."""
    return np.asarray(probability, dtype=np.float64) >= 1.0 / n_subgroups + BIAS_MARGIN


def is_paired(probability: np.ndarray, n_region_concepts: Union[int, np.ndarray]) -> np.ndarray:
    """Stage III rule: P_c > 1.5 / K_r (strict)."""
    return np.asarray(probability, dtype=np.float64) > PAIRING_FACTOR / np.asarray(n_region_concepts, dtype=np.float64)


def _concentration_probabilities(
    max_score: np.ndarray, normalise_over: np.ndarray, rank_over: np.ndarray, members: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """CS_k = sum_{n in rank set, n member of k} R_n * MS'_n / N_k, for every unit at once.

    max_score [N, C]; normalise_over, rank_over: boolean image masks [N];
    members [N, K] boolean (every member must lie in rank_over). Returns CS [K, C] and the
    mask of units whose MS varies over normalise_over (others must get probability 0).
    """
    n_units = max_score.shape[1]
    n_groups = members.shape[1]
    if not normalise_over.any() or not rank_over.any():
        return np.zeros((n_groups, n_units)), np.zeros(n_units, dtype=bool)
    scores = max_score.astype(np.float64)
    low = scores[normalise_over].min(axis=0)
    spread = scores[normalise_over].max(axis=0) - low
    varying = spread > 0
    ranked = scores[rank_over]
    normalised = (ranked - low) / np.where(varying, spread, 1.0)
    weighted = average_ranks(ranked) * normalised  # [n_rank, C]
    membership = members[rank_over].astype(np.float64)  # [n_rank, K]
    counts = membership.sum(axis=0)
    concentration = (membership.T @ weighted) / np.where(counts > 0, counts, 1.0)[:, None]
    concentration[counts == 0] = 0.0
    return concentration, varying


def _normalise_to_probabilities(concentration: np.ndarray, varying: np.ndarray) -> np.ndarray:
    """P_k = CS_k / sum CS (0 when the sum is 0, and 0 for units whose MS did not vary). [K, C]."""
    total = concentration.sum(axis=0)
    probability = np.where(total > 0, concentration / np.where(total > 0, total, 1.0), 0.0)
    probability[:, ~varying] = 0.0
    return probability


def stage_one(max_score: np.ndarray, global_label: np.ndarray, subgroup_category: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global concepts: probabilities [C, G] float64 and biased flags [C, G] bool."""
    n_units = max_score.shape[1]
    n_subgroups = len(subgroup_category)
    probability = np.zeros((n_units, n_subgroups))
    biased = np.zeros((n_units, n_subgroups), dtype=bool)
    for category in range(global_label.shape[1]):
        subgroups = np.nonzero(subgroup_category == category)[0]
        if subgroups.size == 0:
            continue
        labels = global_label[:, category]
        labelled = labels >= 0
        members = labelled[:, None] & (labels[:, None] == subgroups[None, :])
        concentration, varying = _concentration_probabilities(max_score, labelled, labelled, members)
        category_probability = _normalise_to_probabilities(concentration, varying).T  # [C, S_g]
        probability[:, subgroups] = category_probability
        biased[:, subgroups] = is_biased(category_probability, subgroups.size)
    return probability, biased


def activation_thresholds(local_maps: np.ndarray, quantile: float) -> np.ndarray:
    """T_u: numpy's linear (1 - q) quantile of all raw values of unit u; float32 [C].

    local_maps [n, C, h, w] holds only images of the local set D_L. NaN when that set is empty.
    """
    n_units = local_maps.shape[1]
    thresholds = np.full(n_units, np.nan, dtype=np.float32)
    if local_maps.shape[0] == 0:
        return thresholds
    block = max(1, (64 * 1024 * 1024) // max(1, 8 * local_maps.shape[0] * local_maps.shape[2] * local_maps.shape[3]))
    for start in range(0, n_units, block):
        values = local_maps[:, start:start + block].astype(np.float64)
        values = np.moveaxis(values, 1, 0).reshape(values.shape[1], -1)
        thresholds[start:start + block] = np.quantile(values, 1.0 - quantile, axis=1).astype(np.float32)
    return thresholds


@dataclasses.dataclass(frozen=True)
class OverlapCounts:
    """Pixel counts summed over images: everything Stage II needs. All float64 holding integers."""

    intersection: np.ndarray  # [C, L] sum_n |M_nu ∩ L_nc|
    activation_in_concept_set: np.ndarray  # [C, L] sum_{n in D_c} |M_nu|
    concept_area: np.ndarray  # [L] sum_n |L_nc|

    def iou(self) -> np.ndarray:
        union = self.activation_in_concept_set + self.concept_area[None, :] - self.intersection
        return np.where(union > 0, self.intersection / np.where(union > 0, union, 1.0), 0.0)


def overlap_counts(
    local_maps: np.ndarray,
    local_label: np.ndarray,
    ellipse: Optional[np.ndarray],
    thresholds: np.ndarray,
    mask_size: int,
    chi2: float,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    masks_of: Optional[Any] = None,
) -> OverlapCounts:
    """Counts |M|, |L| and |M∩L| over the local set, a few images at a time.

    local_maps [n, C, h, w] float32 with local_label [n, L] and ellipse [n, L, 5] of the same images;
    or, instead of ellipses, ``masks_of(start, stop)`` giving the boolean masks [k, L, S*S] of rows
    start..stop (raster dictionaries).
    """
    n_images, n_units = local_maps.shape[:2]
    n_concepts = local_label.shape[1]
    pixels = mask_size * mask_size
    intersection = np.zeros((n_units, n_concepts))
    activation_area = np.zeros((n_images, n_units))
    concept_area = np.zeros(n_concepts)
    chunk = max(1, chunk_bytes // max(1, n_units * pixels * 4))
    for start in range(0, n_images, chunk):
        stop = min(n_images, start + chunk)
        upsampled = upsample_bilinear(local_maps[start:stop], mask_size, mask_size)
        active = (upsampled > thresholds[None, :, None, None]).reshape(stop - start, n_units, pixels)
        del upsampled
        activation_area[start:stop] = active.sum(axis=2)
        if masks_of is not None:
            concept = masks_of(start, stop)
        else:
            concept = concept_masks(ellipse[start:stop], local_label[start:stop], mask_size, chi2)
        concept_area += concept.sum(axis=(0, 2))
        for image in range(stop - start):
            # Only units with some active pixel and concepts with some mask pixel can overlap;
            # 0/1 float32 products count pixels exactly (sums stay far below 2^24).
            units = np.flatnonzero(activation_area[start + image])
            concepts = np.flatnonzero(concept[image].any(axis=1))
            if units.size and concepts.size:
                overlap = active[image, units].astype(np.float32) @ concept[image, concepts].astype(np.float32).T
                intersection[np.ix_(units, concepts)] += overlap
    annotated = (local_label >= 0).astype(np.float64)  # [n, L]: membership of D_c
    activation_in_concept_set = activation_area.T @ annotated
    return OverlapCounts(intersection, activation_in_concept_set, concept_area)


def stage_two_labels(iou: np.ndarray, concept_region: np.ndarray, iou_floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Region [C] (-1 unlocalised) and Network Dissection concept [C] (-1 none) from IoU [C, L]."""
    n_units = iou.shape[0]
    if iou.shape[1] == 0:
        return np.full(n_units, -1, np.int32), np.full(n_units, -1, np.int32)
    best = np.argmax(iou, axis=1)  # first maximum on ties
    localised = iou[np.arange(n_units), best] >= iou_floor
    region = np.where(localised, concept_region[best], -1).astype(np.int32)
    concept = np.where(localised, best, -1).astype(np.int32)
    return region, concept


def stage_three(
    max_score: np.ndarray,
    local_label: np.ndarray,
    concept_region: np.ndarray,
    n_regions: int,
    iou: np.ndarray,
    region: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Local concepts within each unit's region: probabilities [C, L] float64 and paired flags [C, L]."""
    n_units, n_concepts = iou.shape
    probability = np.zeros((n_units, n_concepts))
    local_set = (local_label >= 0).any(axis=1)
    present = local_label == 1
    concepts_per_region = np.bincount(concept_region, minlength=n_regions)
    for r in range(n_regions):
        units = np.nonzero(region == r)[0]
        concepts = np.nonzero(concept_region == r)[0]
        if units.size == 0 or concepts.size == 0:
            continue
        region_set = present[:, concepts].any(axis=1)
        concentration, varying = _concentration_probabilities(
            max_score[:, units], local_set, region_set, present[:, concepts]
        )
        concentration = concentration * iou[np.ix_(units, concepts)].T
        probability[np.ix_(units, concepts)] = _normalise_to_probabilities(concentration, varying).T
    paired = is_paired(probability, concepts_per_region[concept_region][None, :])
    return probability, paired


# ---------------------------------------------------------------------------------------------
# Whole dissection
# ---------------------------------------------------------------------------------------------

def dissect_arrays(
    dictionary: FaceDictionary,
    maps: np.ndarray,
    image_ids: Optional[np.ndarray] = None,
    quantile: float = DEFAULT_QUANTILE,
    iou_floor: float = DEFAULT_IOU_FLOOR,
    images_total: Optional[int] = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> dict[str, Any]:
    """One snapshot row for activation maps [M, C, h, w] of dictionary images ``image_ids`` [M].

    Rows may come in any order; passing a subset of images gives the partial snapshot over it.
    ``images_total`` defaults to the number of dictionary images.
    """
    maps = np.asarray(maps)
    if maps.ndim != 4:
        raise ReferenceInputError(f"activations: shape {maps.shape}, expected [M, C, h, w]")
    maps = maps.astype(np.float32, copy=False)
    n_rows, n_units = maps.shape[:2]
    if image_ids is None:
        image_ids = np.arange(n_rows, dtype=np.int64)
    image_ids = np.asarray(image_ids, dtype=np.int64)
    if image_ids.shape != (n_rows,):
        raise ReferenceInputError(f"image_ids: shape {image_ids.shape}, expected ({n_rows},)")
    out_of_range = np.nonzero((image_ids < 0) | (image_ids >= dictionary.n_images))[0]
    if out_of_range.size:
        raise ReferenceInputError(
            f"image_ids: row {out_of_range[0]} is image {image_ids[out_of_range[0]]}, dictionary has {dictionary.n_images}"
        )
    unique, counts = np.unique(image_ids, return_counts=True)
    if (counts > 1).any():
        raise ReferenceInputError(f"image_ids: image {unique[counts > 1][0]} appears more than once")
    if not np.isfinite(maps).all():
        row = int(np.argwhere(~np.isfinite(maps))[0][0])
        raise ReferenceInputError(f"activations: row {row} (image {image_ids[row]}) holds NaN or infinite values")

    global_label = dictionary.global_label[image_ids]
    local_label = dictionary.local_label[image_ids]
    ellipse = dictionary.ellipse[image_ids]
    max_score = maps.reshape(n_rows, n_units, -1).max(axis=2) if maps.size else np.zeros((n_rows, n_units), np.float32)

    global_prob, global_biased = stage_one(max_score, global_label, dictionary.subgroup_category)

    local_rows = np.nonzero((local_label >= 0).any(axis=1))[0]
    local_maps = maps[local_rows]
    thresholds = activation_thresholds(local_maps, quantile)
    local_images = image_ids[local_rows]
    counts = overlap_counts(
        local_maps, local_label[local_rows], ellipse[local_rows], thresholds,
        dictionary.mask_size, dictionary.ellipse_chi2, chunk_bytes,
        masks_of=None if dictionary.masks is None else (lambda a, b: dictionary.concept_masks(local_images[a:b])),
    )
    iou = counts.iou()
    region, netdissect_concept = stage_two_labels(iou, dictionary.concept_region, iou_floor)

    local_prob, local_paired = stage_three(
        max_score, local_label, dictionary.concept_region, len(dictionary.regions), iou, region
    )
    row = {
        "threshold": thresholds.astype(np.float32),
        "global_prob": global_prob.astype(np.float32),
        "global_biased": global_biased.astype(np.uint8),
        "iou": iou.astype(np.float32),
        "region": region.astype(np.int32),
        "local_prob": local_prob.astype(np.float32),
        "local_paired": local_paired.astype(np.uint8),
        "netdissect_concept": netdissect_concept.astype(np.int32),
        "images_seen": int(n_rows),
        "images_total": int(dictionary.n_images if images_total is None else images_total),
    }
    if row["images_seen"] == row["images_total"]:
        # Complete passes carry the significance tests (issue 17); partial ones skip them.
        import significance_reference
        labels = (global_label, dictionary.subgroup_category, local_label, dictionary.concept_region, len(dictionary.regions))
        exact = dict(row, global_prob=global_prob, local_prob=local_prob)  # float64, as the engine tests them
        row.update(significance_reference.significance(max_score, labels, exact, iou64=iou))
    return row


def dissect_reference(
    dictionary_path: Union[str, Path, FaceDictionary, Mapping[str, Any]],
    activations_path: Union[str, Path, np.ndarray],
    layer: Optional[str] = None,
    quantile: float = DEFAULT_QUANTILE,
    iou_floor: float = DEFAULT_IOU_FLOOR,
    *,
    image_ids: Optional[np.ndarray] = None,
    images_total: Optional[int] = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> dict[str, Any]:
    """Exact two-pass HND of one layer, as one docs/4-snapshots.md snapshot row.

    ``dictionary_path``: a docs/1-dictionary.md file, a FaceDictionary, or a mapping with FaceDictionary's field
    names. ``activations_path``: a docs/2-activations.md file (then ``layer`` is required and ``image_ids`` comes
    from the file) or float maps [M, C, h, w] with optional ``image_ids`` (default 0..M-1).
    """
    if isinstance(dictionary_path, FaceDictionary):
        dictionary = dictionary_path
    elif isinstance(dictionary_path, Mapping):
        dictionary = FaceDictionary.from_mapping(dictionary_path)
    else:
        dictionary = load_dictionary(dictionary_path)
    if isinstance(activations_path, np.ndarray):
        maps = activations_path
    else:
        if layer is None:
            raise ReferenceInputError(f"{activations_path}: a layer name is needed to read activations from a file")
        maps, file_ids = load_activations(activations_path, layer)
        if image_ids is None:
            image_ids = file_ids
    return dissect_arrays(dictionary, maps, image_ids, quantile, iou_floor, images_total, chunk_bytes)
