"""Procedural face renderer with ground-truth iBUG-68 landmarks (numpy + Pillow).

A ``FaceSpec`` describes one face completely: who (age group, gender, ethnicity palette), how it
looks (colours, hair, face shape), every local concept of the taxonomy as its own physical switch
(glasses, brow shape, eye opening, cheek colour, stubble, beard, nose size and shape, mouth
opening and corners, a smile, full lips, lipstick, double chin, the action units; two-sided
features such as cheeks and brows are drawn on both sides), and how it is photographed (pose,
scale, lighting, noise, grayscale). ``render(spec, size)`` is a pure function of the spec: the
same spec always gives the same pixels, so one concept can be switched with ``with_concept`` and
everything else stays identical.

Geometry is built in a canonical face frame (x right, y down; the face is about 1 unit wide, the
eyes sit at y = −0.05, 0.4 apart), every point goes through one projection (a cylinder-like head
turned by yaw and pitch, then roll, scale and shift), and is drawn with Pillow on a 2× canvas
that is box-filtered down. Left/right follow the subject (taxonomy ``side_convention``): the
subject's right eye is drawn on the image's left.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

AGE_GROUPS = ("0-20", "20-40", "40-60", "60+")
GENDERS = ("female", "male")
ETHNICITIES = ("white", "black", "asian", "indian", "other")  # "other" is rendered but unlabelled
EYE_APERTURES = ("narrow", "normal", "wide")
MOUTH_OPENINGS = ("closed", "slight", "wide")
LIP_CORNERS = ("neutral", "up", "down")
BEARDS = ("none", "goatee", "full")
HAIR_STYLES = ("short", "medium", "long", "bald")

Colour = Tuple[int, int, int]

EYE_Y, EYE_X, BROW_Y, FACE_TOP_Y = -0.05, 0.2, -0.165, -0.04
SUPERSAMPLE = 2


@dataclass(frozen=True)
class Pose:
    roll: float = 0.0  # radians, in the image plane
    yaw: float = 0.0  # radians, head turned left/right
    pitch: float = 0.0  # radians, head tilted up/down
    scale: float = 0.58  # canonical unit as a fraction of the image width
    shift_x: float = 0.0  # face centre offset, fraction of the image
    shift_y: float = 0.0


@dataclass(frozen=True)
class Lighting:
    angle: float = 0.0  # direction the light comes from, radians in the image plane
    strength: float = 0.0  # 0 flat .. ~0.6 strong side light
    brightness: float = 1.0
    tint: float = 0.0  # warm (+) / cool (−) colour cast
    noise_sigma: float = 0.0  # Gaussian pixel noise, in 0..255 units


@dataclass(frozen=True)
class Appearance:
    skin: Colour = (224, 186, 158)
    hair: Colour = (60, 42, 30)
    iris: Colour = (70, 45, 30)
    lips: Colour = (190, 120, 115)
    lipstick: Colour = (185, 30, 55)
    clothes: Colour = (60, 80, 120)
    background_top: Colour = (180, 190, 200)
    background_bottom: Colour = (120, 130, 140)
    glasses_frame: Colour = (30, 30, 35)
    hair_style: str = "short"
    fringe: bool = False
    earrings: bool = False
    face_width: float = 0.49  # half-width of the face at the cheeks
    face_length: float = 0.66  # from eye level (−0.04) to the chin
    jaw_squareness: float = 2.2  # superellipse exponent: 2 round .. 3 square
    hairline: float = -0.42
    gaze_x: float = 0.0
    gaze_y: float = 0.0
    eye_tilt: float = 0.0
    texture_seed: int = 0  # hair strands, stubble dots, background clutter


@dataclass(frozen=True)
class FaceSpec:
    age_group: str = "20-40"
    gender: str = "female"
    ethnicity: str = "white"
    appearance: Appearance = field(default_factory=Appearance)
    pose: Pose = field(default_factory=Pose)
    lighting: Lighting = field(default_factory=Lighting)
    grayscale: bool = False
    # eye region
    eyeglasses: bool = False
    arched_eyebrows: bool = False
    bushy_eyebrows: bool = False
    eye_aperture: str = "normal"  # narrow -> narrow_eyes, wide -> AU5
    inner_brow_raise: bool = False  # AU1
    outer_brow_raise: bool = False  # AU2
    brow_lowerer: bool = False  # AU4
    # cheek region
    high_cheekbones: bool = False
    rosy_cheeks: bool = False
    stubble: bool = False  # five_o_clock_shadow
    beard: str = "none"  # none -> no_beard
    bags_under_eyes: bool = False
    cheek_raiser: bool = False  # AU6
    # nose region
    big_nose: bool = False
    pointy_nose: bool = False
    nose_wrinkler: bool = False  # AU9
    # mouth region
    mouth_opening: str = "closed"  # slight -> mouth_slightly_open; slight or wide -> AU25; wide -> AU26
    mustache: bool = False
    lipstick: bool = False
    lip_corners: str = "neutral"  # up -> AU12, down -> AU15
    lip_stretch: bool = False  # AU20
    smiling: bool = False  # a wider mouth curving up, dimples at its corners, more teeth when it is open
    big_lips: bool = False  # fuller lips
    # chin region
    double_chin: bool = False
    chin_raiser: bool = False  # AU17

    def __post_init__(self):
        for name, value, allowed in (("age_group", self.age_group, AGE_GROUPS), ("gender", self.gender, GENDERS),
                                     ("ethnicity", self.ethnicity, ETHNICITIES),
                                     ("eye_aperture", self.eye_aperture, EYE_APERTURES),
                                     ("mouth_opening", self.mouth_opening, MOUTH_OPENINGS),
                                     ("lip_corners", self.lip_corners, LIP_CORNERS), ("beard", self.beard, BEARDS),
                                     ("appearance.hair_style", self.appearance.hair_style, HAIR_STYLES)):
            if value not in allowed:
                raise ValueError(f"FaceSpec.{name} = {value!r}; expected one of {', '.join(allowed)}")


PART_CONCEPTS = ("left_brow", "right_brow", "left_eye", "right_eye", "left_cheek", "right_cheek", "nose",
                 "mouth", "chin")

# concept -> (spec field, value meaning present, value meaning absent)
_CONCEPT_SWITCHES: Dict[str, Tuple[str, object, object]] = {
    "eyeglasses": ("eyeglasses", True, False),
    "arched_eyebrows": ("arched_eyebrows", True, False),
    "bushy_eyebrows": ("bushy_eyebrows", True, False),
    "narrow_eyes": ("eye_aperture", "narrow", "normal"),
    "AU1": ("inner_brow_raise", True, False),
    "AU2": ("outer_brow_raise", True, False),
    "AU4": ("brow_lowerer", True, False),
    "AU5": ("eye_aperture", "wide", "normal"),
    "high_cheekbones": ("high_cheekbones", True, False),
    "rosy_cheeks": ("rosy_cheeks", True, False),
    "five_o_clock_shadow": ("stubble", True, False),
    "no_beard": ("beard", "none", "full"),
    "bags_under_eyes": ("bags_under_eyes", True, False),
    "AU6": ("cheek_raiser", True, False),
    "big_nose": ("big_nose", True, False),
    "pointy_nose": ("pointy_nose", True, False),
    "AU9": ("nose_wrinkler", True, False),
    "mouth_slightly_open": ("mouth_opening", "slight", "closed"),
    "mustache": ("mustache", True, False),
    "wearing_lipstick": ("lipstick", True, False),
    "smiling": ("smiling", True, False),
    "big_lips": ("big_lips", True, False),
    "AU12": ("lip_corners", "up", "neutral"),
    "AU15": ("lip_corners", "down", "neutral"),
    "AU20": ("lip_stretch", True, False),
    "AU25": ("mouth_opening", "slight", "closed"),
    "goatee": ("beard", "goatee", "none"),
    "double_chin": ("double_chin", True, False),
    "AU17": ("chin_raiser", True, False),
    "AU26": ("mouth_opening", "wide", "closed"),
}
SWITCHABLE_CONCEPTS = tuple(_CONCEPT_SWITCHES)


def concept_presence(spec: FaceSpec) -> Dict[str, bool]:
    """Which taxonomy local concepts the spec shows (parts are always visible)."""
    present = {name: True for name in PART_CONCEPTS}
    for name, (attribute, on, _) in _CONCEPT_SWITCHES.items():
        present[name] = getattr(spec, attribute) == on
    present["AU25"] = spec.mouth_opening != "closed"
    present["no_beard"] = spec.beard == "none"
    return present


def with_concept(spec: FaceSpec, concept: str, present: bool) -> FaceSpec:
    """The same face with one local concept switched on or off (nothing else changes)."""
    if concept not in _CONCEPT_SWITCHES:
        raise KeyError(f"concept {concept!r} cannot be switched (parts are always drawn)")
    attribute, on, off = _CONCEPT_SWITCHES[concept]
    return replace(spec, **{attribute: on if present else off})


# --------------------------------------------------------------------------------------------
# geometry in the canonical frame
# --------------------------------------------------------------------------------------------

@dataclass
class _Geometry:
    landmarks: np.ndarray  # [68, 2] canonical
    face_outline: np.ndarray  # closed polygon of the skin area (forehead + jaw)
    jaw_dense: np.ndarray  # jaw curve from the subject's right ear to the left ear
    eyes: List[dict]  # per eye (image left first): centre, upper and lower lid curves, iris
    brows: List[np.ndarray]  # per brow (image left first): (n, 2) centre line, outer end first
    brow_thickness: List[np.ndarray]  # per brow: (n,) thickness along the centre line
    nose: dict
    mouth: dict
    head_width: float


def _jaw_point(theta: np.ndarray, width: float, length: float, squareness: float, drop: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    power = 2.0 / squareness
    x = -width * np.sign(c) * np.abs(c) ** power
    y = FACE_TOP_Y + length * np.abs(s) ** power + drop * np.abs(s) ** 3
    return np.stack([x, y], axis=-1)


def _build_geometry(spec: FaceSpec) -> _Geometry:
    a = spec.appearance
    child = spec.age_group == "0-20"
    old = spec.age_group == "60+"
    landmarks = np.zeros((68, 2))

    # jaw (0..16) -- AU26 drops the chin
    jaw_drop = 0.06 if spec.mouth_opening == "wide" else 0.0
    length = a.face_length * (0.9 if child else 1.0)
    theta = np.pi * np.arange(17) / 16
    landmarks[0:17] = _jaw_point(theta, a.face_width, length, a.jaw_squareness, jaw_drop)
    jaw_dense = _jaw_point(np.linspace(0, np.pi, 48), a.face_width, length, a.jaw_squareness, jaw_drop)
    phi = np.linspace(0, np.pi, 32)
    forehead = np.stack([a.face_width * np.cos(phi), FACE_TOP_Y - 0.7 * np.sin(phi)], axis=-1)
    face_outline = np.concatenate([forehead, jaw_dense[1:-1]])

    # eyes (36..41 subject's right = image left; 42..47)
    eye_scale = 1.12 if child else 1.0
    half_width = 0.085 * eye_scale
    half_height = 0.036 * eye_scale * {"narrow": 0.45, "normal": 1.0, "wide": 1.5}[spec.eye_aperture]
    lower_ratio = 0.45 if spec.cheek_raiser else 0.75  # AU6 pushes the lower lid up
    eyes = []
    s = np.linspace(0, 1, 16)  # from the outer corner (0) to the inner corner (1)
    for side, first in ((-1, 36), (1, 42)):
        centre = np.array([side * EYE_X, EYE_Y])
        outer = centre + [side * half_width, -a.eye_tilt]
        inner = centre + [-side * half_width, 0.0]
        base = outer[None, :] + (inner - outer)[None, :] * s[:, None]
        upper = base - np.stack([np.zeros_like(s), half_height * np.sin(np.pi * s) ** 0.8], axis=-1)
        lower = base + np.stack([np.zeros_like(s), lower_ratio * half_height * np.sin(np.pi * s)], axis=-1)

        def at(curve, t):
            return np.array([np.interp(t, s, curve[:, 0]), np.interp(t, s, curve[:, 1])])

        if side == -1:  # 36 outer, 37 38 upper, 39 inner, 40 41 lower
            points = [outer, at(upper, 1 / 3), at(upper, 2 / 3), inner, at(lower, 2 / 3), at(lower, 1 / 3)]
        else:  # 42 inner, 43 44 upper, 45 outer, 46 47 lower
            points = [inner, at(upper, 2 / 3), at(upper, 1 / 3), outer, at(lower, 1 / 3), at(lower, 2 / 3)]
        landmarks[first:first + 6] = points
        iris_radius = 0.029 * eye_scale
        eyes.append(dict(centre=centre, upper=upper, lower=lower, half_width=half_width,
                         iris=centre + [a.gaze_x * half_width * 0.35, a.gaze_y * 0.01], iris_radius=iris_radius,
                         outer=outer, side=side))

    # brows (17..21 image left, outer -> inner; 22..26 inner -> outer)
    arch = 0.05 if spec.arched_eyebrows else 0.01
    thickness = (0.048 if spec.bushy_eyebrows else (0.022 if spec.gender == "male" else 0.017)) * (0.85 if child else 1)
    t = np.linspace(0, 1, 13)  # outer (0) -> inner (1)
    brows, brow_thickness = [], []
    for side in (-1, 1):
        x = side * (0.355 - 0.27 * t)
        y = BROW_Y - arch * np.sin(np.pi * t ** 0.7)
        if spec.inner_brow_raise:
            y = y - 0.055 * t ** 2
        if spec.outer_brow_raise:
            y = y - 0.055 * (1 - t) ** 2
        if spec.brow_lowerer:
            y = y + 0.03
            x = x - side * 0.028 * t ** 2
        line = np.stack([x, y], axis=-1)
        brows.append(line)
        brow_thickness.append(thickness * (0.55 + 0.45 * t))
    # 17..21: image-left brow, outer -> inner; 22..26: image-right brow, inner -> outer
    landmarks[22:27] = brows[1][[12, 9, 6, 3, 0]]
    landmarks[17:22] = brows[0][[0, 3, 6, 9, 12]]

    # nose (27..35)
    nose_length = (1.12 if spec.big_nose else 1.0) * (0.9 if child else 1.0)
    wing = (0.118 if spec.big_nose else 0.07) * (0.88 if child else 1.0)
    lift = 0.016 if spec.nose_wrinkler else 0.0
    base_y = 0.165 * nose_length + 0.035 - lift
    tip_y = 0.165 * nose_length + (0.015 if spec.pointy_nose else 0.0)  # a pointy tip hangs lower
    landmarks[27:31] = [[0, -0.06], [0, -0.06 + (tip_y + 0.06) / 3], [0, -0.06 + 2 * (tip_y + 0.06) / 3],
                        [0, tip_y]]
    landmarks[31:36] = [[-wing, base_y - 0.012], [-wing / 2, base_y + 0.004], [0, base_y + 0.01],
                        [wing / 2, base_y + 0.004], [wing, base_y - 0.012]]
    nose = dict(tip_y=tip_y, wing=wing, base_y=base_y)

    # mouth (48..67)
    mouth_y = 0.35 + (0.02 if child else 0.0)
    mouth_half = 0.135 * (1.3 if spec.lip_stretch else 1.0) * (0.95 if spec.gender == "female" else 1.0)
    mouth_half *= 0.85 if child else 1.0
    lip_scale = (0.6 if spec.lip_stretch else 1.0) * (0.75 if old else 1.0) * (1.15 if spec.gender == "female" else 1)
    lip_scale *= 1.75 if spec.big_lips else 1.0
    upper_thick, lower_thick = 0.027 * lip_scale, 0.036 * lip_scale * (1.25 if spec.chin_raiser else 1.0)
    corner_dy = {"neutral": 0.0, "up": -0.05, "down": 0.042}[spec.lip_corners] - (0.03 if spec.smiling else 0.0)
    if spec.lip_corners == "up":
        mouth_half += 0.012
    if spec.smiling:
        mouth_half += 0.018
    gap = {"closed": 0.0, "slight": 0.03, "wide": 0.085}[spec.mouth_opening]
    opening = gap
    raise_lower = 0.01 if spec.chin_raiser else 0.0
    upper_profile = lambda f: np.interp(np.abs(f), [0, 0.2, 0.55, 1], [0.8, 1.0, 0.8, 0.0])
    lower_profile = lambda f: np.interp(np.abs(f), [0, 0.55, 1], [1.0, 0.8, 0.0])
    gap_shape = lambda f: opening * np.clip(1 - f ** 2, 0, 1) ** 0.7

    def mouth_points(f, which):
        f = np.asarray(f, dtype=float)
        inner_upper = mouth_y - 0.3 * gap_shape(f)
        inner_lower = mouth_y + 0.7 * gap_shape(f) - raise_lower * (1 - f ** 2)
        y = {"inner_upper": inner_upper, "inner_lower": inner_lower,
             "outer_upper": inner_upper - upper_thick * upper_profile(f),
             "outer_lower": inner_lower + lower_thick * lower_profile(f)}[which]
        y = y + corner_dy * f ** 2
        return np.stack([f * mouth_half, y], axis=-1)

    landmarks[48:55] = mouth_points([-1, -0.55, -0.2, 0, 0.2, 0.55, 1], "outer_upper")
    landmarks[55:60] = mouth_points([0.55, 0.2, 0, -0.2, -0.55], "outer_lower")
    landmarks[60:65] = mouth_points([-0.85, -0.35, 0, 0.35, 0.85], "inner_upper")
    landmarks[65:68] = mouth_points([0.35, 0, -0.35], "inner_lower")
    # inner corners sit between the outer corners and the lip line, as on real lips
    landmarks[60, 1] = landmarks[48, 1] * 0.3 + landmarks[60, 1] * 0.7
    landmarks[64, 1] = landmarks[54, 1] * 0.3 + landmarks[64, 1] * 0.7
    f = np.linspace(-1, 1, 25)
    mouth = dict(outer_upper=mouth_points(f, "outer_upper"), outer_lower=mouth_points(f, "outer_lower"),
                 inner_upper=mouth_points(f, "inner_upper"), inner_lower=mouth_points(f, "inner_lower"),
                 gap=gap, half=mouth_half, y=mouth_y, corner_dy=corner_dy, lower_thick=lower_thick)
    return _Geometry(landmarks, face_outline, jaw_dense, eyes, brows, brow_thickness, nose, mouth, a.face_width)


# --------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------

def _shade(colour: Sequence[float], factor: float) -> Colour:
    return tuple(int(max(0, min(255, round(c * factor)))) for c in colour)


def _mix(first: Sequence[float], second: Sequence[float], t: float) -> Colour:
    return tuple(int(round(a * (1 - t) + b * t)) for a, b in zip(first, second))


def _ellipse(cx, cy, rx, ry, count=28, rotation=0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, count, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(rotation), math.sin(rotation)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=-1)


def _arc(cx, cy, rx, ry, start_degrees, stop_degrees, count=13) -> np.ndarray:
    t = np.radians(np.linspace(start_degrees, stop_degrees, count))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=-1)


class _Canvas:
    """A supersampled Pillow canvas that projects canonical points before drawing them."""

    def __init__(self, spec: FaceSpec, size: int):
        self.size = size
        self.pixels = size * SUPERSAMPLE
        pose = spec.pose
        self.unit = pose.scale * self.pixels  # pixels per canonical unit
        self.centre = np.array([0.5 + pose.shift_x, 0.5 + pose.shift_y]) * self.pixels
        # yaw and pitch turn a cylinder-like head, then roll, scale and shift: one affine map of
        # (x, y, depth). Rows: what x, y and depth contribute to the canvas (column, row).
        yaw_cos, yaw_sin = math.cos(pose.yaw), math.sin(pose.yaw)
        pitch_cos, pitch_sin = math.cos(pose.pitch), math.sin(pose.pitch)
        roll_cos, roll_sin = math.cos(pose.roll), math.sin(pose.roll)
        self._planar = np.array([[roll_cos * yaw_cos, roll_sin * yaw_cos],
                                 [-roll_sin * pitch_cos, roll_cos * pitch_cos]]) * self.unit
        self._depth = np.array([roll_cos * yaw_sin + roll_sin * pitch_sin,
                                roll_sin * yaw_sin - roll_cos * pitch_sin]) * self.unit
        pitch_shift = 0.05 * (pitch_cos - 1)  # pitch turns about the eye line (y = -0.05)
        self._offset = self.centre + np.array([-roll_sin, roll_cos]) * pitch_shift * self.unit
        self.image = Image.new("RGB", (self.pixels, self.pixels))
        self.draw = ImageDraw.Draw(self.image, "RGBA")

    def project(self, points) -> np.ndarray:
        """Canonical points [n, 2] -> canvas pixel coordinates [n, 2]."""
        points = np.asarray(points, dtype=float).reshape(-1, 2)
        x, y = points[:, 0], points[:, 1]
        depth = np.sqrt(np.maximum(0.36 - x * x, 0.0)) - 0.6  # a cylinder of radius 0.6
        ridge = np.exp(-(x * (1 / 0.045)) ** 2) * np.minimum(np.maximum((y + 0.08) * 4.0, 0.0), 1.0) * (y < 0.24)
        depth += 0.12 * ridge  # the nose sticks out
        return points @ self._planar + depth[:, None] * self._depth + self._offset

    def flat(self, points) -> list:
        """Projected points as the flat [x0, y0, x1, ...] list Pillow draws fastest."""
        return self.project(points).ravel().tolist()

    def width(self, canonical: float) -> int:
        return max(1, int(round(canonical * self.unit)))

    def polygon(self, points, fill, draw=None):
        (draw or self.draw).polygon(self.flat(points), fill=fill)

    def line(self, points, fill, width: float, draw=None):
        (draw or self.draw).line(self.flat(points), fill=fill, width=self.width(width), joint="curve")

    def soft_layer(self):
        layer = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
        return layer, ImageDraw.Draw(layer)

    def composite(self, layer: Image.Image, blur: float):
        """Blurs ``layer`` and lays it over the image; only the painted part is processed."""
        radius = max(0.5, blur * self.unit)
        painted = layer.getbbox()
        if painted is None:
            return
        margin = int(math.ceil(3 * radius))
        box = (max(0, painted[0] - margin), max(0, painted[1] - margin),
               min(self.pixels, painted[2] + margin), min(self.pixels, painted[3] + margin))
        soft = layer.crop(box).filter(ImageFilter.GaussianBlur(radius))
        region = self.image.crop(box).convert("RGBA")
        region.alpha_composite(soft)
        self.image.paste(region.convert("RGB"), box[:2])
        self.draw = ImageDraw.Draw(self.image, "RGBA")


def _draw_background(canvas: _Canvas, spec: FaceSpec, rng: np.random.Generator):
    a = spec.appearance
    ramp = np.linspace(0, 1, canvas.pixels)[:, None, None]
    top, bottom = np.array(a.background_top, float), np.array(a.background_bottom, float)
    gradient = (top * (1 - ramp) + bottom * ramp) * np.ones((1, canvas.pixels, 1))
    canvas.image = Image.fromarray(gradient.astype(np.uint8))
    canvas.draw = ImageDraw.Draw(canvas.image, "RGBA")
    for _ in range(rng.integers(0, 4)):  # low-contrast clutter
        cx, cy = rng.uniform(0, canvas.pixels, 2)
        r = rng.uniform(0.05, 0.2) * canvas.pixels
        colour = tuple(int(v) for v in rng.integers(0, 256, 3)) + (40,)
        canvas.draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)


def _hair_cap(g: _Geometry, a: Appearance, bottom: float) -> np.ndarray:
    """Hair covering the top of the head, from the hairline up, down the sides to ``bottom``."""
    w = g.head_width
    phi = np.linspace(-0.12, np.pi + 0.12, 30)
    outer = np.stack([(w + 0.04) * np.cos(phi), FACE_TOP_Y - 0.06 - 0.72 * np.sin(phi)], axis=-1)
    outer = np.concatenate([[[w + 0.045, bottom]], outer, [[-w - 0.045, bottom]]])
    x = np.linspace(-w + 0.01, w - 0.01, 21)
    hairline = np.stack([x, a.hairline + 0.16 * (x / w) ** 4], axis=-1)
    sides = np.array([[-w + 0.02, bottom]]), np.array([[w - 0.02, bottom]])
    return np.concatenate([outer, sides[0], hairline, sides[1]])


def _draw_hair_back(canvas, g: _Geometry, spec: FaceSpec):
    a = spec.appearance
    w = g.head_width
    if a.hair_style == "long":
        phi = np.linspace(0, np.pi, 24)
        top = np.stack([(w + 0.08) * np.cos(phi), FACE_TOP_Y - 0.05 - 0.76 * np.sin(phi)], axis=-1)
        shape = np.concatenate([[[w + 0.2, 1.2]], top, [[-w - 0.2, 1.2]]])
        canvas.polygon(shape, _shade(a.hair, 0.85))
    elif a.hair_style == "medium":
        phi = np.linspace(0, np.pi, 24)
        top = np.stack([(w + 0.07) * np.cos(phi), FACE_TOP_Y - 0.05 - 0.75 * np.sin(phi)], axis=-1)
        shape = np.concatenate([[[w + 0.1, 0.42]], top, [[-w - 0.1, 0.42]]])
        canvas.polygon(shape, _shade(a.hair, 0.85))


def _draw_body(canvas, g: _Geometry, spec: FaceSpec):
    a = spec.appearance
    neck = np.array([[-0.24, 0.3], [0.24, 0.3], [0.26, 1.2], [-0.26, 1.2]])
    canvas.polygon(neck, _shade(a.skin, 0.8))
    shoulders = np.array([[-1.2, 1.4], [-1.05, 0.97], [-0.28, 0.86], [0.0, 1.0], [0.28, 0.86], [1.05, 0.97],
                          [1.2, 1.4]])
    canvas.polygon(shoulders, a.clothes)
    for side in (-1, 1):  # ears
        canvas.polygon(_ellipse(side * (g.head_width + 0.005), -0.01, 0.055, 0.105, 18), _shade(a.skin, 0.9))
        start, stop = (80, 280) if side < 0 else (-100, 100)  # the outer rim of the ear
        canvas.line(_arc(side * (g.head_width + 0.01), -0.01, 0.03, 0.07, start, stop), _shade(a.skin, 0.7) + (160,),
                    0.008)


def _draw_soft_features(canvas, g: _Geometry, spec: FaceSpec):
    """Shading and colour that has no sharp edge: blurred before it is laid on the skin."""
    a = spec.appearance
    layer, draw = canvas.soft_layer()
    highlight = _mix(a.skin, (255, 255, 255), 0.3)
    # shadow along the face outline gives the head some roundness
    canvas.line(np.concatenate([g.face_outline, g.face_outline[:1]]), (40, 20, 10, 70), 0.05, draw)
    if spec.high_cheekbones:
        for side in (-1, 1):
            canvas.polygon(_ellipse(side * 0.28, 0.07, 0.1, 0.035, 20, side * 0.25), highlight + (170,), draw)
            canvas.polygon(_ellipse(side * 0.34, 0.22, 0.035, 0.09, 20, -side * 0.45), (60, 30, 20, 90), draw)
    if spec.rosy_cheeks:
        for side in (-1, 1):
            canvas.polygon(_ellipse(side * 0.27, 0.15, 0.095, 0.068, 20), (225, 45, 60, 150), draw)
    if spec.bags_under_eyes:
        for eye in g.eyes:
            cx, cy = eye["centre"]
            canvas.polygon(_ellipse(cx, cy + 0.058, eye["half_width"] * 0.95, 0.026, 20), (80, 45, 80, 170), draw)
    if spec.cheek_raiser:
        for side in (-1, 1):
            canvas.polygon(_ellipse(side * 0.21, 0.045, 0.1, 0.035, 20), highlight + (130,), draw)
    if spec.stubble:
        region = _beard_region(g, 0.0)
        canvas.polygon(region, _shade(a.hair, 0.5) + (95,), draw)
    if spec.double_chin:
        chin = g.jaw_dense[14:34]
        canvas.polygon(np.concatenate([chin, chin[::-1] + [0, 0.06]]), (40, 20, 10, 60), draw)
    canvas.composite(layer, 0.018)


def _beard_region(g: _Geometry, grow: float) -> np.ndarray:
    """Lower face below the cheekbones: jaw (points 3..13) closed by a line under the cheeks."""
    jaw = g.jaw_dense[9:40]
    centre = np.array([0.0, 0.2])
    jaw = centre + (jaw - centre) * (1 + grow)
    w = g.head_width
    upper = np.array([[w * 0.9, 0.14], [0.24, 0.27], [0.12, 0.245], [0.0, 0.25], [-0.12, 0.245],
                      [-0.24, 0.27], [-w * 0.9, 0.14]])
    return np.concatenate([jaw, upper])


def _draw_lines(canvas, g: _Geometry, spec: FaceSpec):
    """Wrinkles and creases: age, AU4 furrows, AU6 crow's feet, AU9 nose lines, AU15, AU17."""
    a = spec.appearance
    crease = _shade(a.skin, 0.45) + (200,)
    faint = _shade(a.skin, 0.65) + (110,)
    if spec.age_group in ("40-60", "60+"):
        count = 2 if spec.age_group == "40-60" else 3
        for k in range(count):
            y = -0.3 + 0.045 * k
            x = np.linspace(-0.22, 0.22, 9)
            canvas.line(np.stack([x, y - 0.012 * np.cos(x * 8)], -1), faint, 0.009)
        for side in (-1, 1):  # nasolabial folds
            t = np.linspace(0, 1, 8)
            fold = np.stack([side * (g.nose["wing"] + 0.03 + 0.09 * t), g.nose["base_y"] - 0.02 + 0.2 * t], -1)
            canvas.line(fold, crease if spec.age_group == "60+" else faint, 0.01)
    if spec.inner_brow_raise:  # AU1 wrinkles the middle of the forehead
        for y in (-0.27, -0.235):
            x = np.linspace(-0.09, 0.09, 7)
            canvas.line(np.stack([x, y - 0.01 * np.cos(x * 12)], -1), crease, 0.014)
    if spec.outer_brow_raise:  # AU2 wrinkles above the outer brows
        for side in (-1, 1):
            x = side * np.linspace(0.16, 0.32, 6)
            canvas.line(np.stack([x, -0.26 + 0.02 * ((np.abs(x) - 0.24) / 0.08) ** 2], -1), crease, 0.014)
    if spec.brow_lowerer:
        for side in (-1, 1):
            canvas.line([[side * 0.03, -0.18], [side * 0.018, -0.09]], crease, 0.016)
    if spec.lip_corners == "up":  # AU12 deepens the folds from the nose to the mouth corners
        for side in (-1, 1):
            x, y = side * g.mouth["half"], g.mouth["y"] + g.mouth["corner_dy"]
            canvas.line([[side * (g.nose["wing"] + 0.02), g.nose["base_y"] - 0.03],
                         [x + side * 0.045, (g.nose["base_y"] + y) / 2], [x + side * 0.03, y + 0.03]], crease, 0.016)
    if spec.lip_stretch:  # AU20 pulls short creases out of the mouth corners
        for side in (-1, 1):
            x, y = side * g.mouth["half"], g.mouth["y"] + g.mouth["corner_dy"]
            canvas.line([[x + side * 0.01, y - 0.015], [x + side * 0.035, y], [x + side * 0.01, y + 0.015]],
                        crease, 0.014)
    if spec.bags_under_eyes:
        for eye in g.eyes:
            cx, cy = eye["centre"]
            arc = _ellipse(cx, cy + 0.05, eye["half_width"] * 0.85, 0.035, 24)[2:11]
            canvas.line(arc, crease, 0.012)
    if spec.cheek_raiser:
        for eye in g.eyes:
            ox, oy = eye["outer"]
            side = eye["side"]
            for angle in (-0.35, 0.0, 0.35):
                canvas.line([[ox + side * 0.02, oy], [ox + side * (0.02 + 0.06 * math.cos(angle)),
                                                          oy + 0.06 * math.sin(angle)]], crease, 0.014)
    if spec.nose_wrinkler:
        for k, y in enumerate((-0.04, -0.01, 0.02)):
            width = 0.05 + 0.01 * k
            canvas.line([[-width, y + 0.012], [0, y], [width, y + 0.012]], crease, 0.016)
    if spec.lip_corners == "down":
        for side in (-1, 1):
            x, y = side * g.mouth["half"], g.mouth["y"] + g.mouth["corner_dy"]
            canvas.line([[x, y + 0.01], [x + side * 0.015, y + 0.08]], crease, 0.016)
    if spec.chin_raiser:
        y0 = g.mouth["y"] + g.mouth["lower_thick"] + 0.03
        canvas.line([[-0.08, y0 + 0.01], [0, y0], [0.08, y0 + 0.01]], crease, 0.016)
        rng = np.random.default_rng(a.texture_seed + 17)
        chin_bottom = g.landmarks[8, 1]
        low = y0 + 0.03
        high = max(low + 0.01, chin_bottom - 0.04)  # short chins (children, open mouths) keep a band
        for x, y in zip(rng.uniform(-0.09, 0.09, 14), rng.uniform(low, high, 14)):
            canvas.polygon(_ellipse(x, y, 0.013, 0.009, 8), _shade(a.skin, 0.55) + (200,))
    if spec.double_chin:
        chin = g.jaw_dense[12:36] + [0, 0.045]
        canvas.line(chin, _shade(a.skin, 0.55) + (190,), 0.012)


