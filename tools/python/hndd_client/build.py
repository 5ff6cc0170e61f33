"""Build a Face Dictionary (docs/1-dictionary.md) from public face datasets on disk (``build-dictionary``).

    python3 -m hndd_client build-dictionary --hnd-folder DIR --out D.h5 [--mask-size S] [--size PX]
        [--skip-missing]

reads the Face Dictionary as its authors publish it (``hnd_folder.py``). Or, from datasets with
labels but no masks, drawing each concept's mask from 68 face landmarks (``landmarks.py``):

    python3 -m hndd_client build-dictionary [--celeba-attrs list_attr_celeba.txt --celeba-images DIR]
        [--utkface DIR] [--au-csv F.csv [--au-images DIR] [--au-threshold T]]
        [--landmarks-csv L.csv] [--landmarks dlib] --size PX --out D.h5 [--mask-size 112]
        [--max-per-source N] [--skip-missing]

Sources and what each annotates (everything else is −1, "not annotated", for its images):

* CelebA: ``list_attr_celeba.txt`` (line 1 the image count, line 2 the 40 attribute names, then
  ``file v1 … v40`` with values 1 / −1). Attributes map to taxonomy concepts (``CELEBA_CONCEPTS``)
  and ``Male`` to gender.
* UTKFace: image files named ``age_gender_race_date.jpg`` (also ``….jpg.chip.jpg``); gender 0 is
  male and 1 female, race 0 white, 1 black, 2 asian, 3 indian, 4 others (→ −1). Ages bin as
  [0, 20) → 0-20, [20, 40) → 20-40, [40, 60) → 40-60, 60 and over → 60+. UTKFace images are
  global images only (no landmarks, every local label −1), as in the paper's dictionary. The
  published release has a few malformed names (a missing race field, a stray space, a missing
  dot): they are reported by name and left out, never fatal.
* Skin tone: neither CelebA nor UTKFace labels it, so it stays −1 (not annotated) everywhere; the
  build says so rather than inventing it from pixel colours.
* Action units: a CSV (EmotioNet / DISFA style) with an image column (``image``, ``file``,
  ``filename``, ``path`` or ``name``) and one column per AU (``AU1``, ``AU01``, ``AU 1``,
  ``AU01_c``); a value ≥ ``--au-threshold`` (default 1) is present, below it absent, and an
  empty cell, ``NA``, a negative value or 999 (EmotioNet's "not coded") is not annotated. Image
  paths are relative to ``--au-images`` or else to the CSV's folder.

Local concepts need landmarks: from ``--landmarks-csv`` (``image,x0,y0,…,x67,y67`` in pixels of the
original image, pixel centres at integer coordinates, iBUG-68 order; ``image`` matches a source's
file name or its path relative to the source folder) or, for images the table lacks, detected with
the paper's detector (``--landmarks dlib``, ``face_detector.py``; ``pip install
'hndd-client[landmarks]'``). An image without landmarks (no face found) keeps its global labels
and has every local label −1; the build counts them. Facial parts are present (1) on every image
that has landmarks. Images are centre-cropped to a square and resized to ``--size``; a concept whose
landmarks lie outside the crop is marked −1. Masks are written as rasters (docs/1-dictionary.md version 2):
bilateral concepts are one ellipse per side. The concepts are the published dictionary's
(``hnd_folder.published_taxonomy``: 8 parts, no chin) with the attributes only when CelebA is a
source and the action units only when an AU CSV is. ``/images/source`` is the source's name and the
image's path relative to its folder: ``celeba/000001.jpg``, ``utkface/…``, ``au/…``.
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .cli import positive_int
from .face_detector import DETECTORS, DetectorUnavailable
from .dictionary_io import DEFAULT_MASK_SIZE, DictionaryHeader, DictionaryWriter
from .landmarks import DEFAULT_CHI2, LandmarkError, check_landmarks, concept_ellipses, concept_masks
from .progress import Progress
from .taxonomy import ACTION_UNIT, ATTRIBUTE, PART, Taxonomy

CELEBA_CONCEPTS = {
    "5_o_Clock_Shadow": "five_o_clock_shadow", "Arched_Eyebrows": "arched_eyebrows",
    "Bags_Under_Eyes": "bags_under_eyes", "Big_Nose": "big_nose", "Bushy_Eyebrows": "bushy_eyebrows",
    "Double_Chin": "double_chin", "Eyeglasses": "eyeglasses", "Goatee": "goatee",
    "High_Cheekbones": "high_cheekbones", "Mouth_Slightly_Open": "mouth_slightly_open", "Mustache": "mustache",
    "Narrow_Eyes": "narrow_eyes", "No_Beard": "no_beard", "Pointy_Nose": "pointy_nose",
    "Rosy_Cheeks": "rosy_cheeks", "Wearing_Lipstick": "wearing_lipstick", "Smiling": "smiling", "Big_Lips": "big_lips",
}
CELEBA_GENDER_ATTRIBUTE = "Male"
UTK_RACES = {0: "white", 1: "black", 2: "asian", 3: "indian", 4: None}
UTK_GENDERS = {0: "male", 1: "female"}
LOCAL_SOURCES = ("celeba", "au")
WRITE_SLICE = 64  # images written at a time (one h5py call a dataset, not one an image)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
AU_COLUMN = re.compile(r"^\s*AU\s*0*([0-9]+)\s*(?:_([cr]))?\s*$", re.IGNORECASE)
IMAGE_COLUMNS = ("image", "file", "filename", "path", "name", "image_path")
AU_NOT_CODED = 999.0



class BuildError(ValueError):
    """Malformed input for the builder; the message names the file (and line) at fault."""


@dataclass
class ImageRecord:
    """One image to put in the dictionary and what its source says about it."""

    source: str
    key: str  # file name or path relative to the source folder, as the source names it
    path: Path
    global_labels: Dict[str, str] = field(default_factory=dict)  # category -> subgroup
    local_labels: Dict[str, int] = field(default_factory=dict)  # concept -> 1 / 0 / -1

    @property
    def needs_landmarks(self) -> bool:
        """Images of a source with local concepts (CelebA, AU) need masks; UTKFace's are global only."""
        return self.source in LOCAL_SOURCES


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------

