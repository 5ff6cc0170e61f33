"""Reading and writing Face Dictionary files (docs/1-dictionary.md) with h5py.

Layout written (strings are variable-length UTF-8, root attributes ``format`` = "hndd-dictionary",
``version`` = 2 (int32), ``mask_size`` (int32), ``ellipse_chi2`` (float64)):

    /global/categories [Gc] str      /global/subgroups [G] str     /global/subgroup_category [G] int32
    /local/regions [R] str           /local/concepts [L] str
    /local/concept_region [L] int32  /local/concept_type [L] int32
    /images/global_label [N, Gc] int32   /images/local_label [N, L] int8
    /images/ellipse [N, L, 5] float32    /images/masks [N, L, S, ⌈S/8⌉] uint8 (``masks.py``)
    /images/source [N] str               /images/pixels [N, H, W, 3] uint8 (optional)

``/images/masks`` defines every mask (docs/1-dictionary.md version 2); ``/images/ellipse`` is informative:
the concept's ellipse where it is one, NaN where it is several (bilateral concepts) or none (a
mask drawn by hand). ``/images/source`` is each image's path relative to the folder it came from
(prefixed by the source's name where a build reads several folders; ``synthetic/seed-S/I`` for
rendered faces). One optional dataset beyond docs/1-dictionary.md, which readers may ignore:
``/images/landmarks`` [N, 68, 2] float32 (normalised iBUG points the masks came from, NaN when
unknown).

``DictionaryWriter`` fills the per-image datasets in slices, so a builder can stream images that
would not fit in memory; every slice is checked before it is written. ``read_dictionary`` reads
versions 1 and 2 and checks masks a slice at a time; ``read_masks`` reads the masks of a few
images of either version.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import h5py
import numpy as np

from .landmarks import DEFAULT_CHI2, ellipse_mask
from .masks import CHECK_SLICE, MaskError, check_mask_rows, pack, packed_width, unpack
from .taxonomy import CONCEPT_TYPE_NAMES, Taxonomy

FORMAT = "hndd-dictionary"
VERSION = 2  # what the writer writes
READABLE_VERSIONS = (1, 2)
STRING = h5py.string_dtype(encoding="utf-8")
MASK_COMPRESSION = dict(compression="gzip", compression_opts=4)
DEFAULT_MASK_SIZE = 112  # the paper's mask grid


class DictionaryError(ValueError):
    """A dictionary file or an array meant for one breaks docs/1-dictionary.md; the message says where."""


@dataclass
class DictionaryHeader:
    """Everything in a dictionary that is not per image."""

    categories: Sequence[str]
    subgroups: Sequence[str]
    subgroup_category: Sequence[int]
    regions: Sequence[str]
    concepts: Sequence[str]
    concept_region: Sequence[int]
    concept_type: Sequence[int]
    mask_size: int = DEFAULT_MASK_SIZE
    ellipse_chi2: float = DEFAULT_CHI2

    @classmethod
    def from_taxonomy(cls, taxonomy: Taxonomy, mask_size: int = DEFAULT_MASK_SIZE,
                      ellipse_chi2: float = DEFAULT_CHI2):
        return cls(taxonomy.category_names, taxonomy.subgroups, taxonomy.subgroup_category,
                   list(taxonomy.regions), taxonomy.concept_names,
                   [c.region_index for c in taxonomy.concepts], [c.type for c in taxonomy.concepts],
                   mask_size, ellipse_chi2)

    def check(self, source: str = "dictionary") -> None:
        def fail(message):
            raise DictionaryError(f"{source}: {message}")

        if not isinstance(self.mask_size, (int, np.integer)) or self.mask_size < 1:
            fail(f"attribute mask_size must be a positive integer, got {self.mask_size!r}")
        if not np.isfinite(self.ellipse_chi2) or self.ellipse_chi2 <= 0:
            fail(f"attribute ellipse_chi2 must be a positive number, got {self.ellipse_chi2!r}")
        if len(self.subgroup_category) != len(self.subgroups):
            fail(f"/global/subgroup_category has {len(self.subgroup_category)} entries for "
                 f"{len(self.subgroups)} subgroups")
        for i, category in enumerate(self.subgroup_category):
            if not 0 <= category < len(self.categories):
                fail(f"/global/subgroup_category[{i}] = {category} is not a category index "
                     f"(0..{len(self.categories) - 1})")
        for i in range(len(self.categories)):
            if i not in self.subgroup_category:
                fail(f"global category {self.categories[i]!r} has no subgroups")
        for name, size in (("concept_region", len(self.concept_region)), ("concept_type", len(self.concept_type))):
            if size != len(self.concepts):
                fail(f"/local/{name} has {size} entries for {len(self.concepts)} concepts")
        for i, region in enumerate(self.concept_region):
            if not 0 <= region < len(self.regions):
                fail(f"/local/concept_region[{i}] = {region} is not a region index (0..{len(self.regions) - 1})")
        for i, kind in enumerate(self.concept_type):
            if kind not in CONCEPT_TYPE_NAMES:
                fail(f"/local/concept_type[{i}] = {kind}; must be 0 (part), 1 (attribute) or 2 (action unit)")
        for label, names in (("/global/subgroups", self.subgroups), ("/local/concepts", self.concepts),
                             ("/global/categories", self.categories), ("/local/regions", self.regions)):
            if len(set(names)) != len(names):
                fail(f"{label} contains a name twice")


def check_image_rows(header: DictionaryHeader, global_label, local_label, ellipse,
                     first_index: int = 0, source: str = "dictionary", rasters: bool = True) -> None:
    """Checks per-image label and ellipse rows against the header and docs/1-dictionary.md's rules.

    With ``rasters`` (a version-2 file with ``/images/masks``) a present concept's ellipse may be
    NaN; without, the ellipse is its mask and must be finite."""
    def fail(message):
        raise DictionaryError(f"{source}: {message}")

    global_label = np.asarray(global_label)
    local_label = np.asarray(local_label)
    ellipse = np.asarray(ellipse)
    count = len(global_label)
    if global_label.shape != (count, len(header.categories)):
        fail(f"/images/global_label has shape {global_label.shape}, expected ({count}, {len(header.categories)})")
    if local_label.shape != (count, len(header.concepts)):
        fail(f"/images/local_label has shape {local_label.shape}, expected ({count}, {len(header.concepts)})")
    if ellipse.shape != (count, len(header.concepts), 5):
        fail(f"/images/ellipse has shape {ellipse.shape}, expected ({count}, {len(header.concepts)}, 5)")

    subgroup_category = np.asarray(header.subgroup_category)
    for category in range(len(header.categories)):
        labels = global_label[:, category]
        in_range = (labels >= 0) & (labels < len(subgroup_category))
        of_category = in_range & (subgroup_category[np.clip(labels, 0, len(subgroup_category) - 1)] == category)
        wrong = (labels != -1) & ~of_category
        if wrong.any():
            n = int(np.argmax(wrong))
            fail(f"/images/global_label[{first_index + n}, {category}] = {labels[n]} is not a subgroup of "
                 f"category {header.categories[category]!r} (nor -1)")
    bad = ~np.isin(local_label, (-1, 0, 1))
    if bad.any():
        n, c = np.argwhere(bad)[0]
        fail(f"/images/local_label[{first_index + n}, {c}] = {local_label[n, c]}; must be 1, 0 or -1")

    present = local_label == 1
    finite = np.isfinite(ellipse).all(axis=2)
    missing = present & ~finite & ~(rasters & np.isnan(ellipse).all(axis=2))
    if missing.any():
        n, c = np.argwhere(missing)[0]
        fail(f"/images/ellipse[{first_index + n}, {c}] ({header.concepts[c]}) is not finite but the concept is present"
             + ("" if rasters else " and the file has no /images/masks"))
    stray = ~present & ~np.isnan(ellipse).all(axis=2)
    if stray.any():
        n, c = np.argwhere(stray)[0]
        fail(f"/images/ellipse[{first_index + n}, {c}] ({header.concepts[c]}) must be NaN: the concept is not present")
    sxx, sxy, syy = ellipse[..., 2], ellipse[..., 3], ellipse[..., 4]
    with np.errstate(invalid="ignore"):
        indefinite = present & finite & ((sxx < 0) | (syy < 0) | (sxx * syy - sxy * sxy < -1e-12))
    if indefinite.any():
        n, c = np.argwhere(indefinite)[0]
        fail(f"/images/ellipse[{first_index + n}, {c}] ({header.concepts[c]}) has a covariance that is not "
             f"positive semi-definite")


def _write_strings(group: h5py.Group, name: str, values: Sequence[str]) -> None:
    group.create_dataset(name, data=np.array(list(values), dtype=object), dtype=STRING)


@contextmanager
def replace_when_done(path):
    """Yields a temporary path next to ``path``; it becomes ``path`` only if the block succeeds.

    A failed or interrupted build leaves no half-written file behind under the real name.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


