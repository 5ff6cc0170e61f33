#!/usr/bin/env python3
"""Whether two snapshot files hold the same results, bit for bit: every dataset of both (values
as bytes, NaN included) but `time_unix`, which says when a snapshot was taken. For checking that a
change of how the daemon holds its state changed no number. Each side is a snapshot file (.h5,
its row files beside it) or the datasets `save` kept of one (.npz: memory_profile.py
--keep-snapshots, whose run directory is gone after the run).

    python3 tools/bench/compare_snapshots.py A.h5|A.npz B.h5|B.npz
"""
import sys

import h5py
import numpy as np

#: Datasets that differ between two runs by design.
SKIPPED = {"time_unix"}


def datasets(path: str) -> dict[str, np.ndarray]:
    found = {}
    with h5py.File(path, "r") as f:
        def visit(name, item):
            if isinstance(item, h5py.Dataset) and name.rsplit("/", 1)[-1] not in SKIPPED:
                found[name] = item[()]
        f.visititems(visit)
    return found


def save(snapshots: str, path: str) -> None:
    """Keeps the datasets of the snapshot file `snapshots` (but `time_unix`) in `path` (.npz)."""
    np.savez(path, **{name.replace("/", ":"): value for name, value in datasets(snapshots).items()})


def load(path: str) -> dict[str, np.ndarray]:
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=True) as kept:  # our own files: string datasets are objects
            return {name.replace(":", "/"): kept[name] for name in kept.files}
    return datasets(path)


def differences(a: str, b: str) -> list[str]:
    first, second = load(a), load(b)
    problems = [f"{name}: only in {a if name in first else b}" for name in sorted(set(first) ^ set(second))]
    for name in sorted(set(first) & set(second)):
        x, y = np.asarray(first[name]), np.asarray(second[name])
        # Strings of variable length are objects: compared as values, the rest as bytes.
        same = x.tolist() == y.tolist() if x.dtype == object else x.tobytes() == y.tobytes()
        if x.shape != y.shape or x.dtype != y.dtype or not same:
            problems.append(f"{name}: differs ({x.shape} {x.dtype} vs {y.shape} {y.dtype})")
    return problems


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    problems = differences(sys.argv[1], sys.argv[2])
    for problem in problems:
        print(problem)
    count = len(load(sys.argv[1]))
    print(f"{'identical' if not problems else 'DIFFERENT'}: {count} datasets compared (time_unix skipped)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