def _draw_stubble_dots(canvas, g: _Geometry, spec: FaceSpec):
    rng = np.random.default_rng(spec.appearance.texture_seed + 5)
    region = _beard_region(g, 0.0)
    jaw, upper = region[:31], region[31:]
    u = rng.uniform(0, 1, 260)
    v = rng.uniform(0, 1, 260) ** 1.5
    jaw_points = np.stack([np.interp(u, np.linspace(0, 1, 31), jaw[:, k]) for k in (0, 1)], -1)
    upper_points = np.stack([np.interp(u, np.linspace(0, 1, 7), upper[::-1][:, k]) for k in (0, 1)], -1)
    dots = canvas.project(jaw_points * (1 - v[:, None]) + upper_points * v[:, None])
    colour = _shade(spec.appearance.hair, 0.4) + (200,)
    for x, y in dots:
        canvas.draw.point((x, y), fill=colour)


def _draw_beard(canvas, g: _Geometry, spec: FaceSpec):
    a = spec.appearance
    hair = _shade(a.hair, 0.9)
    m = g.mouth
    if spec.beard == "full":
        canvas.polygon(_beard_region(g, 0.04), hair)
    elif spec.beard == "goatee":
        chin = g.jaw_dense[17:32]
        centre = np.array([0.0, 0.45])
        chin = centre + (chin - centre) * 1.05
        top = np.array([[0.11, m["y"] + m["lower_thick"] + 0.005 + m["corner_dy"] * 0.5], [0.0, m["y"] + m["lower_thick"] + 0.012],
                        [-0.11, m["y"] + m["lower_thick"] + 0.005 + m["corner_dy"] * 0.5]])
        canvas.polygon(np.concatenate([chin, top]), hair)
    if spec.beard != "none":
        rng = np.random.default_rng(a.texture_seed + 11)
        strands = _shade(a.hair, 0.6) + (140,)
        region = _beard_region(g, 0.02) if spec.beard == "full" else g.jaw_dense[18:31] + [0, -0.05]
        for _ in range(40):
            p = region[rng.integers(0, len(region))] * 0.92 + np.array([0, 0.45]) * 0.08
            p = p + rng.normal(0, 0.02, 2)
            canvas.line([p, p + [rng.normal(0, 0.01), 0.025]], strands, 0.006)


