"""The trainer side of hndd: push activation batches to `hndd serve` without slowing training.

    from hndd_client import Client

    with Client(run_dir="runs/exp1", run="exp1") as client:
        for step in ...:
            ...  # forward hooks collected `acts` (N x C x h x w) for dictionary rows `ids`
            client.send("layer4.2.conv1", step, ids, acts)

`send` validates and copies the batch (so the caller may reuse its tensor at once) and queues it;
a background thread owns the ZeroMQ socket (sockets are not thread-safe) and sends. The queue is
bounded in bytes: when it is full, batches are dropped and counted (`on_full="drop"`, the default)
or `send` waits up to `block_timeout` seconds (`on_full="block"`). torch is never imported: torch
tensors are read through `.detach().cpu()` and numpy, other arrays through `__array__` or DLPack.
"""
from __future__ import annotations

import collections
import logging
import numbers
import os
import socket
import sys
import threading
import time
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import zmq

from .wire import DTYPES, PROTOCOL_VERSION, Endpoints, check_endpoint, hndd_pb2

logger = logging.getLogger("hndd_client")

#: Messages libzmq may hold per connection beyond our queue: keeps memory bounded by the queue.
SEND_HIGH_WATER_MARK = 2


@dataclass(frozen=True)
class ClientStats:
    """Counters of a Client. "sent" means handed to ZeroMQ (at most SEND_HIGH_WATER_MARK batches
    may still be in flight to the daemon); bytes count header and tensor."""

    sent_batches: int = 0
    sent_bytes: int = 0
    dropped_batches: int = 0
    dropped_bytes: int = 0
    queued_batches: int = 0
    queued_bytes: int = 0


