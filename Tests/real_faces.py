"""The real-faces test dictionary, shared by the builder's tests (tools/python/tests) and the
dissect-versus-reference test (Tests/reference).

``<repo>/../shared/data/real-faces`` (CelebA and UTKFace samples; CI has it) gives
``REAL_CELEBA`` CelebA and ``REAL_UTKFACE`` UTKFace images, built with
``build-dictionary --landmarks dlib``. Tests that need it skip, saying so, when the folder or the
detector is absent. The build takes a minute (the detector runs on every CelebA image), so the
file is kept in ``<repo>/.test-cache/`` (git-ignored) under a key of everything it depends on:
the bytes of the input files used and of the builder's sources, and the options. Any change to
either builds it again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_FACES = Path(os.environ.get("HNDD_REAL_FACES", REPO_ROOT.parent / "shared" / "data" / "real-faces"))
CELEBA_ATTRS = REAL_FACES / "celeba" / "list_attr_celeba.txt"
CELEBA_IMAGES = REAL_FACES / "celeba" / "img_align_celeba"
UTKFACE = REAL_FACES / "utkface" / "UTKFace"
REAL_CELEBA = REAL_UTKFACE = 1000  # images of each source (--max-per-source)
IMAGE_SIZE, MASK_SIZE = 64, 56
CACHE = REPO_ROOT / ".test-cache" / "real-faces"
PYTHON_DIR = REPO_ROOT / "tools" / "python"
BUILDER_SOURCES = ("build.py", "face_detector.py", "landmarks.py", "masks.py", "dictionary_io.py", "taxonomy.py",
                   "hnd_folder.py", "data/taxonomy.json")


def require_real_faces() -> None:
    """Skips the calling test, saying why, when the data or the detector is missing."""
    if not CELEBA_ATTRS.is_file() or not UTKFACE.is_dir():
        pytest.skip(f"real faces absent: {REAL_FACES} (CI has ../shared/data/real-faces)")
    for module in ("dlib", "face_recognition_models"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the landmark detector is not installed ({module}): pip install 'hndd-client[landmarks]'")


def celeba_names(count: int = REAL_CELEBA) -> list:
    return [line.split()[0] for line in CELEBA_ATTRS.read_text().splitlines()[2:2 + count]]


def build_arguments(out: Path) -> list:
    return ["--celeba-attrs", str(CELEBA_ATTRS), "--celeba-images", str(CELEBA_IMAGES), "--utkface", str(UTKFACE),
            "--landmarks", "dlib", "--size", str(IMAGE_SIZE), "--mask-size", str(MASK_SIZE),
            "--max-per-source", str(max(REAL_CELEBA, REAL_UTKFACE)), "--out", str(out)]


def _cache_key() -> str:
    digest = hashlib.sha256(repr(build_arguments(Path("OUT"))).encode())
    for name in BUILDER_SOURCES:
        digest.update((PYTHON_DIR / "hndd_client" / name).read_bytes())
    digest.update(CELEBA_ATTRS.read_bytes())
    inputs = [CELEBA_IMAGES / name for name in celeba_names()] + sorted(UTKFACE.iterdir())
    for path in inputs:  # every UTKFace file: which names are read depends on all of them
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def real_dictionary() -> Path:
    """The test dictionary's path, built (with a log next to it) unless the cache has it."""
    require_real_faces()
    assert REAL_CELEBA == REAL_UTKFACE, "one --max-per-source serves both sources"
    out = CACHE / f"real-{REAL_CELEBA}-{REAL_UTKFACE}-{_cache_key()}.h5"
    if not out.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        environment = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
        result = subprocess.run([sys.executable, "-m", "hndd_client", "build-dictionary", *build_arguments(out)],
                                capture_output=True, text=True, env=environment, timeout=1800)
        out.with_suffix(".log").write_text(result.stderr)
        assert result.returncode == 0, f"build-dictionary failed: {result.stderr[-2000:]}"
    return out


def build_log(dictionary: Path) -> str:
    return dictionary.with_suffix(".log").read_text()
