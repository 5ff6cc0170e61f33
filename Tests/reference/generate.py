"""Generates a synthetic Face Dictionary (docs/1-dictionary.md) and activations (docs/2-activations.md) worth dissecting.

The data is built so that dissection has something to find: each image has a face whose
concepts (eyes, eyeglasses, AU12, …) sit at jittered positions, and most units respond to
something real — a *local* unit fires where one concept's ellipse lies when that concept is
present, a *global* unit fires more strongly for one subgroup (e.g. female), a *mixed* unit
does both. The rest are noise or dead (constant) units. Options add the awkward cases docs/3-numbers.md
must survive: negative activations, a category nobody is labelled for, a concept nobody has,
images outside the local set, two annotation sources with different concept sets, and
singular ellipses. With ``rasters`` the dictionary is version 2 and its masks are rasters of any
shape (raster_shapes.py): bilateral pairs, rings, three blobs a row, edge bands, empty present
masks, striped images of more than 64 pieces; units then fire on those shapes.

CLI example (the Done-when case):
    python3 Tests/reference/generate.py --images 2000 --units 64 --h 7 --w 7 --mask-size 112 \
        --dtype float32 --seed 1 --dict D.h5 --acts A.h5 --layer layer4.2.conv1
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import h5py
import numpy as np

import raster_shapes

CATEGORIES: tuple[tuple[str, tuple[str, ...], tuple[float, ...]], ...] = (
    # name, subgroups, how often each subgroup occurs
    ("age", ("0-20", "20-40", "40-60", "60+"), (0.25, 0.35, 0.25, 0.15)),
    ("gender", ("female", "male"), (0.5, 0.5)),
    ("ethnicity", ("white", "black", "asian", "indian"), (0.4, 0.2, 0.25, 0.15)),
    ("skin_tone", ("light", "dark"), (0.7, 0.3)),  # drawn from ethnicity instead, see _latent_subgroups
)
REGIONS = ("eye", "cheek", "nose", "mouth", "chin")
PART, ATTRIBUTE, ACTION_UNIT = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class ConceptLayout:
    """Where a concept sits on an upright, centred face (normalised coordinates) and how often."""

    name: str
    region: str
    kind: int
    cx: float
    cy: float
    sigma_x: float
    sigma_y: float
    tilt: float  # radians
    presence: float


CONCEPTS: tuple[ConceptLayout, ...] = (
    ConceptLayout("left_eye", "eye", PART, 0.36, 0.40, 0.045, 0.022, 0.10, 0.94),
    ConceptLayout("right_eye", "eye", PART, 0.64, 0.40, 0.045, 0.022, -0.10, 0.94),
    ConceptLayout("left_eyebrow", "eye", PART, 0.35, 0.32, 0.060, 0.014, 0.15, 0.92),
    ConceptLayout("right_eyebrow", "eye", PART, 0.65, 0.32, 0.060, 0.014, -0.15, 0.92),
    ConceptLayout("eyeglasses", "eye", ATTRIBUTE, 0.50, 0.40, 0.190, 0.045, 0.0, 0.20),
    ConceptLayout("bags_under_eyes", "eye", ATTRIBUTE, 0.50, 0.46, 0.170, 0.020, 0.0, 0.25),
    ConceptLayout("arched_eyebrows", "eye", ATTRIBUTE, 0.50, 0.31, 0.200, 0.018, 0.0, 0.30),
    ConceptLayout("AU1", "eye", ACTION_UNIT, 0.50, 0.30, 0.070, 0.025, 0.0, 0.25),
    ConceptLayout("AU2", "eye", ACTION_UNIT, 0.50, 0.31, 0.210, 0.022, 0.0, 0.20),
    ConceptLayout("AU4", "eye", ACTION_UNIT, 0.50, 0.35, 0.090, 0.030, 0.0, 0.30),
    ConceptLayout("AU7", "eye", ACTION_UNIT, 0.50, 0.42, 0.200, 0.028, 0.0, 0.20),
    ConceptLayout("left_cheek", "cheek", PART, 0.28, 0.58, 0.065, 0.070, 0.0, 0.95),
    ConceptLayout("right_cheek", "cheek", PART, 0.72, 0.58, 0.065, 0.070, 0.0, 0.95),
    ConceptLayout("rosy_cheeks", "cheek", ATTRIBUTE, 0.50, 0.60, 0.240, 0.055, 0.0, 0.15),
    ConceptLayout("high_cheekbones", "cheek", ATTRIBUTE, 0.50, 0.52, 0.240, 0.035, 0.0, 0.40),
    ConceptLayout("AU6", "cheek", ACTION_UNIT, 0.50, 0.54, 0.230, 0.045, 0.0, 0.30),
    ConceptLayout("nose", "nose", PART, 0.50, 0.52, 0.045, 0.095, 0.0, 0.97),
    ConceptLayout("big_nose", "nose", ATTRIBUTE, 0.50, 0.55, 0.070, 0.085, 0.0, 0.25),
    ConceptLayout("pointy_nose", "nose", ATTRIBUTE, 0.50, 0.61, 0.040, 0.035, 0.0, 0.25),
    ConceptLayout("AU9", "nose", ACTION_UNIT, 0.50, 0.45, 0.050, 0.040, 0.0, 0.15),
    ConceptLayout("upper_lip", "mouth", PART, 0.50, 0.71, 0.100, 0.018, 0.0, 0.95),
    ConceptLayout("lower_lip", "mouth", PART, 0.50, 0.76, 0.100, 0.020, 0.0, 0.95),
    ConceptLayout("mustache", "mouth", ATTRIBUTE, 0.50, 0.68, 0.120, 0.022, 0.0, 0.10),
    ConceptLayout("mouth_slightly_open", "mouth", ATTRIBUTE, 0.50, 0.735, 0.080, 0.030, 0.0, 0.45),
    ConceptLayout("AU12", "mouth", ACTION_UNIT, 0.50, 0.72, 0.150, 0.030, 0.0, 0.35),
    ConceptLayout("AU15", "mouth", ACTION_UNIT, 0.50, 0.76, 0.140, 0.030, 0.0, 0.15),
    ConceptLayout("AU25", "mouth", ACTION_UNIT, 0.50, 0.735, 0.080, 0.020, 0.0, 0.35),
    ConceptLayout("chin", "chin", PART, 0.50, 0.88, 0.100, 0.045, 0.0, 0.93),
    ConceptLayout("double_chin", "chin", ATTRIBUTE, 0.50, 0.93, 0.140, 0.035, 0.0, 0.10),
    ConceptLayout("goatee", "chin", ATTRIBUTE, 0.50, 0.86, 0.070, 0.045, 0.0, 0.10),
    ConceptLayout("AU17", "chin", ACTION_UNIT, 0.50, 0.85, 0.080, 0.040, 0.0, 0.20),
)

#: Concepts whose presence depends on a subgroup: (category, subgroup, p if member, p otherwise).
SUBGROUP_DEPENDENT_PRESENCE = {
    "mustache": ("gender", "male", 0.30, 0.01),
    "goatee": ("gender", "male", 0.28, 0.01),
    "eyeglasses": ("age", "60+", 0.55, 0.15),
    "double_chin": ("age", "60+", 0.35, 0.05),
}

#: Annotation sources: which concept kinds they annotate, and how often each category is labelled.
SOURCES = {
    "global_only": {"kinds": (), "labelled": (0.95, 0.95, 0.95, 0.95)},
    "attributes": {"kinds": (PART, ATTRIBUTE), "labelled": (0.6, 1.0, 0.5, 0.5)},
    "action_units": {"kinds": (PART, ACTION_UNIT), "labelled": (0.8, 0.9, 0.7, 0.3)},
    "full": {"kinds": (PART, ATTRIBUTE, ACTION_UNIT), "labelled": (0.9, 0.9, 0.9, 0.9)},
}


@dataclasses.dataclass(frozen=True)
class LayerShape:
    name: str
    units: int
    height: int
    width: int


@dataclasses.dataclass(frozen=True)
class GenerationOptions:
    n_images: int = 2000
    mask_size: int = 112
    ellipse_chi2: float = 5.991
    seed: int = 0
    dtype: str = "float32"  # or "float16": what the activations file stores
    shuffle: bool = True  # rows in a random image order (per layer)
    write_image_ids: bool = True  # False: no image_ids dataset, row m is image m (forces shuffle off)
    local_fraction: float = 0.8  # share of images in the local set D_L; the rest are global-only
    mixed_annotation: bool = True  # two local sources (parts+attributes, parts+AUs) instead of one
    unlabelled_category: Optional[str] = None  # a category nobody is labelled for
    absent_concept: Optional[str] = None  # a concept nobody has (label 0 wherever annotated)
    singular_ellipses: int = 0  # present concepts whose covariance is made singular
    negative: bool = False  # pre-ReLU maps with many negative values instead of ReLU outputs
    dead_units: int = 0  # constant maps, alternately 0 and -1
    rasters: bool = False  # version 2: /images/masks (raster_shapes) and /images/source
    nan_ellipses: bool = False  # with rasters: /images/ellipse all NaN (it is only informative then)
    edge_masks: int = 0  # with rasters: present masks replaced by bands on the grid's edges
    empty_masks: int = 0  # with rasters: present concepts whose mask is empty
    striped_images: int = 0  # with rasters: images whose every present mask is one-pixel stripes


@dataclasses.dataclass
class LatentFaces:
    """What is true of each image, whether or not the dictionary's labels say so."""

    subgroup: np.ndarray  # [N, Gc] global subgroup index per category (always known here)
    present: np.ndarray  # [N, L] bool
    ellipse: np.ndarray  # [N, L, 5] float64
    face_centre: np.ndarray  # [N, 2]


