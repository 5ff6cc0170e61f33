"""Fixtures of the snapshot store's tests: the binary, a small dictionary, a runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

STORE_DIR = Path(__file__).resolve().parent
for directory in (STORE_DIR, STORE_DIR.parent / "reference", STORE_DIR.parent):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

from hndd_testing import hndd_binary  # noqa: E402,F401  (the shared fixture)


@pytest.fixture(scope="session")
def store_dictionary(tmp_path_factory) -> Path:
    """A synthetic dictionary of 20 images with the real taxonomy (12 subgroups, 39 concepts, 5 regions)."""
    path = tmp_path_factory.mktemp("dictionary") / "D.h5"
    subprocess.run([sys.executable, "-m", "hndd_client", "synth-dictionary", "--images", "20", "--size", "32",
                    "--mask-size", "16", "--seed", "1", "--out", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def store_hndd(hndd_binary: Path):
    def run(*arguments: object, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(hndd_binary), *map(str, arguments)], capture_output=True, text=True, timeout=600)
        if check:
            assert done.returncode == 0, f"hndd {' '.join(map(str, arguments))} failed: {done.stderr}"
        return done
    return run
