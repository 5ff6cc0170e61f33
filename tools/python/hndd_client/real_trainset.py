"""A smile classifier's training set from real CelebA faces, skewed by gender (``real-trainset``).

    python3 -m hndd_client real-trainset --celeba-attrs list_attr_celeba.txt --celeba-images DIR
        --exclude D.h5 --female-share P --per-class N --size PX --out T.h5
        [--test-out TEST.h5 --test-per-cell M] [--seed S]

The paper's §4 finding (SMILE units tied to gender) as a controlled experiment: the task is
CelebA's ``Smiling``; among the N smiling faces a share P % is female, among the N others
(100 − P) % (the protocol of ``synth-trainset``: gender then predicts the label as strongly as
P says; P = 50 is unbiased). The counts are exact (rounded), not drawn.

Images listed in the dictionary ``--exclude`` (its ``/images/source``, ``celeba/<file>``) are
never used: the training faces are not the faces the model is dissected on, as in the paper.
``--test-out`` writes a held-out set, balanced over the four (smiling, gender) cells, M each;
it depends only on the seed and the pool, so the P = 50 and P = 90 sets of one seed share it and
neither trains on it. Pixels are the dictionary builder's: centre square crop, PX×PX. The file
format is ``trainset_io.py`` (``bias`` = female); ``tools/demo --real`` trains on it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import h5py
import numpy as np

from .build import BuildError, ImageRecord, _open_rgb, crop_and_resize, read_celeba
from .cli import positive_int
from .hnd_folder import published_taxonomy
from .trainset_io import write_trainset

CLASSES = ("not_smiling", "smiling")
CELLS = ((1, True), (1, False), (0, True), (0, False))  # (smiling, female)


def dictionary_sources(path: Path) -> set:
    with h5py.File(path, "r") as file:
        if "images/source" not in file:
            raise BuildError(f"{path}: no /images/source, so its images cannot be left out (--exclude)")
        return {s.decode() if isinstance(s, bytes) else str(s) for s in file["images/source"][()]}


def _cells(records: Sequence[ImageRecord]) -> Dict[tuple, List[ImageRecord]]:
    cells: Dict[tuple, List[ImageRecord]] = {cell: [] for cell in CELLS}
    for record in records:
        cells[(record.local_labels["smiling"], record.global_labels["gender"] == "female")].append(record)
    return cells


def _take(cells, wanted: Dict[tuple, int], rng, what: str) -> List[ImageRecord]:
    taken = []
    for cell, count in wanted.items():
        pool = cells[cell]
        if count > len(pool):
            smiling, female = cell
            raise BuildError(f"{what}: needs {count} {'smiling' if smiling else 'non-smiling'} "
                             f"{'female' if female else 'male'} faces, the pool has {len(pool)}; lower --per-class")
        chosen = set(rng.permutation(len(pool))[:count].tolist())
        taken += [pool[i] for i in sorted(chosen)]
        cells[cell] = [record for i, record in enumerate(pool) if i not in chosen]
    return taken


def split(records: Sequence[ImageRecord], female_share: float, per_class: int, test_per_cell: int, seed: int):
    """(training records, test records): test first (seed only), then training (seed and P)."""
    cells = _cells(records)
    test = _take(cells, {cell: test_per_cell for cell in CELLS}, np.random.default_rng([seed, 0]), "the test set")
    female = int(round(per_class * female_share / 100.0))
    wanted = {(1, True): female, (1, False): per_class - female, (0, False): female, (0, True): per_class - female}
    train = _take(cells, wanted, np.random.default_rng([seed, 1, int(round(female_share * 100))]), "the training set")
    order = np.random.default_rng([seed, 2]).permutation(len(train))
    return [train[i] for i in order], test


def write_set(path: Path, records: Sequence[ImageRecord], size: int, **attributes) -> None:
    labels = [record.local_labels["smiling"] for record in records]
    bias = [record.global_labels["gender"] == "female" for record in records]

    def chunks():
        for start in range(0, len(records), 64):
            yield start, np.stack([crop_and_resize(_open_rgb(r.path), size)[0] for r in records[start:start + 64]])

    write_trainset(path, CLASSES, labels, bias, size, chunks(), task="smiling", bias_concept="female",
                   bias_class="smiling", sources=np.array([r.key for r in records], dtype=object).astype(
                       h5py.string_dtype()), **attributes)


def main_real_trainset(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hndd_client real-trainset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--celeba-attrs", type=Path, required=True)
    parser.add_argument("--celeba-images", type=Path, required=True)
    parser.add_argument("--exclude", type=Path, required=True, help="the dictionary whose images are left out")
    parser.add_argument("--female-share", type=float, required=True, help="P: %% of the smiling faces that are female")
    parser.add_argument("--per-class", type=positive_int, required=True, help="faces per class (smiling, not)")
    parser.add_argument("--size", type=positive_int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test-out", type=Path, help="also write the balanced held-out test set")
    parser.add_argument("--test-per-cell", type=positive_int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    if not 0.0 <= options.female_share <= 100.0:
        parser.error(f"--female-share {options.female_share} must be a percentage between 0 and 100")
    try:
        excluded = dictionary_sources(options.exclude)
        records = [r for r in read_celeba(options.celeba_attrs, options.celeba_images, published_taxonomy())
                   if f"celeba/{r.key}" not in excluded]
        train, test = split(records, options.female_share, options.per_class, options.test_per_cell, options.seed)
        write_set(options.out, train, options.size, bias_percent=float(options.female_share),
                  seed=np.int64(options.seed))
        if options.test_out:
            write_set(options.test_out, test, options.size, bias_percent=50.0, seed=np.int64(options.seed))
    except (BuildError, OSError) as error:
        print(f"real-trainset: {error}", file=sys.stderr)
        return 1
    print(f"real-trainset: {len(train)} training faces (P = {options.female_share:g} % of the smiling ones female), "
          f"{len(test)} test faces, none of the {len(excluded)} dictionary images", file=sys.stderr)
    return 0
