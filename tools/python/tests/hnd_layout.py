"""Writes a Face Dictionary folder in its authors' published layout: small ones for the tests, and
one of the full dictionary's size for the build benchmark.

    python3 tools/python/tests/hnd_layout.py --out /work/cache/hnd-full-fixture [--csvs DIR] [--seed S]

takes every name and count from the real CSVs (by default those of the shared sample,
``<repo>/../shared/data/hnd-face-dictionary-sample/visual_dictionary``: 4,000 + 9,969 + 10,663
local images) and writes, for each row, a photo (CelebA's 178×218 for parts and attributes, the
sample's EmotioNet 330×533 for action units) and each listed mask: RGB, 0 or 255, the photo's
size, one ellipse where the concept is, two for bilateral concepts (``BILATERAL``), at the places
a CelebA-aligned face has them, jittered per image. ``non_localizable/`` gets 1,000 images a
subgroup (gender 2,000, skin tone 1,500) of UTKFace's 200×200. The photos are smooth random
colour fields with pixel noise: nobody's face, but PNGs that cost what photos cost to decode. The
``*_overlap.png`` and ``lm.png`` files of the real layout are left out (no builder reads them).
About 6 GB and a quarter of an hour; write it outside the repository (e.g. under /work/cache).
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

SAMPLE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hnd-face-dictionary-sample" / \
    "visual_dictionary"
CSV_NAMES = ("Parts.csv", "Attributes.csv", "Action_Units.csv")
PHOTO_SIZE = {"Parts.csv": (178, 218), "Attributes.csv": (178, 218), "Action_Units.csv": (330, 533)}
GLOBAL_PHOTO_SIZE = (200, 200)
FULL_GLOBAL_COUNTS = {("Age", name): 1000 for name in ("zero_to_twenty", "twenty_to_forty", "forty_to_sixty",
                                                        "sixty_plus")}
FULL_GLOBAL_COUNTS.update({("Gender", name): 2000 for name in ("Male", "Female")})
FULL_GLOBAL_COUNTS.update({("Ethnicity", name): 1000 for name in ("white", "black", "asian", "indian")})
FULL_GLOBAL_COUNTS.update({("skin_tone", name): 1500 for name in ("bright", "dark")})

# where a CelebA-aligned face has things, as fractions of the photo (x right, y down; the image's
# left first, which is the subject's right): centre x, centre y, half-width, half-height
IMAGE_LEFT, IMAGE_RIGHT = 0, 1
SIDES = {
    "brow": ((0.37, 0.445, 0.085, 0.022), (0.62, 0.445, 0.085, 0.022)),
    "eye": ((0.38, 0.51, 0.05, 0.022), (0.61, 0.51, 0.05, 0.022)),
    "under_eye": ((0.38, 0.56, 0.05, 0.02), (0.61, 0.56, 0.05, 0.02)),
    "cheek": ((0.35, 0.63, 0.08, 0.07), (0.66, 0.63, 0.08, 0.07)),
    "cheekbone": ((0.34, 0.59, 0.08, 0.05), (0.67, 0.59, 0.08, 0.05)),
    "outer_brow": ((0.33, 0.44, 0.045, 0.025), (0.66, 0.44, 0.045, 0.025)),
}
MIDDLE = {
    "nose": (0.49, 0.6, 0.07, 0.08), "mouth": (0.49, 0.72, 0.1, 0.035), "lips": (0.49, 0.72, 0.11, 0.045),
    "chin": (0.49, 0.86, 0.1, 0.05), "lower_face": (0.49, 0.77, 0.22, 0.14), "glasses": (0.49, 0.51, 0.21, 0.06),
    "between_brows": (0.49, 0.45, 0.07, 0.03), "mustache": (0.49, 0.675, 0.09, 0.025),
    "double_chin": (0.49, 0.9, 0.12, 0.05), "jaw": (0.49, 0.82, 0.13, 0.07),
}
BILATERAL = {"Arched_Eyebrows": "brow", "Bushy_Eyebrows": "brow", "Narrow_Eyes": "eye", "Bags_Under_Eyes": "under_eye",
             "High_Cheekbones": "cheekbone", "Rosy_Cheeks": "cheek", "AU_2": "outer_brow", "AU_5": "eye",
             "AU_6": "cheekbone"}
ONE_SIDE = {"left_brow": ("brow", IMAGE_LEFT), "right_brow": ("brow", IMAGE_RIGHT),
            "left_eye": ("eye", IMAGE_LEFT), "right_eye": ("eye", IMAGE_RIGHT),
            "left_cheek": ("cheek", IMAGE_LEFT), "right_cheek": ("cheek", IMAGE_RIGHT)}
ONE_ELLIPSE = {"nose": "nose", "mouth": "mouth", "5_o_Clock_Shadow": "lower_face", "Big_Lips": "lips",
               "Big_Nose": "nose", "Double_Chin": "double_chin", "Eyeglasses": "glasses", "Goatee": "chin",
               "Mouth_Slightly_Open": "mouth", "Mustache": "mustache", "No_Beard": "lower_face",
               "Pointy_Nose": "nose", "Smiling": "mouth", "Wearing_Lipstick": "mouth", "AU_1": "between_brows",
               "AU_4": "between_brows", "AU_9": "nose", "AU_12": "mouth", "AU_15": "mouth", "AU_17": "chin",
               "AU_20": "mouth", "AU_25": "mouth", "AU_26": "jaw"}

Row = Tuple[str, List[str]]  # image path, mask paths (relative to the folder)


def ellipses_of(concept: str) -> Tuple[Tuple[float, float, float, float], ...]:
    """The ellipses (fractions of the photo) the authors' masks have for a concept, by its file stem."""
    if concept in BILATERAL:
        return SIDES[BILATERAL[concept]]
    if concept in ONE_SIDE:
        place, side = ONE_SIDE[concept]
        return (SIDES[place][side],)
    if concept in ONE_ELLIPSE:
        return (MIDDLE[ONE_ELLIPSE[concept]],)
    raise KeyError(f"no place for concept {concept!r}")


