"""Shared fixtures: the hndd binary under test and a helper that runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

REFERENCE_DIR = Path(__file__).resolve().parent
REPO_ROOT = REFERENCE_DIR.parents[1]
if str(REFERENCE_DIR) not in sys.path:
    sys.path.insert(0, str(REFERENCE_DIR))

#: Generous: the binary's own runtime is not part of the test budget, but a hang must not block CI.
HNDD_TIMEOUT_SECONDS = float(os.environ.get("HNDD_TEST_TIMEOUT", "900"))


@pytest.fixture(scope="session")
def hndd_binary() -> Path:
    """Path of the hndd executable: $HNDD_BIN, else <repo>/.build/release/hndd. Missing -> the test fails."""
    configured = os.environ.get("HNDD_BIN")
    binary = Path(configured) if configured else REPO_ROOT / ".build" / "release" / "hndd"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        how = "set by HNDD_BIN" if configured else "default; set HNDD_BIN to use another"
        pytest.fail(
            f"hndd binary not found or not executable at {binary} ({how}). "
            f"Build it with `swift build -c release` in {REPO_ROOT} first.",
            pytrace=False,
        )
    return binary


@pytest.fixture(scope="session")
def run_hndd(hndd_binary: Path):
    """Runs ``hndd ARGS...`` and returns the CompletedProcess (text mode, output captured)."""

    def run(arguments: Sequence[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(hndd_binary), *map(str, arguments)],
            capture_output=True,
            text=True,
            timeout=HNDD_TIMEOUT_SECONDS,
        )

    return run
