"""Issue 3, Done when #4: a subscriber that never reads does not slow ingest, and trainers pushing
far faster than the daemon dissects keep the daemon's memory bounded (the figure is derived
below and printed with -s)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import statistics
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import zmq

from daemon_harness import DAEMON_TESTS_DIR, LAYER, N_IMAGES, client_environment, wait_until

MIB = 2**20
RUN = "pressure"


def pending_pipe_bytes(stream) -> int:
    """Bytes written into a pipe and not yet read (FIONREAD)."""
    buffer = bytearray(4)
    fcntl.ioctl(stream.fileno(), termios.FIONREAD, buffer)
    return int.from_bytes(buffer, sys.byteorder)


def stall_subscribers(context: zmq.Context, daemon, start_subscriber, run_dir: Path):
    """Subscribers that never read: four raw SUB sockets with the smallest buffers, and a real
    `hndd subscribe --json` whose stdout pipe (one page, the smallest Linux allows) nobody drains."""
    sockets = []
    for _ in range(4):
        sock = context.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 1)
        sock.setsockopt(zmq.RCVBUF, 4096)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, LAYER.encode() + b"\0")
        sock.connect(daemon.endpoints.publish)
        sockets.append(sock)
    subscriber = start_subscriber(run_dir, "--json")
    capacity = fcntl.fcntl(subscriber.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    time.sleep(0.5)  # connected and subscribed before the pass starts
    return sockets, subscriber, capacity


def check_stalled(sockets, subscriber, capacity):
    """The stall was real: every socket holds publications it never read, and the subscriber's pipe
    has no room for another JSON line (so `hndd subscribe` sits in write())."""
    assert all(sock.poll(0) for sock in sockets), "a stalled SUB socket received nothing: not subscribed?"
    assert subscriber.poll() is None, "the non-reading `hndd subscribe` exited"
    unread = pending_pipe_bytes(subscriber.stdout)
    os.set_blocking(subscriber.stdout.fileno(), False)
    longest_line = max(len(line) for line in os.read(subscriber.stdout.fileno(), capacity).split(b"\n"))
    assert unread + longest_line > capacity, f"{unread} of {capacity} bytes unread: the subscriber was not stuck"
    for sock in sockets:
        sock.close(linger=0)
    os.kill(subscriber.pid, signal.SIGKILL)
    subscriber.wait(timeout=10)
    return unread


def test_subscriber_that_never_reads_does_not_slow_ingest(dataset, run_dir, start_daemon, push, start_subscriber):
    # Snapshots every 20 ms: the publish socket has plenty to push into stalled subscribers.
    daemon = start_daemon(run_dir, "--snapshot-interval", "0.02")

    def timed_pass(step: int) -> float:
        started = time.monotonic()
        push(run_dir, dataset.activations, RUN, step, "--batch-size", "20")
        daemon.wait_complete(RUN, step)
        return time.monotonic() - started

    free, stalled, unread = [], [], []
    context = zmq.Context()
    try:
        # Alternating, so that load from elsewhere on the machine hits both alike.
        for step in range(1, 7, 2):
            free.append(timed_pass(step))
            sockets, subscriber, capacity = stall_subscribers(context, daemon, start_subscriber, run_dir)
            stalled.append(timed_pass(step + 1))
            unread.append(check_stalled(sockets, subscriber, capacity))
    finally:
        context.destroy(linger=0)

    rate = lambda seconds: dataset.n_images / statistics.median(seconds)  # noqa: E731
    print(f"\nstalled subscriber: passes without {[round(t, 2) for t in free]} s (median {rate(free):.0f} images/s), "
          f"with 4 stalled SUB sockets + 1 blocked `hndd subscribe` {[round(t, 2) for t in stalled]} s "
          f"(median {rate(stalled):.0f} images/s); bytes stuck in the subscriber's 4096-byte pipe: {unread}")
    # Generous: 2x plus half a second of scheduling noise on a shared 2-core machine. A daemon that
    # waited for its subscribers would never finish these passes, or crawl (50 publications a second).
    assert statistics.median(stalled) <= 2 * statistics.median(free) + 0.5, (free, stalled)


# ------------------------------------------------------------------------------------------------
# Memory under a flood
# ------------------------------------------------------------------------------------------------

TRAINERS = 2
FLOOD_BATCH = 400  # 400 images x 64 x 7 x 7 float32 = 4.8 MiB per message
FLOOD_STEPS = 8  # per trainer: 2 x 8 passes x 4 messages = 64 messages, 306 MiB
QUEUE_MB = 8
#: Both daemons of the test: a small queue; threshold quantile 0.2 (far above the manual's 0.005), which
#: keeps most maps as Stage II candidates and makes every pass's counting long, so the daemon
#: dissects many times slower per byte than the trainers push (7x on an AMD EPYC with AVX-512,
#: over 10x on slower CPUs) and its queue fills; and no partial snapshots (each one transiently
#: copies the engine state, which would make the engine phase's peak differ from the flood's for
#: reasons unrelated to ingest).
FLOOD_DAEMON_OPTIONS = ("--queue-mb", QUEUE_MB, "--quantile", "0.2", "--snapshot-interval", "1000")
#: The daemon's ingest socket holds this many messages per connection (ZMQ_RCVHWM in
#: Sources/HNDDaemon/Daemon.swift); libzmq may be decoding one more per connection.
INGEST_RCVHWM = 4
#: Allocator and library overhead: message buffers are allocated on libzmq's I/O thread and freed
#: on the engine thread, so malloc arenas keep freed memory around; plus HDF5, protobuf, stacks.
SLACK_MB = 48


def start_trainers(run_dir: Path, activations: Path, first_step: int, steps: int, batch: int, processes):
    """TRAINERS flood trainers, trainer k pushing steps first_step + 1000 k, ... (distinct passes)."""
    script = DAEMON_TESTS_DIR / "flood_trainer.py"
    return [processes.add(subprocess.Popen(
        [sys.executable, str(script), str(run_dir), str(activations), LAYER, RUN, str(first_step + 1000 * k),
         str(steps), str(batch)], env=client_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for k in range(TRAINERS)]


def reports_of(trainers) -> list[dict]:
    reports = []
    for trainer in trainers:
        out, err = trainer.communicate(timeout=300)
        assert trainer.returncode == 0, f"flood trainer failed: {err}"
        reports.append(json.loads(out))
    return reports


def trainers_alone_rate(sink_dir: Path, activations: Path, processes) -> float:
    """Bytes per second the trainers push together into a PULL socket that only discards."""
    context = zmq.Context()
    try:
        sink = context.socket(zmq.PULL)
        sink.setsockopt(zmq.LINGER, 0)
        sink.bind(f"ipc://{sink_dir}/ingest.sock")
        trainers = start_trainers(sink_dir, activations, 1, FLOOD_STEPS, FLOOD_BATCH, processes)
        expected = TRAINERS * FLOOD_STEPS * -(-N_IMAGES // FLOOD_BATCH)
        for _ in range(expected):
            assert sink.poll(60_000), "the trainers stopped sending to the sink"
            sink.recv_multipart(copy=False)
        reports = reports_of(trainers)
    finally:
        context.destroy(linger=0)
    window = max(r["finished_unix"] for r in reports) - min(r["started_unix"] for r in reports)
    return sum(r["sent_bytes"] for r in reports) / window


def flood(daemon, run_dir: Path, activations: Path, first_step: int, steps: int, batch: int, processes):
    """Runs the trainers against `daemon` until it has written all their passes. Returns (bytes per
    second the daemon processed, trainer reports, [(RSS, queue_bytes)] sampled every 50 ms)."""
    finished_before = sum(layer["passes_finished"] for layer in daemon.status()["layers"])
    trainers = start_trainers(run_dir, activations, first_step, steps, batch, processes)
    samples = []

    def all_written():
        status = daemon.status()
        samples.append((daemon.memory()["VmRSS"], status["queue_bytes"]))
        assert daemon.alive(), daemon.log()[-3000:]
        return sum(layer["passes_finished"] for layer in status["layers"]) >= finished_before + TRAINERS * steps
    wait_until(all_written, 300, f"{TRAINERS * steps} flooded passes to be written")
    finished = time.time()
    reports = reports_of(trainers)
    processed_rate = sum(r["sent_bytes"] for r in reports) / (finished - min(r["started_unix"] for r in reports))
    return processed_rate, reports, samples


class MemoryBoundExceeded(Exception):
    """The daemon's peak RSS went over the derived bound (the one failure the xfail below expects)."""