def _draw_eyes(canvas, g: _Geometry, spec: FaceSpec):
    a = spec.appearance
    lash = (25, 20, 20)
    for eye in g.eyes:
        opening = np.concatenate([eye["upper"], eye["lower"][::-1][1:-1]])
        canvas.polygon(opening, (238, 236, 232))
        ix, iy = eye["iris"]
        r = eye["iris_radius"]
        iris = _ellipse(ix, iy, r, r, 20)
        # the iris is clipped to the opening: both are drawn on small images around the eye
        opening_px = canvas.project(opening)
        left, top = np.floor(opening_px.min(axis=0)).astype(int) - 1
        right, bottom = np.ceil(opening_px.max(axis=0)).astype(int) + 2
        box = (int(right - left), int(bottom - top))
        offset = np.array([left, top], dtype=float)
        mask = Image.new("L", box, 0)
        ImageDraw.Draw(mask).polygon((opening_px - offset).ravel().tolist(), fill=255)
        iris_mask = Image.new("L", box, 0)
        ImageDraw.Draw(iris_mask).polygon((canvas.project(iris) - offset).ravel().tolist(), fill=255)
        layer = Image.new("RGB", box, a.iris)
        pupil = _ellipse(ix, iy, r * 0.45, r * 0.45, 14)
        ImageDraw.Draw(layer).polygon((canvas.project(pupil) - offset).ravel().tolist(), fill=(12, 10, 10))
        canvas.image.paste(layer, (int(left), int(top)), ImageChops.darker(mask, iris_mask))
        canvas.line(eye["upper"], lash, 0.013)
        canvas.line(eye["lower"], _shade(a.skin, 0.55) + (200,), 0.007)
        # crease above the upper lid
        crease = eye["upper"][2:-2] + [0, -0.022]
        canvas.line(crease, _shade(a.skin, 0.7) + (150,), 0.006)


