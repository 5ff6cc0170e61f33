"""The child processes of `tools/experiment`: one `hndd serve`, trainers in slots, all ended on exit.

Every child is started here with `subprocess.Popen`, so the pid held is the process's own (not
a shell's around it, which `tools/demo` once held: its trainers outlived it). `Children.close`
ends them all — SIGTERM, then SIGKILL after a grace period — and runs on normal exit, on an
error, and on SIGINT/SIGTERM/SIGHUP.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .experiment_plan import ExperimentError


class Children:
    """The processes started for one invocation; a context manager that ends them all."""

    def __init__(self):
        self.processes: List[subprocess.Popen] = []
        self._previous = {}

    def start(self, command: Sequence[str], log_path: str) -> subprocess.Popen:
        log = open(log_path, "ab")
        try:
            process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()  # the child holds its own descriptor
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, grace: float = 30.0) -> Optional[int]:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit status."""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process in self.processes:
            self.processes.remove(process)
        return process.returncode

    def close(self, grace: float = 120.0) -> None:
        """SIGTERM to all; SIGKILL to those still running after `grace` seconds (the daemon may
        need a while to write the passes it owes)."""
        for process in list(self.processes):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for process in list(self.processes):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def __enter__(self):
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[number] = signal.signal(number, _raise_interrupt)
        return self

    def __exit__(self, *exc):
        self.close()
        for number, handler in self._previous.items():
            signal.signal(number, handler)


class Interrupted(Exception):
    """A signal asked the experiment to stop (its children are ended, finished runs kept)."""


def _raise_interrupt(number, _frame):
    raise Interrupted(f"stopped by signal {signal.Signals(number).name}")


def generate(path: str, command: Sequence[str], log_path: str) -> bool:
    """Writes `path` with COMMAND --out PATH.partial.h5 (renamed when it succeeds) unless it
    exists; True if it was written now."""
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        return False
    partial = path + ".partial.h5"
    with open(log_path, "ab") as log:
        status = subprocess.run(list(command) + ["--out", partial], stdout=log, stderr=subprocess.STDOUT).returncode
    if status != 0:
        raise ExperimentError(f"{' '.join(command[:4])} … failed (exit {status}) writing {path}; see {log_path}:\n"
                              + tail(log_path))
    os.replace(partial, path)
    return True


def tail(path: str, lines: int = 8) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return "(no log)"


def short_run_dir(folder: str) -> str:
    """FOLDER/run, or a fresh /tmp folder when that path is too long for ipc:// sockets (107 bytes)."""
    wanted = os.path.join(folder, "run")
    if len(wanted) <= 90:
        os.makedirs(wanted, exist_ok=True)
        return wanted
    return tempfile.mkdtemp(prefix="hndd-exp.", dir="/tmp")


def start_daemon(children: Children, hndd: str, dictionary: str, run_dir: str, snapshots: str,
                 log_path: str) -> subprocess.Popen:
    """`hndd serve`, once it answers `hndd status`."""
    daemon = children.start([hndd, "serve", "--dictionary", dictionary, "--run-dir", run_dir, "--out", snapshots,
                             "--snapshot-interval", "1"], log_path)
    for _ in range(150):
        if subprocess.run([hndd, "status", "--run-dir", run_dir, "--timeout", "1"], capture_output=True).returncode == 0:
            return daemon
        if daemon.poll() is not None:
            raise ExperimentError(f"hndd serve exited ({daemon.returncode}); see {log_path}:\n" + tail(log_path))
        time.sleep(0.2)
    raise ExperimentError(f"hndd serve does not answer at {run_dir}; see {log_path}")


@dataclass
class Job:
    """One run: its commands in order (generate the training set, then train), in one slot."""

    name: str
    steps: List[Sequence[str]]
    log_path: str
    started: float = 0.0
    process: Optional[subprocess.Popen] = None


def run_jobs(children: Children, jobs: List[Job], slots: int, on_done, stop_requested=lambda: False) -> int:
    """Runs the jobs, `slots` at a time; each job's commands one after another; the jobs run.
    The first failure raises (the caller's `Children` then ends the others). Once
    `stop_requested()` is true no job starts; those running finish."""
    waiting, active = list(jobs), []
    while (waiting and not stop_requested()) or active:
        while waiting and len(active) < slots and not stop_requested():
            job = waiting.pop(0)
            job.started = time.time()
            _advance(children, job)
            active.append(job)
        time.sleep(0.5)
        for job in list(active):
            status = job.process.poll()
            if status is None:
                continue
            children.processes.remove(job.process)
            if status != 0:
                raise ExperimentError(f"run {job.name} failed (exit {status}) in `{' '.join(job.steps[0][:5])} …`; "
                                      f"see {job.log_path}:\n" + tail(job.log_path))
            job.steps.pop(0)
            if job.steps:
                _advance(children, job)
            else:
                active.remove(job)
                on_done(job)
    return len(jobs) - len(waiting)


def _advance(children: Children, job: Job) -> None:
    job.process = children.start(job.steps[0], job.log_path)


def python() -> str:
    return sys.executable or "python3"
