"""hndd_client.Client against a Python PULL socket standing in for the daemon."""
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings

import numpy as np
import pytest
import zmq

from hndd_client import Client, Endpoints, publish_topic
from hndd_client.client import SEND_HIGH_WATER_MARK, bfloat16_bits
from hndd_client.wire import DTYPES, hndd_pb2

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def daemon(ingest_receiver):
    return ingest_receiver


def receive_batch(pull):
    frames = pull.recv_multipart()
    assert len(frames) == 2, "a batch is exactly [header, tensor]"
    header = hndd_pb2.BatchHeader()
    header.ParseFromString(frames[0])
    return header, frames[1]


def reference_bfloat16(values):
    """Nearest bfloat16 by exact distance, ties to the even pattern: an independent reference."""
    values = np.asarray(values, dtype=np.float32).ravel()
    low = (values.view(np.uint32) >> 16).astype(np.uint32)  # truncation toward zero
    candidates = np.stack([low, low + 1])
    as_float = (candidates << 16).astype(np.uint32).view(np.float32).astype(np.float64)
    # IEEE rounds as if the exponent were unbounded, then overflows: the pattern after the largest
    # finite bfloat16 stands for ±2**128 (it becomes infinity).
    overflow = (candidates & 0x7FFF) == 0x7F80
    as_float[overflow] = np.copysign(2.0**128, as_float[overflow])
    distance = np.abs(as_float - values.astype(np.float64))
    pick_high = (distance[1] < distance[0]) | ((distance[1] == distance[0]) & (low % 2 == 1))
    return np.where(pick_high, candidates[1], candidates[0]).astype(np.uint16)


class ArrayLike:
    """Exposes only __array__."""

    def __init__(self, array):
        self._array = array

    def __array__(self, dtype=None, copy=None):
        return self._array if dtype is None else self._array.astype(dtype)