@dataclasses.dataclass
class GeneratedCase:
    dictionary: dict[str, Any]  # FaceDictionary field names -> arrays (hnd_reference accepts it)
    layers: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (maps as stored, as float32; image_ids)
    unit_roles: dict[str, list[dict[str, Any]]]
    dictionary_path: Optional[Path] = None
    activations_path: Optional[Path] = None


def taxonomy() -> dict[str, Any]:
    """Names and index tables of the synthetic dictionary."""
    categories = [name for name, _, _ in CATEGORIES]
    subgroups = [s for _, names, _ in CATEGORIES for s in names]
    subgroup_category = np.array([g for g, (_, names, _) in enumerate(CATEGORIES) for _ in names], dtype=np.int32)
    return {
        "categories": categories,
        "subgroups": subgroups,
        "subgroup_category": subgroup_category,
        "regions": list(REGIONS),
        "concepts": [c.name for c in CONCEPTS],
        "concept_region": np.array([REGIONS.index(c.region) for c in CONCEPTS], dtype=np.int32),
        "concept_type": np.array([c.kind for c in CONCEPTS], dtype=np.int32),
    }


def _subgroup_index(category: str, subgroup: str) -> int:
    names = taxonomy()["subgroups"]
    offset = 0
    for name, subgroups, _ in CATEGORIES:
        if name == category:
            return offset + subgroups.index(subgroup)
        offset += len(subgroups)
    raise KeyError(f"no category {category!r} with subgroup {subgroup!r} among {names}")