class DictionaryWriter:
    """Creates a version-2 dictionary file for ``image_count`` images and fills it slice by slice.

    Use as a context manager; ``write`` the rows [start, start + n) in any order. Rows never
    written keep their fill values (labels −1, ellipses NaN, empty masks, source ""): an
    unannotated image. The file appears under its name only when the ``with`` block ends without
    an exception. Masks are chunked one image at a time and compressed.
    """

    def __init__(self, path, header: DictionaryHeader, image_count: int, image_size: Optional[int] = None,
                 with_landmarks: bool = False):
        header.check(str(path))
        if image_count < 1:
            raise DictionaryError(f"{path}: a dictionary needs at least one image")
        self.path = Path(path)
        self.header = header
        self.image_count = image_count
        self.empty_masks = 0  # present concepts written with an empty mask
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._file = h5py.File(self._partial, "w")
        try:
            self._create(image_size, with_landmarks)
        except BaseException:
            self._discard()
            raise

    def _create(self, image_size, with_landmarks):
        header, count, file = self.header, self.image_count, self._file
        file.attrs["format"] = FORMAT
        file.attrs["version"] = np.int32(VERSION)
        file.attrs["mask_size"] = np.int32(header.mask_size)
        file.attrs["ellipse_chi2"] = np.float64(header.ellipse_chi2)
        global_group = file.create_group("global")
        _write_strings(global_group, "categories", header.categories)
        _write_strings(global_group, "subgroups", header.subgroups)
        global_group.create_dataset("subgroup_category", data=np.asarray(header.subgroup_category, dtype=np.int32))
        local_group = file.create_group("local")
        _write_strings(local_group, "regions", header.regions)
        _write_strings(local_group, "concepts", header.concepts)
        local_group.create_dataset("concept_region", data=np.asarray(header.concept_region, dtype=np.int32))
        local_group.create_dataset("concept_type", data=np.asarray(header.concept_type, dtype=np.int32))
        images = file.create_group("images")
        gc, lc, size = len(header.categories), len(header.concepts), header.mask_size
        images.create_dataset("global_label", shape=(count, gc), dtype=np.int32, fillvalue=-1)
        images.create_dataset("local_label", shape=(count, lc), dtype=np.int8, fillvalue=-1)
        images.create_dataset("ellipse", shape=(count, lc, 5), dtype=np.float32, fillvalue=np.nan)
        mask_shape = (lc, size, packed_width(size))
        images.create_dataset("masks", shape=(count,) + mask_shape, dtype=np.uint8, fillvalue=0,
                              chunks=(1,) + mask_shape, **MASK_COMPRESSION)
        images.create_dataset("source", shape=(count,), dtype=STRING)
        if image_size is not None:
            images.create_dataset("pixels", shape=(count, image_size, image_size, 3), dtype=np.uint8,
                                  chunks=(1, image_size, image_size, 3))
        if with_landmarks:
            images.create_dataset("landmarks", shape=(count, 68, 2), dtype=np.float32, fillvalue=np.nan)

    def write(self, start: int, global_label, local_label, ellipse, masks, sources: Sequence[str],
              pixels=None, landmarks=None):
        """Checks and writes rows [start, start + n).

        ``ellipse`` may be None (all NaN: masks drawn by hand); ``masks`` is boolean [n, L, S, S]
        or already packed uint8 [n, L, S, ⌈S/8⌉]; ``sources`` names each image (non-empty).
        """
        count = len(global_label)
        if start < 0 or start + count > self.image_count:
            raise DictionaryError(f"{self.path}: rows {start}..{start + count - 1} are outside 0..{self.image_count - 1}")
        header = self.header
        if ellipse is None:
            ellipse = np.full((count, len(header.concepts), 5), np.nan, dtype=np.float32)
        sources = self._checked_sources(start, count, sources)
        check_image_rows(header, global_label, local_label, ellipse, start, str(self.path))
        masks = np.asarray(masks)
        packed = pack(masks) if masks.dtype == bool else masks
        try:
            empty = check_mask_rows(header.concepts, header.mask_size, local_label, packed, start, str(self.path),
                                    sources)
        except MaskError as error:
            raise DictionaryError(str(error)) from None
        images = self._file["images"]
        rows = slice(start, start + count)
        images["global_label"][rows] = np.asarray(global_label, dtype=np.int32)
        images["local_label"][rows] = np.asarray(local_label, dtype=np.int8)
        images["ellipse"][rows] = np.asarray(ellipse, dtype=np.float32)
        images["masks"][rows] = packed
        images["source"][rows] = np.array(sources, dtype=object)
        for name, values, dtype in (("pixels", pixels, np.uint8), ("landmarks", landmarks, np.float32)):
            if values is not None:
                self._write_optional(name, rows, np.asarray(values, dtype=dtype))
        self.empty_masks += empty

    def _checked_sources(self, start: int, count: int, sources) -> list:
        sources = list(sources)
        if len(sources) != count:
            raise DictionaryError(f"{self.path}: {len(sources)} sources for {count} images (rows {start}..)")
        for n, name in enumerate(sources):
            if not isinstance(name, str) or not name:
                raise DictionaryError(f"{self.path}: image {start + n} has no source ({name!r}); every image names "
                                      f"where it came from")
        return sources

    def _write_optional(self, name: str, rows: slice, values: np.ndarray):
        images = self._file["images"]
        if name not in images:
            raise DictionaryError(f"{self.path}: /images/{name} was not declared when the file was created")
        expected = (rows.stop - rows.start,) + images[name].shape[1:]
        if values.shape != expected:
            raise DictionaryError(f"{self.path}: /images/{name} rows have shape {values.shape}, expected {expected}")
        images[name][rows] = values

    def close(self):
        """Finishes the file and gives it its real name."""
        self._file.close()
        os.replace(self._partial, self.path)

    def _discard(self):
        self._file.close()
        self._partial.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc_info):
        if exc_type is None:
            self.close()
        else:
            self._discard()


