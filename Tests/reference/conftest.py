"""Shared fixtures: the hndd binary (Tests/hndd_testing.py) and a helper that runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

REFERENCE_DIR = Path(__file__).resolve().parent
for directory in (REFERENCE_DIR, REFERENCE_DIR.parent):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

from hndd_testing import hndd_binary  # noqa: E402,F401  (the shared fixture)

#: Generous: the binary's own runtime is not part of the test budget, but a hang must not block CI.
HNDD_TIMEOUT_SECONDS = float(os.environ.get("HNDD_TEST_TIMEOUT", "900"))


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