class DLPackOnly:
    """Exposes only the DLPack protocol."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def test_endpoints_and_topics_follow_the_protocol(run_dir):
    endpoints = Endpoints.from_run_dir(run_dir)
    assert endpoints.ingest == f"ipc://{run_dir}/ingest.sock"
    assert endpoints.publish == f"ipc://{run_dir}/publish.sock"
    assert endpoints.control == f"ipc://{run_dir}/control.sock"
    assert publish_topic("layer1") == b"layer1\x00"
    assert not publish_topic("layer10").startswith(publish_topic("layer1"))
    with pytest.raises(ValueError, match="shorter run directory"):
        Client(run_dir="/tmp/" + "d" * 120)


def test_float32_batch_arrives_field_by_field_and_byte_by_byte(run_dir, daemon):
    rng = np.random.default_rng(1)
    activations = rng.standard_normal((3, 4, 2, 5)).astype(np.float32)
    with Client(run_dir=run_dir, run="exp-7", rank=3) as client:
        assert client.send("layer4.2.conv1", 1200, [11, 0, 5], activations)
    header, tensor = receive_batch(daemon)
    assert header.protocol_version == 1
    assert header.run == "exp-7"
    assert header.layer == "layer4.2.conv1"
    assert header.step == 1200
    assert list(header.image_ids) == [11, 0, 5]
    assert header.dtype == hndd_pb2.DTYPE_FLOAT32
    assert (header.units, header.height, header.width) == (4, 2, 5)
    assert header.HasField("rank") and header.rank == 3
    assert header.sender.endswith(f":{os.getpid()}")
    assert tensor == activations.astype("<f4").tobytes(order="C")
    assert len(tensor) == 3 * 4 * 2 * 5 * 4


def test_float16_and_bfloat16_conversions_are_exact(run_dir, daemon):
    rng = np.random.default_rng(2)
    activations = (rng.standard_normal((2, 3, 4, 4)) * 100).astype(np.float32)
    # Ties and edge cases: exact bfloat16 midpoints, values that overflow float16.
    activations[0, 0, 0, :4] = [1 + 2**-8, 1 + 3 * 2**-8, 70000.0, -1e-9]
    with Client(run_dir=run_dir, dtype="float16") as client:
        client.send("conv", 5, [1, 2], activations)
    header, tensor = receive_batch(daemon)
    assert header.dtype == hndd_pb2.DTYPE_FLOAT16
    with np.errstate(over="ignore"):
        assert tensor == activations.astype("<f2").tobytes()
    received = np.frombuffer(tensor, dtype="<f2")
    assert np.isinf(received[2]) and received[0] == np.float16(1 + 2**-8)

    with Client(run_dir=run_dir, dtype="bfloat16") as client:
        client.send("conv", 6, [1, 2], activations)
    header, tensor = receive_batch(daemon)
    assert header.dtype == hndd_pb2.DTYPE_BFLOAT16
    bits = np.frombuffer(tensor, dtype="<u2")
    np.testing.assert_array_equal(bits, reference_bfloat16(activations))
    assert bits[0] == 0x3F80 and bits[1] == 0x3F82  # ties went to even
    # Decoded back, bfloat16 keeps 8 significant bits.
    decoded = (bits.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_allclose(decoded, activations.ravel(), rtol=2**-8)


def test_bfloat16_rounding_on_random_bit_patterns():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    finite = values[np.isfinite(values)]
    np.testing.assert_array_equal(bfloat16_bits(finite), reference_bfloat16(finite))
    nan_bits = bfloat16_bits(np.array([np.nan, -np.nan], dtype=np.float32))
    assert np.all((nan_bits & 0x7F80) == 0x7F80) and np.all((nan_bits & 0x007F) != 0)


def test_natural_dtypes_and_layouts(run_dir, daemon):
    base = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2) / 4
    inputs = [
        ("float64", base, hndd_pb2.DTYPE_FLOAT32, base.astype("<f4").tobytes()),
        ("float16", base.astype(np.float16), hndd_pb2.DTYPE_FLOAT16, base.astype("<f2").tobytes()),
        ("big-endian", base.astype(">f4"), hndd_pb2.DTYPE_FLOAT32, base.astype("<f4").tobytes()),
        ("non-contiguous", np.asfortranarray(base).astype(np.float32), hndd_pb2.DTYPE_FLOAT32,
         base.astype("<f4").tobytes()),
        ("int", (base * 4).astype(np.int32), hndd_pb2.DTYPE_FLOAT32, (base * 4).astype("<f4").tobytes()),
        ("__array__", ArrayLike(base.astype(np.float32)), hndd_pb2.DTYPE_FLOAT32, base.astype("<f4").tobytes()),
        ("__dlpack__", DLPackOnly(base.astype(np.float32)), hndd_pb2.DTYPE_FLOAT32, base.astype("<f4").tobytes()),
    ]
    strided = np.zeros((2, 3, 2, 4), dtype=np.float32)
    strided[..., ::2] = base
    inputs.append(("strided view", strided[..., ::2], hndd_pb2.DTYPE_FLOAT32, base.astype("<f4").tobytes()))
    with Client(run_dir=run_dir) as client:
        for step, (_, array, _, _) in enumerate(inputs):
            client.send("layer", step, np.array([4, 9], dtype=np.uint8), array)
    for step, (name, _, dtype, expected) in enumerate(inputs):
        header, tensor = receive_batch(daemon)
        assert header.step == step, name
        assert header.dtype == dtype, name
        assert tensor == expected, name
        assert list(header.image_ids) == [4, 9]


def test_the_caller_may_reuse_its_array_at_once(run_dir, daemon):
    activations = np.ones((1, 2, 2, 2), dtype=np.float32)
    with Client(run_dir=run_dir) as client:
        client.send("layer", 0, [0], activations)
        activations[:] = 7  # a training loop overwriting its buffer
        client.send("layer", 1, [0], activations)
    assert receive_batch(daemon)[1] == np.ones(8, dtype="<f4").tobytes()
    assert receive_batch(daemon)[1] == np.full(8, 7, dtype="<f4").tobytes()


@pytest.mark.parametrize("layer, step, ids, array, error, match", [
    ("", 0, [0], np.zeros((1, 1, 1, 1)), ValueError, "layer"),
    ("a\0b", 0, [0], np.zeros((1, 1, 1, 1)), ValueError, "NUL"),
    ("l", 1.5, [0], np.zeros((1, 1, 1, 1)), TypeError, "step"),
    ("l", True, [0], np.zeros((1, 1, 1, 1)), TypeError, "step"),
    ("l", 0, [], np.zeros((0, 1, 1, 1)), ValueError, "empty"),
    ("l", 0, [-1], np.zeros((1, 1, 1, 1)), ValueError, ">= 0"),
    ("l", 0, [0.5], np.zeros((1, 1, 1, 1)), TypeError, "integers"),
    ("l", 0, [[0]], np.zeros((1, 1, 1, 1)), ValueError, "one-dimensional"),
    ("l", 0, [0, 1], np.zeros((1, 1, 1, 1)), ValueError, "1 activation rows but 2 image ids"),
    ("l", 0, [0], np.zeros((1, 1, 1)), ValueError, "4 dimensions"),
    ("l", 0, [0], np.zeros((1, 0, 1, 1)), ValueError, "positive"),
    ("l", 0, [0], np.zeros((1, 1, 1, 1), dtype=complex), TypeError, "real numbers"),
    ("l", 0, [0], "not an array", TypeError, "numpy array"),
])
def test_bad_input_is_refused_clearly(run_dir, layer, step, ids, array, error, match):
    with Client(run_dir=run_dir) as client:
        with pytest.raises(error, match=match):
            client.send(layer, step, ids, array)
        assert client.stats.queued_batches == 0


def test_bad_arguments_are_refused_clearly(run_dir):
    with pytest.raises(ValueError, match="exactly one"):
        Client()
    with pytest.raises(ValueError, match="exactly one"):
        Client(run_dir=run_dir, endpoint="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="on_full"):
        Client(run_dir=run_dir, on_full="wait")
    with pytest.raises(ValueError, match="dtype"):
        Client(run_dir=run_dir, dtype="int8")
    with pytest.raises(ValueError, match="ZeroMQ address"):
        Client(endpoint="localhost:5555")
    with Client(run_dir=run_dir, max_queue_mb=0.01) as client:
        with pytest.raises(ValueError, match="can never fit"):
            client.send("l", 0, [0], np.zeros((1, 64, 8, 8), dtype=np.float32))
    with pytest.raises(RuntimeError, match="after close"):
        client.send("l", 0, [0], np.zeros((1, 1, 1, 1)))


def test_drop_policy_bounds_memory_and_counts(run_dir):
    """A daemon that never reads: the client's memory stays near max_queue_mb, send never blocks,
    and every batch is counted exactly once as sent, queued or dropped."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 1)
    pull.setsockopt(zmq.RCVBUF, 64 * 1024)
    pull.bind(Endpoints.from_run_dir(run_dir).ingest)
    batch = np.ones((16, 64, 16, 16), dtype=np.float32)  # 1 MiB
    batch_count = 100
    try:
        tracemalloc.start()
        client = Client(run_dir=run_dir, max_queue_mb=4, on_full="drop")
        results = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            started = time.monotonic()
            for _ in range(batch_count):  # one step: every header, and so every batch, has the same size
                results.append(client.send("layer", 1000, np.arange(16), batch))
            elapsed = time.monotonic() - started
        time.sleep(0.3)  # let the sender thread move what it can
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        stats = client.stats
        batch_bytes = stats.sent_bytes // max(stats.sent_batches, 1)
        full_warnings = [w for w in caught if "queue" in str(w.message)]
        assert len(full_warnings) == 1, "warned once, not per batch"
        assert results.count(False) == stats.dropped_batches > 0
        assert stats.sent_batches + stats.queued_batches + stats.dropped_batches == batch_count
        assert stats.queued_bytes <= 4 * 2**20
        assert stats.sent_bytes == stats.sent_batches * batch_bytes
        assert stats.dropped_bytes == stats.dropped_batches * batch_bytes
        # What ZeroMQ holds beyond our queue is a handful of batches, not the 100 sent.
        assert stats.sent_batches <= SEND_HIGH_WATER_MARK + 6
        # Peak Python/numpy memory: the queue, the batch being built, ZeroMQ's few in flight.
        assert peak < (4 + 1 + SEND_HIGH_WATER_MARK + 6 + 2) * 2**20, f"peak {peak / 2**20:.1f} MiB"
        assert elapsed < 5, "send must not block with on_full='drop'"
        client.close(timeout=0.2)
        assert client.stats.queued_batches == 0
        assert client.stats.sent_batches + client.stats.dropped_batches == batch_count
    finally:
        pull.close(linger=0)
        context.term()