def write_dictionary(path, header: DictionaryHeader, global_label, local_label, ellipse, masks,
                     sources: Sequence[str], pixels=None, landmarks=None) -> None:
    """Writes a whole dictionary held in memory."""
    pixels = None if pixels is None else np.asarray(pixels)
    if pixels is not None and (pixels.ndim != 4 or pixels.shape[1] != pixels.shape[2] or pixels.shape[3] != 3):
        raise DictionaryError(f"{path}: pixels must be [N, H, H, 3], got {pixels.shape}")
    with DictionaryWriter(path, header, len(global_label), None if pixels is None else pixels.shape[1],
                          landmarks is not None) as writer:
        writer.write(0, global_label, local_label, ellipse, masks, sources, pixels, landmarks)


@dataclass
class FaceDictionary:
    """A dictionary file read into memory (pixels and packed masks only when asked for)."""

    header: DictionaryHeader
    version: int
    global_label: np.ndarray
    local_label: np.ndarray
    ellipse: np.ndarray
    has_masks: bool  # /images/masks defines the masks (version 2); else the ellipses do
    empty_masks: int = 0  # present concepts whose raster mask is empty
    pixels: Optional[np.ndarray] = None
    landmarks: Optional[np.ndarray] = None
    sources: Optional[list] = None
    masks: Optional[np.ndarray] = None  # packed [N, L, S, ⌈S/8⌉], when read with with_masks

    def __len__(self):
        return len(self.global_label)

    def mask(self, n: int, c: int) -> np.ndarray:
        """The S×S boolean mask of concept c on image n, whichever version the file is."""
        size = self.header.mask_size
        if not self.has_masks:
            return ellipse_mask(self.ellipse[n, c], size, self.header.ellipse_chi2)
        if self.masks is None:
            raise DictionaryError("the masks were not read: use read_dictionary(..., with_masks=True) or read_masks")
        return unpack(self.masks[n, c], size)