def _latent_subgroups(rng: np.random.Generator, n_images: int) -> np.ndarray:
    subgroup = np.zeros((n_images, len(CATEGORIES)), dtype=np.int64)
    offset = 0
    offsets = []
    for g, (name, names, frequency) in enumerate(CATEGORIES):
        offsets.append(offset)
        subgroup[:, g] = offset + rng.choice(len(names), size=n_images, p=np.asarray(frequency) / sum(frequency))
        offset += len(names)
    # Skin tone follows ethnicity, as it would in real data (a confound Stage I should not mind).
    ethnicity = subgroup[:, 2] - offsets[2]
    dark_probability = np.where(np.isin(ethnicity, (1, 3)), 0.85, 0.1)
    subgroup[:, 3] = offsets[3] + (rng.random(n_images) < dark_probability)
    return subgroup


def _rotation(angle: np.ndarray) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)


def _latent_faces(rng: np.random.Generator, n_images: int, absent_concept: Optional[str]) -> LatentFaces:
    subgroup = _latent_subgroups(rng, n_images)
    n_concepts = len(CONCEPTS)
    offset = rng.normal(0.0, 0.025, size=(n_images, 2))
    scale = rng.uniform(0.9, 1.1, size=n_images)
    roll = rng.normal(0.0, 0.08, size=n_images)
    present = np.zeros((n_images, n_concepts), dtype=bool)
    ellipse = np.zeros((n_images, n_concepts, 5))
    face_rotation = _rotation(roll)  # [N, 2, 2]
    for c, layout in enumerate(CONCEPTS):
        probability = np.full(n_images, layout.presence)
        if layout.name in SUBGROUP_DEPENDENT_PRESENCE:
            category, member, p_member, p_other = SUBGROUP_DEPENDENT_PRESENCE[layout.name]
            is_member = subgroup[:, [n for n, _, _ in CATEGORIES].index(category)] == _subgroup_index(category, member)
            probability = np.where(is_member, p_member, p_other)
        present[:, c] = rng.random(n_images) < probability
        if layout.name == absent_concept:
            present[:, c] = False
        relative = np.array([layout.cx - 0.5, layout.cy - 0.5])
        centre = 0.5 + scale[:, None] * np.einsum("nij,j->ni", face_rotation, relative) + offset
        centre += rng.normal(0.0, 0.006, size=(n_images, 2))
        axes = _rotation(roll + layout.tilt)
        variances = np.stack([np.full(n_images, layout.sigma_x**2), np.full(n_images, layout.sigma_y**2)], -1)
        variances *= (scale**2 * rng.uniform(0.85, 1.15, size=n_images))[:, None]
        covariance = np.einsum("nij,nj,nkj->nik", axes, variances, axes)
        ellipse[:, c] = np.stack(
            [centre[:, 0], centre[:, 1], covariance[:, 0, 0], covariance[:, 0, 1], covariance[:, 1, 1]], -1
        )
    return LatentFaces(subgroup=subgroup, present=present, ellipse=ellipse, face_centre=0.5 + offset)


