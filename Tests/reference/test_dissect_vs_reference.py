"""`hndd dissect` against the exact NumPy reference (docs/3-numbers.md tolerances) and its bad-input errors.

Needs the built binary: $HNDD_BIN, else <repo>/.build/release/hndd. A missing binary fails the
tests (it never skips them). Run: python3 -m pytest Tests/reference -v
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Callable, Optional

import h5py
import numpy as np
import pytest

import compare
import generate
import hnd_reference as ref
from generate import GenerationOptions, LayerShape


@dataclasses.dataclass(frozen=True)
class DissectCase:
    name: str
    layers: tuple[LayerShape, ...]
    options: GenerationOptions
    batch_size: Optional[int] = None
    quantile: Optional[float] = None
    iou_floor: Optional[float] = None


CASES = (
    # The Done-when case: 2,000 images, 64 units, 7x7, S = 112, shuffled ids, batches of 256.
    DissectCase("done_when_2000x64_7x7_S112_shuffled_batch256",
                (LayerShape("layer4.2.conv1", 64, 7, 7),),
                GenerationOptions(n_images=2000, mask_size=112, seed=101), batch_size=256),
    # Non-square maps, float16 storage, no image_ids dataset (row m is image m), batches of one.
    DissectCase("nonsquare_5x9_float16_no_ids_batch1",
                (LayerShape("features.7", 16, 5, 9),),
                GenerationOptions(n_images=300, mask_size=56, seed=102, dtype="float16", write_image_ids=False),
                batch_size=1),
    # Everything awkward at once.
    DissectCase("negative_dead_unlabelled_absent_mixed_singular",
                (LayerShape("layer3.1.bn2", 32, 6, 6),),
                GenerationOptions(n_images=600, mask_size=48, seed=103, negative=True, dead_units=4,
                                  unlabelled_category="skin_tone", absent_concept="AU15", singular_ellipses=25,
                                  local_fraction=0.7, mixed_annotation=True),
                batch_size=64),
    # Two layers of different shapes in one file, one dissect call.
    DissectCase("two_layers_one_call",
                (LayerShape("layer3.5", 24, 14, 14), LayerShape("layer4.2.conv1", 32, 7, 7)),
                GenerationOptions(n_images=400, mask_size=56, seed=104), batch_size=100),
    # Non-default options.
    DissectCase("quantile_0.01_iou_floor_0.02",
                (LayerShape("layer4.2.conv1", 32, 7, 7),),
                GenerationOptions(n_images=500, mask_size=56, seed=105), batch_size=128, quantile=0.01, iou_floor=0.02),
)

#: Version 2 dictionaries (docs/1-dictionary.md raster masks, raster_shapes.py): bilateral concepts as two
#: ellipses, eyeglasses as two rings (holes, four runs a row), AU6 as three blobs (three runs a
#: row), present masks on every edge of the grid and empty ones, striped images of more than 64
#: pieces (the kernel counts them in groups).
RASTER_CASES = (
    DissectCase("raster_bilateral_rings_three_runs_edges_empty_striped_S112_shuffled_batch256",
                (LayerShape("layer4.2.conv1", 48, 7, 7),),
                GenerationOptions(n_images=1500, mask_size=112, seed=106, rasters=True, edge_masks=30,
                                  empty_masks=20, striped_images=3), batch_size=256),
    DissectCase("raster_float16_nan_ellipses_negative_nonsquare_S56_batch64",
                (LayerShape("features.7", 16, 5, 9),),
                GenerationOptions(n_images=500, mask_size=56, seed=107, dtype="float16", rasters=True, nan_ellipses=True,
                                  negative=True, edge_masks=10, empty_masks=10, striped_images=4), batch_size=64),
)
CASES = CASES + RASTER_CASES


def _dissect_arguments(dictionary: Path, activations: Path, out: Path, case: DissectCase) -> list[str]:
    arguments = ["dissect", "--dictionary", str(dictionary), "--activations", str(activations), "--out", str(out)]
    for layer in case.layers:
        arguments += ["--layer", layer.name]
    if case.quantile is not None:
        arguments += ["--quantile", repr(case.quantile)]
    if case.iou_floor is not None:
        arguments += ["--iou-floor", repr(case.iou_floor)]
    if case.batch_size is not None:
        arguments += ["--batch-size", str(case.batch_size)]
    return arguments


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_dissect_meets_spec_tolerances(case: DissectCase, run_hndd, tmp_path: Path):
    dictionary_path = tmp_path / "dictionary.h5"
    activations_path = tmp_path / "activations.h5"
    snapshot_path = tmp_path / "snapshots.h5"
    generate.generate_case(case.layers, case.options, dictionary_path, activations_path)

    result = run_hndd(_dissect_arguments(dictionary_path, activations_path, snapshot_path, case))
    assert result.returncode == 0, f"hndd dissect exited {result.returncode}: {result.stderr.strip()}"

    structure = compare.check_snapshot_file(
        snapshot_path, dictionary_path, {layer.name: layer.units for layer in case.layers}, expected_rows=1
    )
    assert structure == [], "snapshot file structure:\n" + "\n".join(structure)

    dictionary = ref.load_dictionary(dictionary_path)
    quantile = ref.DEFAULT_QUANTILE if case.quantile is None else case.quantile
    iou_floor = ref.DEFAULT_IOU_FLOOR if case.iou_floor is None else case.iou_floor
    problems = []
    for layer in case.layers:
        reference = ref.dissect_reference(dictionary, activations_path, layer.name, quantile, iou_floor)
        # The comparison only means something if there is something to find.
        assert (reference["region"] >= 0).sum() >= 3, f"{layer.name}: generated data localises too few units"
        assert reference["global_biased"].any(axis=1).sum() >= 2, f"{layer.name}: generated data biases too few units"
        row = compare.read_snapshot_row(snapshot_path, layer.name)
        assert row["complete"] == 1 and row["images_seen"] == row["images_total"] == case.options.n_images, (
            f"{layer.name}: complete={row['complete']}, images_seen={row['images_seen']}, "
            f"images_total={row['images_total']}, expected 1, {case.options.n_images}, {case.options.n_images}"
        )
        failures = compare.check_against_reference(row, reference, dictionary.subgroup_category, dictionary.concept_region)
        print(f"{case.name} / {layer.name}:\n{compare.format_summary(compare.summary(row, reference))}")
        problems += [f"{layer.name}: {failure}" for failure in failures]
    assert problems == [], "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# Bad input: non-zero exit and one line on stderr naming the file and dataset
# ---------------------------------------------------------------------------------------------

BAD_INPUT_LAYER = "layer4.2.conv1"


@pytest.fixture(scope="module")
def valid_inputs(tmp_path_factory) -> tuple[Path, Path, int]:
    directory = tmp_path_factory.mktemp("valid")
    options = GenerationOptions(n_images=40, mask_size=16, seed=7)
    generate.generate_case([LayerShape(BAD_INPUT_LAYER, 4, 7, 7)], options,
                           directory / "dictionary.h5", directory / "activations.h5")
    return directory / "dictionary.h5", directory / "activations.h5", options.n_images


def _rewrite(file: h5py.File, name: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    data = change(file[name][...])
    attributes = dict(file[name].attrs)
    del file[name]
    file.create_dataset(name, data=data)
    file[name].attrs.update(attributes)


def _set(index, value) -> Callable[[np.ndarray], np.ndarray]:
    def change(data: np.ndarray) -> np.ndarray:
        data[index] = value
        return data
    return change


def _first_present(dictionary: h5py.File) -> tuple[int, int]:
    image, concept = np.argwhere(dictionary["/images/local_label"][...] == 1)[0]
    return int(image), int(concept)


# (case name, which file is broken, how, words of which stderr must contain one)
BAD_INPUTS = (
    ("missing_dataset", "dictionary",
     lambda f: f.__delitem__("/images/ellipse"), ("ellipse",)),
    ("misshaped_dataset", "dictionary",
     lambda f: _rewrite(f, "/images/local_label", lambda d: d[:, :-1]), ("local_label",)),
    ("global_label_out_of_range", "dictionary",
     lambda f: _rewrite(f, "/images/global_label", _set((5, 1), f["/global/subgroups"].shape[0] + 3)), ("global_label",)),
    ("concept_region_out_of_range", "dictionary",
     lambda f: _rewrite(f, "/local/concept_region", _set(2, 9)), ("concept_region",)),
    ("present_concept_with_nan_ellipse", "dictionary",
     lambda f: _rewrite(f, "/images/ellipse", _set(_first_present(f) + (2,), np.nan)), ("ellipse",)),
    ("repeated_image_id", "activations",
     lambda f: _rewrite(f, f"/layers/{BAD_INPUT_LAYER}/image_ids", lambda d: np.concatenate([d[:3], d[2:3], d[4:]])),
     ("image_ids", "image id")),
    ("image_id_out_of_range", "activations",
     lambda f: _rewrite(f, f"/layers/{BAD_INPUT_LAYER}/image_ids", _set(0, 40)), ("image_ids", "image id")),
    ("nan_activation", "activations",
     lambda f: _rewrite(f, f"/layers/{BAD_INPUT_LAYER}/activations", _set((7, 1, 3, 3), np.nan)),
     ("activations", BAD_INPUT_LAYER)),
    ("infinite_activation", "activations",
     lambda f: _rewrite(f, f"/layers/{BAD_INPUT_LAYER}/activations", _set((0, 0, 0, 0), np.inf)),
     ("activations", BAD_INPUT_LAYER)),
)


def _assert_clean_error(result, must_name: str, any_of: tuple[str, ...]) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode > 0, (
        f"expected a non-zero exit status, got {result.returncode} (negative = killed by a signal); stderr: {result.stderr!r}"
    )
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}: {result.stderr!r}"
    assert must_name in lines[0], f"stderr should name {must_name!r}: {lines[0]!r}"
    assert any(word.lower() in lines[0].lower() for word in any_of), f"stderr should mention one of {any_of}: {lines[0]!r}"


@pytest.mark.parametrize("name, broken, mutate, words", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_one_line_error(name, broken, mutate, words, valid_inputs, run_hndd, tmp_path: Path):
    dictionary_source, activations_source, _ = valid_inputs
    # Each broken file gets a distinctive name so the test can tell that stderr names it.
    dictionary_path = tmp_path / (f"bad_{name}_dictionary.h5" if broken == "dictionary" else "dictionary.h5")
    activations_path = tmp_path / (f"bad_{name}_activations.h5" if broken == "activations" else "activations.h5")
    shutil.copyfile(dictionary_source, dictionary_path)
    shutil.copyfile(activations_source, activations_path)
    with h5py.File(dictionary_path if broken == "dictionary" else activations_path, "r+") as file:
        mutate(file)
    result = run_hndd(["dissect", "--dictionary", dictionary_path, "--activations", activations_path,
                       "--out", tmp_path / "snapshots.h5", "--layer", BAD_INPUT_LAYER])
    broken_path = dictionary_path if broken == "dictionary" else activations_path
    _assert_clean_error(result, broken_path.name, words)


def test_unknown_layer_is_a_one_line_error(valid_inputs, run_hndd, tmp_path: Path):
    dictionary_path, activations_path, _ = valid_inputs
    result = run_hndd(["dissect", "--dictionary", dictionary_path, "--activations", activations_path,
                       "--out", tmp_path / "snapshots.h5", "--layer", "layer9.does_not_exist"])
    _assert_clean_error(result, "layer9.does_not_exist", (activations_path.name, "layer"))


def test_valid_inputs_of_the_bad_input_tests_are_accepted(valid_inputs, run_hndd, tmp_path: Path):
    # Without this, every bad-input test could pass against a binary that rejects everything.
    dictionary_path, activations_path, n_images = valid_inputs
    result = run_hndd(["dissect", "--dictionary", dictionary_path, "--activations", activations_path,
                       "--out", tmp_path / "snapshots.h5", "--layer", BAD_INPUT_LAYER])
    assert result.returncode == 0, f"hndd dissect exited {result.returncode}: {result.stderr.strip()}"
    row = compare.read_snapshot_row(tmp_path / "snapshots.h5", BAD_INPUT_LAYER)
    assert row["images_seen"] == n_images


# ---------------------------------------------------------------------------------------------
# Bad raster masks (docs/1-dictionary.md version 2): one line naming the file, the dataset, image and concept
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def valid_raster_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A version 2 dictionary with S = 20, so that each packed row has four padding bits."""
    directory = tmp_path_factory.mktemp("valid-rasters")
    options = GenerationOptions(n_images=60, mask_size=20, seed=8, rasters=True, empty_masks=3)
    generate.generate_case([LayerShape(BAD_INPUT_LAYER, 4, 7, 7)], options,
                           directory / "dictionary.h5", directory / "activations.h5")
    return directory / "dictionary.h5", directory / "activations.h5"


