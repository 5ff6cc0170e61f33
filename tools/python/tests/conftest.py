"""Shared pytest setup for tools/python: import the package from the source tree, register markers."""
import tempfile
import os
import sys
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent
if str(PYTHON_DIR) not in sys.path:  # tests run without `pip install -e tools/python` too
    sys.path.insert(0, str(PYTHON_DIR))


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "learnable: trains a small CNN on synthetic faces (needs torch, ~1-2 min); "
        "select with -m learnable, skip with -m 'not learnable'")


@pytest.fixture(scope="session")
def hndd_binary():
    """The hndd executable ($HNDD_BIN, else <repo>/.build/release/hndd); skips the test when not built."""
    path = Path(os.environ.get("HNDD_BIN") or PYTHON_DIR.parent.parent / ".build" / "release" / "hndd")
    if not path.is_file():
        pytest.skip(f"hndd is not built at {path} (swift build -c release, or set HNDD_BIN)")
    return path


@pytest.fixture
def run_dir():
    """A run directory with a short path: ipc:// socket paths are limited to 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="hndc-", dir="/tmp") as directory:
        yield directory


@pytest.fixture
def ingest_receiver(run_dir):
    """A PULL socket bound where the daemon's ingest socket would be."""
    import zmq
    from hndd_client.wire import Endpoints

    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVTIMEO, 5000)
    pull.bind(Endpoints.from_run_dir(run_dir).ingest)
    yield pull
    pull.close(linger=0)
    context.term()
