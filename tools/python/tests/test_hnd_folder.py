"""build-dictionary --hnd-folder: the Face Dictionary as its authors publish it, on their real sample
and on small folders in the same layout (hnd_layout.py), every error of the layout included."""
import csv
import shutil
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

import hnd_layout
from hndd_client.build import main as build_main
from hndd_client.dictionary_io import read_dictionary
from hndd_client.hnd_folder import AU_NAMES, GLOBAL_FOLDERS, PART_NAMES, published_taxonomy
from hndd_client.taxonomy import ACTION_UNIT, ATTRIBUTE, PART, load_taxonomy

SAMPLE = hnd_layout.SAMPLE
SAMPLE_PARTS = "parts/001646"  # on disk, listed in no CSV (a quirk of the real download)
TAXONOMY = published_taxonomy()
CELEBA = {"5_o_Clock_Shadow": "five_o_clock_shadow", "Arched_Eyebrows": "arched_eyebrows",
          "Bags_Under_Eyes": "bags_under_eyes", "Big_Lips": "big_lips", "Big_Nose": "big_nose",
          "Bushy_Eyebrows": "bushy_eyebrows", "Double_Chin": "double_chin", "Eyeglasses": "eyeglasses",
          "Goatee": "goatee", "High_Cheekbones": "high_cheekbones", "Mouth_Slightly_Open": "mouth_slightly_open",
          "Mustache": "mustache", "Narrow_Eyes": "narrow_eyes", "No_Beard": "no_beard", "Pointy_Nose": "pointy_nose",
          "Rosy_Cheeks": "rosy_cheeks", "Smiling": "smiling", "Wearing_Lipstick": "wearing_lipstick"}
# the authors' left is the image's left, i.e. the subject's right (measured below)
SIDE_SWAP = {"left_brow": "right_brow", "right_brow": "left_brow", "left_eye": "right_eye", "right_eye": "left_eye",
             "left_cheek": "right_cheek", "right_cheek": "left_cheek", "nose": "nose", "mouth": "mouth"}
OURS = {**CELEBA, **SIDE_SWAP, **{f"AU_{n}": f"AU{n}" for n in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)}}
SETS = {"parts": (PART, -1), "attributes": (ATTRIBUTE, 0), "AU": (ACTION_UNIT, 0)}  # kind, label when unlisted


def expected_mask(png: Path, size: int) -> np.ndarray:
    """What the authors' loader makes of a mask PNG: grey, nearest-neighbour to size×size, > 127."""
    return np.asarray(Image.open(png).convert("L").resize((size, size), Image.NEAREST)) > 127


def expected_labels(source: str, masks):
    """Local labels [L] of a listed image, by the rules of its set."""
    kind, unlisted = SETS[source.split("/")[0]]
    labels = np.full(len(TAXONOMY.concepts), -1, dtype=np.int8)
    labels[[i for i, c in enumerate(TAXONOMY.concepts) if c.type == kind]] = unlisted
    for mask in masks:
        labels[TAXONOMY.concept_index(OURS[PurePosixPath(mask).stem])] = 1
    return labels


def listed_rows(folder: Path):
    """source -> mask files of every row of the folder's three CSVs, in file order."""
    rows = {}
    for name in hnd_layout.CSV_NAMES:
        with open(folder / name, newline="") as handle:
            rows.update((row["image"], [m for m in row["labels"].split(";") if m]) for row in csv.DictReader(handle))
    return rows