def _draw_brows(canvas, g: _Geometry, spec: FaceSpec):
    a = spec.appearance
    colour = _shade(a.hair, 0.8) if sum(a.hair) < 450 else _shade(a.hair, 0.6)
    for line, thickness in zip(g.brows, g.brow_thickness):
        upper = line - np.stack([np.zeros_like(thickness), thickness / 2], -1)
        lower = line + np.stack([np.zeros_like(thickness), thickness / 2], -1)
        canvas.polygon(np.concatenate([upper, lower[::-1]]), colour)
        if spec.bushy_eyebrows:
            rng = np.random.default_rng(a.texture_seed + 3)
            for k in range(0, len(line), 2):
                base = line[k] + [0, thickness[k] * 0.5]
                canvas.line([base, base + [rng.normal(0, 0.01), -thickness[k] * 1.15]], colour + (230,), 0.007)


def _draw_nose(canvas, g: _Geometry, spec: FaceSpec):
    a = spec.appearance
    n = g.nose
    shadow = _shade(a.skin, 0.62) + (170,)
    wing, tip_y, base_y = n["wing"], n["tip_y"], n["base_y"]
    if spec.big_nose:  # a broad, shaded nose body from the bridge down to the wings
        canvas.polygon([[-0.035, -0.02], [0.035, -0.02], [wing * 1.05, base_y - 0.01], [0, base_y + 0.014],
                        [-wing * 1.05, base_y - 0.01]], _shade(a.skin, 0.72) + (170,))
    for side in (-1, 1):
        canvas.line([[side * 0.03, -0.03], [side * 0.036, tip_y - 0.05], [side * wing * 0.85, base_y - 0.035]],
                    _shade(a.skin, 0.72) + (120,), 0.01)
        start, stop = (135, 405) if side < 0 else (45, -225)  # the nostril wing, open towards the bridge
        canvas.line(_arc(side * wing * 0.78, base_y - 0.014, wing * 0.34, 0.026, start, stop), shadow, 0.01)
        nostril_width = wing * (0.16 if spec.pointy_nose else 0.24)
        canvas.polygon(_ellipse(side * wing * 0.42, base_y + 0.001, nostril_width, 0.011, 12), (55, 30, 28, 230))
    if spec.pointy_nose:
        canvas.polygon([[-0.045, tip_y - 0.02], [0.045, tip_y - 0.02], [0, tip_y + 0.055]], _shade(a.skin, 0.55) + (230,))
        canvas.line([[-0.035, 0.03], [0, tip_y + 0.05], [0.035, 0.03]], _shade(a.skin, 0.6) + (200,), 0.012)
        canvas.polygon([[-0.016, 0.03], [0.016, 0.03], [0.012, tip_y - 0.01], [0, tip_y + 0.02],
                        [-0.012, tip_y - 0.01]], _shade(a.skin, 1.18) + (210,))
    else:
        radius = 0.045 if spec.big_nose else 0.026
        canvas.polygon(_ellipse(0, tip_y - 0.005, radius, radius * 0.8, 14), _shade(a.skin, 1.1) + (150,))