def read_celeba(attributes_path: Path, images_dir: Path, taxonomy: Taxonomy) -> List[ImageRecord]:
    """Parses ``list_attr_celeba.txt``; raises BuildError with file and line for malformed lines."""
    try:
        lines = attributes_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BuildError(f"{attributes_path}: cannot read ({error})") from None
    if len(lines) < 2:
        raise BuildError(f"{attributes_path}: expected an image count on line 1 and attribute names on line 2")
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise BuildError(f"{attributes_path}:1: expected the number of images, got {lines[0].strip()[:40]!r}") from None
    names = lines[1].split()
    if not names:
        raise BuildError(f"{attributes_path}:2: expected the attribute names")
    if len(set(names)) != len(names):
        raise BuildError(f"{attributes_path}:2: an attribute name appears twice")
    column = {name: i for i, name in enumerate(names)}
    mapped = {attribute: concept for attribute, concept in CELEBA_CONCEPTS.items() if attribute in column}
    for concept in mapped.values():
        taxonomy.concept_index(concept)  # the taxonomy must know every mapped concept

    records = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise BuildError(f"{attributes_path}:{number}: expected a file name and {len(names)} values, "
                             f"got {len(fields)} fields")
        values = []
        for position, text in enumerate(fields[1:]):
            if text not in ("1", "-1"):
                raise BuildError(f"{attributes_path}:{number}: value {text!r} for {names[position]} "
                                 f"must be 1 or -1")
            values.append(text == "1")
        record = ImageRecord("celeba", fields[0], images_dir / fields[0])
        for attribute, concept in mapped.items():
            record.local_labels[concept] = int(values[column[attribute]])
        if CELEBA_GENDER_ATTRIBUTE in column:
            record.global_labels["gender"] = "male" if values[column[CELEBA_GENDER_ATTRIBUTE]] else "female"
        records.append(record)
    if len(records) != declared:
        raise BuildError(f"{attributes_path}:1: declares {declared} images but lists {len(records)}")
    return records


def utk_age_group(age: int) -> str:
    return "0-20" if age < 20 else "20-40" if age < 40 else "40-60" if age < 60 else "60+"


UTK_NAME = re.compile(r"^(\d{1,3})_(\d)_(\d)_(\d+)\.(?:jpe?g|png)(?:\.chip\.jpg)?$", re.IGNORECASE)
SHOWN_NAMES = 10  # malformed names listed in the report; the rest are counted