def _first_with_label(dictionary: h5py.File, label: int) -> tuple[int, int]:
    image, concept = np.argwhere(dictionary["/images/local_label"][...] == label)[0]
    return int(image), int(concept)


def _set_mask_byte(label: int, value: int, byte: int = 0):
    """Sets a byte of row 3 of the first mask whose local label is `label`; returns its (image, concept)."""
    def mutate(file: h5py.File) -> tuple[int, int]:
        image, concept = _first_with_label(file, label)
        _rewrite(file, "/images/masks", _set((image, concept, 3, byte), value))
        return image, concept
    return mutate


# (case name, how to break the dictionary — returning the (image, concept) to name, or None —,
# words stderr must all contain)
RASTER_BAD_INPUTS = (
    ("stray_bit_where_absent", _set_mask_byte(0, 0x10), ("/images/masks", "local_label is 0")),
    ("stray_bit_where_not_annotated", _set_mask_byte(-1, 0x01), ("/images/masks", "local_label is -1")),
    ("padding_bit", _set_mask_byte(1, 0x01, byte=2), ("/images/masks", "padding")),
    ("wrong_shape", lambda f: _rewrite(f, "/images/masks", lambda d: d[:, :, :, :2]), ("/images/masks", "shape")),
    ("masks_in_a_version_1_file", lambda f: f.attrs.__setitem__("version", np.int32(1)), ("/images/masks", "version 1")),
    ("unknown_version", lambda f: f.attrs.__setitem__("version", np.int32(3)), ("version", "is 3")),
)