def check_built(folder: Path, path: Path, mask_size: int, size: int, local_sources, global_sources):
    """Every label, mask, pixel and source of a built dictionary against the folder's files."""
    built = read_dictionary(path, with_masks=True)
    assert built.version == 2 and built.header.concepts == TAXONOMY.concept_names
    assert built.header.mask_size == mask_size and built.pixels.shape[1:] == (size, size, 3)
    assert built.sources == list(local_sources) + list(global_sources)
    assert np.isnan(built.ellipse).all()
    rows = listed_rows(folder)
    for n, source in enumerate(built.sources):
        photo = Image.open(folder / source)
        np.testing.assert_array_equal(built.pixels[n], np.asarray(photo.convert("RGB").resize((size, size),
                                                                                              Image.BICUBIC)))
        if n < len(local_sources):
            np.testing.assert_array_equal(built.local_label[n], expected_labels(source, rows[source]), err_msg=source)
            assert (built.global_label[n] == -1).all()
            drawn = {TAXONOMY.concept_index(OURS[PurePosixPath(m).stem]): m for m in rows[source]}
        else:
            category_folder, subgroup_folder = PurePosixPath(source).parts[1:3]
            category, subgroups = GLOBAL_FOLDERS[category_folder]
            expected = np.full(4, -1)
            expected[TAXONOMY.category_index(category)] = TAXONOMY.subgroup_index(category, subgroups[subgroup_folder])
            np.testing.assert_array_equal(built.global_label[n], expected)
            assert (built.local_label[n] == -1).all()
            drawn = {}
        for c in range(len(TAXONOMY.concepts)):
            mask = built.mask(n, c)
            if c in drawn:
                np.testing.assert_array_equal(mask, expected_mask(folder / drawn[c], mask_size),
                                              err_msg=f"{source} {TAXONOMY.concepts[c].name}")
            else:
                assert not mask.any(), (source, TAXONOMY.concepts[c].name)
    return built


def test_the_published_38_concepts_in_our_spelling():
    assert len(TAXONOMY.concepts) == 38
    kinds = [c.type for c in TAXONOMY.concepts]
    assert (kinds.count(PART), kinds.count(ATTRIBUTE), kinds.count(ACTION_UNIT)) == (8, 18, 12)
    assert set(TAXONOMY.concept_names) == set(OURS.values())
    assert "chin" not in TAXONOMY.concept_names and "chin" in TAXONOMY.regions  # nobody is annotated for it
    for name in ("goatee", "double_chin", "AU17", "AU26"):
        assert TAXONOMY.concept(name).region == "chin"
    assert TAXONOMY.concept("smiling").region == TAXONOMY.concept("big_lips").region == "mouth"
    assert TAXONOMY.concept_names == [c for c in load_taxonomy().concept_names if c in OURS.values()]
    assert PART_NAMES == SIDE_SWAP and AU_NAMES["AU_1"] == "AU1" and AU_NAMES["AU_12"] == "AU12"


# ---------------------------------------------------------------------------------------------
# the authors' real sample