def make_dictionary(options: GenerationOptions, rng: np.random.Generator) -> tuple[dict[str, Any], LatentFaces]:
    """The dictionary as FaceDictionary-named arrays, and the latent truth behind it."""
    n_images = options.n_images
    names = taxonomy()
    if options.absent_concept is not None and options.absent_concept not in names["concepts"]:
        raise ValueError(f"--absent-concept {options.absent_concept!r} is not one of {names['concepts']}")
    if options.unlabelled_category is not None and options.unlabelled_category not in names["categories"]:
        raise ValueError(f"--unlabelled-category {options.unlabelled_category!r} is not one of {names['categories']}")
    latent = _latent_faces(rng, n_images, options.absent_concept)

    local_sources = ("attributes", "action_units") if options.mixed_annotation else ("full",)
    in_local_set = rng.random(n_images) < options.local_fraction
    source = np.where(in_local_set, rng.choice(local_sources, size=n_images), "global_only")

    concept_kind = names["concept_type"]
    annotated = np.zeros((n_images, len(CONCEPTS)), dtype=bool)
    global_label = np.full((n_images, len(CATEGORIES)), -1, dtype=np.int32)
    for name, description in SOURCES.items():
        rows = source == name
        annotated[np.ix_(rows, np.isin(concept_kind, description["kinds"]))] = True
        labelled = rng.random((int(rows.sum()), len(CATEGORIES))) < np.asarray(description["labelled"])
        global_label[rows] = np.where(labelled, latent.subgroup[rows], -1)
    if options.unlabelled_category is not None:
        global_label[:, names["categories"].index(options.unlabelled_category)] = -1

    local_label = np.where(annotated, latent.present.astype(np.int8), np.int8(-1)).astype(np.int8)
    ellipse = np.where((local_label == 1)[..., None], latent.ellipse, np.nan).astype(np.float32)

    if options.singular_ellipses:
        candidates = np.argwhere(local_label == 1)
        chosen = candidates[rng.choice(len(candidates), size=min(options.singular_ellipses, len(candidates)), replace=False)]
        for k, (image, concept) in enumerate(chosen):
            cx, cy, sxx = ellipse[image, concept, :3]
            singular = (
                (cx, cy, sxx, sxx, sxx),  # rank one: sxx*syy - sxy^2 == 0 exactly
                (cx, cy, 0.0, 0.0, sxx),  # a line: zero variance along x
                (cx, cy, 0.0, 0.0, 0.0),  # a point
            )[k % 3]
            ellipse[image, concept] = np.asarray(singular, dtype=np.float32)

    dictionary = dict(names)
    dictionary.update(
        global_label=global_label,
        local_label=local_label,
        ellipse=ellipse,
        mask_size=options.mask_size,
        ellipse_chi2=options.ellipse_chi2,
    )
    if options.rasters:
        dictionary.update(_raster_masks(options, local_label, latent))
        if options.nan_ellipses:
            dictionary["ellipse"] = np.full_like(ellipse, np.nan)
    return dictionary, latent