def _read_strings(file: h5py.File, name: str, source: str) -> list:
    if name not in file:
        raise DictionaryError(f"{source}: dataset {name} is missing")
    values = file[name]
    if values.dtype.kind != "O" or h5py.check_string_dtype(values.dtype) is None:
        raise DictionaryError(f"{source}: {name} must hold variable-length strings")
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values[()]]


def _read_array(file: h5py.File, name: str, source: str) -> np.ndarray:
    if name not in file:
        raise DictionaryError(f"{source}: dataset {name} is missing")
    return file[name][()]


def _open(path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except (OSError, FileNotFoundError) as error:
        raise DictionaryError(f"{path}: cannot open as HDF5 ({error})") from None


def _read_header(file: h5py.File, source: str):
    """(header, version) of an open dictionary file, checked."""
    attributes = dict(file.attrs)
    if attributes.get("format") != FORMAT:
        raise DictionaryError(f"{source}: root attribute format is {attributes.get('format')!r}, expected {FORMAT!r}")
    raw_version = attributes.get("version", "none")
    version = int(raw_version) if isinstance(raw_version, (int, np.integer)) else -1
    if version not in READABLE_VERSIONS:
        raise DictionaryError(f"{source}: unsupported version {raw_version!s} "
                              f"(readable: {', '.join(map(str, READABLE_VERSIONS))})")
    if "mask_size" not in attributes:
        raise DictionaryError(f"{source}: root attribute mask_size is missing")
    header = DictionaryHeader(
        _read_strings(file, "global/categories", source), _read_strings(file, "global/subgroups", source),
        [int(v) for v in _read_array(file, "global/subgroup_category", source)],
        _read_strings(file, "local/regions", source), _read_strings(file, "local/concepts", source),
        [int(v) for v in _read_array(file, "local/concept_region", source)],
        [int(v) for v in _read_array(file, "local/concept_type", source)],
        int(attributes["mask_size"]), float(attributes.get("ellipse_chi2", DEFAULT_CHI2)))
    header.check(source)
    if "images/masks" in file and version < 2:
        raise DictionaryError(f"{source}: /images/masks is a version-2 dataset, but the file says version {version}")
    return header, version


def _check_masks(file: h5py.File, dictionary: FaceDictionary, source: str) -> int:
    """Checks /images/masks a slice of images at a time; returns the count of empty present masks."""
    header, dataset = dictionary.header, file["images/masks"]
    if dataset.shape[:1] != (len(dictionary),):
        raise DictionaryError(f"{source}: /images/masks has shape {dataset.shape} for {len(dictionary)} images")
    empty = 0
    for start in range(0, len(dictionary), CHECK_SLICE):
        stop = min(start + CHECK_SLICE, len(dictionary))
        names = None if dictionary.sources is None else dictionary.sources[start:stop]
        try:
            empty += check_mask_rows(header.concepts, header.mask_size, dictionary.local_label[start:stop],
                                     dataset[start:stop], start, source, names)
        except MaskError as error:
            raise DictionaryError(str(error)) from None
    return empty


def read_dictionary(path, with_pixels: bool = True, with_masks: bool = False) -> FaceDictionary:
    """Reads and checks a dictionary file of version 1 or 2; raises DictionaryError naming the
    file and dataset. Masks are checked slice by slice, and kept (packed) only ``with_masks``:
    the paper's dictionary holds 1.5 GB of them."""
    source = str(path)
    with _open(path) as file:
        header, version = _read_header(file, source)
        has_masks = "images/masks" in file
        dictionary = FaceDictionary(header, version, _read_array(file, "images/global_label", source),
                                    _read_array(file, "images/local_label", source),
                                    _read_array(file, "images/ellipse", source), has_masks)
        check_image_rows(header, dictionary.global_label, dictionary.local_label, dictionary.ellipse, 0, source,
                         rasters=has_masks)
        if "images/source" in file:
            dictionary.sources = _read_strings(file, "images/source", source)
            if len(dictionary.sources) != len(dictionary):
                raise DictionaryError(f"{source}: /images/source has {len(dictionary.sources)} entries for "
                                      f"{len(dictionary)} images")
        if has_masks:
            dictionary.empty_masks = _check_masks(file, dictionary, source)
            if with_masks:
                dictionary.masks = file["images/masks"][()]
        if with_pixels and "images/pixels" in file:
            dictionary.pixels = file["images/pixels"][()]
            if dictionary.pixels.shape[0] != len(dictionary) or dictionary.pixels.ndim != 4:
                raise DictionaryError(f"{source}: /images/pixels has shape {dictionary.pixels.shape} for "
                                      f"{len(dictionary)} images")
        if "images/landmarks" in file:
            dictionary.landmarks = file["images/landmarks"][()]
    return dictionary


def read_masks(path, start: int, stop: int) -> np.ndarray:
    """Boolean masks [stop − start, L, S, S] of images [start, stop), from ``/images/masks`` or,
    in a file without it, from the ellipses (docs/1-dictionary.md). For a few images at a time: the rows are
    unpacked, one byte a pixel."""
    source = str(path)
    with _open(path) as file:
        header, _ = _read_header(file, source)
        count = file["images/local_label"].shape[0]
        if not 0 <= start <= stop <= count:
            raise DictionaryError(f"{source}: images {start}..{stop - 1} are outside 0..{count - 1}")
        if "images/masks" in file:
            return unpack(file["images/masks"][start:stop], header.mask_size)
        ellipses = file["images/ellipse"][start:stop]
    size, chi2 = header.mask_size, header.ellipse_chi2
    return np.array([[ellipse_mask(e, size, chi2) for e in row] for row in ellipses], dtype=bool).reshape(
        stop - start, len(header.concepts), size, size)
