"""The Face Dictionary taxonomy (paper Fig. 2a), loaded from ``data/taxonomy.json``.

The taxonomy fixes the names and the order of everything a dictionary file indexes: global
categories and their subgroups, local regions, local concepts with their region and type, and
for each local concept the landmark outline its mask is computed from: one ellipse, or one per
side for a bilateral concept (see ``landmarks.py``). Keeping it as data means the synthetic generator, the real-dataset builder and
the tests all agree on one list.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

PART, ATTRIBUTE, ACTION_UNIT = 0, 1, 2
CONCEPT_TYPE_NAMES = {PART: "facial part", ATTRIBUTE: "attribute", ACTION_UNIT: "action unit"}
LANDMARK_COUNT = 68
_CONCEPT_NAME = re.compile(r"^(AU[0-9]+|[a-z][a-z0-9_]*)$")


class TaxonomyError(ValueError):
    """The taxonomy file is malformed; the message names the file and the offending entry."""


@dataclass(frozen=True)
class Outline:
    """How a local concept's mask is derived from the 68 iBUG landmarks.

    One ellipse around ``landmarks``, or, for a concept with ``sides`` (a bilateral one: both
    cheeks, both brows), one ellipse per side, the mask being their union. ``landmarks`` is then
    every side's points, subject's right side first (``side_convention`` in the taxonomy file).
    """

    landmarks: Tuple[int, ...]
    min_half_axis: float  # in inter-ocular distances
    shift_down: float = 0.0  # in inter-ocular distances, towards the chin
    sides: Tuple[Tuple[int, ...], ...] = ()

    @property
    def pieces(self) -> Tuple["Outline", ...]:
        """One single-ellipse outline per side (the outline itself when it has no sides)."""
        if not self.sides:
            return (self,)
        return tuple(Outline(side, self.min_half_axis, self.shift_down) for side in self.sides)


@dataclass(frozen=True)
class LocalConcept:
    name: str
    region: str
    region_index: int
    type: int
    outline: Outline


@dataclass(frozen=True)
class GlobalCategory:
    name: str
    subgroups: Tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True)
class Taxonomy:
    """Ordered concept lists; indices into these tuples are the indices written to files."""

    categories: Tuple[GlobalCategory, ...]
    regions: Tuple[str, ...]
    concepts: Tuple[LocalConcept, ...]
    _concept_index: Dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self._concept_index.update({c.name: i for i, c in enumerate(self.concepts)})

    # -- global side -------------------------------------------------------------------------
    def without_optional(self) -> "Taxonomy":
        """The same taxonomy minus optional global categories (e.g. colour_scheme)."""
        return self.with_categories([c.name for c in self.categories if not c.optional])

    def with_categories(self, names: Sequence[str]) -> "Taxonomy":
        """Keeps only the named global categories, in taxonomy order."""
        unknown = set(names) - {c.name for c in self.categories}
        if unknown:
            raise TaxonomyError(f"unknown global categories: {', '.join(sorted(unknown))}")
        kept = tuple(c for c in self.categories if c.name in names)
        return Taxonomy(kept, self.regions, self.concepts)

    @property
    def category_names(self) -> List[str]:
        return [c.name for c in self.categories]

    @property
    def subgroups(self) -> List[str]:
        """All subgroups, category by category: the file's global subgroup order."""
        return [s for c in self.categories for s in c.subgroups]

    @property
    def subgroup_category(self) -> List[int]:
        return [ci for ci, c in enumerate(self.categories) for _ in c.subgroups]

    def category_index(self, name: str) -> int:
        for i, c in enumerate(self.categories):
            if c.name == name:
                return i
        raise KeyError(f"no global category {name!r} (have: {', '.join(self.category_names)})")

    def subgroup_index(self, category: str, subgroup: str) -> int:
        """Global subgroup index (what ``/images/global_label`` stores) of ``category/subgroup``."""
        offset = 0
        for c in self.categories:
            if c.name == category:
                if subgroup not in c.subgroups:
                    raise KeyError(f"category {category!r} has no subgroup {subgroup!r}")
                return offset + c.subgroups.index(subgroup)
            offset += len(c.subgroups)
        raise KeyError(f"no global category {category!r} (have: {', '.join(self.category_names)})")

    # -- local side --------------------------------------------------------------------------
    @property
    def concept_names(self) -> List[str]:
        return [c.name for c in self.concepts]

    def concept_index(self, name: str) -> int:
        try:
            return self._concept_index[name]
        except KeyError:
            raise KeyError(f"no local concept {name!r} in the taxonomy") from None

    def concept(self, name: str) -> LocalConcept:
        return self.concepts[self.concept_index(name)]

    def with_concepts(self, names) -> "Taxonomy":
        """Keeps only the named local concepts, in taxonomy order (regions stay as they are)."""
        unknown = set(names) - set(self.concept_names)
        if unknown:
            raise TaxonomyError(f"unknown local concepts: {', '.join(sorted(unknown))}")
        return Taxonomy(self.categories, self.regions, tuple(c for c in self.concepts if c.name in names))