def test_block_policy_waits_then_drops(run_dir):
    # No daemon at all: nothing ever leaves the queue.
    batch = np.zeros((1, 256, 32, 32), dtype=np.float32)  # 1 MiB
    client = Client(run_dir=run_dir, max_queue_mb=2.5, on_full="block", block_timeout=0.3)
    assert client.send("l", 0, [0], batch) and client.send("l", 1, [0], batch)
    started = time.monotonic()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert client.send("l", 2, [0], batch) is False
    waited = time.monotonic() - started
    assert 0.25 <= waited < 2
    assert client.stats.dropped_batches == 1
    assert client.flush(timeout=0.1) is False
    client.close(timeout=0)
    assert client.stats.dropped_batches == 3


def test_block_policy_resumes_when_the_daemon_starts_reading(run_dir):
    batch = np.zeros((1, 256, 32, 32), dtype=np.float32)  # 1 MiB
    client = Client(run_dir=run_dir, max_queue_mb=2.5, on_full="block", block_timeout=10)
    received = []

    def late_daemon():
        time.sleep(0.5)
        context = zmq.Context()
        pull = context.socket(zmq.PULL)
        pull.setsockopt(zmq.RCVTIMEO, 5000)
        pull.bind(Endpoints.from_run_dir(run_dir).ingest)
        try:
            for _ in range(6):
                received.append(receive_batch(pull)[0].step)
        finally:
            pull.close(linger=0)
            context.term()

    reader = threading.Thread(target=late_daemon)
    reader.start()
    started = time.monotonic()
    for step in range(6):
        assert client.send("l", step, [0], batch)
    assert time.monotonic() - started >= 0.3, "the third send had to wait for the daemon"
    assert client.flush(timeout=10)
    client.close()
    reader.join(10)
    assert received == list(range(6))
    assert client.stats.dropped_batches == 0 and client.stats.sent_batches == 6


