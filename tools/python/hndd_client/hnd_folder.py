"""The Face Dictionary as its authors publish it (``build-dictionary --hnd-folder DIR``).

    python3 -m hndd_client build-dictionary --hnd-folder DIR --out D.h5 [--mask-size S] [--size PX]
        [--skip-missing]

The layout (Teotia, Lapedriza, Ostadabbas's ``visual_dictionary/``):

    DIR/Parts.csv, Attributes.csv, Action_Units.csv   columns image,labels; labels is the
        ';'-separated list of the mask files of the concepts present in that image
    DIR/parts/<id>/original.png, <concept>.png …      the photo and one mask per concept: RGB,
    DIR/attributes/<id>/…, DIR/AU/<id>/…               0 or 255, the photo's size
    DIR/non_localizable/{Age,Gender,Ethnicity,skin_tone}/<subgroup>/<image files>

What is written (docs/1-dictionary.md version 2):

* **Concepts**: exactly the 38 published ones — 8 parts, 18 attributes (CelebA's names), 12 action
  units — under our taxonomy's names (``PART_NAMES``, ``CELEBA_CONCEPTS``, ``AU_NAMES``), in
  taxonomy order. Nobody in this dictionary is annotated for our ``chin`` part, so it is left out;
  the chin region keeps goatee, double_chin, AU17 and AU26.
* **Sides**: our left/right are the subject's own (taxonomy ``side_convention``); the authors'
  are the viewer's. Measured on their sample, ``parts/001646/left_eye.png`` has its centroid at
  x = 68 of 178 (the image's left, where the subject's *right* eye is), and every ``left_*`` mask
  of that image lies left of its ``right_*`` twin. So their ``left_eye`` is our ``right_eye``, and
  likewise for brows and cheeks.
* **Labels**, per set: an image of Attributes.csv is annotated for the 18 attributes (listed
  means present, 1; unlisted absent, 0) and not for parts or action units (−1); an image of
  Action_Units.csv likewise for the 12 action units only; an image of Parts.csv has its listed
  parts present (a part it does not list, which the real CSV never does, is −1: its mask is
  unknown, the face still has one). A mask file names its concept by its whole stem: ``AU_1`` is
  not ``AU_12`` (the authors' own loader matches by substring and counts every AU_12 as AU_1).
  Images of ``non_localizable/<category>/<subgroup>/`` are labelled for that one category.
* **Masks**: each PNG converted to grey, resized to S×S with PIL's ``Image.NEAREST`` and present
  where the value is over 127, as the authors' loader does. ``/images/ellipse`` is all NaN.
* **Pixels**: each photo converted to RGB and resized to PX×PX with PIL's default filter for RGB
  (bicubic), as the authors' loader does (``--size``, by default the mask size).
* **Order and sources**: Parts, Attributes, Action_Units rows in CSV order, then the global
  images category by category (subgroups in taxonomy order, files by name). ``/images/source``
  is each image's path relative to DIR, as the CSV spells it.

Bad input stops the build with a message naming the file (and CSV line): a listed file that is
absent (``--skip-missing`` leaves such images out instead and reports their count in one line),
an unreadable image, a mask whose size differs from its photo's, an unknown concept or subgroup
folder (the message lists the known ones). Images are read and written a slice at a time.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from .build import CELEBA_CONCEPTS, BuildError, csv_rows
from .dictionary_io import DictionaryHeader, DictionaryWriter
from .landmarks import DEFAULT_CHI2
from .masks import pack
from .taxonomy import ACTION_UNIT, ATTRIBUTE, PART, Taxonomy, load_taxonomy

# the authors' part names (the viewer's sides) -> ours (the subject's sides); see the module doc
PART_NAMES = {"left_brow": "right_brow", "right_brow": "left_brow", "left_eye": "right_eye",
              "right_eye": "left_eye", "left_cheek": "right_cheek", "right_cheek": "left_cheek",
              "nose": "nose", "mouth": "mouth"}
AU_NAMES = {f"AU_{number}": f"AU{number}" for number in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)}
GLOBAL_FOLDER = "non_localizable"
# category folder -> (our category, subgroup folder -> our subgroup)
GLOBAL_FOLDERS = {
    "Age": ("age", {"zero_to_twenty": "0-20", "twenty_to_forty": "20-40", "forty_to_sixty": "40-60",
                    "sixty_plus": "60+"}),
    "Gender": ("gender", {"Male": "male", "Female": "female"}),
    "Ethnicity": ("ethnicity", {name: name for name in ("white", "black", "asian", "indian")}),
    "skin_tone": ("skin_tone", {"bright": "bright", "dark": "dark"}),
}
SLICE = 64  # images read, then written, at a time


@dataclass(frozen=True)
class LocalSet:
    """One CSV of the layout: what its images are annotated for and how it spells the concepts."""

    csv: str
    kind: int  # PART, ATTRIBUTE or ACTION_UNIT
    names: Dict[str, str]  # the authors' name -> ours
    unlisted: int  # label of a concept of this set that a row does not list


LOCAL_SETS = (LocalSet("Parts.csv", PART, PART_NAMES, -1),
              LocalSet("Attributes.csv", ATTRIBUTE, dict(CELEBA_CONCEPTS), 0),
              LocalSet("Action_Units.csv", ACTION_UNIT, AU_NAMES, 0))
PUBLISHED_CONCEPTS = frozenset(name for local_set in LOCAL_SETS for name in local_set.names.values())


@dataclass(frozen=True)
class Entry:
    """One image of the folder and what the layout says about it."""

    source: str  # path relative to the folder
    where: str  # "Attributes.csv line 5", or the global subgroup folder
    local_set: Optional[LocalSet] = None
    masks: Tuple[Tuple[str, str], ...] = ()  # (our concept, mask path relative to the folder)
    category: Optional[str] = None  # global images: our category and subgroup
    subgroup: Optional[str] = None

    def files(self) -> List[str]:
        return [self.source] + [path for _, path in self.masks]


def published_taxonomy() -> Taxonomy:
    """Our taxonomy reduced to the 38 published concepts and the four core global categories."""
    return load_taxonomy().without_optional().with_concepts(PUBLISHED_CONCEPTS)


# --------------------------------------------------------------------------------------------
# reading the layout
# --------------------------------------------------------------------------------------------

def _concept_of(label: str, local_set: LocalSet, where: str) -> str:
    name = PurePosixPath(label).stem  # whole names: AU_1 is not a prefix match of AU_12
    if name not in local_set.names:
        raise BuildError(f"{where}: unknown concept {name!r} (file {label}); {local_set.csv} knows "
                         f"{', '.join(local_set.names)}")
    return local_set.names[name]


def read_local_set(folder: Path, local_set: LocalSet) -> List[Entry]:
    """The rows of one CSV, checked: header, two fields a row, known concepts, no repeats."""
    path = folder / local_set.csv
    if not path.is_file():
        raise BuildError(f"{path}: missing (the layout has {', '.join(s.csv for s in LOCAL_SETS)})")
    rows = csv_rows(path)
    first = next(rows, None)
    if first is None or [cell.lower() for cell in first[1]] != ["image", "labels"]:
        raise BuildError(f"{path}:1: expected the header image,labels")
    entries = []
    for number, cells in rows:
        where = f"{path}:{number}"
        if len(cells) != 2 or not cells[0]:
            raise BuildError(f"{where}: expected an image and its ';'-separated mask files, got {len(cells)} fields")
        masks: Dict[str, str] = {}
        for label in filter(None, (part.strip() for part in cells[1].split(";"))):
            concept = _concept_of(label, local_set, where)
            if concept in masks:
                raise BuildError(f"{where}: {PurePosixPath(label).stem} is listed twice")
            masks[concept] = label
        entries.append(Entry(cells[0], where, local_set, tuple(masks.items())))
    return entries


def _visible(directory: Path) -> List[Path]:
    return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def _known_folder(path: Path, known: Sequence[str], what: str) -> None:
    if path.name not in known:
        raise BuildError(f"{path}: unknown {what} folder {path.name!r}; the layout knows {', '.join(known)}")
    if not path.is_dir():
        raise BuildError(f"{path}: expected a folder of images")


def read_global_part(folder: Path) -> List[Entry]:
    """The images of ``non_localizable/<category>/<subgroup>/``, subgroups in taxonomy order."""
    root = folder / GLOBAL_FOLDER
    if not root.is_dir():
        raise BuildError(f"{root}: missing (the global part: {', '.join(f'{c}/' for c in GLOBAL_FOLDERS)})")
    present = {}
    for path in _visible(root):
        _known_folder(path, list(GLOBAL_FOLDERS), "category")
        present[path.name] = path
    absent = [name for name in GLOBAL_FOLDERS if name not in present]
    if absent:
        raise BuildError(f"{root}: no {', '.join(absent)} folder (the layout has {', '.join(GLOBAL_FOLDERS)})")
    entries = []
    for category_folder, (category, subgroups) in GLOBAL_FOLDERS.items():
        by_subgroup: Dict[str, List[Path]] = {name: [] for name in subgroups}
        for path in _visible(present[category_folder]):
            _known_folder(path, list(subgroups), f"{category_folder} subgroup")
            by_subgroup[path.name] = _visible(path)
        for subgroup_folder, files in by_subgroup.items():
            for file in files:
                if not file.is_file():
                    raise BuildError(f"{file}: expected an image file, found a folder")
                entries.append(Entry(file.relative_to(folder).as_posix(), str(file.parent), category=category,
                                     subgroup=subgroups[subgroup_folder]))
    return entries


def read_layout(folder: Path) -> List[Entry]:
    """Every image the folder lists, in the order they are written; repeats are errors."""
    if not folder.is_dir():
        raise BuildError(f"{folder}: not a folder (--hnd-folder expects the authors' visual_dictionary/)")
    entries = [entry for local_set in LOCAL_SETS for entry in read_local_set(folder, local_set)]
    entries += read_global_part(folder)
    seen: Dict[str, str] = {}
    for entry in entries:
        if entry.source in seen:
            raise BuildError(f"{entry.where}: image {entry.source} is already listed ({seen[entry.source]})")
        seen[entry.source] = entry.where
    return entries


def drop_missing(folder: Path, entries: List[Entry], skip_missing: bool, log) -> List[Entry]:
    """The entries whose files are all on disk; without ``skip_missing`` an absent file is an error."""
    kept, skipped = [], {}
    for entry in entries:
        absent = next((name for name in entry.files() if not (folder / name).is_file()), None)
        if absent is None:
            kept.append(entry)
        elif not skip_missing:
            raise BuildError(f"{folder / absent}: listed ({entry.where}) but absent (--skip-missing leaves such "
                             f"images out)")
        else:
            group = entry.local_set.csv if entry.local_set else GLOBAL_FOLDER
            skipped[group] = skipped.get(group, 0) + 1
    if skipped:
        counts = ", ".join(f"{group} {count:,}" for group, count in skipped.items())
        print(f"build-dictionary: skipped {sum(skipped.values()):,} of {len(entries):,} listed images whose files "
              f"are absent ({counts})", file=log)
    return kept


# --------------------------------------------------------------------------------------------
# reading images
# --------------------------------------------------------------------------------------------

def _open_image(path: Path, where: str) -> Image.Image:
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy()
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise BuildError(f"{path}: cannot read the image ({error}; {where})") from None


def read_mask(path: Path, photo_size: Tuple[int, int], mask_size: int, where: str) -> np.ndarray:
    """S×S bool: the PNG in grey, resized with nearest neighbour, present where over 127."""
    image = _open_image(path, where)
    if image.size != photo_size:
        raise BuildError(f"{path}: the mask is {image.size[0]}×{image.size[1]} but its photo is "
                         f"{photo_size[0]}×{photo_size[1]} ({where})")
    return np.asarray(image.convert("L").resize((mask_size, mask_size), Image.NEAREST)) > 127


def entry_rows(folder: Path, entry: Entry, taxonomy: Taxonomy, size: int, mask_size: int):
    """(global labels [Gc], local labels [L], packed masks [L, S, ⌈S/8⌉], pixels [PX, PX, 3])."""
    photo = _open_image(folder / entry.source, entry.where)
    pixels = np.asarray(photo.convert("RGB").resize((size, size), Image.BICUBIC))
    global_label = np.full(len(taxonomy.categories), -1, dtype=np.int32)
    local_label = np.full(len(taxonomy.concepts), -1, dtype=np.int8)
    masks = np.zeros((len(taxonomy.concepts), mask_size, mask_size), dtype=bool)
    if entry.category is not None:
        global_label[taxonomy.category_index(entry.category)] = taxonomy.subgroup_index(entry.category, entry.subgroup)
    if entry.local_set is not None:
        for name in entry.local_set.names.values():
            local_label[taxonomy.concept_index(name)] = entry.local_set.unlisted
        for name, mask_path in entry.masks:
            index = taxonomy.concept_index(name)
            local_label[index] = 1
            masks[index] = read_mask(folder / mask_path, photo.size, mask_size, entry.where)
    return global_label, local_label, pack(masks), pixels


def build_from_folder(folder: Path, out: Path, mask_size: int, size: Optional[int] = None,
                      skip_missing: bool = False, log=None) -> int:
    """Writes the dictionary of an authors'-layout folder; returns the number of images written."""
    log = log or sys.stderr
    size = size or mask_size
    taxonomy = published_taxonomy()
    entries = drop_missing(folder, read_layout(folder), skip_missing, log)
    if not entries:
        raise BuildError(f"{folder}: no images to write")
    header = DictionaryHeader.from_taxonomy(taxonomy, mask_size, DEFAULT_CHI2)
    with DictionaryWriter(out, header, len(entries), size) as writer:
        for start in range(0, len(entries), SLICE):
            piece = entries[start:start + SLICE]
            rows = [entry_rows(folder, entry, taxonomy, size, mask_size) for entry in piece]
            global_label, local_label, masks, pixels = (np.stack(column) for column in zip(*rows))
            writer.write(start, global_label, local_label, None, masks, [entry.source for entry in piece], pixels)
        if writer.empty_masks:
            print(f"build-dictionary: {writer.empty_masks:,} present concepts have an empty mask at "
                  f"{mask_size}×{mask_size}", file=log)
    return len(entries)