def test_flooding_trainers_keep_daemon_memory_bounded(dataset, new_run_dir, start_daemon, processes):
    message_bytes = FLOOD_BATCH * dataset.maps[0].nbytes

    # 0. How fast the trainers push with nothing to hold them back.
    offered_rate = trainers_alone_rate(new_run_dir(), dataset.activations, processes)

    # 1. The engine's own footprint: one pass per trainer, TRAINERS passes open at once, in the
    #    flood's batches (the engine's state depends on how images are grouped). A flood opens no
    #    more passes at a time: each trainer's steps arrive in order on its connection, so its next
    #    pass opens after its last one closed. This phase's own transport (8 messages) counts in.
    engine_dir = new_run_dir()
    engine_daemon = start_daemon(engine_dir, *FLOOD_DAEMON_OPTIONS)
    idle = engine_daemon.memory()["VmRSS"]
    flood(engine_daemon, engine_dir, dataset.activations, 1, 1, FLOOD_BATCH, processes)
    engine_peak = engine_daemon.memory()["VmHWM"]
    assert engine_daemon.terminate() == 0

    # 2. The flood, on a fresh daemon with a small queue.
    flood_dir = new_run_dir()
    daemon = start_daemon(flood_dir, *FLOOD_DAEMON_OPTIONS)
    processed_rate, reports, samples = flood(daemon, flood_dir, dataset.activations, 1, FLOOD_STEPS, FLOOD_BATCH,
                                             processes)
    peak = daemon.memory()["VmHWM"]
    pushed = sum(report["sent_bytes"] for report in reports)
    bound = (engine_peak + QUEUE_MB * MIB + 2 * message_bytes  # the queue, one message over it, the decode buffer
             + TRAINERS * (INGEST_RCVHWM + 1) * message_bytes + SLACK_MB * MIB)
    max_queue = max(queue for _, queue in samples)
    print(f"\nflood: {TRAINERS} trainers, {pushed / MIB:.0f} MiB in {pushed // message_bytes} messages of "
          f"{message_bytes / MIB:.1f} MiB; alone they push {offered_rate / MIB:.0f} MiB/s, the daemon processed "
          f"{processed_rate / MIB:.1f} MiB/s ({offered_rate / processed_rate:.0f}x); trainers held back "
          f"{[round(r['held_back'], 1) for r in reports]} s of "
          f"{[round(r['finished_unix'] - r['started_unix'], 1) for r in reports]} s"
          f"\nRSS idle {idle / MIB:.0f} MiB; one pass per trainer ({TRAINERS} open at once): peak "
          f"{engine_peak / MIB:.0f} MiB; flood peak {peak / MIB:.0f} MiB (sampled max "
          f"{max(rss for rss, _ in samples) / MIB:.0f} MiB); queue_bytes max {max_queue / MIB:.1f} MiB"
          f"\nbound = engine peak {engine_peak / MIB:.0f} + queue {QUEUE_MB} + 2 messages "
          f"{2 * message_bytes / MIB:.1f} + {TRAINERS} connections x {INGEST_RCVHWM + 1} messages "
          f"{TRAINERS * (INGEST_RCVHWM + 1) * message_bytes / MIB:.1f} + slack {SLACK_MB} = {bound / MIB:.0f} MiB")

    # A flood is what the daemon saw, not a speed ratio (which depends on the CPU): its queue filled
    # to the bound and every trainer had to wait for it.
    assert offered_rate >= 2 * processed_rate, "the trainers were not even twice as fast as the daemon: no flood"
    assert max_queue >= QUEUE_MB * MIB - message_bytes, f"the queue never filled (max {max_queue} bytes): no flood"
    assert all(r["held_back"] > 0.1 for r in reports), f"a trainer was never held back: {reports}"
    assert pushed >= 2 * (bound - engine_peak), "the flood must exceed what the bound lets the daemon hold"
    assert max_queue <= QUEUE_MB * MIB + message_bytes, f"queue_bytes reached {max_queue} bytes"
    if peak > bound:
        raise MemoryBoundExceeded(f"daemon peak RSS {peak / MIB:.0f} MiB exceeds the bound {bound / MIB:.0f} MiB "
                                  f"(engine {engine_peak / MIB:.0f} MiB + transport + slack)")