def parse_utk_name(name: str) -> Optional[Dict[str, str]]:
    """Global labels of ``age_gender_race_date.jpg[.chip.jpg]``, or None for a malformed name."""
    match = UTK_NAME.match(name)
    if match is None:
        return None
    age, gender, race = (int(match.group(k)) for k in (1, 2, 3))
    if age > 130 or gender not in UTK_GENDERS or race not in UTK_RACES:
        return None
    labels = {"age": utk_age_group(age), "gender": UTK_GENDERS[gender]}
    if UTK_RACES[race] is not None:
        labels["ethnicity"] = UTK_RACES[race]
    return labels


def read_utkface(directory: Path, log=None) -> List[ImageRecord]:
    """UTKFace images: labels come from the file names ``age_gender_race_date.jpg``.

    The public release has a few malformed names (a missing race field, a stray space, a
    missing dot); they are reported by name and left out, never fatal."""
    if not directory.is_dir():
        raise BuildError(f"{directory}: not a directory (--utkface expects the folder of UTKFace images)")
    records, malformed = [], []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or not any(path.name.lower().endswith(s) for s in IMAGE_SUFFIXES):
            continue
        labels = parse_utk_name(path.name)
        if labels is None:
            malformed.append(path.name)
            continue
        records.append(ImageRecord("utkface", path.name, path, global_labels=labels))
    if malformed:
        shown = ", ".join(repr(name) for name in malformed[:SHOWN_NAMES])
        more = f" and {len(malformed) - SHOWN_NAMES} more" if len(malformed) > SHOWN_NAMES else ""
        print(f"build-dictionary: left out {len(malformed)} UTKFace files in {directory} whose names do not read "
              f"age_gender_race_date.jpg (age 0..130, gender 0/1, race 0..4): {shown}{more}", file=log or sys.stderr)
    if not records:
        raise BuildError(f"{directory}: no UTKFace images with readable names found")
    return records