def mask_image(concept: str, size: Tuple[int, int], shift: Sequence[float], scale: float) -> Image.Image:
    """The concept's mask as the authors ship it: RGB, 255 inside its ellipses, 0 elsewhere."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for cx, cy, rx, ry in ellipses_of(concept):
        x, y = (cx + shift[0]) * width, (cy + shift[1]) * height
        a, b = rx * scale * width, ry * scale * height
        draw.ellipse([x - a, y - b, x + a, y + b], fill=(255, 255, 255))
    return image


def photo_image(size: Tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A smooth random colour field with pixel noise, at ``size`` (width, height)."""
    coarse = Image.fromarray(rng.integers(30, 226, (6, 5, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    noisy = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (size[1], size[0], 3), dtype=np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_row(folder: Path, image: str, masks: Sequence[str], size: Tuple[int, int], rng: np.random.Generator):
    """One listed image: its photo and each mask file named in ``masks``."""
    path = folder / image
    path.parent.mkdir(parents=True, exist_ok=True)
    photo_image(size, rng).save(path)
    shift, scale = rng.uniform(-0.02, 0.02, 2), rng.uniform(0.9, 1.1)
    for mask in masks:
        mask_image(PurePosixPath(mask).stem, size, shift, scale).save(folder / mask)


def write_csv(path: Path, rows: Sequence[Row]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image", "labels"])
        writer.writerows([image, ";".join(masks)] for image, masks in rows)


def write_layout(folder: Path, rows: Dict[str, Sequence[Row]], global_counts: Dict[Tuple[str, str], int],
                 seed: int = 0, log=None) -> None:
    """The CSVs (``rows`` by CSV name), every listed file, and ``non_localizable/``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    started, written = time.monotonic(), 0
    for name in CSV_NAMES:
        write_csv(folder / name, rows.get(name, ()))
        for image, masks in rows.get(name, ()):
            write_row(folder, image, masks, PHOTO_SIZE[name], rng)
            written += 1
            if log and written % 2000 == 0:
                print(f"{written:,} local images ({time.monotonic() - started:.0f} s)", file=log, flush=True)
    for (category, subgroup), count in global_counts.items():
        directory = folder / "non_localizable" / category / subgroup
        directory.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            photo_image(GLOBAL_PHOTO_SIZE, rng).save(directory / f"{k:05d}.png")


def read_rows(csv_folder: Path, limit: Optional[int] = None) -> Dict[str, List[Row]]:
    """The rows of the real CSVs (the first ``limit`` of each)."""
    rows = {}
    for name in CSV_NAMES:
        with open(csv_folder / name, newline="", encoding="utf-8") as handle:
            listed = [(row["image"], [m for m in row["labels"].split(";") if m]) for row in csv.DictReader(handle)]
        rows[name] = listed[:limit]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write a Face Dictionary folder of the full size, in its "
                                                 "authors' layout, from the real CSVs.")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (outside the repository)")
    parser.add_argument("--csvs", type=Path, default=SAMPLE, help="folder of the real CSVs (default: the sample)")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    if options.out.exists() and any(options.out.iterdir()):
        parser.error(f"{options.out} is not empty")
    rows = read_rows(options.csvs)
    started = time.monotonic()
    write_layout(options.out, rows, FULL_GLOBAL_COUNTS, options.seed, log=sys.stderr)
    local = sum(len(r) for r in rows.values())
    print(f"wrote {local:,} local and {sum(FULL_GLOBAL_COUNTS.values()):,} global images to {options.out} "
          f"in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