class _SenderState:
    """What the client and its sender thread share; holds no reference to the Client, so the
    Client can be garbage-collected (and its finalizer close the thread)."""

    def __init__(self, endpoint, max_queue_bytes):
        self.endpoint = endpoint
        self.max_queue_bytes = max_queue_bytes
        self.condition = threading.Condition()
        self.queue = collections.deque()  # (frames, nbytes)
        self.queued_bytes = 0
        self.sending = False  # the head of the queue is being handed to ZeroMQ
        self.sent_batches = self.sent_bytes = 0
        self.dropped_batches = self.dropped_bytes = 0
        self.closing = False  # no new batches
        self.abort_at = None  # monotonic time after which unsent batches are given up
        self.error = None
        self.thread = None

    def run(self):
        context = zmq.Context(io_threads=1)
        sock = context.socket(zmq.PUSH)
        linger_ms = 0
        try:
            sock.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)
            sock.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing in ZeroMQ while no daemon is connected
            sock.connect(self.endpoint)
            while True:
                with self.condition:
                    while not self.queue and not self.closing:
                        self.condition.wait()
                    if not self.queue:
                        break
                    frames, nbytes = self.queue[0]
                    self.sending = True
                delivered = self._send(sock, frames)
                with self.condition:
                    self.queue.popleft()
                    self.queued_bytes -= nbytes
                    self.sending = False
                    if delivered:
                        self.sent_batches += 1
                        self.sent_bytes += nbytes
                    else:
                        self.dropped_batches += 1
                        self.dropped_bytes += nbytes
                    self.condition.notify_all()
            with self.condition:
                if self.abort_at is not None:
                    linger_ms = max(0, int((self.abort_at - time.monotonic()) * 1000))
        except Exception as error:  # noqa: BLE001 - reported to the caller by send/flush/close
            logger.error("hndd client: sender thread failed: %s", error)
            with self.condition:
                self.error = error
                for _, nbytes in self.queue:
                    self.dropped_batches += 1
                    self.dropped_bytes += nbytes
                self.queue.clear()
                self.queued_bytes = 0
                self.sending = False
                self.condition.notify_all()
        finally:
            # Batches already inside ZeroMQ get until the close deadline to reach the daemon.
            sock.close(linger=linger_ms)
            context.term()

    def _send(self, sock, frames):
        """Waits until ZeroMQ takes the message, or the close deadline passes (returns False)."""
        while True:
            with self.condition:
                deadline = self.abort_at
            wait_ms = 100
            if deadline is not None:
                remaining_ms = (deadline - time.monotonic()) * 1000
                if remaining_ms <= 0:
                    return False
                wait_ms = max(1, min(wait_ms, int(remaining_ms)))
            if sock.poll(wait_ms, zmq.POLLOUT):
                try:
                    sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                    return True
                except zmq.Again:
                    pass

    def drained(self):
        return not self.queue and not self.sending

    def shut_down(self, timeout):
        """Waits up to `timeout` s for pending batches, then stops the thread."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self.condition:
            self.closing = True
            self.abort_at = deadline
            self.condition.notify_all()
        if self.thread is not None:
            self.thread.join(max(0.0, deadline - time.monotonic()) + 1.0)


class Client:
    """Sends activation batches to an hndd daemon.

    Args:
        run_dir: the daemon's run directory (uses its ipc:// ingest socket); or
        endpoint: an explicit ingest endpoint, e.g. "tcp://127.0.0.1:5555".
        run: the training run's name; (run, layer, step) names a probe pass.
        max_queue_mb: bound of the send queue, in MiB (batches waiting for the sender thread).
        on_full: "drop" (count and warn once) or "block" (wait up to `block_timeout` s, then drop).
        dtype: None keeps float16/bfloat16 inputs and sends everything else as float32;
            "float32", "float16" or "bfloat16" converts (round to nearest even).
        block_timeout: seconds `send` may wait for queue space when on_full="block".
        rank: this process's data-parallel rank, sent along for the daemon's logs.
    """

    def __init__(self, run_dir=None, endpoint=None, run="run", max_queue_mb=256, on_full="drop", dtype=None,
                 block_timeout=10.0, rank=None):
        if (run_dir is None) == (endpoint is None):
            raise ValueError("give exactly one of run_dir (the daemon's run directory) or endpoint")
        self.endpoint = check_endpoint(Endpoints.from_run_dir(run_dir).ingest if endpoint is None else endpoint)
        if not isinstance(run, str) or not run:
            raise ValueError(f"run must be a non-empty string, not {run!r}")
        if on_full not in ("drop", "block"):
            raise ValueError(f"on_full must be 'drop' or 'block', not {on_full!r}")
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"dtype must be None or one of {sorted(DTYPES)}, not {dtype!r}")
        if not isinstance(max_queue_mb, numbers.Real) or not max_queue_mb > 0:
            raise ValueError(f"max_queue_mb must be a positive number, not {max_queue_mb!r}")
        if rank is not None and (not isinstance(rank, numbers.Integral) or not 0 <= rank < 2**32):
            raise ValueError(f"rank must be None or a non-negative integer, not {rank!r}")
        self.run = run
        self.on_full = on_full
        self.dtype = dtype
        self.block_timeout = float(block_timeout)
        self.rank = rank
        self.max_queue_bytes = int(max_queue_mb * 1024 * 1024)
        self._sender_name = f"{socket.gethostname()}:{os.getpid()}"
        self._warned_full = False
        self._closed = False
        self._state = _SenderState(self.endpoint, self.max_queue_bytes)
        self._state.thread = threading.Thread(target=self._state.run, name="hndd-client-sender", daemon=True)
        self._state.thread.start()
        # At interpreter exit (or if the client is collected unclosed), deliver what is pending briefly.
        self._finalizer = weakref.finalize(self, self._state.shut_down, 5.0)

    # -- sending -----------------------------------------------------------------------------------

    def send(self, layer, step, image_ids, array):
        """Queues one batch: `array` is N x C x h x w for the N dictionary rows `image_ids`.

        Returns True when queued, False when dropped because the queue stayed full. Raises
        ValueError/TypeError for bad input and RuntimeError after close or a sender failure.
        """
        self._check_usable()
        if not isinstance(layer, str) or not layer or "\0" in layer:
            raise ValueError(f"layer must be a non-empty string without NUL characters, not {layer!r}")
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or not -2**63 <= step < 2**63:
            raise TypeError(f"step must be an integer, not {step!r}")
        ids = _image_ids(image_ids)
        values, source_dtype = _as_numpy(array)
        if values.ndim != 4:
            raise ValueError(f"layer {layer}: activations must be N x C x h x w (4 dimensions), got shape {values.shape}")
        count, units, height, width = values.shape
        if count != len(ids):
            raise ValueError(f"layer {layer}: {count} activation rows but {len(ids)} image ids")
        if min(units, height, width) == 0 or max(units, height, width) >= 2**32:
            raise ValueError(f"layer {layer}: shape C x h x w = {units} x {height} x {width} must be positive")
        wire_dtype = self.dtype or (source_dtype if source_dtype in ("float16", "bfloat16") else "float32")
        payload = _encode(values, source_dtype, wire_dtype)

        header = hndd_pb2.BatchHeader(
            protocol_version=PROTOCOL_VERSION, run=self.run, layer=layer, step=int(step),
            dtype=DTYPES[wire_dtype][0], units=units, height=height, width=width, sender=self._sender_name)
        header.image_ids.extend(ids.tolist())
        if self.rank is not None:
            header.rank = int(self.rank)
        header_bytes = header.SerializeToString()
        nbytes = len(header_bytes) + payload.nbytes
        if nbytes > self.max_queue_bytes:
            raise ValueError(f"layer {layer}: a batch of {nbytes / 2**20:.1f} MiB can never fit the "
                             f"{self.max_queue_bytes / 2**20:.1f} MiB queue; send fewer images at once or raise max_queue_mb")
        return self._enqueue([header_bytes, payload], nbytes)

    def _enqueue(self, frames, nbytes):
        state = self._state
        with state.condition:
            def has_room():
                return state.error is not None or state.queued_bytes + nbytes <= self.max_queue_bytes

            if not has_room() and self.on_full == "block":
                state.condition.wait_for(has_room, timeout=self.block_timeout)
            if state.error is not None:
                raise RuntimeError(f"hndd client: sending to {self.endpoint} failed: {state.error}")
            if not has_room():
                state.dropped_batches += 1
                state.dropped_bytes += nbytes
                self._warn_full()
                return False
            state.queue.append((frames, nbytes))
            state.queued_bytes += nbytes
            state.condition.notify_all()
        return True

    def _warn_full(self):
        if self._warned_full:
            return
        self._warned_full = True
        message = (f"hndd client: the send queue ({self.max_queue_bytes / 2**20:.0f} MiB) is full, dropping batches: "
                   f"the daemon at {self.endpoint} is not running or not keeping up (see Client.stats)")
        logger.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)

    # -- lifecycle ---------------------------------------------------------------------------------

    def flush(self, timeout=None):
        """Waits until every queued batch is handed to ZeroMQ. Returns False on timeout."""
        state = self._state
        with state.condition:
            drained = state.condition.wait_for(lambda: state.drained() or state.error is not None, timeout)
            if state.error is not None:
                raise RuntimeError(f"hndd client: sending to {self.endpoint} failed: {state.error}")
            return drained

    def close(self, timeout=10.0):
        """Sends what is pending (waiting up to `timeout` s in all), then stops. Batches still
        pending after that are dropped and counted."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        self._state.shut_down(timeout)
        stats = self.stats
        if stats.dropped_batches:
            logger.warning("hndd client: %d batches (%.1f MiB) were dropped in all", stats.dropped_batches,
                           stats.dropped_bytes / 2**20)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def stats(self) -> ClientStats:
        state = self._state
        with state.condition:
            return ClientStats(
                sent_batches=state.sent_batches, sent_bytes=state.sent_bytes,
                dropped_batches=state.dropped_batches, dropped_bytes=state.dropped_bytes,
                queued_batches=len(state.queue), queued_bytes=state.queued_bytes)

    def _check_usable(self):
        if self._closed:
            raise RuntimeError("hndd client: send after close()")
        if self._state.error is not None:
            raise RuntimeError(f"hndd client: sending to {self.endpoint} failed: {self._state.error}")


