"""Synthetic faces: every concept is drawn where its mask is; dictionaries and training sets are well formed."""
import subprocess
from dataclasses import replace

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from hndd_client.dictionary_io import read_dictionary
from hndd_client.face_renderer import (SWITCHABLE_CONCEPTS, FaceSpec, Lighting, concept_presence, render,
                                       sample_face_spec, with_concept)
from hndd_client.landmarks import concept_masks, ellipse_mask
from hndd_client.masks import packed_width, unpack
from hndd_client.synth import (generate_dictionary, generate_trainset, main_synth_dictionary, main_synth_trainset,
                               synthetic_source, trainset_plan)
from hndd_client.taxonomy import PART, load_taxonomy

TAXONOMY = load_taxonomy()
def dilate(mask, steps):
    """Grows a boolean mask by ``steps`` pixels (4-neighbourhood)."""
    grown = mask.copy()
    for _ in range(steps):
        padded = np.pad(grown, 1)
        grown = padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return grown


MALE_ONLY = {"five_o_clock_shadow", "no_beard", "goatee", "mustache"}


def plain_face(seed, concept):
    """A random face with no lighting or noise and the concept switched off."""
    gender = "male" if concept in MALE_ONLY else "female"
    spec = sample_face_spec(np.random.default_rng([seed, 1]), gender=gender, beard="none", eyeglasses=False)
    return with_concept(replace(spec, lighting=Lighting()), concept, False)


@pytest.mark.parametrize("concept", SWITCHABLE_CONCEPTS)
def test_each_concept_is_visible_inside_its_own_mask(concept):
    size = 112
    for seed in range(3):
        off = plain_face(seed, concept)
        on = with_concept(off, concept, True)
        presence_off, presence_on = concept_presence(off), concept_presence(on)
        assert presence_on[concept] and not presence_off[concept]
        changed = {name for name in presence_on if presence_on[name] != presence_off[name]}
        assert changed <= {concept, "AU25", "mouth_slightly_open", "AU26", "goatee", "no_beard"}, changed

        pixels_off, _ = render(off, size)
        pixels_on, landmarks = render(on, size)
        difference = np.abs(pixels_on.astype(int) - pixels_off.astype(int)).sum(axis=2)
        assert (difference > 30).sum() >= 40, f"{concept} changes too few pixels to be seen"
        mask = concept_masks(landmarks, TAXONOMY, size)[TAXONOMY.concept_index(concept)]
        near_mask = dilate(mask, 3)
        share = difference[near_mask].sum() / difference.sum()
        assert share >= 0.7, f"{concept}: only {share:.0%} of the change is at its mask"


def test_smiling_widens_and_lifts_the_mouth_and_big_lips_are_fuller():
    size = 112
    for seed in range(4):
        plain = replace(plain_face(seed, "smiling"), big_lips=False, lip_corners="neutral")
        for concept in ("smiling", "big_lips"):
            assert concept_presence(with_concept(plain, concept, True))[concept]
            assert not concept_presence(plain)[concept]
        _, points = render(plain, size)
        _, smile = render(with_concept(plain, "smiling", True), size)
        width = lambda p: np.linalg.norm(p[54] - p[48])
        lift = lambda p: (p[57, 1] + p[51, 1]) / 2 - (p[48, 1] + p[54, 1]) / 2  # corners above the lips' middle
        assert width(smile) > 1.08 * width(points) and lift(smile) > lift(points) + 0.01, seed
        open_mouth = replace(plain, mouth_opening="wide")
        teeth = lambda spec: (render(spec, size)[0].astype(int) > 205).all(axis=2).sum()
        assert teeth(with_concept(open_mouth, "smiling", True)) > teeth(open_mouth), seed  # a smile bares more teeth
        _, full = render(with_concept(plain, "big_lips", True), size)
        lips = lambda p: concept_masks(p, TAXONOMY, size)[TAXONOMY.concept_index("big_lips")].sum()
        assert lips(full) > 1.3 * lips(points), seed  # the outer lip landmarks move out


def test_rendering_is_a_pure_function_of_the_spec():
    spec = sample_face_spec(np.random.default_rng(5))
    first, landmarks = render(spec, 96)
    second, again = render(spec, 96)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(landmarks, again)
    other, _ = render(replace(spec, eyeglasses=not spec.eyeglasses), 96)
    assert not np.array_equal(first, other)