def _raster_masks(options: GenerationOptions, local_label: np.ndarray, latent: LatentFaces) -> dict[str, Any]:
    """Version 2 fields: the packed masks drawn around the latent ellipses, and image sources.
    Its own random stream, so that the rest of the case is that of the same seed without rasters."""
    rng = np.random.default_rng(options.seed + 7919)
    awkward = raster_shapes.choose_awkward(local_label, options.edge_masks, options.empty_masks,
                                           options.striped_images, rng)
    masks = raster_shapes.draw(latent.ellipse, local_label, [c.name for c in CONCEPTS], options.mask_size,
                               options.ellipse_chi2, awkward)
    return {"version": 2, "masks": masks, "image_sources": [f"synthetic/{n:06d}.png" for n in range(options.n_images)]}


def _gaussian_bumps(ellipse: np.ndarray, height: int, width: int) -> np.ndarray:
    """exp(-d²/2) on the h×w cell centres for ellipses [N, 5] widened by half a cell (receptive field)."""
    grid_x = (np.arange(width) + 0.5) / width
    grid_y = (np.arange(height) + 0.5) / height
    sxx = ellipse[:, 2] + (0.5 / width) ** 2
    syy = ellipse[:, 4] + (0.5 / height) ** 2
    sxy = ellipse[:, 3]
    det = sxx * syy - sxy * sxy
    dx = grid_x[None, None, :] - ellipse[:, 0, None, None]
    dy = grid_y[None, :, None] - ellipse[:, 1, None, None]
    distance = (syy[:, None, None] * dx * dx - 2 * sxy[:, None, None] * dx * dy + sxx[:, None, None] * dy * dy)
    return np.exp(-0.5 * distance / det[:, None, None])


def _unit_roles(rng: np.random.Generator, units: int, dead_units: int, absent_concept: Optional[str]) -> list[dict[str, Any]]:
    """Assigns each unit what it detects: dead, local, global, mixed (local and global) or noise."""
    n_live = max(0, units - dead_units)
    kinds = ["local"] * round(0.55 * n_live) + ["global"] * round(0.2 * n_live) + ["mixed"] * round(0.1 * n_live)
    kinds = (kinds + ["noise"] * n_live)[:n_live]
    rng.shuffle(kinds)
    detectable = [c for c, layout in enumerate(CONCEPTS) if layout.name != absent_concept]
    concept_cycle = list(rng.permutation(detectable))
    roles: list[dict[str, Any]] = [{"kind": "dead", "value": (0.0, -1.0)[u % 2]} for u in range(min(dead_units, units))]
    for kind in kinds:
        role: dict[str, Any] = {"kind": kind, "amplitude": float(rng.uniform(2.0, 4.0))}
        if kind in ("local", "mixed"):
            if not concept_cycle:
                concept_cycle = list(rng.permutation(detectable))
            role["concept"] = int(concept_cycle.pop())
        if kind in ("global", "mixed"):
            category = int(rng.integers(len(CATEGORIES)))
            offset = sum(len(names) for _, names, _ in CATEGORIES[:category])
            role["category"] = category
            role["subgroup"] = offset + int(rng.integers(len(CATEGORIES[category][1])))
            role["centre_shift"] = rng.uniform(-0.12, 0.12, size=2).tolist()
        roles.append(role)
    return roles


