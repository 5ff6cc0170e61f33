"""Issue 3, Done when #2: at least 10,000 malformed messages, interleaved with a real probe pass,
leave the daemon up, are counted by reason in `hndd status`, and change nothing: the pass's
numbers are exact against the reference.

The malformed batches that reach the engine (NaN/inf, out-of-range ids, changed unit count or map
size) carry ids of images the real pass has NOT sent yet, with perturbed values: were one of them
applied, even partly, those images would count as duplicates later and the numbers would move.
Frames larger than --max-message-mb are dropped by ZeroMQ (ZMQ_MAXMSGSIZE) before the daemon sees
them, as is garbage on the raw sockets, so those are checked only by the daemon staying up and no
counter moving.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import numpy as np
import zmq

from daemon_harness import LAYER, complete_row, hndd_pb2, wait_until

RUN = "fuzzed"
STEP = 7
REAL_BATCH = 40  # 40 x 64 x 7 x 7 float32 = 490 KiB, under the 1 MiB message limit
MAX_MESSAGE_MB = 1
SMALL_BATCH = 4  # images in the malformed batches that reach the engine

#: Messages of each kind sent on the ingest socket, and the reason each must be counted under.
#: "random" (random header bytes) may land on any header-level reason, so it is checked in sum.
DETERMINISTIC_KINDS = {
    "frame_count": 1600,
    "malformed_header": 1600,
    "bad_version": 700,
    "bad_dtype": 700,
    "bad_name": 600,
    "bad_shape": 700,
    "size_mismatch": 1000,
    "non_finite": 500,
    "image_id_out_of_range": 500,
    "unit_count_changed": 300,
    "map_size_changed": 300,
}
RANDOM_HEADERS = 1600
LATE_BATCHES = 100  # valid batches for the pass after it was written: "pass_finished"
OVERSIZED_EVERY = 8  # one oversized message per this many real batches
CONTROL_GARBAGE = 800
PUBLISH_GARBAGE = 300
RAW_SOCKET_GARBAGE = 10  # per endpoint


def header(run=RUN, layer=LAYER, step=STEP, ids=(), dtype=hndd_pb2.DTYPE_FLOAT32, units=64, height=7, width=7,
           version=1) -> hndd_pb2.BatchHeader:
    message = hndd_pb2.BatchHeader(protocol_version=version, run=run, layer=layer, step=step, dtype=dtype,
                                   units=units, height=height, width=width, sender="fuzzer")
    message.image_ids.extend(int(i) for i in ids)
    return message


def frames(message: hndd_pb2.BatchHeader, tensor: np.ndarray) -> list[bytes]:
    return [message.SerializeToString(), np.ascontiguousarray(tensor, dtype="<f4").tobytes()]


class Fuzzer:
    """Builds malformed ingest messages of each kind from a random generator."""

    def __init__(self, rng: np.random.Generator, maps_by_image: dict[int, np.ndarray], n_images: int):
        self.rng = rng
        self.maps_by_image = maps_by_image
        self.n_images = n_images

    def random_bytes(self, low=0, high=300) -> bytes:
        return self.rng.bytes(int(self.rng.integers(low, high)))

    def perturbed(self, ids) -> np.ndarray:
        """The real maps of `ids`, scaled: wrong if ever applied."""
        return np.stack([self.maps_by_image[int(i)] for i in ids]) * np.float32(3) + np.float32(1)

    def message(self, kind: str, future_ids: np.ndarray) -> list[bytes]:
        rng = self.rng
        ids = rng.choice(future_ids, size=min(SMALL_BATCH, len(future_ids)), replace=False)
        good = header(ids=ids)
        if kind == "frame_count":
            variant = rng.integers(4)
            if variant == 0:
                return [self.random_bytes()]
            if variant == 1:
                return [good.SerializeToString()]
            extra = [self.random_bytes() for _ in range(int(rng.integers(1, 4)))]
            return frames(good, self.perturbed(ids)) + extra
        if kind == "malformed_header":
            tensor = self.perturbed(ids)
            if rng.integers(2) == 0:
                # Field number 0 with wire type 7: no protobuf parser accepts it.
                return [b"\x07" + self.random_bytes(), tensor.tobytes()]
            # Cut inside the run string: the length prefix promises bytes that never come.
            serialized = header(run="a-run-name-long-enough-to-cut", ids=ids).SerializeToString()
            return [serialized[:int(rng.integers(5, 20))], tensor.tobytes()]
        if kind == "bad_version":
            version = int(rng.choice([0, 2, 3, 999, 2**32 - 1]))
            return frames(header(ids=ids, version=version), self.perturbed(ids))
        if kind == "bad_dtype":
            dtype = int(rng.choice([0, 4, 5, 99]))
            return frames(header(ids=ids, dtype=dtype), self.perturbed(ids))
        if kind == "bad_name":
            variant = rng.integers(3)
            message = (header(run="", ids=ids) if variant == 0 else header(layer="", ids=ids) if variant == 1
                       else header(layer=LAYER + "\0evil", ids=ids))
            return frames(message, self.perturbed(ids))
        if kind == "bad_shape":
            variant = rng.integers(4)
            if variant == 0:
                return frames(header(ids=[]), np.zeros(0, np.float32))
            if variant == 1:
                return frames(header(ids=ids, units=0), np.zeros(0, np.float32))
            if variant == 2:
                return frames(header(ids=ids, height=0), np.zeros(0, np.float32))
            # A shape whose value count exceeds what the message limit allows: must not be allocated.
            return frames(header(ids=ids, units=2**31, height=2**20, width=2**20), np.zeros(16, np.float32))
        if kind == "size_mismatch":
            payload = frames(good, self.perturbed(ids))[1]
            variant = rng.integers(4)
            if variant == 0:
                payload = payload[:-int(rng.integers(1, 9))]
            elif variant == 1:
                payload = payload + self.random_bytes(1, 9)
            elif variant == 2:
                payload = b""
            else:  # float32 bytes under a float16 header
                return [header(ids=ids, dtype=hndd_pb2.DTYPE_FLOAT16).SerializeToString(), payload]
            return [good.SerializeToString(), payload]
        if kind == "non_finite":
            tensor = self.perturbed(ids)
            tensor.reshape(-1)[int(rng.integers(tensor.size))] = rng.choice([np.nan, np.inf, -np.inf])
            return frames(good, tensor)
        if kind == "image_id_out_of_range":
            bad = ids.copy()
            bad[int(rng.integers(len(bad)))] = int(rng.choice([self.n_images, self.n_images + 5, -1, 2**62]))
            return frames(header(ids=bad), self.perturbed(ids))
        if kind == "unit_count_changed":
            units = int(rng.choice([63, 65, 128]))
            return frames(header(ids=ids, units=units), rng.standard_normal((len(ids), units, 7, 7)))
        if kind == "map_size_changed":
            height, width = [(6, 6), (7, 8), (14, 14)][int(rng.integers(3))]
            return frames(header(ids=ids, height=height, width=width),
                          rng.standard_normal((len(ids), 64, height, width)))
        if kind == "random":
            return [self.random_bytes(1, 300), self.random_bytes(0, 300)]
        raise ValueError(kind)


def push_socket(context: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = context.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 100)
    sock.setsockopt(zmq.SNDTIMEO, 30000)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.connect(endpoint)
    return sock


def raw_socket_garbage(path: str, rng: np.random.Generator, count: int):
    """Bytes that are not ZMTP at all, straight onto a daemon's Unix socket."""
    for index in range(count):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.settimeout(2)
            raw.connect(path)
            # Half of them start like a ZMTP greeting, then go wrong.
            prefix = b"\xff" + b"\0" * 8 + b"\x7f\x03\x00NULL" if index % 2 else b""
            try:
                raw.sendall(prefix + rng.bytes(int(rng.integers(1, 4096))))
            except OSError:
                pass  # the daemon may hang up first