@pytest.fixture(scope="module")
def sample_tree(tmp_path_factory):
    """The real sample, its real CSVs (plus a row for the parts image they do not list), and a
    non_localizable/ part made of the sample's photos."""
    if not (SAMPLE / "Parts.csv").is_file():
        pytest.skip(f"the published Face Dictionary sample is not found: {SAMPLE}")
    folder = tmp_path_factory.mktemp("hnd") / "visual_dictionary"
    shutil.copytree(SAMPLE, folder)
    masks = sorted(p.name for p in (folder / SAMPLE_PARTS).glob("*.png")
                   if p.stem in PART_NAMES)
    with open(folder / "Parts.csv", "a", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerow([f"{SAMPLE_PARTS}/original.png",
                                                          ";".join(f"{SAMPLE_PARTS}/{m}" for m in masks)])
    photos = [folder / SAMPLE_PARTS / "original.png", folder / "attributes/000001/original.png",
              folder / "AU/N_0000000001_00002/original.png"]
    global_sources = []
    for k, (category, (_, subgroups)) in enumerate(GLOBAL_FOLDERS.items()):
        for j, subgroup in enumerate(subgroups):
            directory = folder / "non_localizable" / category / subgroup
            directory.mkdir(parents=True)
            shutil.copy(photos[(k + j) % 3], directory / "face.png")
            global_sources.append(f"non_localizable/{category}/{subgroup}/face.png")
    return folder, global_sources


@pytest.mark.parametrize("mask_size, size", [(112, 112), (53, 64)])
def test_real_sample_builds_with_every_label_mask_and_source(sample_tree, tmp_path, capsys, mask_size, size):
    folder, global_sources = sample_tree
    out = tmp_path / "published.h5"
    assert build_main(["--hnd-folder", str(folder), "--out", str(out), "--mask-size", str(mask_size),
                       "--size", str(size), "--skip-missing"]) == 0
    listed = 4000 + 9969 + 10663 + 1
    summary = [line for line in capsys.readouterr().err.splitlines() if "build-dictionary: skipped" in line]
    assert summary == [f"build-dictionary: skipped {listed - 3:,} of {listed + len(global_sources):,} listed images "
                       f"whose files are absent (Parts.csv 4,000, Attributes.csv 9,968, Action_Units.csv 10,662)"]
    local = [f"{SAMPLE_PARTS}/original.png", "attributes/000001/original.png", "AU/N_0000000001_00002/original.png"]
    built = check_built(folder, out, mask_size, size, local, global_sources)
    index = TAXONOMY.concept_index
    assert built.local_label[2, index("AU4")] == built.local_label[2, index("AU26")] == 1
    assert built.local_label[2, index("AU1")] == 0 and built.local_label[1, index("smiling")] == 1
    assert len(built) == 3 + 12


def test_sides_measured_on_the_real_sample(sample_tree, tmp_path):
    """Their left_eye.png is on the image's left, where the subject's right eye is: it becomes our
    right_eye, as the renderer and the taxonomy's side convention have it."""
    folder, _ = sample_tree
    parts = folder / SAMPLE_PARTS
    width = Image.open(parts / "original.png").size[0]
    centroid = lambda mask: np.nonzero(mask)[1].mean()
    for feature in ("brow", "eye", "cheek"):
        left = np.asarray(Image.open(parts / f"left_{feature}.png").convert("L")) > 127
        right = np.asarray(Image.open(parts / f"right_{feature}.png").convert("L")) > 127
        assert centroid(left) < width / 2 < centroid(right), feature
    assert round(centroid(np.asarray(Image.open(parts / "left_eye.png").convert("L")) > 127)) == 68 and width == 178
    out = tmp_path / "sides.h5"
    assert build_main(["--hnd-folder", str(folder), "--out", str(out), "--skip-missing"]) == 0
    built = read_dictionary(out, with_masks=True)
    assert built.sources[0] == f"{SAMPLE_PARTS}/original.png"
    ours_right = built.mask(0, TAXONOMY.concept_index("right_eye"))
    np.testing.assert_array_equal(ours_right, expected_mask(parts / "left_eye.png", 112))
    assert centroid(ours_right) < 56 < centroid(built.mask(0, TAXONOMY.concept_index("left_eye")))
    from hndd_client.face_renderer import FaceSpec, render  # our own faces: the subject's right eye on the left too
    _, points = render(FaceSpec(), 64)
    assert points[36:42, 0].mean() < 0.5 < points[42:48, 0].mean()


def test_real_sample_without_skip_missing_names_the_file_and_line(sample_tree, tmp_path, capsys):
    folder, _ = sample_tree
    assert build_main(["--hnd-folder", str(folder), "--out", str(tmp_path / "x.h5")]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (f"build-dictionary: {folder}/parts/200744/original.png: listed ({folder}/Parts.csv:2) but "
                     f"absent (--skip-missing leaves such images out)")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# small folders in the layout

ROWS = {
    "Parts.csv": [("parts/000010/original.png", [f"parts/000010/{name}.png" for name in sorted(PART_NAMES)])],
    "Attributes.csv": [
        ("attributes/000001/original.png", ["attributes/000001/Arched_Eyebrows.png",
                                            "attributes/000001/High_Cheekbones.png", "attributes/000001/Smiling.png"]),
        ("attributes/000002/original.png", []),  # annotated for every attribute, none present
        ("attributes/000003/original.png", ["attributes/000003/Big_Lips.png", "attributes/000003/No_Beard.png"]),
    ],
    "Action_Units.csv": [
        ("AU/N_01/original.png", ["AU/N_01/AU_12.png", "AU/N_01/AU_17.png"]),  # AU_1 must stay 0
        ("AU/N_02/original.png", ["AU/N_02/AU_1.png", "AU/N_02/AU_26.png", "AU/N_02/AU_6.png"]),
    ],
}
GLOBALS = {("Age", "zero_to_twenty"): 2, ("Age", "sixty_plus"): 1, ("Gender", "Female"): 1, ("Gender", "Male"): 2,
           ("Ethnicity", "indian"): 1, ("skin_tone", "dark"): 1, ("skin_tone", "bright"): 1}


@pytest.fixture
def layout(tmp_path):
    folder = tmp_path / "dictionary"
    hnd_layout.write_layout(folder, ROWS, GLOBALS, seed=3)
    return folder


def build(folder, out, *extra):
    return build_main(["--hnd-folder", str(folder), "--out", str(out), "--mask-size", "40", "--size", "48", *extra])


def global_sources():
    order = [(c, s) for c, (_, subgroups) in GLOBAL_FOLDERS.items() for s in subgroups]
    return [f"non_localizable/{c}/{s}/{k:05d}.png" for c, s in order for k in range(GLOBALS.get((c, s), 0))]


def test_small_layout_builds_label_by_label(layout, tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert build(layout, out) == 0
    assert "skipped" not in capsys.readouterr().err
    local = [image for name in hnd_layout.CSV_NAMES for image, _ in ROWS[name]]
    built = check_built(layout, out, 40, 48, local, global_sources())
    index = TAXONOMY.concept_index
    au1, au12 = index("AU1"), index("AU12")
    assert built.local_label[4, au12] == 1 and built.local_label[4, au1] == 0  # whole names: AU_1 ≠ AU_12
    assert built.local_label[5, au1] == 1 and built.local_label[5, au12] == 0
    assert (built.local_label[2][[i for i, c in enumerate(TAXONOMY.concepts) if c.type == ATTRIBUTE]] == 0).all()
    from scipy import ndimage  # the fixture draws bilateral concepts as two ellipses, as the authors do
    assert ndimage.label(built.mask(1, index("high_cheekbones")))[1] == 2


def test_size_defaults_to_the_mask_size(layout, tmp_path):
    out = tmp_path / "d.h5"
    assert build_main(["--hnd-folder", str(layout), "--out", str(out), "--mask-size", "36"]) == 0
    built = read_dictionary(out)
    assert built.header.mask_size == 36 and built.pixels.shape[1:3] == (36, 36)


def run_failing(folder, tmp_path, capsys, *extra):
    code = build(folder, tmp_path / "bad.h5", *extra)
    error = capsys.readouterr().err
    assert code == 1 and not (tmp_path / "bad.h5").exists() and not (tmp_path / "bad.h5.partial").exists()
    return error.strip()


def test_absent_listed_files_name_the_file_and_line_or_are_skipped(layout, tmp_path, capsys):
    (layout / "attributes/000003/No_Beard.png").unlink()
    (layout / "AU/N_01/original.png").unlink()
    error = run_failing(layout, tmp_path, capsys)
    assert error == (f"build-dictionary: {layout}/attributes/000003/No_Beard.png: listed ({layout}/Attributes.csv:4) "
                     f"but absent (--skip-missing leaves such images out)")
    out = tmp_path / "skipped.h5"
    assert build(layout, out, "--skip-missing") == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "build-dictionary: skipped" in line]
    assert lines == ["build-dictionary: skipped 2 of 15 listed images whose files are absent (Attributes.csv 1, "
                     "Action_Units.csv 1)"]
    local = ["parts/000010/original.png", "attributes/000001/original.png", "attributes/000002/original.png",
             "AU/N_02/original.png"]
    check_built(layout, out, 40, 48, local, global_sources())


def test_unreadable_images_are_named(layout, tmp_path, capsys):
    (layout / "attributes/000002/original.png").write_bytes(b"not a png")
    error = run_failing(layout, tmp_path, capsys)
    assert error.startswith(f"build-dictionary: {layout}/attributes/000002/original.png: cannot read the image (")
    assert error.endswith(f"; {layout}/Attributes.csv:3)")
    shutil.copy(layout / "attributes/000001/original.png", layout / "attributes/000002/original.png")
    png = (layout / "AU/N_02/AU_26.png").read_bytes()
    (layout / "AU/N_02/AU_26.png").write_bytes(png[:len(png) // 2])  # truncated
    error = run_failing(layout, tmp_path, capsys)
    assert f"{layout}/AU/N_02/AU_26.png: cannot read the image" in error and "Action_Units.csv:3" in error


def test_a_mask_of_another_size_than_its_photo_is_named(layout, tmp_path, capsys):
    Image.open(layout / "parts/000010/nose.png").resize((100, 100)).save(layout / "parts/000010/nose.png")
    error = run_failing(layout, tmp_path, capsys)
    assert error == (f"build-dictionary: {layout}/parts/000010/nose.png: the mask is 100×100 but its photo is "
                     f"178×218 ({layout}/Parts.csv:2)")


def test_an_unknown_concept_lists_the_known_ones(layout, tmp_path, capsys):
    original = (layout / "Action_Units.csv").read_text()
    (layout / "Action_Units.csv").write_text(original.replace("AU/N_01/AU_17.png", "AU/N_01/AU_1_2.png"))
    error = run_failing(layout, tmp_path, capsys)
    assert error == (f"build-dictionary: {layout}/Action_Units.csv:2: unknown concept 'AU_1_2' (file "
                     f"AU/N_01/AU_1_2.png); Action_Units.csv knows " + ", ".join(AU_NAMES))
    (layout / "Action_Units.csv").write_text(original)
    attributes = (layout / "Attributes.csv").read_text()
    (layout / "Attributes.csv").write_text(attributes.replace("Smiling.png", "AU_12.png"))  # another set's concept
    error = run_failing(layout, tmp_path, capsys)
    assert f"Attributes.csv:2: unknown concept 'AU_12'" in error and "knows 5_o_Clock_Shadow, " in error


def test_an_unknown_subgroup_or_category_folder_lists_the_known_ones(layout, tmp_path, capsys):
    (layout / "non_localizable/Age/teen").mkdir()
    error = run_failing(layout, tmp_path, capsys)
    assert error == (f"build-dictionary: {layout}/non_localizable/Age/teen: unknown Age subgroup folder 'teen'; the "
                     f"layout knows zero_to_twenty, twenty_to_forty, forty_to_sixty, sixty_plus")
    (layout / "non_localizable/Age/teen").rmdir()
    (layout / "non_localizable/Gender/male").mkdir()  # the folder names are the authors', case and all
    error = run_failing(layout, tmp_path, capsys)
    assert "unknown Gender subgroup folder 'male'; the layout knows Male, Female" in error
    (layout / "non_localizable/Gender/male").rmdir()
    (layout / "non_localizable/Hair").mkdir()
    error = run_failing(layout, tmp_path, capsys)
    assert error.endswith("unknown category folder 'Hair'; the layout knows Age, Gender, Ethnicity, skin_tone")


@pytest.mark.parametrize("damage, message", [
    (lambda f: shutil.rmtree(f / "non_localizable"), "non_localizable: missing (the global part: Age/, Gender/, "
                                                     "Ethnicity/, skin_tone/)"),
    (lambda f: shutil.rmtree(f / "non_localizable/skin_tone"), "non_localizable: no skin_tone folder"),
    (lambda f: (f / "Parts.csv").unlink(), "Parts.csv: missing (the layout has Parts.csv, Attributes.csv, "
                                           "Action_Units.csv)"),
    (lambda f: (f / "Parts.csv").write_text("file,masks\n"), "Parts.csv:1: expected the header image,labels"),
    (lambda f: (f / "Attributes.csv").write_text((f / "Attributes.csv").read_text() + "a.png,b.png,c.png\n"),
     "Attributes.csv:5: expected an image and its ';'-separated mask files, got 3 fields"),
    (lambda f: (f / "Attributes.csv").write_text((f / "Attributes.csv").read_text().replace(
        "000001/Smiling.png", "000001/Smiling.png;attributes/000001/Smiling.png")), "Attributes.csv:2: Smiling is "
                                                                                    "listed twice"),
    (lambda f: (f / "Action_Units.csv").write_text((f / "Action_Units.csv").read_text() +
                                                   "attributes/000002/original.png,\n"),
     "Action_Units.csv:4: image attributes/000002/original.png is already listed"),
])
def test_malformed_layouts_are_named(layout, tmp_path, capsys, damage, message):
    damage(layout)
    assert message in run_failing(layout, tmp_path, capsys)


def test_hnd_folder_is_a_build_of_its_own(layout, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        build(layout, tmp_path / "x.h5", "--utkface", str(layout))
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        build_main(["--celeba-attrs", "a", "--celeba-images", "b", "--out", str(tmp_path / "x.h5")])  # no --size


def test_fixture_masks_follow_the_authors_sides():
    """The generator's left_eye is on the image's left, as in the authors' files."""
    left = np.asarray(hnd_layout.mask_image("left_eye", (178, 218), (0, 0), 1.0).convert("L")) > 127
    assert np.nonzero(left)[1].mean() < 178 / 2
    two = np.asarray(hnd_layout.mask_image("Rosy_Cheeks", (178, 218), (0, 0), 1.0).convert("L")) > 127
    from scipy import ndimage
    assert ndimage.label(two)[1] == 2