def test_landmarks_follow_pose_and_stay_in_the_image():
    base = FaceSpec()
    _, straight = render(base, 128)
    spec = replace(base, pose=replace(base.pose, roll=0.3))
    _, rolled = render(spec, 128)
    eye_line = lambda p: p[42:48].mean(0) - p[36:42].mean(0)
    angle = lambda v: np.arctan2(v[1], v[0])
    assert abs(angle(eye_line(rolled)) - angle(eye_line(straight)) - 0.3) < 0.02
    for index in range(400):
        _, landmarks = render(sample_face_spec(np.random.default_rng([9, index])), 32)
        assert landmarks.min() > 0 and landmarks.max() < 1, index


def test_random_faces_of_every_kind_render():
    for index in range(300):
        spec = sample_face_spec(np.random.default_rng([11, index]))
        pixels, _ = render(spec, 40)
        assert pixels.shape == (40, 40, 3) and pixels.dtype == np.uint8
    extreme = FaceSpec(age_group="0-20", mouth_opening="wide", chin_raiser=True, lip_stretch=True,
                       lip_corners="down", double_chin=True, eye_aperture="wide", cheek_raiser=True,
                       inner_brow_raise=True, outer_brow_raise=True, brow_lowerer=True, nose_wrinkler=True,
                       big_nose=True, pointy_nose=True)
    render(extreme, 112)
    with pytest.raises(ValueError, match="beard"):
        FaceSpec(beard="sideburns")


def test_grayscale_faces_have_equal_channels():
    pixels, _ = render(replace(sample_face_spec(np.random.default_rng(2)), grayscale=True), 64)
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2])