# -- conversions -------------------------------------------------------------------------------------


def _image_ids(image_ids):
    ids, _ = _as_numpy(image_ids)
    if ids.ndim != 1:
        raise ValueError(f"image_ids must be one-dimensional, got shape {ids.shape}")
    if len(ids) == 0:
        raise ValueError("image_ids is empty: a batch has at least one image")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"image_ids must be integers (dictionary rows), not {ids.dtype}")
    if ids.dtype.kind == "u" and ids.max() >= 2**63:
        raise ValueError("image_ids must be below 2**63")
    if ids.min() < 0:
        raise ValueError(f"image_ids must be dictionary rows (>= 0), found {int(ids.min())}")
    return ids.astype(np.int64, copy=False)


def _as_numpy(obj):
    """(numpy view of `obj`, dtype name) without importing torch; bfloat16 comes back as its
    uint16 bit patterns with the name "bfloat16"."""
    if _is_torch_tensor(obj):
        tensor = obj.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        torch = sys.modules[type(obj).__module__.split(".")[0]]
        if tensor.dtype == torch.bfloat16:
            return tensor.contiguous().view(torch.int16).numpy().view(np.uint16), "bfloat16"
        array = tensor.numpy()
    elif isinstance(obj, np.ndarray):
        array = obj
    elif hasattr(obj, "__array__"):
        array = np.asarray(obj)
    elif hasattr(obj, "__dlpack__"):
        try:
            array = np.from_dlpack(obj)
        except (BufferError, RuntimeError, TypeError) as error:
            raise TypeError(f"cannot read a {type(obj).__name__} through DLPack on the CPU: {error}") from error
    elif isinstance(obj, (list, tuple)):
        array = np.asarray(obj)
    else:
        raise TypeError(f"expected a numpy array, a torch tensor, or an object with __array__ or __dlpack__, "
                        f"not {type(obj).__name__}")
    if array.dtype.name == "bfloat16":  # ml_dtypes / jax bfloat16 arrays
        return array.view(np.uint16), "bfloat16"
    if array.dtype.kind not in "fiu" or array.dtype.itemsize > 8:
        raise TypeError(f"activations must be real numbers, not {array.dtype}")
    return array, array.dtype.name


