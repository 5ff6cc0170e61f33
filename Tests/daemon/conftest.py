"""Fixtures of the daemon tests (helpers in daemon_harness.py, the binary from Tests/hndd_testing.py):
the real `hndd serve` over ipc:// in a fresh run directory, trainers (`python3 -m hndd_client push`)
and subscribers. Every process a test starts is killed by its pid when the test ends, pass or fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from daemon_harness import (  # noqa: E402
    LAYER, Daemon, Dataset, ProcessRegistry, client_environment, make_dataset, push_command,
)
from hndd_testing import hndd_binary  # noqa: E402,F401  (the shared fixture)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Dataset:
    """The dictionary, activations and exact reference shared by every test (built once)."""
    return make_dataset(tmp_path_factory.mktemp("daemon-data"))


@pytest.fixture
def processes():
    registry = ProcessRegistry()
    yield registry
    registry.kill_all()


@pytest.fixture
def new_run_dir():
    """new_run_dir() -> a fresh, short run directory (an ipc:// socket path must fit in 107 bytes);
    all are removed when the test ends."""
    created = []

    def make() -> Path:
        created.append(Path(tempfile.mkdtemp(prefix="hndd-t-", dir="/tmp")))
        return created[-1]
    yield make
    for directory in created:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def run_dir(new_run_dir) -> Path:
    """A fresh, short run directory."""
    return new_run_dir()


@pytest.fixture
def start_daemon(hndd_binary, dataset, processes):
    """start_daemon(run_dir, *options, dictionary=the dataset's, key=None) -> Daemon, up and answering
    (its own control requests with the CURVE credential `key`, for a daemon on TCP)."""
    def start(run_dir: Path, *options: Any, dictionary: Path = None, key: Path = None) -> Daemon:
        return Daemon(hndd_binary, run_dir, dictionary or dataset.dictionary, processes, options, key=key)
    return start


@pytest.fixture
def start_push(processes):
    """start_push(run_dir, activations, run, step, *options) -> Popen of `python3 -m hndd_client push`."""
    def start(run_dir: Path, activations: Path, run: str, step: int, *options: Any) -> subprocess.Popen:
        return processes.add(subprocess.Popen(push_command(run_dir, activations, run, step, *options),
                                              env=client_environment(), stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
    return start


@pytest.fixture
def push(start_push):
    """push(...) as start_push, then waits for it and requires exit status 0; returns its stderr."""
    def run(run_dir: Path, activations: Path, run: str, step: int, *options: Any, timeout: float = 120) -> str:
        process = start_push(run_dir, activations, run, step, *options)
        _, stderr = process.communicate(timeout=timeout)
        assert process.returncode == 0, f"push (run {run}, step {step}, {options}) failed: {stderr}"
        return stderr
    return run


@pytest.fixture
def start_subscriber(hndd_binary, processes):
    """start_subscriber(run_dir, *options) -> Popen of `hndd subscribe --layer LAYER --run-dir DIR
    OPTIONS` with stdout a text pipe."""
    def start(run_dir: Path, *options: Any, stdout=subprocess.PIPE) -> subprocess.Popen:
        command = [str(hndd_binary), "subscribe", "--layer", LAYER, "--run-dir", str(run_dir), *map(str, options)]
        return processes.add(subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, text=True))
    return start