@pytest.mark.parametrize("name, mutate, words", RASTER_BAD_INPUTS, ids=[case[0] for case in RASTER_BAD_INPUTS])
def test_bad_raster_masks_are_a_one_line_error(name, mutate, words, valid_raster_inputs, run_hndd, tmp_path: Path):
    dictionary_source, activations = valid_raster_inputs
    dictionary = tmp_path / f"bad_{name}_dictionary.h5"
    shutil.copyfile(dictionary_source, dictionary)
    with h5py.File(dictionary, "r+") as file:
        concepts = [str(c) for c in file["/local/concepts"].asstr()[...]]
        where = mutate(file)
    for command in (["dissect", "--dictionary", dictionary, "--activations", activations, "--out", tmp_path / "s.h5"],
                    ["dictionary", "check", dictionary]):
        result = run_hndd(command)
        _assert_clean_error(result, dictionary.name, words)
        line = result.stderr.strip()
        for word in words:
            assert word in line, f"stderr should contain {word!r}: {line!r}"
        if where is not None:
            image, concept = where
            assert f"image {image} (synthetic/{image:06d}.png)" in line and concepts[concept] in line, line
    # The reference refuses it too, for the same reason.
    with pytest.raises(ref.ReferenceInputError, match="masks|version"):
        ref.load_dictionary(dictionary)


def test_dictionary_check_reports_rasters_and_empty_masks(valid_raster_inputs, run_hndd):
    dictionary, _ = valid_raster_inputs
    result = run_hndd(["dictionary", "check", dictionary])
    assert result.returncode == 0, result.stderr
    assert "version 2" in result.stdout and "masks: rasters (/images/masks)" in result.stdout
    loaded = ref.load_dictionary(dictionary)
    area = loaded.concept_masks(np.arange(loaded.n_images)).sum(axis=2)
    empty = np.argwhere((loaded.local_label == 1) & (area == 0))
    assert len(empty) == 3
    assert f"present concepts with empty masks: {len(empty)} (image, concept) pairs:" in result.stdout
    for image, concept in empty:
        assert f"  image {image} (synthetic/{image:06d}.png): {loaded.concepts[concept]}\n" in result.stdout + "\n"