def test_close_delivers_what_is_pending(run_dir):
    client = Client(run_dir=run_dir)
    for step in range(5):
        client.send("l", step, [step], np.full((1, 2, 1, 1), step, dtype=np.float32))
    assert client.stats.queued_batches + client.stats.sent_batches == 5
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVTIMEO, 5000)
    pull.bind(Endpoints.from_run_dir(run_dir).ingest)  # the daemon comes up after the sends
    try:
        client.close(timeout=5)
        steps = [receive_batch(pull)[0].step for _ in range(5)]
    finally:
        pull.close(linger=0)
        context.term()
    assert steps == [0, 1, 2, 3, 4]
    assert client.stats == type(client.stats)(sent_batches=5, sent_bytes=client.stats.sent_bytes)


def test_works_without_torch(run_dir, daemon):
    """The client must import and send with torch unavailable (the import is blocked)."""
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, hndd_client\n"
        "from hndd_client import Client\n"
        f"with Client(run_dir={run_dir!r}) as c:\n"
        "    assert c.send('l', 3, [1], np.ones((1, 2, 2, 2), dtype=np.float32))\n"
        "print('torch' in sys.modules and sys.modules['torch'] is not None)\n"
    )
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    header, tensor = receive_batch(daemon)
    assert header.step == 3 and tensor == np.ones(8, dtype="<f4").tobytes()


def test_importing_the_package_loads_nothing_heavy():
    script = ("import sys, hndd_client\n"
              "print(sorted(m for m in ('zmq', 'torch', 'google.protobuf', 'h5py') if m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_dtype_table_matches_the_generated_enum():
    assert DTYPES == {"float32": (1, 4), "float16": (2, 2), "bfloat16": (3, 2)}
    assert hndd_pb2.DType.Name(DTYPES["bfloat16"][0]) == "DTYPE_BFLOAT16"
