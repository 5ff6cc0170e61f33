"""The paper's landmark detector: dlib's 68-point shape predictor (Kazemi and Sullivan 2014).

``build-dictionary --landmarks dlib`` uses it on every image whose local concepts need masks.
It is an optional extra (``pip install hndd-client[landmarks]``: the ``dlib-bin`` wheel and
``face-recognition-models``, which ships ``shape_predictor_68_face_landmarks.dat``).

``face_recognition_models/__init__.py`` imports ``pkg_resources`` (setuptools), which recent
environments lack; so the model file is located with ``importlib.util.find_spec`` and its
``models/`` folder, without importing the package.

Faces are found with dlib's HOG frontal detector, first on the image as it is (about 4 ms for a
178×218 CelebA image) and, only when that finds nothing, once more upsampled ×2 (about 16 ms),
which finds some of the smaller faces. Of several faces the largest is taken. Points are pixel
coordinates with pixel centres at integers, iBUG-68 order (what ``--landmarks-csv`` holds too).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import numpy as np

MODEL_PACKAGE = "face_recognition_models"
MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = "pip install 'hndd-client[landmarks]' (that is: pip install dlib-bin face-recognition-models)"
UPSAMPLING = (0, 1)  # detector passes, tried in turn until one finds a face


class DetectorUnavailable(RuntimeError):
    """The optional detector packages are missing; the message says what to install."""


def model_path() -> Path:
    """The 68-point model file of ``face-recognition-models``, found without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise DetectorUnavailable(f"--landmarks dlib needs the {MODEL_PACKAGE} package: {INSTALL_HINT}")
    path = Path(spec.origin).parent / "models" / MODEL_FILE
    if not path.is_file():
        raise DetectorUnavailable(f"{path}: the model file is missing from {MODEL_PACKAGE}; reinstall it: {INSTALL_HINT}")
    return path


class DlibLandmarks:
    """``detect(rgb) -> [68, 2]`` pixel coordinates of the largest face, or None without a face."""

    def __init__(self):
        try:
            import dlib
        except ImportError:
            raise DetectorUnavailable(f"--landmarks dlib needs dlib: {INSTALL_HINT}") from None
        self._predictor = dlib.shape_predictor(str(model_path()))
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, rgb: np.ndarray) -> Optional[np.ndarray]:
        image = np.ascontiguousarray(rgb, dtype=np.uint8)
        for upsampling in UPSAMPLING:
            faces = self._detector(image, upsampling)
            if len(faces):
                face = max(faces, key=lambda rectangle: rectangle.area())
                shape = self._predictor(image, face)
                return np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)],
                                dtype=np.float64)
        return None


DETECTORS = {"dlib": DlibLandmarks}