def make_layer_maps(
    latent: LatentFaces, shape: LayerShape, options: GenerationOptions, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Activation maps [N, C, h, w] float32 in dictionary image order, and each unit's role."""
    n_images = latent.present.shape[0]
    h, w = shape.height, shape.width
    roles = _unit_roles(rng, shape.units, options.dead_units, options.absent_concept)
    maps = np.empty((n_images, shape.units, h, w), dtype=np.float32)
    for unit, role in enumerate(roles):
        if role["kind"] == "dead":
            maps[:, unit] = role["value"]
            continue
        response = np.zeros((n_images, h, w))
        gain = role["amplitude"] * rng.uniform(0.6, 1.4, size=n_images)
        if role["kind"] in ("global", "mixed"):
            member = latent.subgroup[:, role["category"]] == role["subgroup"]
            gain = gain * np.where(member, 1.0, 0.4 if role["kind"] == "global" else 0.35)
        if role["kind"] in ("local", "mixed"):
            concept = role["concept"]
            parts = raster_shapes.sub_ellipses(CONCEPTS[concept].name) if options.rasters else [raster_shapes.SubEllipse(0.0)]
            bumps = [_gaussian_bumps(raster_shapes.moved(latent.ellipse[:, concept], part), h, w) for part in parts if not part.hole]
            response = np.max(bumps, axis=0) * (gain * latent.present[:, concept])[:, None, None]
        elif role["kind"] == "global":
            centre = latent.face_centre + np.asarray(role["centre_shift"]) + np.array([0.0, 0.05])
            broad = np.column_stack([centre, np.full(n_images, 0.03), np.zeros(n_images), np.full(n_images, 0.045)])
            response = _gaussian_bumps(broad, h, w) * gain[:, None, None]
        else:  # noise: a blob somewhere, unrelated to any label
            where = rng.uniform(0.1, 0.9, size=(n_images, 2))
            blob = np.column_stack([where, np.full(n_images, 0.01), np.zeros(n_images), np.full(n_images, 0.01)])
            response = _gaussian_bumps(blob, h, w) * rng.uniform(0.0, 2.5, size=n_images)[:, None, None]
        values = response + rng.normal(0.0, 0.25, size=(n_images, h, w)) - 0.3
        maps[:, unit] = values - 0.5 if options.negative else np.maximum(values, 0.0)
    return maps, roles


def write_dictionary(path: Path, dictionary: dict[str, Any]) -> None:
    """Writes docs/1-dictionary.md with variable-length UTF-8 strings."""
    text = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as file:
        file.attrs["format"] = "hndd-dictionary"
        file.attrs["version"] = np.int32(dictionary.get("version", 1))
        file.attrs["mask_size"] = np.int32(dictionary["mask_size"])
        file.attrs["ellipse_chi2"] = np.float64(dictionary["ellipse_chi2"])
        file.create_dataset("global/categories", data=np.array(dictionary["categories"], dtype=object), dtype=text)
        file.create_dataset("global/subgroups", data=np.array(dictionary["subgroups"], dtype=object), dtype=text)
        file.create_dataset("global/subgroup_category", data=np.asarray(dictionary["subgroup_category"], np.int32))
        file.create_dataset("local/regions", data=np.array(dictionary["regions"], dtype=object), dtype=text)
        file.create_dataset("local/concepts", data=np.array(dictionary["concepts"], dtype=object), dtype=text)
        file.create_dataset("local/concept_region", data=np.asarray(dictionary["concept_region"], np.int32))
        file.create_dataset("local/concept_type", data=np.asarray(dictionary["concept_type"], np.int32))
        file.create_dataset("images/global_label", data=np.asarray(dictionary["global_label"], np.int32))
        file.create_dataset("images/local_label", data=np.asarray(dictionary["local_label"], np.int8))
        file.create_dataset("images/ellipse", data=np.asarray(dictionary["ellipse"], np.float32))
        if dictionary.get("masks") is not None:
            masks = np.asarray(dictionary["masks"], np.uint8)
            file.create_dataset("images/masks", data=masks, chunks=(min(64, len(masks)),) + masks.shape[1:],
                                compression="gzip", compression_opts=1)
        if dictionary.get("image_sources") is not None:
            file.create_dataset("images/source", data=np.array(dictionary["image_sources"], dtype=object), dtype=text)


def write_activations(path: Path, layers: dict[str, tuple[np.ndarray, Optional[np.ndarray]]], dtype: str) -> None:
    """Writes docs/2-activations.md: /layers/<name>/activations (and image_ids when given)."""
    with h5py.File(path, "w") as file:
        for name, (maps, image_ids) in layers.items():
            group = file.create_group(f"layers/{name}")
            group.create_dataset("activations", data=maps.astype(dtype), chunks=(1,) + maps.shape[1:])
            if image_ids is not None:
                group.create_dataset("image_ids", data=np.asarray(image_ids, dtype=np.int64))


def generate_case(
    layers: Sequence[LayerShape],
    options: GenerationOptions,
    dictionary_path: Optional[Path] = None,
    activations_path: Optional[Path] = None,
) -> GeneratedCase:
    """Builds a dictionary and one activation set per layer; writes them when paths are given.

    The returned maps are exactly what the file holds (float16 rounding included), in file row order.
    """
    if options.dtype not in ("float32", "float16"):
        raise ValueError(f"dtype {options.dtype!r}: expected float32 or float16")
    rng = np.random.default_rng(options.seed)
    dictionary, latent = make_dictionary(options, rng)
    stored: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    to_write: dict[str, tuple[np.ndarray, Optional[np.ndarray]]] = {}
    roles: dict[str, list[dict[str, Any]]] = {}
    for shape in layers:
        maps, roles[shape.name] = make_layer_maps(latent, shape, options, rng)
        shuffled = options.shuffle and options.write_image_ids
        order = rng.permutation(options.n_images) if shuffled else np.arange(options.n_images)
        rows = maps[order].astype(options.dtype).astype(np.float32)
        stored[shape.name] = (rows, order.astype(np.int64))
        to_write[shape.name] = (rows, order if options.write_image_ids else None)
    case = GeneratedCase(dictionary, stored, roles, dictionary_path, activations_path)
    if dictionary_path is not None:
        write_dictionary(Path(dictionary_path), dictionary)
    if activations_path is not None:
        write_activations(Path(activations_path), to_write, options.dtype)
    return case


def _parse_layer(text: str, units: int, height: int, width: int) -> LayerShape:
    """NAME uses --units/--h/--w; NAME=C,H,W gives that layer its own shape."""
    name, _, shape = text.partition("=")
    if not shape:
        return LayerShape(name, units, height, width)
    try:
        c, h, w = (int(v) for v in shape.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layer {text!r}: expected NAME or NAME=C,H,W") from None
    return LayerShape(name, c, h, w)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--h", type=int, default=7)
    parser.add_argument("--w", type=int, default=7)
    parser.add_argument("--mask-size", type=int, default=112)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dict", type=Path, required=True, help="dictionary file to write")
    parser.add_argument("--acts", type=Path, required=True, help="activations file to write")
    parser.add_argument("--layer", action="append", help="NAME or NAME=C,H,W; repeat for several layers")
    parser.add_argument("--no-shuffle", action="store_true", help="rows in dictionary order")
    parser.add_argument("--no-image-ids", action="store_true", help="omit image_ids (row m is image m)")
    parser.add_argument("--local-fraction", type=float, default=0.8)
    parser.add_argument("--uniform-annotation", action="store_true", help="one local source annotating every concept")
    parser.add_argument("--unlabelled-category", help="a category nobody is labelled for, e.g. skin_tone")
    parser.add_argument("--absent-concept", help="a concept nobody has, e.g. AU15")
    parser.add_argument("--singular-ellipses", type=int, default=0)
    parser.add_argument("--negative", action="store_true", help="pre-ReLU maps with negative values")
    parser.add_argument("--dead-units", type=int, default=0)
    parser.add_argument("--rasters", action="store_true", help="version 2: raster masks of any shape")
    parser.add_argument("--nan-ellipses", action="store_true", help="with --rasters: /images/ellipse all NaN")
    parser.add_argument("--edge-masks", type=int, default=0, help="with --rasters: masks on the grid's edges")
    parser.add_argument("--empty-masks", type=int, default=0, help="with --rasters: empty present masks")
    parser.add_argument("--striped-images", type=int, default=0, help="with --rasters: images of > 64 pieces")
    args = parser.parse_args(argv)
    options = GenerationOptions(
        n_images=args.images, mask_size=args.mask_size, seed=args.seed, dtype=args.dtype,
        shuffle=not args.no_shuffle, write_image_ids=not args.no_image_ids,
        local_fraction=args.local_fraction, mixed_annotation=not args.uniform_annotation,
        unlabelled_category=args.unlabelled_category, absent_concept=args.absent_concept,
        singular_ellipses=args.singular_ellipses, negative=args.negative, dead_units=args.dead_units,
        rasters=args.rasters, nan_ellipses=args.nan_ellipses, edge_masks=args.edge_masks,
        empty_masks=args.empty_masks, striped_images=args.striped_images,
    )
    try:
        layers = [_parse_layer(text, args.units, args.h, args.w) for text in (args.layer or ["layer4.2.conv1"])]
        case = generate_case(layers, options, args.dict, args.acts)
    except (ValueError, argparse.ArgumentTypeError) as error:
        print(f"generate.py: {error}", file=sys.stderr)
        return 2
    for name, roles in case.unit_roles.items():
        kinds = [role["kind"] for role in roles]
        counts = ", ".join(f"{kind} {kinds.count(kind)}" for kind in ("local", "mixed", "global", "noise", "dead"))
        print(f"{name}: {len(roles)} units ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
