"""real-trainset's split: exact gender skew among smiling faces, a shared held-out set, no
dictionary image, and a clear error when a cell runs short."""
from pathlib import Path

import numpy as np
import pytest

from hndd_client.build import BuildError, ImageRecord
from hndd_client.real_trainset import split


def pool(counts):
    """Records with (smiling, female) cells of the given sizes."""
    records = []
    for (smiling, female), count in counts.items():
        for k in range(count):
            record = ImageRecord("celeba", f"{smiling}{int(female)}-{k:04d}.jpg", Path("/nowhere"))
            record.local_labels["smiling"] = smiling
            record.global_labels["gender"] = "female" if female else "male"
            records.append(record)
    return records


def cells(records):
    found = {}
    for r in records:
        key = (r.local_labels["smiling"], r.global_labels["gender"] == "female")
        found[key] = found.get(key, 0) + 1
    return found


POOL = pool({(1, True): 300, (1, False): 120, (0, True): 280, (0, False): 200})


@pytest.mark.parametrize("percent, expected", [(50, {(1, True): 50, (1, False): 50, (0, True): 50, (0, False): 50}),
                                               (90, {(1, True): 90, (1, False): 10, (0, True): 10, (0, False): 90})])
def test_the_skew_is_exact_and_the_test_set_is_shared_and_held_out(percent, expected):
    train, test = split(POOL, percent, 100, 20, seed=3)
    assert cells(train) == expected
    assert cells(test) == {cell: 20 for cell in expected}
    assert not {r.key for r in train} & {r.key for r in test}
    other_train, other_test = split(POOL, 100 - percent if percent != 50 else 90, 100, 20, seed=3)
    assert [r.key for r in other_test] == [r.key for r in test]  # one held-out set for every P of a seed
    assert [r.key for r in split(POOL, percent, 100, 20, seed=3)[0]] == [r.key for r in train]  # deterministic
    labels = np.array([r.local_labels["smiling"] for r in train])
    assert 0 < labels[:50].sum() < 50  # shuffled, not grouped by cell


def test_a_short_cell_names_what_is_missing():
    with pytest.raises(BuildError, match="needs 90 smiling male faces, the pool has 80"):
        split(POOL, 10, 100, 40, seed=0)
