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

A daemon on another host listens on tcp:// with CURVE: give the credential `hndd keys client`
made, `Client(endpoint="tcp://host:5555", key="gpu1.secret")`. Several daemons: `Client(cluster=
"cluster.json")` sends each layer to the daemon(s) serving it (`hndd_client.cluster`), with one
sender thread and queue per daemon; a daemon that stops taking batches is reported and skipped
while the others keep theirs.
"""
from __future__ import annotations

import logging
import numbers
import os
import socket
import sys
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Dict

import numpy as np
import zmq

from .cluster import load_cluster
from .curve import check_curve_available, load_credential
from .sender import SEND_HIGH_WATER_MARK, SenderState  # noqa: F401  (SEND_HIGH_WATER_MARK re-exported)
from .wire import DTYPES, PROTOCOL_VERSION, Endpoints, check_endpoint, hndd_pb2

logger = logging.getLogger("hndd_client")

@dataclass(frozen=True)
class ClientStats:
    """Counters of a Client (summed over its daemons; `Client.daemon_stats` has each one's).
    "sent" means handed to ZeroMQ (at most SEND_HIGH_WATER_MARK batches may still be in flight to
    the daemon); bytes count header and tensor. `unreachable_batches` were dropped because their
    daemon took nothing for `unreachable_after` s; `auth_refusals` counts the daemon refusing the
    credential (or its absence); `credential_warnings`, credential files others may read."""

    sent_batches: int = 0
    sent_bytes: int = 0
    dropped_batches: int = 0
    dropped_bytes: int = 0
    queued_batches: int = 0
    queued_bytes: int = 0
    unreachable_batches: int = 0
    auth_refusals: int = 0
    credential_warnings: int = 0


class Client:
    """Sends activation batches to an hndd daemon, or to the daemons of a cluster.

    Args:
        run_dir: the daemon's run directory (uses its ipc:// ingest socket, or what its
            endpoints.json records); or
        endpoint: an explicit ingest endpoint, e.g. "tcp://gpu-box:5555"; or
        cluster: a cluster file (`hndd_client.cluster`): each batch goes to the daemon(s) serving
            its layer, split by image for a layer split over shards.
        key: a CURVE credential file (`hndd keys client`) for a daemon on TCP (with run_dir or
            endpoint; a cluster file names one per daemon).
        run: the training run's name; (run, layer, step) names a probe pass.
        max_queue_mb: bound of the send queue of each daemon, in MiB.
        on_full: "drop" (count and warn once) or "block" (wait up to `block_timeout` s, then drop).
        dtype: None keeps float16/bfloat16 inputs and sends everything else as float32;
            "float32", "float16" or "bfloat16" converts (round to nearest even).
        block_timeout: seconds `send` may wait for queue space when on_full="block".
        rank: this process's data-parallel rank, sent along for the daemon's logs.
        unreachable_after: a daemon that has taken nothing for this many seconds while a batch
            waits is unreachable: its batches are dropped at once (counted, logged) and the other
            daemons keep getting theirs. Default: 5 s with a cluster, never otherwise.
    """

    def __init__(self, run_dir=None, endpoint=None, run="run", max_queue_mb=256, on_full="drop", dtype=None,
                 block_timeout=10.0, rank=None, key=None, cluster=None, unreachable_after=None):
        if sum(x is not None for x in (run_dir, endpoint, cluster)) != 1:
            raise ValueError("give exactly one of run_dir (the daemon's run directory), endpoint or cluster")
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
        if cluster is not None and key is not None:
            raise ValueError("a cluster file names each daemon's credential ('key'); do not give key= as well")
        self.run = run
        self.on_full = on_full
        self.dtype = dtype
        self.block_timeout = float(block_timeout)
        self.rank = rank
        self.max_queue_bytes = int(max_queue_mb * 1024 * 1024)
        self._sender_name = f"{socket.gethostname()}:{os.getpid()}"
        self._warned_full = False
        self._closed = False
        self.cluster = None if cluster is None else load_cluster(cluster)
        if unreachable_after is None and self.cluster is not None:
            unreachable_after = DEFAULT_UNREACHABLE_AFTER
        self._senders = self._make_senders(run_dir, endpoint, key, unreachable_after)
        #: The ingest endpoint (the first daemon's, with a cluster).
        self.endpoint = next(iter(self._senders.values())).endpoint
        for sender in self._senders.values():
            sender.start()
        # At interpreter exit (or if the client is collected unclosed), deliver what is pending briefly.
        self._finalizer = weakref.finalize(self, _shut_down_all, list(self._senders.values()), 5.0)

    def _make_senders(self, run_dir, endpoint, key, unreachable_after) -> Dict[str, SenderState]:
        if self.cluster is None:
            credential = _credential(key)
            ingest = check_endpoint(Endpoints.from_run_dir(run_dir).ingest if endpoint is None else endpoint)
            return {"": SenderState(ingest, self.max_queue_bytes, credential, unreachable_after=unreachable_after)}
        return {daemon.name: SenderState(check_endpoint(daemon.endpoints.ingest), self.max_queue_bytes,
                                         _credential(daemon.key), name=daemon.name, unreachable_after=unreachable_after)
                for daemon in self.cluster.daemons}

    # -- sending -----------------------------------------------------------------------------------

    def send(self, layer, step, image_ids, array):
        """Queues one batch: `array` is N x C x h x w for the N dictionary rows `image_ids`.

        Returns True when queued (to every daemon it goes to), False when any part was dropped
        because a queue stayed full or its daemon is unreachable. Raises ValueError/TypeError for
        bad input (a layer no daemon of the cluster serves, too) and RuntimeError after close or a
        sender failure.
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
        queued = True
        for sender, mask in self._route(layer, ids):
            part_ids, part = (ids, values) if mask is None else (ids[mask], values[mask])
            frames, nbytes = self._frames(layer, int(step), part_ids, _encode(part, source_dtype, wire_dtype), wire_dtype)
            queued = self._enqueue(sender, frames, nbytes) and queued
        return queued

    def _route(self, layer, ids):
        if self.cluster is None:
            return [(self._senders[""], None)]
        return [(self._senders[daemon.name], mask) for daemon, mask in self.cluster.route(layer, ids)]

    def _frames(self, layer, step, ids, payload, wire_dtype):
        count, units, height, width = payload.shape
        header = hndd_pb2.BatchHeader(
            protocol_version=PROTOCOL_VERSION, run=self.run, layer=layer, step=step,
            dtype=DTYPES[wire_dtype][0], units=units, height=height, width=width, sender=self._sender_name)
        header.image_ids.extend(ids.tolist())
        if self.rank is not None:
            header.rank = int(self.rank)
        header_bytes = header.SerializeToString()
        nbytes = len(header_bytes) + payload.nbytes
        if nbytes > self.max_queue_bytes:
            raise ValueError(f"layer {layer}: a batch of {nbytes / 2**20:.1f} MiB can never fit the "
                             f"{self.max_queue_bytes / 2**20:.1f} MiB queue; send fewer images at once or raise max_queue_mb")
        return [header_bytes, payload], nbytes

    def _enqueue(self, state, frames, nbytes):
        with state.condition:
            def has_room():
                return state.error is not None or state.queued_bytes + nbytes <= self.max_queue_bytes

            if state.is_unreachable():
                state.note_unreachable_drop(nbytes)
                return False
            if not has_room() and self.on_full == "block":
                state.condition.wait_for(lambda: has_room() or state.is_unreachable(), timeout=self.block_timeout)
            if state.error is not None:
                raise RuntimeError(f"hndd client: sending to {state.endpoint} failed: {state.error}")
            if not has_room() or state.is_unreachable():
                state.dropped_batches += 1
                state.dropped_bytes += nbytes
                self._warn_full(state)
                return False
            state.queue.append((frames, nbytes))
            state.queued_bytes += nbytes
            state.condition.notify_all()
        return True

    def _warn_full(self, state):
        if self._warned_full:
            return
        self._warned_full = True
        message = (f"hndd client: the send queue ({self.max_queue_bytes / 2**20:.0f} MiB) is full, dropping batches: "
                   f"the daemon at {state.endpoint} is not running or not keeping up (see Client.stats)")
        logger.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=5)

    # -- lifecycle ---------------------------------------------------------------------------------

    def flush(self, timeout=None):
        """Waits until every queued batch is handed to ZeroMQ (or, with a cluster, dropped for an
        unreachable daemon). Returns False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for state in self._senders.values():
            with state.condition:
                # Long enough to tell an unreachable daemon (then given up) from a slow one.
                until = deadline if deadline is None or state.unreachable_after is None else \
                    max(deadline, time.monotonic() + state.unreachable_after)
                while not (state.drained() or state.error is not None or state.is_unreachable()):
                    left = None if until is None else until - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    # Unreachability comes with time, not with a notification: look again soon.
                    state.condition.wait(FLUSH_POLL_SECONDS if left is None else min(FLUSH_POLL_SECONDS, left))
                if state.error is not None:
                    raise RuntimeError(f"hndd client: sending to {state.endpoint} failed: {state.error}")
                if state.is_unreachable():
                    state.give_up_waiting()
                elif not state.drained():
                    return False
        return True

    def close(self, timeout=10.0):
        """Sends what is pending (waiting up to `timeout` s in all), then stops. Batches still
        pending after that are dropped and counted."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        _shut_down_all(list(self._senders.values()), timeout)
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
        """The counters summed over every daemon."""
        per_daemon = self.daemon_stats.values()
        return ClientStats(**{field: sum(getattr(s, field) for s in per_daemon) for field in ClientStats.__dataclass_fields__})

    @property
    def daemon_stats(self) -> Dict[str, ClientStats]:
        """The counters of each daemon, by its name in the cluster file ("" without one)."""
        return {name: _stats_of(state) for name, state in self._senders.items()}

    def _check_usable(self):
        if self._closed:
            raise RuntimeError("hndd client: send after close()")
        for state in self._senders.values():
            if state.error is not None:
                raise RuntimeError(f"hndd client: sending to {state.endpoint} failed: {state.error}")


