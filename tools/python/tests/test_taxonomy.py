"""The taxonomy data file is the paper's Fig. 2a, as issue 4 lists it plus the published dictionary's
smiling and big_lips (issue 12), bilateral concepts have one point set per side, and malformed files
are refused."""
import json
from pathlib import Path

import pytest

from hndd_client.taxonomy import ACTION_UNIT, ATTRIBUTE, PART, TaxonomyError, load_taxonomy, parse_taxonomy

SHIPPED = Path(__file__).resolve().parent.parent / "hndd_client" / "data" / "taxonomy.json"

# issue 4, "Taxonomy": region -> concepts, in the order the issue lists them; issue 12 adds smiling and
# big_lips to the mouth (the published Face Dictionary annotates them)
ISSUE_LOCAL = {
    "eye": ["left_brow", "right_brow", "left_eye", "right_eye", "eyeglasses", "arched_eyebrows", "bushy_eyebrows",
            "narrow_eyes", "AU1", "AU2", "AU4", "AU5"],
    "cheek": ["left_cheek", "right_cheek", "high_cheekbones", "rosy_cheeks", "five_o_clock_shadow", "no_beard",
              "bags_under_eyes", "AU6"],
    "nose": ["nose", "big_nose", "pointy_nose", "AU9"],
    "mouth": ["mouth", "mouth_slightly_open", "mustache", "wearing_lipstick", "smiling", "big_lips", "AU12", "AU15",
              "AU20", "AU25"],
    "chin": ["chin", "goatee", "double_chin", "AU17", "AU26"],
}
ISSUE_GLOBAL = {"age": ["0-20", "20-40", "40-60", "60+"], "gender": ["female", "male"],
                "ethnicity": ["white", "black", "asian", "indian"], "skin_tone": ["dark", "bright"],
                "colour_scheme": ["colour", "grayscale"]}
PARTS = {"left_brow", "right_brow", "left_eye", "right_eye", "left_cheek", "right_cheek", "nose", "mouth", "chin"}


def test_local_concepts_are_the_issue_list_by_region():
    taxonomy = load_taxonomy()
    assert list(taxonomy.regions) == list(ISSUE_LOCAL)
    by_region = {region: [c.name for c in taxonomy.concepts if c.region == region] for region in taxonomy.regions}
    assert by_region == ISSUE_LOCAL
    for concept in taxonomy.concepts:
        assert taxonomy.regions[concept.region_index] == concept.region


def test_concept_types_follow_the_names():
    taxonomy = load_taxonomy()
    for concept in taxonomy.concepts:
        expected = ACTION_UNIT if concept.name.startswith("AU") else PART if concept.name in PARTS else ATTRIBUTE
        assert concept.type == expected, concept.name


def test_global_categories_and_subgroup_indices():
    taxonomy = load_taxonomy()
    assert {c.name: list(c.subgroups) for c in taxonomy.categories} == ISSUE_GLOBAL
    assert [c.name for c in taxonomy.categories if c.optional] == ["colour_scheme"]
    # the global subgroup index is the position in the flattened list, category by category
    flat = [s for subgroups in ISSUE_GLOBAL.values() for s in subgroups]
    assert taxonomy.subgroups == flat
    for category, subgroups in ISSUE_GLOBAL.items():
        for subgroup in subgroups:
            index = taxonomy.subgroup_index(category, subgroup)
            assert flat[index] == subgroup
            assert taxonomy.categories[taxonomy.subgroup_category[index]].name == category
    core = taxonomy.without_optional()
    assert core.category_names == ["age", "gender", "ethnicity", "skin_tone"]
    assert core.subgroup_index("skin_tone", "bright") == taxonomy.subgroup_index("skin_tone", "bright")
    with pytest.raises(KeyError, match="no subgroup"):
        taxonomy.subgroup_index("gender", "other")


def test_every_outline_names_valid_distinct_landmarks():
    for concept in load_taxonomy().concepts:
        points = concept.outline.landmarks
        assert len(points) >= 2 and len(set(points)) == len(points)
        assert all(0 <= p < 68 for p in points)
        assert concept.outline.min_half_axis > 0


BILATERAL = {"arched_eyebrows", "bushy_eyebrows", "narrow_eyes", "AU2", "AU5", "high_cheekbones", "rosy_cheeks",
             "bags_under_eyes", "AU6"}
RIGHT_SIDE = set(range(0, 8)) | set(range(17, 22)) | set(range(36, 42)) | {31, 32, 48, 49, 50, 58, 59, 60, 61, 67}


def test_bilateral_concepts_have_one_point_set_per_side_subject_right_first():
    taxonomy = load_taxonomy()
    assert {c.name for c in taxonomy.concepts if c.outline.sides} == BILATERAL
    for concept in taxonomy.concepts:
        outline = concept.outline
        if not outline.sides:
            assert outline.pieces == (outline,)
            continue
        right, left = outline.sides
        assert set(right) <= RIGHT_SIDE and not set(left) & RIGHT_SIDE, concept.name
        assert outline.landmarks == right + left
        assert [piece.landmarks for piece in outline.pieces] == [right, left]
        assert all(p.min_half_axis == outline.min_half_axis and p.shift_down == outline.shift_down and not p.sides
                   for p in outline.pieces)


def test_with_concepts_keeps_taxonomy_order():
    taxonomy = load_taxonomy()
    kept = taxonomy.with_concepts(["AU26", "nose", "left_eye"])
    assert kept.concept_names == ["left_eye", "nose", "AU26"] and kept.regions == taxonomy.regions
    assert kept.concept("AU26").region_index == taxonomy.regions.index("chin")
    with pytest.raises(TaxonomyError, match="unknown local concepts: forehead"):
        taxonomy.with_concepts(["nose", "forehead"])


def _document():
    return json.loads(SHIPPED.read_text())


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: d["local"][0].update(region="forehead"), "unknown region 'forehead'"),
    (lambda d: d["local"][3]["outline"].update(landmarks=[36, 70]), "landmark index 70"),
    (lambda d: d["local"][3]["outline"].update(sides=[[36, 37], [42, 43]]), "either 'landmarks'"),
    (lambda d: d["local"][5]["outline"].update(sides=[[17, 18, 19]]), "two point sets"),
    (lambda d: d["local"][5]["outline"].update(sides=[[17, 18], [18, 19]]), "repeated landmark index"),
    (lambda d: d["local"][5]["outline"].update(sides=[[17, 18], [23, 99]]), r"sides\[1\]: landmark index 99"),
    (lambda d: d["local"][1].update(name="left_brow"), "duplicate local concept"),
    (lambda d: d["local"][2].update(name="Left Eye"), "snake_case"),
    (lambda d: d["local"][4].update(type=3), "type must be 0, 1 or 2"),
    (lambda d: d["global"][1].update(subgroups=["female", "0-20"]), "appears twice"),
    (lambda d: d.update(format="something-else"), "not an hndd taxonomy"),
])
def test_malformed_documents_are_refused_with_the_reason(corrupt, message):
    document = _document()
    corrupt(document)
    with pytest.raises(TaxonomyError, match=message):
        parse_taxonomy(document, "broken.json")


def test_unreadable_json_names_file_and_line(tmp_path):
    path = tmp_path / "taxonomy.json"
    path.write_text('{\n  "format": "hndd-taxonomy",\n  "version": 1,,\n}')
    with pytest.raises(TaxonomyError, match=r"taxonomy.json: line 3"):
        load_taxonomy(path)
    with pytest.raises(TaxonomyError, match="cannot read"):
        load_taxonomy(tmp_path / "missing.json")
