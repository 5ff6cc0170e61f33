"""build-dictionary --landmarks dlib on real faces: 1,000 CelebA and 1,000 UTKFace images of
../shared/data/real-faces (Tests/real_faces.py builds and caches the file; the tests skip, saying
so, where the data or the detector is absent). Labels are checked against the source files,
parsed here independently of the builder; masks against the anatomy of a face."""
import re

import numpy as np
import pytest

from hndd_client.dictionary_io import read_dictionary
from hndd_client.masks import unpack
from hndd_client.taxonomy import load_taxonomy
from real_faces import REAL_CELEBA, REAL_UTKFACE, UTKFACE, build_log, celeba_names, real_dictionary, CELEBA_ATTRS
from test_build import CELEBA_TO_CONCEPT

FACES_WITH_MASKS = 0.95  # the share of CelebA faces that must be found and pass every anatomy check
NEAR = 0.35  # a mask's centre lies within this many inter-ocular distances of its landmarks (+ its shift)
UTK = re.compile(r"^(\d+)_([01])_([0-4])_\d+\.jpg\.chip\.jpg$")


@pytest.fixture(scope="module")
def real():
    path = real_dictionary()
    return read_dictionary(path, with_masks=True), build_log(path)


def _celeba_rows(dictionary):
    return [n for n, source in enumerate(dictionary.sources) if source.startswith("celeba/")]


def test_sources_are_the_first_images_of_each_set_and_the_malformed_names_are_reported(real):
    dictionary, log = real
    utk = sorted(p.name for p in UTKFACE.iterdir() if UTK.match(p.name))[:REAL_UTKFACE]
    assert dictionary.sources == [f"celeba/{name}" for name in celeba_names()] + [f"utkface/{name}" for name in utk]
    malformed = sorted(p.name for p in UTKFACE.iterdir() if not UTK.match(p.name))
    assert len(malformed) == 5 and f"left out 5 UTKFace files" in log and all(repr(m) in log for m in malformed)
    assert "no source labels skin_tone" in log
    header = dictionary.header
    assert header.categories == ["age", "gender", "ethnicity", "skin_tone"]
    assert len(header.concepts) == 26 and "chin" not in header.concepts and not any(c.startswith("AU")
                                                                                     for c in header.concepts)
    assert {"smiling", "big_lips"} <= set(header.concepts)


def test_celeba_labels_match_the_attribute_file(real):
    dictionary, log = real
    lines = CELEBA_ATTRS.read_text().splitlines()
    names = lines[1].split()
    truth = {f[0]: dict(zip(names, map(int, f[1:]))) for f in map(str.split, lines[2:2 + REAL_CELEBA])}
    header, concepts = dictionary.header, dictionary.header.concepts
    parts = [c for c, kind in enumerate(header.concept_type) if kind == 0]
    faceless = cropped = 0
    for n in _celeba_rows(dictionary):
        values = truth[dictionary.sources[n].split("/", 1)[1]]
        assert header.subgroups[dictionary.global_label[n, 1]] == ("male" if values["Male"] == 1 else "female")
        assert (dictionary.global_label[n, [0, 2, 3]] == -1).all()
        if np.isnan(dictionary.landmarks[n]).all():  # no face found: no local labels at all
            faceless += 1
            assert (dictionary.local_label[n] == -1).all()
            continue
        for c in parts:
            assert dictionary.local_label[n, c] == (1 if inside(dictionary, n, concepts[c]) else -1), (n, concepts[c])
        for attribute, concept in CELEBA_TO_CONCEPT.items():
            expected = int(values[attribute] == 1) if inside(dictionary, n, concept) else -1  # cropped away
            cropped += expected == -1
            assert dictionary.local_label[n, concepts.index(concept)] == expected, (n, concept)
    assert f"{faceless:,} of {REAL_CELEBA:,} images that need landmarks have none" in log or faceless == 0
    assert faceless <= (1 - FACES_WITH_MASKS) * REAL_CELEBA
    assert cropped < 0.01 * REAL_CELEBA * len(CELEBA_TO_CONCEPT)


OUTLINES = {c.name: c.outline for c in load_taxonomy().concepts}


