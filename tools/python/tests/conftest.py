"""Shared pytest setup for tools/python: import the package from the source tree, register
markers; the hndd binary from Tests/hndd_testing.py."""
import sys
import tempfile
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent
for directory in (PYTHON_DIR, PYTHON_DIR.parents[1] / "Tests"):
    if str(directory) not in sys.path:  # tests run without `pip install -e tools/python` too
        sys.path.insert(0, str(directory))

from hndd_testing import hndd_binary  # noqa: E402,F401  (the shared fixture)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "learnable: trains a small CNN on synthetic faces (needs torch, ~1-2 min); "
        "select with -m learnable, skip with -m 'not learnable'")


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