def _draw_mouth(canvas, g: _Geometry, spec: FaceSpec):
    a = spec.appearance
    m = g.mouth
    lip = a.lipstick if spec.lipstick else a.lips
    if m["gap"] > 0:
        opening = np.concatenate([m["inner_upper"], m["inner_lower"][::-1]])
        canvas.polygon(opening, (70, 25, 30))
        teeth_depth = min(m["gap"] * 0.45, 0.022) * (1.4 if spec.smiling else 1.0)  # a smile bares more teeth
        teeth = np.concatenate([m["inner_upper"][4:21], m["inner_upper"][4:21][::-1] + [0, teeth_depth]])
        canvas.polygon(teeth, (235, 232, 220))
    canvas.polygon(np.concatenate([m["outer_upper"], m["inner_upper"][::-1]]), _shade(lip, 0.92))
    canvas.polygon(np.concatenate([m["outer_lower"], m["inner_lower"][::-1]]), lip)
    canvas.line(m["inner_upper"] if m["gap"] == 0 else m["inner_upper"][1:-1], _shade(lip, 0.5) + (220,), 0.008)
    if spec.smiling:  # dimples just outside the corners
        for corner in (m["outer_upper"][0], m["outer_upper"][-1]):
            side = np.sign(corner[0])
            canvas.line([corner + [side * 0.012, -0.02], corner + [side * 0.024, 0.0], corner + [side * 0.014, 0.022]],
                        _shade(a.skin, 0.5) + (220,), 0.012)
    if spec.lipstick:  # gloss highlight
        centre = m["outer_lower"][12]
        canvas.polygon(_ellipse(centre[0], centre[1] - m["lower_thick"] * 0.45, m["half"] * 0.25, 0.007, 12),
                       (255, 230, 230, 140))