def csv_rows(path: Path):
    """(line number, stripped cells) of each non-blank row of a CSV file."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as error:
        raise BuildError(f"{path}: cannot read ({error.strerror})") from None
    with handle:
        try:
            for number, row in enumerate(csv.reader(handle), start=1):
                if row and any(cell.strip() for cell in row):
                    yield number, [cell.strip() for cell in row]
        except (csv.Error, UnicodeDecodeError) as error:
            raise BuildError(f"{path}: not a readable CSV file ({error})") from None


def read_au_csv(path: Path, images_dir: Optional[Path], taxonomy: Taxonomy, threshold: float) -> List[ImageRecord]:
    """An action-unit table: one row per image, one column per AU (see the module doc)."""
    rows = csv_rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise BuildError(f"{path}: empty file") from None
    lowered = [name.lower() for name in header]
    image_column = next((lowered.index(name) for name in IMAGE_COLUMNS if name in lowered), None)
    if image_column is None:
        raise BuildError(f"{path}:1: no image column (name one of: {', '.join(IMAGE_COLUMNS)})")
    taxonomy_aus = {c.name for c in taxonomy.concepts if c.type == 2}
    columns: Dict[str, tuple] = {}  # concept -> (column, kind)
    for position, name in enumerate(header):
        match = AU_COLUMN.match(name)
        if not match:
            continue
        concept, kind = f"AU{int(match.group(1))}", (match.group(2) or "").lower()
        if concept not in taxonomy_aus:
            continue
        if concept in columns:
            previous_kind = columns[concept][1]
            if {previous_kind, kind} == {"c", "r"}:  # OpenFace writes both: presence wins
                if kind == "c":
                    columns[concept] = (position, kind)
                continue
            raise BuildError(f"{path}:1: two columns give {concept} ({header[columns[concept][0]]!r} and {name!r})")
        columns[concept] = (position, kind)
    if not columns:
        raise BuildError(f"{path}:1: no action-unit column of the taxonomy ({', '.join(sorted(taxonomy_aus))})")

    base = images_dir if images_dir is not None else path.parent
    records = []
    for number, row in rows:
        if len(row) != len(header):
            raise BuildError(f"{path}:{number}: {len(row)} fields, the header has {len(header)}")
        if not row[image_column]:
            raise BuildError(f"{path}:{number}: empty image name")
        record = ImageRecord("au", row[image_column], base / row[image_column])
        for concept, (position, _) in columns.items():
            text = row[position]
            if text == "" or text.upper() in ("NA", "NAN", "N/A"):
                record.local_labels[concept] = -1
                continue
            try:
                value = float(text)
            except ValueError:
                raise BuildError(f"{path}:{number}: {header[position]} = {text!r} is not a number") from None
            if value < 0 or value == AU_NOT_CODED or math.isnan(value):
                record.local_labels[concept] = -1
            else:
                record.local_labels[concept] = int(value >= threshold)
        records.append(record)
    if not records:
        raise BuildError(f"{path}: no image rows")
    return records


class LandmarkTable:
    """``image,x0,y0,…,x67,y67`` rows, looked up by an image's key or file name."""

    def __init__(self, path: Path):
        self.path = path
        self.by_key: Dict[str, np.ndarray] = {}
        self.line_of: Dict[str, int] = {}
        self.by_name: Dict[str, str] = {}  # base name -> key; "" when two keys share it
        for number, row in csv_rows(path):
            if number == 1 and len(row) > 1 and not _is_number(row[1]):
                continue  # header
            if len(row) != 1 + 136:
                raise BuildError(f"{path}:{number}: expected an image name and 136 coordinates "
                                 f"(x0,y0,…,x67,y67), got {len(row)} fields")
            try:
                values = np.array([float(v) for v in row[1:]])
            except ValueError:
                bad = next(v for v in row[1:] if not _is_number(v))
                raise BuildError(f"{path}:{number}: coordinate {bad!r} is not a number") from None
            if not np.all(np.isfinite(values)):
                raise BuildError(f"{path}:{number}: coordinates must be finite numbers")
            key = row[0]
            if key in self.by_key:
                raise BuildError(f"{path}:{number}: image {key!r} already has landmarks on line {self.line_of[key]}")
            self.by_key[key] = values.reshape(68, 2)
            self.line_of[key] = number
            name = Path(key).name
            self.by_name[name] = "" if name in self.by_name else key

    def lookup(self, record: ImageRecord) -> Optional[np.ndarray]:
        for candidate in (record.key, str(record.path)):
            if candidate in self.by_key:
                return self.by_key[candidate]
        name = record.path.name
        if name in self.by_name:
            key = self.by_name[name]
            if key == "":
                raise BuildError(f"{self.path}: several rows end in {name!r}; give the image's path relative to "
                                 f"its source folder ({record.key!r}) so that {record.path} is unambiguous")
            return self.by_key[key]
        return None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False




# --------------------------------------------------------------------------------------------
# assembling the dictionary
# --------------------------------------------------------------------------------------------