def _require(condition: bool, source: str, message: str) -> None:
    if not condition:
        raise TaxonomyError(f"{source}: {message}")


def _parse_points(points, source: str, where: str) -> Tuple[int, ...]:
    _require(isinstance(points, list) and len(points) >= 2, source,
             f"{where} must list at least 2 landmark indices")
    for p in points:
        _require(isinstance(p, int) and 0 <= p < LANDMARK_COUNT, source,
                 f"{where}: landmark index {p!r} is not in 0..{LANDMARK_COUNT - 1}")
    return tuple(points)


def _parse_outline(raw, source: str, where: str) -> Outline:
    _require(isinstance(raw, dict), source, f"{where}: 'outline' must be an object")
    _require(("landmarks" in raw) != ("sides" in raw), source,
             f"{where}: an outline has either 'landmarks' (one ellipse) or 'sides' (one ellipse per side)")
    sides: Tuple[Tuple[int, ...], ...] = ()
    if "sides" in raw:
        _require(isinstance(raw["sides"], list) and len(raw["sides"]) == 2, source,
                 f"{where}: outline.sides must list two point sets, the subject's right side first")
        sides = tuple(_parse_points(side, source, f"{where}: outline.sides[{k}]") for k, side in enumerate(raw["sides"]))
        points = [p for side in sides for p in side]
    else:
        points = list(_parse_points(raw["landmarks"], source, f"{where}: outline.landmarks"))
    _require(len(set(points)) == len(points), source, f"{where}: repeated landmark index")
    half_axis = raw.get("min_half_axis")
    _require(isinstance(half_axis, (int, float)) and half_axis > 0, source,
             f"{where}: outline.min_half_axis must be a positive number")
    shift = raw.get("shift_down", 0.0)
    _require(isinstance(shift, (int, float)), source, f"{where}: outline.shift_down must be a number")
    return Outline(tuple(points), float(half_axis), float(shift), sides)


def parse_taxonomy(document: dict, source: str = "<taxonomy>") -> Taxonomy:
    """Validates a taxonomy document (the JSON object) and returns it as a ``Taxonomy``."""
    _require(isinstance(document, dict) and document.get("format") == "hndd-taxonomy", source,
             "not an hndd taxonomy (expected \"format\": \"hndd-taxonomy\")")
    _require(document.get("version") == 1, source, f"unsupported version {document.get('version')!r}")

    categories = []
    seen_subgroups = set()
    for i, raw in enumerate(document.get("global", [])):
        where = f"global[{i}]"
        _require(isinstance(raw.get("category"), str) and raw["category"], source, f"{where}: missing category name")
        subgroups = raw.get("subgroups")
        _require(isinstance(subgroups, list) and len(subgroups) >= 2 and all(isinstance(s, str) for s in subgroups),
                 source, f"{where}: subgroups must list at least two names")
        for s in subgroups:
            _require(s not in seen_subgroups, source, f"{where}: subgroup {s!r} appears twice in the taxonomy")
            seen_subgroups.add(s)
        categories.append(GlobalCategory(raw["category"], tuple(subgroups), bool(raw.get("optional", False))))
    _require(len({c.name for c in categories}) == len(categories), source, "duplicate global category")

    regions = document.get("regions")
    _require(isinstance(regions, list) and regions and all(isinstance(r, str) for r in regions), source,
             "regions must be a non-empty list of names")
    _require(len(set(regions)) == len(regions), source, "duplicate region")

    concepts = []
    for i, raw in enumerate(document.get("local", [])):
        name = raw.get("name")
        where = f"local[{i}] ({name})"
        _require(isinstance(name, str) and _CONCEPT_NAME.match(name) is not None, source,
                 f"{where}: concept names are snake_case ascii or AU<number>")
        _require(raw.get("region") in regions, source, f"{where}: unknown region {raw.get('region')!r}")
        _require(raw.get("type") in CONCEPT_TYPE_NAMES, source, f"{where}: type must be 0, 1 or 2")
        concepts.append(LocalConcept(name, raw["region"], regions.index(raw["region"]), raw["type"],
                                     _parse_outline(raw.get("outline"), source, where)))
    _require(bool(concepts), source, "no local concepts")
    _require(len({c.name for c in concepts}) == len(concepts), source, "duplicate local concept name")
    return Taxonomy(tuple(categories), tuple(regions), tuple(concepts))


def load_taxonomy(path: Optional[Path] = None) -> Taxonomy:
    """Loads the taxonomy shipped with the package, or the one at ``path``."""
    if path is None:
        path = Path(__file__).resolve().parent / "data" / "taxonomy.json"
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise TaxonomyError(f"{source}: cannot read ({error.strerror})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise TaxonomyError(f"{source}: line {error.lineno}: invalid JSON ({error.msg})") from None
    return parse_taxonomy(document, source)