def _draw_mustache(canvas, g: _Geometry, spec: FaceSpec):
    m = g.mouth
    top_y = g.nose["base_y"] + 0.012
    upper_lip = m["outer_upper"]
    x = np.linspace(-0.14, 0.14, 9)
    top = np.stack([x, top_y + 0.01 * (x / 0.14) ** 2], -1)
    bottom = np.concatenate([[[m["half"] * 1.08, upper_lip[-1, 1] + 0.015]], upper_lip[18:7:-2] + [0, -0.003],
                             [[-m["half"] * 1.08, upper_lip[0, 1] + 0.015]]])
    canvas.polygon(np.concatenate([top, bottom]), _shade(spec.appearance.hair, 0.85))


def _draw_hair_front(canvas, g: _Geometry, spec: FaceSpec, rng):
    a = spec.appearance
    if a.hair_style == "bald":
        w = g.head_width
        for side in (-1, 1):
            canvas.polygon([[side * (w + 0.045), -0.3], [side * (w - 0.035), -0.26], [side * (w - 0.02), 0.0],
                            [side * (w + 0.05), 0.02]], a.hair)
        return
    bottom = {"short": -0.02, "medium": 0.35, "long": 0.5}[a.hair_style]
    canvas.polygon(_hair_cap(g, a, bottom), a.hair)
    if a.fringe:
        x = np.linspace(-g.head_width * 0.85, g.head_width * 0.85, 12)
        edge = np.stack([x, -0.31 - 0.02 * np.abs(np.sin(x * 25))], -1)
        canvas.polygon(np.concatenate([[[-g.head_width * 0.9, a.hairline]], edge, [[g.head_width * 0.9, a.hairline]]]),
                       a.hair)
    strands = _shade(a.hair, 0.7 if sum(a.hair) > 200 else 1.6) + (90,)
    crown = np.array([0.0, FACE_TOP_Y - 0.7])
    for _ in range(9):  # strands from the crown towards the hairline, inside the cap
        x_end = rng.uniform(-0.8, 0.8) * g.head_width
        end = np.array([x_end, a.hairline + 0.16 * (x_end / g.head_width) ** 4 - 0.03])
        start = crown + (end - crown) * 0.25
        canvas.line([start, (start + end) / 2 + [0.02 * np.sign(x_end), 0], end], strands, 0.008)


