"""The manual's page on the dictionary (docs/1-dictionary.md) lists every dataset and attribute a
builder writes, with its type: a dataset added to the writer and not to the manual fails here."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from hndd_client.synth import generate_dictionary

MANUAL = Path(__file__).resolve().parents[3] / "docs" / "1-dictionary.md"


def documented_rows(heading: str) -> dict[str, list[str]]:
    """The first table under `heading` in the page: its first column (back-quoted) → its cells."""
    text = MANUAL.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def h5_type(dataset: h5py.Dataset) -> str:
    if h5py.check_string_dtype(dataset.dtype):
        return "str"
    return np.dtype(dataset.dtype).name


def test_every_dataset_a_builder_writes_is_in_the_manual(tmp_path: Path):
    path = tmp_path / "dictionary.h5"
    generate_dictionary(path, images=8, size=32, seed=1, mask_size=16)
    documented = documented_rows("## Datasets")
    with h5py.File(path, "r") as f:
        written = {}
        f.visititems(lambda name, obj: written.__setitem__("/" + name, obj) if isinstance(obj, h5py.Dataset) else None)
        missing = sorted(set(written) - set(documented))
        assert not missing, f"{MANUAL}: datasets written but not documented: {missing}"
        for name, dataset in written.items():
            shape_cell, type_cell = documented[name][1], documented[name][2]
            assert type_cell == h5_type(dataset), f"{name}: documented {type_cell}, written {h5_type(dataset)}"
            axes = re.findall(r"[^\[\],\s][^,\]]*", shape_cell)
            assert len(axes) == dataset.ndim, f"{name}: documented shape {shape_cell}, written {dataset.shape}"
        attributes = documented_rows("## Attributes of `/`")
        assert set(f.attrs) <= set(attributes), f"attributes not documented: {sorted(set(f.attrs) - set(attributes))}"
        assert f.attrs["format"] == "hndd-dictionary" and "`hndd-dictionary`" in attributes["format"][2]
