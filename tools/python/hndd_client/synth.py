"""Synthetic Face Dictionary and biased training sets (``synth-dictionary``, ``synth-trainset``).

``python3 -m hndd_client synth-dictionary --images N --size PX --out D.h5 --seed S
[--preview sheet.png] [--mask-size 112] [--grayscale-fraction F] [--workers W]``
renders N faces (``face_renderer``) and writes a docs/1-dictionary.md version-2 dictionary with
``/images/pixels`` and the ground-truth ``/images/landmarks``. Masks are drawn as the published
Face Dictionary draws them: one ellipse per side for bilateral concepts (the taxonomy's
``sides``: high cheekbones, arched eyebrows, …), one ellipse for the others, each rasterised by
docs/1-dictionary.md's pixel-centre test and stored in ``/images/masks``; ``/images/ellipse`` keeps the
ellipse of one-ellipse concepts (NaN for bilateral ones) and ``/images/source`` reads
``synthetic/seed-S/I`` (face I of seed S). Labels: every local concept is annotated (parts are
always visible, attributes and action units are 1/0 as drawn); global labels are −1 where a
real dataset would lack them: 4 % of images have no age, 2 % no gender, ethnicity "other"
(6 %) and a further 3 % have none, and skin tone is only labelled when the skin colour is clearly
dark (luminance < 0.5) or bright (> 0.6). With ``--grayscale-fraction F > 0`` a fraction F of
the images is grayscale and the optional ``colour_scheme`` category (colour, grayscale) is added.

``python3 -m hndd_client synth-trainset --task gender --bias-concept eyeglasses|grayscale
--bias P --images N --size PX --out T.h5 --seed S [--bias-class male]``
writes a training set with a controlled bias, the protocol of the paper's §5: in P % of the
images of the bias class (default: male for gender) the concept is present, in (100 − P) % of the
images of every other class. Classes are balanced; the counts are exact (rounded), not drawn.
File layout: ``trainset_io.py``.

``--bias 50`` gives an unbiased set to test on. Each image depends only on (seed, index), so
results do not change with the number of worker processes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .cli import positive_int
from .dictionary_io import DEFAULT_MASK_SIZE, DictionaryHeader, DictionaryWriter, FaceDictionary, read_dictionary
from .face_renderer import FaceSpec, concept_presence, render, sample_face_spec, skin_luminance
from .landmarks import DEFAULT_CHI2, concept_ellipses, concept_masks
from .masks import pack, packed_width
from .taxonomy import Taxonomy, load_taxonomy
from .trainset_io import write_trainset

UNLABELLED_AGE, UNLABELLED_GENDER, UNLABELLED_ETHNICITY = 0.04, 0.02, 0.03
DARK_SKIN_BELOW, BRIGHT_SKIN_ABOVE = 0.5, 0.6
CHUNK = 64  # images per worker task
TRAINSET_TASKS = {"gender": ("female", "male"), "age": ("0-20", "20-40", "40-60", "60+"),
                  "ethnicity": ("white", "black", "asian", "indian")}
TASK_FIELD = {"gender": "gender", "age": "age_group", "ethnicity": "ethnicity"}
BIAS_CONCEPTS = ("eyeglasses", "grayscale")


class SynthError(ValueError):
    """Bad synthetic-data options; the message says which and why."""


def dictionary_taxonomy(grayscale_fraction: float) -> Taxonomy:
    """The taxonomy a synthetic dictionary uses: colour_scheme only when some images are grayscale."""
    taxonomy = load_taxonomy()
    return taxonomy if grayscale_fraction > 0 else taxonomy.without_optional()


def global_labels(spec: FaceSpec, taxonomy: Taxonomy, rng: np.random.Generator) -> np.ndarray:
    """[Gc] global subgroup indices of a face, −1 where this face is left unlabelled."""
    labels = np.full(len(taxonomy.categories), -1, dtype=np.int32)
    for index, name in enumerate(taxonomy.category_names):
        if name == "age" and rng.random() >= UNLABELLED_AGE:
            labels[index] = taxonomy.subgroup_index("age", spec.age_group)
        elif name == "gender" and rng.random() >= UNLABELLED_GENDER:
            labels[index] = taxonomy.subgroup_index("gender", spec.gender)
        elif name == "ethnicity" and spec.ethnicity != "other" and rng.random() >= UNLABELLED_ETHNICITY:
            labels[index] = taxonomy.subgroup_index("ethnicity", spec.ethnicity)
        elif name == "skin_tone":
            luminance = skin_luminance(spec.appearance.skin)
            if luminance < DARK_SKIN_BELOW:
                labels[index] = taxonomy.subgroup_index("skin_tone", "dark")
            elif luminance > BRIGHT_SKIN_ABOVE:
                labels[index] = taxonomy.subgroup_index("skin_tone", "bright")
        elif name == "colour_scheme":
            labels[index] = taxonomy.subgroup_index("colour_scheme", "grayscale" if spec.grayscale else "colour")
    return labels


def synthetic_source(seed: int, index: int) -> str:
    """``/images/source`` of a rendered face: what regenerates it."""
    return f"synthetic/seed-{seed}/{index}"


def _render_dictionary_chunk(task):
    """Worker: renders images [start, stop) of a synthetic dictionary (masks packed, to stay small)."""
    seed, start, stop, size, mask_size, grayscale_fraction, chi2 = task
    taxonomy = dictionary_taxonomy(grayscale_fraction)
    count, concepts = stop - start, len(taxonomy.concepts)
    pixels = np.empty((count, size, size, 3), dtype=np.uint8)
    landmarks = np.empty((count, 68, 2), dtype=np.float32)
    global_label = np.empty((count, len(taxonomy.categories)), dtype=np.int32)
    local_label = np.empty((count, concepts), dtype=np.int8)
    ellipse = np.empty((count, concepts, 5), dtype=np.float32)
    masks = np.empty((count, concepts, mask_size, packed_width(mask_size)), dtype=np.uint8)
    for row, index in enumerate(range(start, stop)):
        rng = np.random.default_rng([seed, index])
        spec = sample_face_spec(rng, grayscale=bool(rng.random() < grayscale_fraction))
        pixels[row], points = render(spec, size)
        presence = concept_presence(spec)
        present = [presence[name] for name in taxonomy.concept_names]
        landmarks[row] = points
        global_label[row] = global_labels(spec, taxonomy, rng)
        local_label[row] = present
        where = f"synthetic image {index}"
        ellipse[row] = concept_ellipses(points, taxonomy, chi2, present, where=where)
        masks[row] = pack(concept_masks(points, taxonomy, mask_size, chi2, present, where=where))
    sources = [synthetic_source(seed, index) for index in range(start, stop)]
    return start, pixels, landmarks, global_label, local_label, ellipse, masks, sources


def _chunks(count: int, seed: int, *rest):
    return [(seed, start, min(start + CHUNK, count)) + rest for start in range(0, count, CHUNK)]


def _run(worker, tasks, workers: int):
    """Runs ``worker`` over ``tasks``, in a process pool when more than one worker is asked for."""
    if workers <= 1 or len(tasks) == 1:
        yield from map(worker, tasks)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(worker, tasks)


def generate_dictionary(path, images: int, size: int, seed: int, mask_size: int = DEFAULT_MASK_SIZE,
                        grayscale_fraction: float = 0.0, workers: int = 1, chi2: float = DEFAULT_CHI2) -> None:
    """Renders and writes a synthetic dictionary (see the module doc)."""
    taxonomy = dictionary_taxonomy(grayscale_fraction)
    header = DictionaryHeader.from_taxonomy(taxonomy, mask_size, chi2)
    tasks = _chunks(images, seed, size, mask_size, grayscale_fraction, chi2)
    with DictionaryWriter(path, header, images, size, with_landmarks=True) as writer:
        for start, pixels, landmarks, global_label, local_label, ellipse, masks, sources in _run(
                _render_dictionary_chunk, tasks, workers):
            writer.write(start, global_label, local_label, ellipse, masks, sources, pixels, landmarks)


def _tile_font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has a single bitmap font
        return ImageFont.load_default()


def write_preview(path, dictionary: FaceDictionary, tile: int = 176, columns: int = 8) -> None:
    """Contact sheet: one tile per local concept (an image showing it, its docs/1-dictionary.md mask outlined)
    and one per global subgroup. Concepts present in no image get an empty tile saying so.
    ``dictionary`` is read with its pixels and masks."""
    header, pixels = dictionary.header, dictionary.pixels
    global_label, local_label = dictionary.global_label, dictionary.local_label
    caption = 16
    font = _tile_font(12)
    entries = []
    used = set()
    for c, name in enumerate(header.concepts):
        candidates = np.flatnonzero(local_label[:, c] == 1)
        fresh = [n for n in candidates if n not in used]
        n = int(fresh[0] if fresh else candidates[0]) if len(candidates) else None
        if n is not None:
            used.add(n)
        entries.append((f"{name} ({('part', 'attr', 'AU')[header.concept_type[c]]})", n, c))
    for g, name in enumerate(header.subgroups):
        category = header.subgroup_category[g]
        candidates = np.flatnonzero(global_label[:, category] == g)
        fresh = [n for n in candidates if n not in used]
        n = int(fresh[0] if fresh else candidates[0]) if len(candidates) else None
        if n is not None:
            used.add(n)
        entries.append((f"{header.categories[category]}: {name}", n, None))

    rows = (len(entries) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * tile, rows * (tile + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (label, n, concept) in enumerate(entries):
        x, y = (k % columns) * tile, (k // columns) * (tile + caption)
        if n is None:
            draw.text((x + 4, y + tile // 2), "no image shows this", fill=(200, 0, 0), font=font)
        else:
            image = Image.fromarray(pixels[n]).resize((tile, tile), Image.BILINEAR)
            if concept is not None:
                mask = dictionary.mask(n, concept)
                big = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((tile, tile), Image.NEAREST)) > 0
                inner = big.copy()
                inner[1:-1, 1:-1] = big[1:-1, 1:-1] & big[:-2, 1:-1] & big[2:, 1:-1] & big[1:-1, :-2] & big[1:-1, 2:]
                edge = big & ~inner
                edge = edge | np.roll(edge, 1, axis=0) | np.roll(edge, 1, axis=1)
                array = np.asarray(image).copy()
                array[edge] = (0, 255, 0)
                image = Image.fromarray(array)
            sheet.paste(image, (x, y))
        draw.text((x + 3, y + tile + 1), label, fill=(0, 0, 0), font=font)
    sheet.save(path)


def preview_dictionary(dictionary_path, preview_path) -> None:
    write_preview(preview_path, read_dictionary(dictionary_path, with_masks=True))


# --------------------------------------------------------------------------------------------
# biased training sets
# --------------------------------------------------------------------------------------------

def trainset_plan(task: str, bias_concept: str, bias_percent: float, bias_class: str, images: int,
                  seed: int):
    """(class index per image, bias flag per image): balanced classes, exact bias fractions."""
    classes = TRAINSET_TASKS[task]
    rng = np.random.default_rng([seed, 2 ** 32 - 1])
    labels = np.arange(images) % len(classes)
    rng.shuffle(labels)
    bias = np.zeros(images, dtype=np.uint8)
    for k, name in enumerate(classes):
        members = np.flatnonzero(labels == k)
        percent = bias_percent if name == bias_class else 100.0 - bias_percent
        count = int(round(len(members) * percent / 100.0))
        bias[rng.permutation(members)[:count]] = 1
    return labels.astype(np.int64), bias


def _render_trainset_chunk(task):
    seed, start, stop, size, task_name, bias_concept, labels, bias = task
    classes = TRAINSET_TASKS[task_name]
    pixels = np.empty((stop - start, size, size, 3), dtype=np.uint8)
    for row, index in enumerate(range(start, stop)):
        rng = np.random.default_rng([seed, index])
        fixed = {TASK_FIELD[task_name]: classes[labels[row]], bias_concept: bool(bias[row])}
        pixels[row], _ = render(sample_face_spec(rng, **fixed), size)
    return start, pixels


def generate_trainset(path, task: str, bias_concept: str, bias_percent: float, images: int, size: int,
                      seed: int, bias_class: Optional[str] = None, workers: int = 1) -> None:
    if task not in TRAINSET_TASKS:
        raise SynthError(f"--task {task!r} is not supported; choose one of {', '.join(TRAINSET_TASKS)}")
    if bias_concept not in BIAS_CONCEPTS:
        raise SynthError(f"--bias-concept {bias_concept!r} is not supported; choose one of {', '.join(BIAS_CONCEPTS)}")
    if not 0.0 <= bias_percent <= 100.0:
        raise SynthError(f"--bias {bias_percent} must be a percentage between 0 and 100")
    classes = TRAINSET_TASKS[task]
    bias_class = bias_class or ("male" if task == "gender" else None)
    if bias_class not in classes:
        raise SynthError(f"--bias-class must be one of {', '.join(classes)} for task {task}")
    labels, bias = trainset_plan(task, bias_concept, bias_percent, bias_class, images, seed)
    tasks = [(seed, s, e, size, task, bias_concept, labels[s:e], bias[s:e])
             for (_, s, e) in _chunks(images, seed)]
    write_trainset(path, classes, labels, bias, size, _run(_render_trainset_chunk, tasks, workers), task=task,
                   bias_concept=bias_concept, bias_percent=float(bias_percent), bias_class=bias_class,
                   seed=np.int64(seed))


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a fraction between 0 and 1")
    return value


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def main_synth_dictionary(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hndd_client synth-dictionary",
                                     description="Render a synthetic Face Dictionary (docs/1-dictionary.md).")
    parser.add_argument("--images", type=positive_int, required=True, help="number of faces")
    parser.add_argument("--size", type=positive_int, required=True, help="image side in pixels (≥ 32)")
    parser.add_argument("--out", required=True, help="dictionary file to write (.h5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preview", help="also write a contact sheet PNG with mask outlines")
    parser.add_argument("--mask-size", type=positive_int, default=DEFAULT_MASK_SIZE,
                        help=f"mask grid side S (default {DEFAULT_MASK_SIZE})")
    parser.add_argument("--grayscale-fraction", type=_fraction, default=0.0,
                        help="fraction of grayscale images; > 0 adds the colour_scheme category")
    parser.add_argument("--workers", type=positive_int, default=_default_workers())
    options = parser.parse_args(argv)
    if options.size < 32:
        parser.error(f"--size {options.size} is too small to show the concepts; use at least 32")
    started = time.monotonic()
    try:
        generate_dictionary(options.out, options.images, options.size, options.seed, options.mask_size,
                            options.grayscale_fraction, options.workers)
        if options.preview:
            preview_dictionary(options.out, options.preview)
    except (OSError, ValueError) as error:
        print(f"synth-dictionary: {error}", file=sys.stderr)
        return 1
    print(f"wrote {options.images} images to {options.out} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def main_synth_trainset(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hndd_client synth-trainset",
                                     description="Render a training set with a controlled bias (paper §5).")
    parser.add_argument("--task", default="gender", choices=sorted(TRAINSET_TASKS))
    parser.add_argument("--bias-concept", required=True, choices=BIAS_CONCEPTS)
    parser.add_argument("--bias", type=float, required=True,
                        help="percentage P: the concept is in P%% of the bias class, (100-P)%% of the others")
    parser.add_argument("--bias-class", help="class that gets P%% (default: male for the gender task)")
    parser.add_argument("--images", type=positive_int, required=True)
    parser.add_argument("--size", type=positive_int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=positive_int, default=_default_workers())
    options = parser.parse_args(argv)
    if options.size < 32:
        parser.error(f"--size {options.size} is too small to show the concepts; use at least 32")
    try:
        generate_trainset(options.out, options.task, options.bias_concept, options.bias, options.images,
                          options.size, options.seed, options.bias_class, options.workers)
    except (OSError, ValueError) as error:
        print(f"synth-trainset: {error}", file=sys.stderr)
        return 1
    return 0