def _draw_glasses(canvas, g: _Geometry, spec: FaceSpec):
    frame = spec.appearance.glasses_frame + (255,)
    lens = (200, 220, 235, 45)
    for eye in g.eyes:
        cx, cy = eye["centre"]
        t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
        # a rounded rectangle: superellipse
        rim = np.stack([cx + 0.118 * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** 0.6,
                        cy + 0.01 + 0.075 * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** 0.6], -1)
        canvas.polygon(rim, lens)
        canvas.line(np.concatenate([rim, rim[:1]]), frame, 0.016)
        side = eye["side"]
        canvas.line([[cx + side * 0.118, cy - 0.01], [side * (g.head_width + 0.01), cy - 0.02]], frame, 0.014)
    canvas.line([[-EYE_X + 0.118, EYE_Y - 0.005], [0, EYE_Y - 0.025], [EYE_X - 0.118, EYE_Y - 0.005]], frame, 0.014)


def _draw_earrings(canvas, g: _Geometry):
    for side in (-1, 1):
        canvas.polygon(_ellipse(side * (g.head_width + 0.01), 0.1, 0.018, 0.018, 10), (230, 200, 90))


def _finish(image: np.ndarray, spec: FaceSpec, rng: np.random.Generator) -> np.ndarray:
    """Lighting (a directional ramp, brightness, colour cast), sensor noise, optional grayscale."""
    light = spec.lighting
    size = image.shape[0]
    coordinates = (np.arange(size) + 0.5) / size - 0.5
    ramp = (math.cos(light.angle) * coordinates[None, :] + math.sin(light.angle) * coordinates[:, None])
    gain = light.brightness * (1.0 + light.strength * ramp)
    pixels = image.astype(np.float32) * gain[:, :, None]
    pixels *= np.array([1 + light.tint, 1.0, 1 - light.tint], dtype=np.float32)
    if light.noise_sigma > 0:
        pixels += rng.normal(0, light.noise_sigma, pixels.shape).astype(np.float32)
    if spec.grayscale:
        luminance = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        pixels = np.repeat(luminance[:, :, None], 3, axis=2)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def render(spec: FaceSpec, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Draws ``spec`` at size×size pixels.

    Returns (pixels [size, size, 3] uint8, landmarks [68, 2] float64 in normalised image
    coordinates, x right and y down in [0, 1]).
    """
    if size < 16:
        raise ValueError(f"image size {size} is too small to draw a face (need at least 16 pixels)")
    geometry = _build_geometry(spec)
    canvas = _Canvas(spec, size)
    rng = np.random.default_rng(spec.appearance.texture_seed)
    _draw_background(canvas, spec, rng)
    _draw_hair_back(canvas, geometry, spec)
    _draw_body(canvas, geometry, spec)
    canvas.polygon(geometry.face_outline, spec.appearance.skin)
    if spec.double_chin:
        chin = geometry.jaw_dense[12:36]
        canvas.polygon(np.concatenate([chin, chin[::-1] + [0, 0.05]]), spec.appearance.skin)
    _draw_soft_features(canvas, geometry, spec)
    _draw_lines(canvas, geometry, spec)
    if spec.stubble:
        _draw_stubble_dots(canvas, geometry, spec)
    _draw_beard(canvas, geometry, spec)
    _draw_eyes(canvas, geometry, spec)
    _draw_brows(canvas, geometry, spec)
    _draw_nose(canvas, geometry, spec)
    _draw_mouth(canvas, geometry, spec)
    if spec.mustache:
        _draw_mustache(canvas, geometry, spec)
    _draw_hair_front(canvas, geometry, spec, rng)
    if spec.eyeglasses:
        _draw_glasses(canvas, geometry, spec)
    if spec.appearance.earrings:
        _draw_earrings(canvas, geometry)
    small = np.asarray(canvas.image.reduce(SUPERSAMPLE))
    pixels = _finish(small, spec, rng)
    landmarks = canvas.project(geometry.landmarks) / canvas.pixels
    return pixels, landmarks


# --------------------------------------------------------------------------------------------
# sampling a plausible population of faces
# --------------------------------------------------------------------------------------------

_SKIN = {  # two ends of each palette; a face takes a random point between them
    "white": ((241, 210, 185), (212, 168, 138)),
    "black": ((132, 90, 62), (66, 43, 31)),
    "asian": ((240, 208, 176), (204, 160, 120)),
    "indian": ((202, 152, 112), (128, 88, 60)),
    "other": ((226, 182, 142), (118, 80, 56)),
}
_HAIR = {"black": (28, 24, 22), "dark_brown": (62, 42, 30), "brown": (108, 74, 46), "blonde": (206, 176, 116),
         "auburn": (138, 66, 36)}
_HAIR_BY_ETHNICITY = {"white": ((0.1, 0.25, 0.3, 0.25, 0.1)), "black": (0.8, 0.2, 0, 0, 0),
                      "asian": (0.75, 0.25, 0, 0, 0), "indian": (0.7, 0.3, 0, 0, 0), "other": (0.4, 0.4, 0.2, 0, 0)}
_IRIS = ((70, 45, 30), (42, 28, 20), (72, 112, 165), (86, 126, 86), (116, 86, 46))
_LIPSTICK = ((190, 25, 50), (160, 20, 75), (215, 70, 92), (128, 20, 36))
_FRAMES = ((25, 25, 30), (92, 56, 30), (172, 172, 178), (150, 30, 42))

# probability that a concept is shown, per gender where it differs
_PRIORS = {
    "eyeglasses": 0.3, "arched_eyebrows": (0.5, 0.2), "bushy_eyebrows": (0.2, 0.4), "inner_brow_raise": 0.3,
    "outer_brow_raise": 0.3, "brow_lowerer": 0.25, "high_cheekbones": 0.4, "rosy_cheeks": (0.4, 0.2),
    "bags_under_eyes": 0.3, "cheek_raiser": 0.3, "big_nose": 0.3, "pointy_nose": 0.3, "nose_wrinkler": 0.25,
    "lipstick": (0.55, 0.03), "lip_stretch": 0.25, "smiling": 0.45, "big_lips": (0.3, 0.2), "double_chin": 0.25, "chin_raiser": 0.25,
    "stubble": (0.0, 0.4), "mustache": (0.0, 0.35),
}


def skin_luminance(skin: Colour) -> float:
    """Relative luminance (0..1) of a skin colour before lighting: what the skin_tone label uses."""
    return (0.299 * skin[0] + 0.587 * skin[1] + 0.114 * skin[2]) / 255.0


def sample_face_spec(rng: np.random.Generator, **fixed) -> FaceSpec:
    """A random face; any FaceSpec field given in ``fixed`` is kept as given.

    Facial hair is drawn on male faces only (rarely under 20), lipstick mostly on female ones,
    hair length and jaw shape follow gender, grey hair and wrinkles follow age: the correlations
    a real face dataset has. Every concept still varies within each gender.
    """
    unknown = set(fixed) - set(FaceSpec.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown FaceSpec fields: {', '.join(sorted(unknown))}")
    age = fixed.get("age_group", AGE_GROUPS[rng.integers(len(AGE_GROUPS))])
    gender = fixed.get("gender", GENDERS[rng.integers(2)])
    ethnicity = fixed.get("ethnicity", rng.choice(ETHNICITIES, p=(0.3, 0.22, 0.22, 0.2, 0.06)))
    male = gender == "male"
    young, older = age == "0-20", age in ("40-60", "60+")

    def chance(name):
        prior = _PRIORS[name]
        p = prior[1 if male else 0] if isinstance(prior, tuple) else prior
        if young and name in ("stubble", "mustache"):
            p *= 0.2
        if older and name in ("double_chin", "bags_under_eyes"):
            p *= 1.6
        return bool(rng.random() < p)

    low, high = _SKIN[ethnicity]
    skin = _mix(low, high, rng.uniform())
    skin = tuple(int(np.clip(c + rng.normal(0, 4), 0, 255)) for c in skin)
    hair = _HAIR[rng.choice(list(_HAIR), p=_HAIR_BY_ETHNICITY[ethnicity])]
    if age == "40-60":
        hair = _mix(hair, (168, 168, 168), rng.uniform(0, 0.5))
    elif age == "60+":
        hair = _mix(hair, (216, 216, 210), rng.uniform(0.6, 1.0))
    if male:
        styles = (0.75, 0.12, 0.05, 0.25 if older else 0.03)
    else:
        styles = (0.15, 0.3, 0.55, 0.0)
    style = rng.choice(HAIR_STYLES, p=np.array(styles) / sum(styles))
    iris = _IRIS[rng.choice(5, p=(0.35, 0.2, 0.2, 0.15, 0.1) if ethnicity == "white" else (0.55, 0.4, 0, 0, 0.05))]
    background = [_mix(rng.integers(20, 236, 3), (128, 128, 128), rng.uniform(0.2, 0.7)) for _ in range(2)]
    appearance = Appearance(
        skin=skin, hair=hair, iris=iris, lips=_shade(_mix(skin, (185, 80, 88), 0.45), 0.92),
        lipstick=_LIPSTICK[rng.integers(len(_LIPSTICK))], clothes=tuple(int(v) for v in rng.integers(20, 235, 3)),
        background_top=background[0], background_bottom=background[1],
        glasses_frame=_FRAMES[rng.integers(len(_FRAMES))], hair_style=str(style), fringe=bool(rng.random() < 0.3),
        earrings=bool(rng.random() < (0.03 if male else 0.3)),
        face_width=rng.uniform(0.48, 0.53) if male else rng.uniform(0.46, 0.5),
        face_length=rng.uniform(0.66, 0.72) if male else rng.uniform(0.62, 0.68),
        jaw_squareness=rng.uniform(2.4, 3.1) if male else rng.uniform(1.9, 2.3),
        hairline=rng.uniform(-0.5, -0.44) if (male and older) else rng.uniform(-0.46, -0.38),
        gaze_x=rng.uniform(-1, 1), gaze_y=rng.uniform(-1, 1),
        eye_tilt=rng.uniform(0.0, 0.015) if ethnicity == "asian" else rng.uniform(-0.005, 0.01),
        texture_seed=int(rng.integers(2 ** 31)))
    pose = Pose(roll=float(np.clip(rng.normal(0, 0.08), -0.25, 0.25)), yaw=rng.uniform(-0.3, 0.3),
                pitch=rng.uniform(-0.1, 0.1), scale=rng.uniform(0.48, 0.6), shift_x=rng.uniform(-0.04, 0.04),
                shift_y=rng.uniform(-0.05, 0.02))
    lighting = Lighting(angle=rng.uniform(0, 2 * np.pi), strength=rng.uniform(0, 0.6),
                        brightness=rng.uniform(0.78, 1.12), tint=rng.uniform(-0.06, 0.06),
                        noise_sigma=rng.uniform(0, 5))

    beard = "none"
    if male and rng.random() < (0.1 if young else 0.45):
        beard = "goatee" if rng.random() < 0.5 else "full"
    sampled = dict(
        age_group=age, gender=gender, ethnicity=str(ethnicity), appearance=appearance, pose=pose, lighting=lighting,
        grayscale=False,
        eyeglasses=chance("eyeglasses"), arched_eyebrows=chance("arched_eyebrows"),
        bushy_eyebrows=chance("bushy_eyebrows"),
        eye_aperture=str(rng.choice(EYE_APERTURES, p=(0.25, 0.55, 0.2))),
        inner_brow_raise=chance("inner_brow_raise"), outer_brow_raise=chance("outer_brow_raise"),
        brow_lowerer=chance("brow_lowerer"), high_cheekbones=chance("high_cheekbones"),
        rosy_cheeks=chance("rosy_cheeks"), stubble=chance("stubble") and beard != "full", beard=beard,
        bags_under_eyes=chance("bags_under_eyes"), cheek_raiser=chance("cheek_raiser"),
        big_nose=chance("big_nose"), pointy_nose=chance("pointy_nose"), nose_wrinkler=chance("nose_wrinkler"),
        mouth_opening=str(rng.choice(MOUTH_OPENINGS, p=(0.5, 0.3, 0.2))), mustache=chance("mustache"),
        lipstick=chance("lipstick"), lip_corners=str(rng.choice(LIP_CORNERS, p=(0.55, 0.3, 0.15))),
        lip_stretch=chance("lip_stretch"), smiling=chance("smiling"), big_lips=chance("big_lips"), double_chin=chance("double_chin"), chin_raiser=chance("chin_raiser"))
    sampled.update(fixed)
    return FaceSpec(**sampled)