HEADER_REASONS = ("frame_count", "malformed_header", "bad_version", "bad_dtype", "bad_name", "bad_shape", "size_mismatch")


def batch_rejections(status) -> dict[str, int]:
    return {k: v for k, v in status["rejected_batches"].items() if k != "control_malformed"}


def settled_status(daemon, quiet_seconds: float = 0.5) -> dict:
    """The status once its rejection counters stopped moving for `quiet_seconds`."""
    previous = daemon.status()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        current = daemon.status()
        if current["rejected_batches"] == previous["rejected_batches"]:
            return current
        previous = current
    raise AssertionError(f"rejection counters still moving after 60 s: {previous['rejected_batches']}")


def test_fuzz_interleaved_with_a_real_pass(dataset, run_dir, start_daemon, hndd_binary):
    daemon = start_daemon(run_dir, "--max-message-mb", MAX_MESSAGE_MB, "--snapshot-interval", "0.5")
    rng = np.random.default_rng(2024)
    order = rng.permutation(dataset.n_images)  # rows of dataset.maps, in the order the pass sends them
    real_batches = [order[i:i + REAL_BATCH] for i in range(0, dataset.n_images, REAL_BATCH)]
    maps_by_image = {int(dataset.image_ids[row]): dataset.maps[row] for row in range(dataset.n_images)}
    fuzzer = Fuzzer(rng, maps_by_image, dataset.n_images)

    context = zmq.Context()
    real = push_socket(context, daemon.endpoints.ingest)
    fuzz = push_socket(context, daemon.endpoints.ingest)
    control = context.socket(zmq.DEALER)
    control.setsockopt(zmq.LINGER, 0)
    control.setsockopt(zmq.SNDTIMEO, 5000)
    control.connect(daemon.endpoints.control)
    publish_garbage = context.socket(zmq.XSUB)
    publish_garbage.setsockopt(zmq.LINGER, 0)
    publish_garbage.setsockopt(zmq.SNDTIMEO, 5000)
    publish_garbage.connect(daemon.endpoints.publish)
    watcher = context.socket(zmq.SUB)
    watcher.setsockopt(zmq.LINGER, 0)
    watcher.setsockopt(zmq.SUBSCRIBE, LAYER.encode() + b"\0")
    watcher.connect(daemon.endpoints.publish)

    def send_real(batch_rows):
        real.send_multipart(frames(header(ids=dataset.image_ids[batch_rows]), dataset.maps[batch_rows]))

    try:
        # The first real batch fixes the layer's unit count and map size before any fuzz arrives.
        send_real(real_batches[0])
        daemon.wait_pass(RUN, STEP, lambda p: p["images_seen"] == len(real_batches[0]), "first batch applied")

        # Phase 1: malformed batches, control and publish garbage and oversized frames, between
        # the real batches 2 .. n-1.
        kinds = [kind for kind, count in DETERMINISTIC_KINDS.items() for _ in range(count)] + ["random"] * RANDOM_HEADERS
        kinds = [kinds[i] for i in rng.permutation(len(kinds))]
        control_kinds = ["invalid_tag"] * (CONTROL_GARBAGE // 2) + ["random"] * (CONTROL_GARBAGE // 4) \
            + ["frame_layout"] * (CONTROL_GARBAGE // 4)
        control_sent = {"invalid_tag": 0, "random": 0, "frame_layout": 0}
        sent_by_kind = {kind: 0 for kind in [*DETERMINISTIC_KINDS, "random"]}
        middle = real_batches[1:-1]
        per_gap = -(-len(kinds) // len(middle))
        unsent = np.concatenate(real_batches[1:])
        oversized_sent = 0
        started = time.monotonic()
        for gap, batch_rows in enumerate(middle):
            future_ids = dataset.image_ids[unsent]
            for kind in kinds[gap * per_gap:(gap + 1) * per_gap]:
                fuzz.send_multipart(fuzzer.message(kind, future_ids))
                sent_by_kind[kind] += 1
            for kind in control_kinds[gap::len(middle)]:
                if kind == "invalid_tag":
                    control.send(b"\x07" + fuzzer.random_bytes())
                elif kind == "random":
                    control.send(fuzzer.random_bytes(1, 200))
                else:  # DEALER [payload, payload]: neither ROUTER layout the daemon answers
                    control.send_multipart([fuzzer.random_bytes(1, 50), fuzzer.random_bytes(1, 50)])
                control_sent[kind] += 1
            for _ in range(PUBLISH_GARBAGE // len(middle) + 1):
                publish_garbage.send_multipart([fuzzer.random_bytes(1, 100) for _ in range(int(rng.integers(1, 3)))])
            if gap % OVERSIZED_EVERY == 0:  # frames over --max-message-mb, each from its own connection
                oversized = push_socket(context, daemon.endpoints.ingest)
                rows = unsent[:90]  # 90 images = 1.08 MiB
                oversized.send_multipart(frames(header(ids=dataset.image_ids[rows]), dataset.maps[rows] * 5))
                oversized.close(linger=2000)
                oversized_sent += 1
            send_real(batch_rows)
            unsent = unsent[len(batch_rows):]
        fuzz_total = sum(sent_by_kind.values())
        assert fuzz_total >= 10_000
        assert sent_by_kind == {**DETERMINISTIC_KINDS, "random": RANDOM_HEADERS}
        assert oversized_sent >= 5

        # Every malformed batch is counted before the last real batch goes, so none of the
        # engine-level ones can meet an already written pass.
        wait_until(lambda: sum(batch_rejections(daemon.status()).values()) >= fuzz_total, 120,
                   f"the daemon to count {fuzz_total} rejected batches")
        after_fuzz = settled_status(daemon)  # anything counted twice would show now
        fuzz_seconds = time.monotonic() - started

        # Phase 2: bytes that are not ZeroMQ at all on every endpoint. libzmq takes a stream that
        # does not open with a ZMTP/3 greeting for ZMTP/1.0, so some garbage becomes messages:
        # those must be counted as malformed, nothing else.
        for path in ("ingest.sock", "publish.sock", "control.sock"):
            raw_socket_garbage(str(run_dir / path), rng, RAW_SOCKET_GARBAGE)
        after_raw = settled_status(daemon)

        # Phase 3: the last real batch completes the pass; later batches for it are refused.
        send_real(real_batches[-1])
        entry = daemon.wait_complete(RUN, STEP)
        for _ in range(LATE_BATCHES):
            rows = rng.choice(dataset.n_images, size=SMALL_BATCH, replace=False)
            fuzz.send_multipart(frames(header(ids=dataset.image_ids[rows]), dataset.maps[rows]))
        wait_until(lambda: daemon.status()["rejected_batches"].get("pass_finished", 0) >= LATE_BATCHES, 60,
                   "late batches to be refused")
        settled_status(daemon)

        # The complete snapshot is still published to subscribers.
        def complete_publication():
            while watcher.poll(0):
                _, body = watcher.recv_multipart()
                snapshot = hndd_pb2.Snapshot()
                snapshot.ParseFromString(body)
                if snapshot.complete and snapshot.step == STEP:
                    return snapshot
            return None
        published = wait_until(complete_publication, 10, "the complete snapshot on the publish socket")
        assert published.images_seen == dataset.n_images
    finally:
        context.destroy(linger=0)

    assert daemon.alive(), f"the daemon died:\n{daemon.log()[-3000:]}"
    # `hndd status` (the real CLI) reports the rejections by reason.
    cli = subprocess.run([str(hndd_binary), "status", "--run-dir", str(run_dir)], capture_output=True, text=True,
                         timeout=30)
    assert cli.returncode == 0, cli.stderr
    final = json.loads(cli.stdout)
    assert final["rejected_total"] == sum(final["rejected_batches"].values())
    print(f"\nfuzz: {fuzz_total} malformed batches, {oversized_sent} oversized, {sum(control_sent.values())} control "
          f"and {PUBLISH_GARBAGE}+ publish messages of garbage in {fuzz_seconds:.1f} s; then {3 * RAW_SOCKET_GARBAGE} "
          f"raw-socket garbage streams, {LATE_BATCHES} late batches"
          f"\nrejected after the fuzz: {json.dumps(after_fuzz['rejected_batches'], sort_keys=True)}"
          f"\nrejected at the end:    {json.dumps(final['rejected_batches'], sort_keys=True)}")

    # Phase 1: each kind counted under its reason; random header bytes may fail any header check.
    counted = after_fuzz["rejected_batches"]
    random_sent = sent_by_kind["random"]
    for reason, count in DETERMINISTIC_KINDS.items():
        slack = random_sent if reason in HEADER_REASONS and reason != "frame_count" else 0
        assert count <= counted.get(reason, 0) <= count + slack, \
            f"{reason}: sent {count} (+ up to {slack} random), daemon counted {counted.get(reason, 0)}"
    assert sum(batch_rejections(after_fuzz).values()) == fuzz_total, \
        f"each malformed batch counted exactly once; oversized frames never reach the daemon: {counted}"
    deterministic_control = control_sent["invalid_tag"] + control_sent["frame_layout"]
    assert deterministic_control <= counted.get("control_malformed", 0) <= deterministic_control + control_sent["random"], \
        f"control garbage sent {control_sent}, counted {counted.get('control_malformed')}"
    # Phase 2: raw garbage can only be malformed; no batch accepted, no engine-level reason.
    grown = {reason: after_raw["rejected_batches"][reason] - counted.get(reason, 0) for reason in after_raw["rejected_batches"]}
    assert all(value == 0 for reason, value in grown.items() if reason not in HEADER_REASONS + ("control_malformed",)), grown
    assert after_raw["batches_accepted"] == after_fuzz["batches_accepted"] == len(real_batches) - 1
    # Phase 3.
    assert final["rejected_batches"]["pass_finished"] == LATE_BATCHES
    assert sum(batch_rejections(final).values()) == sum(batch_rejections(after_raw).values()) + LATE_BATCHES

    # Each rejection is logged with its reason.
    log = daemon.log()
    for reason in DETERMINISTIC_KINDS:
        assert f"batch rejected ({reason})" in log, f"no logged error for {reason}"

    # Nothing malformed touched the pass: only the real batches count, and the numbers are exact.
    assert final["batches_accepted"] == len(real_batches)
    assert final["images_seen"] == dataset.n_images
    assert entry["images_seen"] == dataset.n_images and entry["duplicates"] == 0, entry
    row = complete_row(daemon.snapshot_file, RUN, STEP)
    failures = dataset.failures(row)
    assert not failures, "pass under fuzz vs reference:\n" + "\n".join(failures)