def _is_torch_tensor(obj):
    module = type(obj).__module__
    return module.split(".")[0] == "torch" and hasattr(obj, "detach") and hasattr(obj, "numpy")


def _encode(values, source_dtype, wire_dtype):
    """A fresh C-contiguous little-endian array of `values` in `wire_dtype` (never a view of the
    caller's memory: the caller may overwrite its tensor as soon as send returns)."""
    if source_dtype == "bfloat16":
        if wire_dtype == "bfloat16":
            return np.array(values, dtype="<u2", order="C", copy=True)
        values = (values.astype(np.uint32) << 16).view(np.float32)
    if wire_dtype == "float32":
        return np.array(values, dtype="<f4", order="C", copy=True)
    if wire_dtype == "float16":
        with np.errstate(over="ignore"):  # beyond ±65504 becomes ±inf, as in torch's .half()
            return np.array(values, dtype="<f2", order="C", copy=True)
    return bfloat16_bits(values)


def bfloat16_bits(values):
    """bfloat16 bit patterns (little-endian uint16) of `values`, rounded to nearest even as
    PyTorch does; NaN stays NaN. float64 input is first rounded to float32."""
    as_float32 = np.ascontiguousarray(values, dtype=np.float32)
    bits = as_float32.view(np.uint32)
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1)))) >> 16
    nan = np.isnan(as_float32)
    if nan.any():
        rounded = np.where(nan, (bits >> 16) | np.uint32(0x0040), rounded)
    return rounded.astype("<u2")