def inside(dictionary, n, concept) -> bool:
    """Whether the centre of the concept's landmarks lies in the stored (centre-cropped) square."""
    centre = dictionary.landmarks[n][list(OUTLINES[concept].landmarks)].mean(axis=0)
    return bool(np.all((centre >= 0) & (centre <= 1)))


def test_utkface_labels_match_the_file_names(real):
    dictionary, _ = real
    header = dictionary.header
    rows = [n for n, source in enumerate(dictionary.sources) if source.startswith("utkface/")]
    assert len(rows) == REAL_UTKFACE
    for n in rows:
        age, gender, race = (int(v) for v in UTK.match(dictionary.sources[n].split("/", 1)[1]).groups())
        labels = [header.subgroups[g] if g >= 0 else None for g in dictionary.global_label[n]]
        assert labels == [("0-20", "20-40", "40-60", "60+")[min(age // 20, 3)], ("male", "female")[gender],
                          ("white", "black", "asian", "indian", None)[race], None]
        assert (dictionary.local_label[n] == -1).all() and not dictionary.masks[n].any()


def _centre(mask):
    rows, columns = np.nonzero(mask)
    return np.array([columns.mean() + 0.5, rows.mean() + 0.5]) / mask.shape[0] if len(rows) else None


def face_passes(dictionary, n, outlines) -> bool:
    """The anatomy of one face's masks: mouth below nose below eyes, the subject's left eye on the
    image's right, every present mask's centre near its own landmarks."""
    concepts, size = dictionary.header.concepts, dictionary.header.mask_size
    masks = unpack(dictionary.masks[n], size)
    centre = {name: _centre(masks[c]) for c, name in enumerate(concepts) if dictionary.local_label[n, c] == 1}
    if any(centre.get(name) is None for name in ("mouth", "nose", "left_eye", "right_eye")):
        return False
    eyes_y = max(centre["left_eye"][1], centre["right_eye"][1])
    if not (centre["mouth"][1] > centre["nose"][1] > eyes_y and centre["left_eye"][0] > centre["right_eye"][0]):
        return False
    points = dictionary.landmarks[n].astype(np.float64)
    iod = np.linalg.norm(points[42:48].mean(0) - points[36:42].mean(0))
    for c, name in enumerate(concepts):
        if name not in centre:
            continue
        outline = outlines[name]
        for piece, where in _pieces(masks[c], points, outline):
            if where is None or np.linalg.norm(where - points[list(piece)].mean(axis=0)) > (NEAR + outline.shift_down) * iod:
                return False
    return True


def _pieces(mask, points, outline):
    """[(landmarks, centre of their part of the mask)]: a bilateral mask is split at the vertical
    line halfway between its two sides' landmarks, each half checked against its own side."""
    if not outline.sides:
        return [(outline.landmarks, _centre(mask))]
    right, left = (points[list(side)].mean(axis=0) for side in outline.sides)
    split = (right[0] + left[0]) / 2 * mask.shape[1]  # in mask columns
    columns = np.arange(mask.shape[1]) + 0.5
    halves = ((mask & (columns < split)[None, :]), (mask & (columns >= split)[None, :]))
    if right[0] > left[0]:  # a face seen upside down or mirrored: keep each half with its side
        halves = halves[::-1]
    return [(side, _centre(half)) for side, half in zip(outline.sides, halves)]


def test_masks_sit_where_the_face_is(real):
    dictionary, _ = real
    outlines = OUTLINES
    rows = _celeba_rows(dictionary)
    passed = [n for n in rows if face_passes(dictionary, n, outlines)]
    share = len(passed) / len(rows)
    print(f"{len(passed)} of {len(rows)} CelebA faces found and with every mask in place ({100 * share:.1f} %)")
    assert share >= FACES_WITH_MASKS


def test_the_anatomy_check_catches_swapped_sides(real):
    """The check above is not vacuous: the same faces with left and right eye swapped fail it."""
    dictionary, _ = real
    outlines = OUTLINES
    concepts = dictionary.header.concepts
    left, right = concepts.index("left_eye"), concepts.index("right_eye")
    rows = _celeba_rows(dictionary)[:100]
    swapped = dictionary.masks.copy()
    swapped[:, [left, right]] = swapped[:, [right, left]]
    original, dictionary.masks = dictionary.masks, swapped
    try:
        assert not any(face_passes(dictionary, n, outlines) for n in rows)
    finally:
        dictionary.masks = original