@pytest.fixture(scope="module")
def small_dictionary(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "dictionary.h5"
    generate_dictionary(path, images=150, size=64, seed=4, mask_size=56, grayscale_fraction=0.3, workers=2)
    return path


def test_dictionary_follows_spec_section_1(small_dictionary):
    with h5py.File(small_dictionary, "r") as file:
        assert file.attrs["format"] == "hndd-dictionary"
        assert file.attrs["version"] == 2 and file.attrs["mask_size"] == 56
        assert abs(file.attrs["ellipse_chi2"] - 5.991) < 1e-12
        for name in ("global/categories", "global/subgroups", "local/regions", "local/concepts"):
            string_type = h5py.check_string_dtype(file[name].dtype)
            assert string_type is not None and string_type.encoding == "utf-8" and string_type.length is None
        assert file["images/pixels"].shape == (150, 64, 64, 3) and file["images/pixels"].dtype == np.uint8
        assert file["images/global_label"].dtype == np.int32 and file["images/local_label"].dtype == np.int8
        assert file["images/ellipse"].dtype == np.float32
        masks = file["images/masks"]
        assert masks.shape == (150, len(TAXONOMY.concepts), 56, packed_width(56)) and masks.dtype == np.uint8
        assert masks.chunks == (1,) + masks.shape[1:] and masks.compression == "gzip"
        assert h5py.check_string_dtype(file["images/source"].dtype).encoding == "utf-8"
    dictionary = read_dictionary(small_dictionary, with_masks=True)  # checks every docs/1-dictionary.md rule
    assert dictionary.sources == [synthetic_source(4, n) for n in range(150)] == [f"synthetic/seed-4/{n}"
                                                                               for n in range(150)]
    header = dictionary.header
    assert header.categories == ["age", "gender", "ethnicity", "skin_tone", "colour_scheme"]
    assert header.concepts == TAXONOMY.concept_names
    parts = [i for i, kind in enumerate(header.concept_type) if kind == PART]
    assert (dictionary.local_label[:, parts] == 1).all()
    assert set(np.unique(dictionary.local_label)) <= {0, 1}
    present = dictionary.local_label == 1
    one_ellipse = np.array([not c.outline.sides for c in TAXONOMY.concepts])
    assert np.isfinite(dictionary.ellipse[present & one_ellipse]).all()
    assert np.isnan(dictionary.ellipse[~present | ~one_ellipse]).all()  # bilateral: several ellipses
    drawn = unpack(dictionary.masks, 56).any(axis=(2, 3))
    np.testing.assert_array_equal(drawn, present)  # every present concept drawn, nothing else
    assert dictionary.empty_masks == 0
    for c in range(len(header.concepts)):  # every concept is present in some images and absent in others
        assert 0 < present[:, c].sum() < len(dictionary) or c in parts, header.concepts[c]


def test_one_ellipse_masks_are_their_ellipse_and_bilateral_ones_two_ellipses_off_the_nose(small_dictionary):
    dictionary = read_dictionary(small_dictionary, with_masks=True)
    nose = TAXONOMY.concept_index("nose")
    bilateral = [i for i, c in enumerate(TAXONOMY.concepts) if c.outline.sides]
    assert {TAXONOMY.concepts[i].name for i in bilateral} >= {"high_cheekbones", "arched_eyebrows",
                                                              "bags_under_eyes", "rosy_cheeks"}
    checked = 0
    for n in range(len(dictionary)):
        for c in np.flatnonzero(dictionary.local_label[n] == 1):
            mask = dictionary.mask(n, c)
            if c not in bilateral:  # the stored ellipse by the docs/1-dictionary.md test, bit for bit
                np.testing.assert_array_equal(mask, ellipse_mask(dictionary.ellipse[n, c], 56))
                continue
            assert ndimage.label(mask)[1] == 2, (n, TAXONOMY.concepts[c].name)
            assert not (mask & dictionary.mask(n, nose)).any(), (n, TAXONOMY.concepts[c].name)
            checked += 1
    assert checked > 150


def test_dictionary_passes_hndd_dictionary_check(small_dictionary, hndd_binary):
    result = subprocess.run([str(hndd_binary), "dictionary", "check", str(small_dictionary)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "150 images" in result.stdout


def test_dictionary_ellipses_cover_their_landmarks(small_dictionary):
    dictionary = read_dictionary(small_dictionary)
    chi2 = dictionary.header.ellipse_chi2
    checked = 0
    for n in range(len(dictionary)):
        for c, concept in enumerate(TAXONOMY.concepts):
            if dictionary.local_label[n, c] != 1 or concept.outline.shift_down or concept.outline.sides:
                continue
            cx, cy, sxx, sxy, syy = dictionary.ellipse[n, c].astype(np.float64)
            offsets = dictionary.landmarks[n, list(concept.outline.landmarks)] - [cx, cy]
            inverse = np.linalg.inv([[sxx, sxy], [sxy, syy]])
            squared = np.einsum("ni,ij,nj->n", offsets, inverse, offsets)
            assert squared.max() <= chi2 * 1.001, (n, concept.name)
            checked += 1
    assert checked > 150 * 9  # at least the nine parts of every image


def test_dictionary_global_labels_match_what_is_drawn(small_dictionary):
    dictionary = read_dictionary(small_dictionary)
    header = dictionary.header
    colour = header.categories.index("colour_scheme")
    grayscale = header.subgroups.index("grayscale")
    pixels = dictionary.pixels.astype(int)
    equal_channels = (pixels[..., 0] == pixels[..., 1]).all(axis=(1, 2)) & \
        (pixels[..., 1] == pixels[..., 2]).all(axis=(1, 2))
    np.testing.assert_array_equal(dictionary.global_label[:, colour] == grayscale, equal_channels)
    assert 0.15 < equal_channels.mean() < 0.45
    for category in ("age", "gender", "ethnicity", "skin_tone"):
        labels = dictionary.global_label[:, header.categories.index(category)]
        labelled = labels[labels >= 0]
        assert len(labelled) >= 0.6 * len(labels), category
        assert len(np.unique(labelled)) == header.subgroup_category.count(header.categories.index(category))
    assert (dictionary.global_label == -1).any()  # some images are unlabelled somewhere, as in real data


def test_worker_count_does_not_change_the_dictionary(tmp_path):
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    generate_dictionary(one, images=70, size=48, seed=8, workers=1)
    generate_dictionary(two, images=70, size=48, seed=8, workers=2)
    a, b = read_dictionary(one, with_masks=True), read_dictionary(two, with_masks=True)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.local_label, b.local_label)
    np.testing.assert_array_equal(a.global_label, b.global_label)
    np.testing.assert_array_equal(a.ellipse, b.ellipse)
    assert a.header.categories == ["age", "gender", "ethnicity", "skin_tone"]  # no grayscale: no colour_scheme


def test_command_line_writes_dictionary_and_preview(tmp_path):
    out, preview = tmp_path / "d.h5", tmp_path / "sheet.png"
    code = main_synth_dictionary(["--images", "60", "--size", "48", "--out", str(out), "--seed", "3",
                                  "--preview", str(preview), "--mask-size", "40", "--workers", "1"])
    assert code == 0
    dictionary = read_dictionary(out)
    assert len(dictionary) == 60 and dictionary.header.mask_size == 40
    sheet = Image.open(preview)
    entries = len(dictionary.header.concepts) + len(dictionary.header.subgroups)
    assert sheet.size[0] == 8 * 176 and sheet.size[1] == ((entries + 7) // 8) * (176 + 16)
    # mask outlines are drawn in pure green
    array = np.asarray(sheet.convert("RGB"))
    assert ((array == (0, 255, 0)).all(axis=2)).sum() > 1000


@pytest.mark.parametrize("arguments", [
    ["--images", "0", "--size", "64", "--out", "x.h5"],
    ["--images", "5", "--size", "16", "--out", "x.h5"],
    ["--images", "5", "--size", "64", "--out", "x.h5", "--grayscale-fraction", "1.5"],
    ["--images", "five", "--size", "64", "--out", "x.h5"],
])
def test_command_line_refuses_bad_options(arguments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main_synth_dictionary(arguments)
    assert exit_info.value.code == 2
    assert not (tmp_path / "x.h5").exists()


def test_unwritable_output_is_an_error_not_a_crash(tmp_path, capsys):
    code = main_synth_dictionary(["--images", "2", "--size", "32", "--out", str(tmp_path / "no" / "d.h5"),
                                  "--workers", "1"])
    assert code == 1
    assert "no/d.h5" in capsys.readouterr().err


@pytest.mark.parametrize("bias", [90.0, 25.0, 50.0])
def test_trainset_plan_has_exact_bias_fractions(bias):
    labels, flags = trainset_plan("gender", "eyeglasses", bias, "male", 400, seed=1)
    male, female = labels == 1, labels == 0
    assert male.sum() == female.sum() == 200
    assert flags[male].sum() == round(200 * bias / 100)
    assert flags[female].sum() == round(200 * (100 - bias) / 100)


def test_grayscale_trainset_images_follow_the_bias(tmp_path):
    path = tmp_path / "train.h5"
    code = main_synth_trainset(["--task", "gender", "--bias-concept", "grayscale", "--bias", "80", "--images", "40",
                                "--size", "48", "--out", str(path), "--seed", "2", "--workers", "2"])
    assert code == 0
    with h5py.File(path, "r") as file:
        pixels, labels, bias = file["images/pixels"][()], file["labels"][()], file["bias"][()]
        assert file.attrs["format"] == "hndd-trainset" and file.attrs["bias_concept"] == "grayscale"
        assert list(file["labels"].attrs["classes"]) == ["female", "male"]
        assert file.attrs["bias_percent"] == 80.0 and file.attrs["bias_class"] == "male"
    gray = (pixels[..., 0] == pixels[..., 1]).all(axis=(1, 2)) & (pixels[..., 1] == pixels[..., 2]).all(axis=(1, 2))
    np.testing.assert_array_equal(gray, bias == 1)
    assert bias[labels == 1].sum() == 16 and bias[labels == 0].sum() == 4


def test_eyeglasses_trainset_draws_glasses_and_gender_as_labelled(tmp_path):
    path = tmp_path / "train.h5"
    generate_trainset(path, "gender", "eyeglasses", 100.0, images=12, size=48, seed=6, workers=1)
    with h5py.File(path, "r") as file:
        pixels, labels, bias = file["images/pixels"][()], file["labels"][()], file["bias"][()]
    np.testing.assert_array_equal(bias, labels)  # 100 %: every male has glasses, no female has
    for index in range(12):  # the stored image is the face with exactly those properties
        spec = sample_face_spec(np.random.default_rng([6, index]), gender=("female", "male")[labels[index]],
                                eyeglasses=bool(bias[index]))
        np.testing.assert_array_equal(render(spec, 48)[0], pixels[index])


@pytest.mark.parametrize("arguments, message", [
    (["--bias", "120"], "between 0 and 100"),
    (["--bias", "90", "--bias-class", "child"], "--bias-class must be one of"),
    (["--bias", "90", "--task", "age"], "--bias-class must be one of"),
])
def test_trainset_refuses_bad_bias(arguments, message, tmp_path, capsys):
    code = main_synth_trainset(["--bias-concept", "eyeglasses", "--images", "4", "--size", "32",
                                "--out", str(tmp_path / "t.h5")] + arguments)
    assert code == 1
    assert message in capsys.readouterr().err