def crop_and_resize(image: Image.Image, size: int):
    """Centre square crop, resized to size×size; returns (pixels, crop left, crop top, crop side)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.convert("RGB").crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.BILINEAR)), left, top, side


def image_rows(record: ImageRecord, landmark_points: Optional[np.ndarray], crop: tuple, taxonomy: Taxonomy,
               mask_size: int, chi2: float):
    """(global labels [Gc], local labels [L], ellipses [L, 5], masks [L, S, S] bool, normalised
    landmarks [68, 2]); bilateral concepts have one ellipse per side, so a NaN ellipse."""
    global_label = np.full(len(taxonomy.categories), -1, dtype=np.int32)
    for category, subgroup in record.global_labels.items():
        if category in taxonomy.category_names:
            global_label[taxonomy.category_index(category)] = taxonomy.subgroup_index(category, subgroup)
    local_label = np.full(len(taxonomy.concepts), -1, dtype=np.int8)
    ellipse = np.full((len(taxonomy.concepts), 5), np.nan, dtype=np.float32)
    masks = np.zeros((len(taxonomy.concepts), mask_size, mask_size), dtype=bool)
    normalised = np.full((68, 2), np.nan, dtype=np.float32)
    if landmark_points is None:
        return global_label, local_label, ellipse, masks, normalised
    left, top, side = crop
    points = (np.asarray(landmark_points, dtype=np.float64) + 0.5 - [left, top]) / side
    try:
        points = check_landmarks(points, f"landmarks of {record.path}")
    except LandmarkError as error:
        raise BuildError(str(error)) from None
    normalised[:] = points
    for index, concept in enumerate(taxonomy.concepts):
        label = 1 if concept.type == PART else record.local_labels.get(concept.name, -1)
        centre = points[list(concept.outline.landmarks)].mean(axis=0)
        if label != -1 and not np.all((centre >= 0) & (centre <= 1)):
            label = -1  # the region was cropped away
        local_label[index] = label
    present = local_label == 1
    ellipse = concept_ellipses(points, taxonomy, chi2, present)
    masks = concept_masks(points, taxonomy, mask_size, chi2, present)
    return global_label, local_label, ellipse, masks, normalised


def annotated_taxonomy(with_attributes: bool, with_action_units: bool) -> Taxonomy:
    """The published dictionary's concepts (8 parts, no chin) and, of its attributes and action
    units, only the kinds some source annotates: a concept nobody is labelled for is left out."""
    from .hnd_folder import published_taxonomy  # imported here: hnd_folder builds on this module

    published = published_taxonomy()
    kept = {PART: True, ATTRIBUTE: with_attributes, ACTION_UNIT: with_action_units}
    return published.with_concepts([c.name for c in published.concepts if kept[c.type]])


def _present_records(records: Sequence[ImageRecord], skip_missing: bool, log) -> List[ImageRecord]:
    present = []
    for record in records:
        if record.path.is_file():
            present.append(record)
        elif not skip_missing:
            raise BuildError(f"{record.path}: image listed by the {record.source} source is missing "
                             f"(--skip-missing leaves such images out)")
    if skip_missing and len(present) < len(records):
        print(f"build-dictionary: left out {len(records) - len(present)} missing images", file=log)
    if not present:
        raise BuildError("no images to write")
    return present


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise BuildError(f"{path}: cannot read the image ({error})") from None


def build_dictionary(records: Sequence[ImageRecord], out: Path, size: int, taxonomy: Taxonomy,
                     landmark_table: Optional[LandmarkTable] = None, detector=None,
                     mask_size: int = DEFAULT_MASK_SIZE, chi2: float = DEFAULT_CHI2, skip_missing: bool = False,
                     log=None) -> int:
    """Writes the dictionary; returns the number of images written. Notes and the progress line
    go to ``log`` (stderr). Landmarks are looked up (table) or detected (``detector.detect``)
    only for images whose source annotates local concepts."""
    log = log or sys.stderr
    present = _present_records(records, skip_missing, log)
    header = DictionaryHeader.from_taxonomy(taxonomy, mask_size, chi2)
    needing = without_face = 0
    progress = Progress(len(present), "build-dictionary", stream=log)
    with DictionaryWriter(out, header, len(present), size, with_landmarks=True) as writer:
        for start in range(0, len(present), WRITE_SLICE):
            rows = []
            for record in present[start:start + WRITE_SLICE]:
                image = _open_rgb(record.path)
                points = None
                if record.needs_landmarks:
                    needing += 1
                    points = landmark_table.lookup(record) if landmark_table is not None else None
                    if points is None and detector is not None:
                        points = detector.detect(np.asarray(image))
                    without_face += points is None
                pixels, left, top, side = crop_and_resize(image, size)
                rows.append(image_rows(record, points, (left, top, side), taxonomy, mask_size, chi2) + (pixels,))
                progress.advance()
            global_label, local_label, ellipse, masks, normalised, pixels = (np.stack(c) for c in zip(*rows))
            sources = [f"{record.source}/{record.key}" for record in present[start:start + WRITE_SLICE]]
            writer.write(start, global_label, local_label, ellipse, masks, sources, pixels, normalised)
    progress.finish()
    _report(present, taxonomy, needing, without_face, log)
    return len(present)


def _report(present: Sequence[ImageRecord], taxonomy: Taxonomy, needing: int, without_face: int, log) -> None:
    counts: Dict[str, int] = {}
    for record in present:
        counts[record.source] = counts.get(record.source, 0) + 1
    print("build-dictionary: " + ", ".join(f"{count:,} {source}" for source, count in counts.items())
          + f" images; {len(taxonomy.concepts)} local concepts", file=log)
    if without_face:
        print(f"build-dictionary: {without_face:,} of {needing:,} images that need landmarks have none (no face "
              f"found); they keep their global labels and their local concepts are not annotated (-1)", file=log)
    labelled = {category for record in present for category in record.global_labels}
    unlabelled = [name for name in taxonomy.category_names if name not in labelled]
    if unlabelled:
        print(f"build-dictionary: no source labels {', '.join(unlabelled)}: left unannotated (-1) for every image",
              file=log)


DATASET_OPTIONS = ("celeba_attrs", "celeba_images", "utkface", "au_csv", "au_images", "landmarks_csv", "landmarks",
                   "max_per_source")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hndd_client build-dictionary",
                                     description="Build a Face Dictionary from the authors' published folder, or "
                                                 "from CelebA, UTKFace and AU files.")
    parser.add_argument("--hnd-folder", type=Path,
                        help="the Face Dictionary in its authors' layout (Parts.csv, …, non_localizable/)")
    parser.add_argument("--celeba-attrs", type=Path, help="CelebA list_attr_celeba.txt")
    parser.add_argument("--celeba-images", type=Path, help="folder of the CelebA images")
    parser.add_argument("--utkface", type=Path, help="folder of UTKFace images")
    parser.add_argument("--au-csv", type=Path, help="action-unit CSV (image column + AU columns)")
    parser.add_argument("--au-images", type=Path, help="folder the AU CSV's image paths are relative to")
    parser.add_argument("--au-threshold", type=float, default=1.0,
                        help="AU value at or above which the AU is present (default 1; DISFA users often use 2)")
    parser.add_argument("--landmarks-csv", type=Path, help="image,x0,y0,...,x67,y67 in pixels")
    parser.add_argument("--landmarks", choices=sorted(DETECTORS),
                        help="detect 68 landmarks where --landmarks-csv has none (dlib: the paper's detector, "
                             "pip install 'hndd-client[landmarks]')")
    parser.add_argument("--size", type=positive_int,
                        help="side of the stored square images (with --hnd-folder: by default the mask size)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mask-size", type=positive_int, default=DEFAULT_MASK_SIZE)
    parser.add_argument("--max-per-source", type=positive_int, help="use at most N images of each source")
    parser.add_argument("--skip-missing", action="store_true", help="leave out listed images that are not on disk")
    options = parser.parse_args(argv)
    if options.hnd_folder is not None:
        given = [f"--{name.replace('_', '-')}" for name in DATASET_OPTIONS if getattr(options, name)]
        if given:
            parser.error(f"--hnd-folder builds the published dictionary on its own; drop {', '.join(given)}")
        return _build_folder(options)
    if options.size is None:
        parser.error("--size is required (the side of the stored square images)")
    if (options.celeba_attrs is None) != (options.celeba_images is None):
        parser.error("--celeba-attrs and --celeba-images go together")
    if options.au_images is not None and options.au_csv is None:
        parser.error("--au-images needs --au-csv")
    if not (options.celeba_attrs or options.utkface or options.au_csv):
        parser.error("give at least one source: --hnd-folder, --celeba-attrs/--celeba-images, --utkface or --au-csv")

    try:
        detector = DETECTORS[options.landmarks]() if options.landmarks else None
        taxonomy = annotated_taxonomy(options.celeba_attrs is not None, options.au_csv is not None)
        sources = []
        if options.celeba_attrs:
            sources.append(read_celeba(options.celeba_attrs, options.celeba_images, taxonomy))
        if options.utkface:
            sources.append(read_utkface(options.utkface))
        if options.au_csv:
            sources.append(read_au_csv(options.au_csv, options.au_images, taxonomy, options.au_threshold))
        records = [record for source in sources for record in source[:options.max_per_source]]
        table = LandmarkTable(options.landmarks_csv) if options.landmarks_csv else None
        count = build_dictionary(records, options.out, options.size, taxonomy, table, detector, options.mask_size,
                                 skip_missing=options.skip_missing)
    except (BuildError, DetectorUnavailable, OSError) as error:
        print(f"build-dictionary: {error}", file=sys.stderr)
        return 1
    print(f"wrote {count} images to {options.out}", file=sys.stderr)
    return 0


def _build_folder(options) -> int:
    from .hnd_folder import build_from_folder  # imported here: hnd_folder builds on this module

    try:
        count = build_from_folder(options.hnd_folder, options.out, options.mask_size, options.size,
                                  options.skip_missing)
    except (BuildError, OSError) as error:
        print(f"build-dictionary: {error}", file=sys.stderr)
        return 1
    print(f"wrote {count} images to {options.out}", file=sys.stderr)
    return 0
