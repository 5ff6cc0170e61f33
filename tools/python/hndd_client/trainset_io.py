"""The training-set file that ``tools/demo`` trains on (``synth-trainset``, ``real-trainset``).

    /images/pixels [N, PX, PX, 3] uint8
    /labels        [N] int64   task class, index into the attribute /labels.classes
    /bias          [N] uint8   1 where the bias concept is present
    / attributes   format = "hndd-trainset", version = 1, task, classes, bias_concept,
                   bias_percent, bias_class, seed (and whatever else the writer adds)
"""
from __future__ import annotations

from typing import Iterable, Sequence, Tuple

import h5py
import numpy as np

from .dictionary_io import STRING, replace_when_done

FORMAT = "hndd-trainset"


def write_trainset(path, classes: Sequence[str], labels, bias, size: int, pixel_chunks: Iterable[Tuple[int, np.ndarray]],
                   **attributes) -> None:
    """Writes the file through a temporary name; ``pixel_chunks`` yields (first row, pixels)."""
    labels = np.asarray(labels, dtype=np.int64)
    with replace_when_done(path) as partial, h5py.File(partial, "w") as file:
        file.attrs["format"] = FORMAT
        file.attrs["version"] = np.int32(1)
        file.attrs["classes"] = np.array(classes, dtype=object).astype(STRING)
        for key, value in attributes.items():
            file.attrs[key] = value
        target = file.create_dataset("images/pixels", shape=(len(labels), size, size, 3), dtype=np.uint8,
                                     chunks=(1, size, size, 3))
        labels_dataset = file.create_dataset("labels", data=labels)
        labels_dataset.attrs["classes"] = np.array(classes, dtype=object).astype(STRING)
        file.create_dataset("bias", data=np.asarray(bias, dtype=np.uint8))
        for start, pixels in pixel_chunks:
            target[start:start + len(pixels)] = pixels