#: A cluster's daemon that takes nothing for this long while a batch waits is unreachable.
DEFAULT_UNREACHABLE_AFTER = 5.0
#: How often `flush` looks whether a daemon has become unreachable.
FLUSH_POLL_SECONDS = 0.1


def _credential(key):
    if key is None:
        return None
    check_curve_available()
    return load_credential(key)


def _stats_of(state: SenderState) -> ClientStats:
    with state.condition:
        return ClientStats(
            sent_batches=state.sent_batches, sent_bytes=state.sent_bytes,
            dropped_batches=state.dropped_batches, dropped_bytes=state.dropped_bytes,
            queued_batches=len(state.queue), queued_bytes=state.queued_bytes,
            unreachable_batches=state.unreachable_batches, auth_refusals=state.auth_refusals,
            credential_warnings=int(state.credential is not None and state.credential.warning is not None))


def _shut_down_all(states, timeout):
    """Stops every sender, sharing `timeout` seconds: each waits for its own batches meanwhile."""
    deadline = time.monotonic() + max(0.0, timeout)
    for state in states:
        with state.condition:
            state.closing = True
            # An unreachable daemon's batches are given up at once: the others' get the time.
            state.abort_at = time.monotonic() if state.is_unreachable() else deadline
            state.condition.notify_all()
    for state in states:
        if state.thread is not None:
            state.thread.join(max(0.0, deadline - time.monotonic()) + 1.0)


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
