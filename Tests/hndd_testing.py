"""What every Python test suite of the repository shares: the hndd binary under test. Each suite's
conftest.py imports the `hndd_binary` fixture from here (a root conftest.py would not be loaded
when pytest runs `tools/python/tests` alone: its rootdir is then tools/python)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def hndd_binary() -> Path:
    """The hndd executable: $HNDD_BIN, else <repo>/.build/release/hndd. A missing binary fails the
    test (never skips), so a suite cannot pass without running hndd."""
    configured = os.environ.get("HNDD_BIN")
    binary = Path(configured) if configured else REPO_ROOT / ".build" / "release" / "hndd"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        how = "set by HNDD_BIN" if configured else "the default; set HNDD_BIN to use another"
        pytest.fail(f"hndd binary not found or not executable at {binary} ({how}). Build it with "
                    f"`swift build -c release --product hndd` in {REPO_ROOT} first.", pytrace=False)
    return binary
