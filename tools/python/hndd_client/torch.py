"""PyTorch integration: dissect a model live while it trains.

    from hndd_client import Client
    from hndd_client.torch import watch

    client = Client(run_dir="hndd-run", run="exp1")
    watcher = watch(model, layers=["layer3.1.conv1", "layer4.1.conv1"], dictionary="D.h5",
                    every=100, client=client, preprocess=normalise)
    for step, (x, y) in enumerate(loader):
        ...  # forward, backward, optimizer.step()
        watcher.step(step)          # every 100 steps: one probe pass of the dictionary
    watcher.close()

A probe pass runs every dictionary image through the model under ``torch.no_grad()`` with every
module in eval mode, captures the named layers (names as in ``model.named_modules()``) with
forward hooks of its own, and hands the activations to the client, which sends them from a
background thread. Afterwards each module gets back its own training flag (so a BatchNorm the
user froze stays frozen) and only the watcher's hooks are removed.

Training never waits on hndd: the client's queue is bounded in bytes and its sender runs in the
background. A pass is skipped (counted, logged) when it could not be queued whole within that
bound (the daemon is slow), or while a whole earlier pass still waits and the daemon has taken
nothing for ``stall_seconds`` (it is gone): so memory stays bounded, no compute goes into passes
that cannot be delivered, and the daemon only gets whole passes. The cost of the passes
themselves is measured (``Watcher.stats``); choose ``every`` so that it stays small.

Data-parallel training: when a ``torch.distributed`` process group is initialised, each rank
probes only its share of the images (``Probe.share``: every world-size-th id from its rank) and
sends it with its own client (on another host: ``Client(endpoint="tcp://...", key=...)``); the
daemon completes the pass when every share has arrived.

`Probe` is the by-hand half: it yields ``(image_ids, images)`` batches of the dictionary's
``/images/pixels`` for loops of your own.
"""
from __future__ import annotations

import difflib
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import h5py
import numpy as np
import torch

logger = logging.getLogger("hndd_client")

#: Preprocessed probe images are kept in memory up to this size, so a pass does not redo them.
DEFAULT_CACHE_MB = 512

WIRE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ProbeError(ValueError):
    """A dictionary that cannot be probed, or a bad probe option; the message says what and where."""


class Probe:
    """The probe images of a Face Dictionary (its ``/images/pixels``), in batches.

    Iterating yields ``(image_ids, images)``: ``image_ids`` an int64 tensor of dictionary rows,
    ``images`` the output of ``preprocess`` applied to a float32 tensor [B, 3, H, W] with values in
    [0, 1] (the batched form of torchvision's ``ToTensor``). ``preprocess`` may resize and
    normalise (e.g. ``torchvision.transforms.Normalize(mean, std)``); by default images pass as
    they are. Preprocessed batches are cached in memory when they fit in ``cache_mb``, so later
    passes only run the model; ``preprocess`` should therefore be deterministic (no augmentation).

    Args:
        dictionary: path of a docs/1-dictionary.md dictionary file with ``/images/pixels``.
        batch_size: images per batch.
        preprocess: callable on a [B, 3, H, W] float tensor, returning the model's input batch.
        device: where the batches are put (e.g. "cuda"); default: CPU.
        image_ids: a subset of dictionary rows to probe (default: all, in order).
        cache_mb: largest memory for cached batches; 0 disables the cache.
    """

    def __init__(self, dictionary, batch_size: int = 64, preprocess: Optional[Callable] = None,
                 device=None, image_ids: Optional[Sequence[int]] = None, cache_mb: float = DEFAULT_CACHE_MB):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ProbeError(f"batch_size must be a positive integer, not {batch_size!r}")
        if preprocess is not None and not callable(preprocess):
            raise ProbeError(f"preprocess must be callable (a function or transform), not {type(preprocess).__name__}")
        self.path = os.fspath(dictionary)
        self.batch_size = batch_size
        self.preprocess = preprocess
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.cache_bytes = int(cache_mb * 2**20)
        self._pixels = _read_pixels(self.path)
        total = self._pixels.shape[0]
        if image_ids is None:
            self.image_ids = np.arange(total, dtype=np.int64)
        else:
            self.image_ids = np.asarray(image_ids, dtype=np.int64).reshape(-1)
            if len(self.image_ids) == 0:
                raise ProbeError(f"{self.path}: image_ids is empty")
            outside = self.image_ids[(self.image_ids < 0) | (self.image_ids >= total)]
            if len(outside):
                raise ProbeError(f"{self.path}: image id {int(outside[0])} is not a row of /images/pixels "
                                 f"(0..{total - 1})")
        self._cache: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None
        self._cache_failed = False

    def share(self, rank: int, world_size: int) -> "Probe":
        """The probe of rank ``rank`` of ``world_size``: every ``world_size``-th image id from the
        ``rank``-th, same batches and preprocessing (the pixels are shared, not copied). The shares
        of ranks 0..world_size-1 cover the ids once."""
        if not 0 <= rank < world_size:
            raise ProbeError(f"rank {rank} is not in 0..{world_size - 1} (world size {world_size})")
        ids = self.image_ids[rank::world_size]
        if len(ids) == 0:
            raise ProbeError(f"{self.path}: rank {rank} of {world_size} gets no image of the "
                             f"{len(self.image_ids)} probed: use fewer ranks than images")
        shared = object.__new__(Probe)
        shared.__dict__.update(self.__dict__, image_ids=ids, _cache=None, _cache_failed=False)
        return shared

    @property
    def images_total(self) -> int:
        """Rows of the dictionary (what the daemon counts a complete pass against)."""
        return int(self._pixels.shape[0])

    def __len__(self) -> int:
        """Number of batches."""
        return math.ceil(len(self.image_ids) / self.batch_size)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        if self._cache is not None:
            for ids, images in self._cache:
                yield ids, images
            return
        built: List[Tuple[torch.Tensor, torch.Tensor]] = []
        built_bytes = 0
        caching = self.cache_bytes > 0 and not self._cache_failed
        for start in range(0, len(self.image_ids), self.batch_size):
            ids = torch.from_numpy(self.image_ids[start:start + self.batch_size].copy())
            images = self._batch(ids.numpy())
            if caching:
                built_bytes += images.element_size() * images.nelement()
                if built_bytes > self.cache_bytes:
                    caching, built, self._cache_failed = False, [], True
                else:
                    built.append((ids, images))
            yield ids, images
        if caching:
            self._cache = built

    def _batch(self, ids: np.ndarray) -> torch.Tensor:
        pixels = self._pixels[ids]  # [B, H, W, 3] uint8
        images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        if self.preprocess is not None:
            images = self.preprocess(images)
            if not isinstance(images, torch.Tensor):
                raise ProbeError(f"preprocess returned a {type(images).__name__}, not a tensor")
            if images.shape[0] != len(ids):
                raise ProbeError(f"preprocess turned a batch of {len(ids)} images into {images.shape[0]}")
        return images.to(self.device)


def _read_pixels(path: str) -> np.ndarray:
    """The dictionary's /images/pixels [N, H, W, 3] uint8, read once."""
    if not os.path.isfile(path):
        raise ProbeError(f"dictionary {path!r} does not exist")
    try:
        with h5py.File(path, "r") as file:
            if file.attrs.get("format") != "hndd-dictionary":
                raise ProbeError(f"{path} is not a Face Dictionary (attribute format = "
                                 f"{file.attrs.get('format')!r}, expected 'hndd-dictionary')")
            if "images/pixels" not in file:
                raise ProbeError(f"{path} has no /images/pixels: a probe needs the dictionary's images "
                                 f"(build the dictionary with its images)")
            dataset = file["images/pixels"]
            if dataset.ndim != 4 or dataset.shape[3] != 3 or dataset.dtype != np.uint8:
                raise ProbeError(f"{path}: /images/pixels must be [N, H, W, 3] uint8, found {dataset.shape} "
                                 f"{dataset.dtype}")
            if dataset.shape[0] == 0:
                raise ProbeError(f"{path}: /images/pixels holds no images")
            return dataset[()]
    except OSError as error:
        raise ProbeError(f"cannot read dictionary {path}: {error}") from error


@dataclass(frozen=True)
class WatchStats:
    """What a Watcher did. Seconds are wall-clock time spent inside probe passes (model forward,
    copies, handing batches to the client), i.e. time the training loop was not training."""

    passes_run: int
    passes_skipped: int
    probe_seconds: float
    last_pass_seconds: float
    last_pass_bytes: int
    sent_batches: int
    dropped_batches: int
    queued_bytes: int


class Watcher:
    """Returned by `watch`: call ``step(step)`` after each training step, ``close()`` at the end."""

    def __init__(self, model: torch.nn.Module, layers: Sequence[str], probe: Probe, every: int, client,
                 dtype: Optional[str], own_client: bool, stop_early: bool, stall_seconds: float):
        self.model = model
        self.layers = list(layers)
        self.probe = probe
        self.every = every
        self.client = client
        self.dtype = WIRE_DTYPES[dtype] if dtype is not None else None
        self.stop_early = stop_early
        self.stall_seconds = stall_seconds
        self._own_client = own_client
        self._modules = _resolve_layers(model, self.layers)
        self._last_step: Optional[int] = None
        self._passes_run = 0
        self._passes_skipped = 0
        self._probe_seconds = 0.0
        self._last_pass_seconds = 0.0
        self._last_pass_bytes = 0
        self._sent_after_pass = 0
        self._time_after_pass = 0.0
        self._warned = set()
        self._optimizer_hook = None
        self._optimizer_steps = 0
        self._closed = False

    # -- driving ---------------------------------------------------------------------------------

    def step(self, step: int) -> bool:
        """Runs a probe pass when ``step`` is a multiple of ``every`` (step 0 included, so calling
        ``step(0)`` before training records the untrained model). Returns True if a pass ran."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step must be an integer, not {step!r}")
        if step % self.every != 0 or step == self._last_step:
            return False
        return self.probe_now(int(step))

    def attach(self, optimizer: torch.optim.Optimizer, start: int = 0) -> "Watcher":
        """Counts ``optimizer.step()`` calls (from ``start``) and calls ``step`` after each, so the
        training loop needs no change. Detached by ``close``."""
        if self._optimizer_hook is not None:
            raise RuntimeError("this watcher is already attached to an optimizer")
        self._optimizer_steps = int(start)

        def after_optimizer_step(optimizer, args, kwargs):
            self._optimizer_steps += 1
            self.step(self._optimizer_steps)

        self._optimizer_hook = optimizer.register_step_post_hook(after_optimizer_step)
        return self

    def probe_now(self, step: int) -> bool:
        """Runs one probe pass labelled ``step`` now, unless the client's queue cannot take it
        (then the pass is skipped, counted and logged). Returns True if the pass ran."""
        if self._closed:
            raise RuntimeError("hndd watch: probe after close()")
        self._last_step = step
        if not self._queue_has_room():
            self._skip(step)
            return False
        started = time.perf_counter()
        self._last_pass_bytes = self._run_pass(step)
        self._last_pass_seconds = time.perf_counter() - started
        self._sent_after_pass = self.client.stats.sent_batches
        self._time_after_pass = time.monotonic()
        self._probe_seconds += self._last_pass_seconds
        self._passes_run += 1
        return True

    # -- the pass --------------------------------------------------------------------------------

    def _run_pass(self, step: int) -> int:
        captured: Dict[str, torch.Tensor] = {}
        wanted = len(self._modules)

        def capture(name):
            def hook(module, inputs, output):
                # Converted (so copied) at once: a later in-place op, such as ResNet's
                # ReLU(inplace=True), must not change what is sent.
                wire = self._wire_tensor(name, step, _as_nchw(name, output))
                captured[name] = wire.clone() if wire.data_ptr() == output.data_ptr() else wire
                if self.stop_early and len(captured) == wanted:
                    raise _AllLayersCaptured()
            return hook

        training_flags = [(module, module.training) for module in self.model.modules()]
        handles = [module.register_forward_hook(capture(name)) for name, module in self._modules.items()]
        sent_bytes = 0
        try:
            self.model.eval()
            with torch.no_grad():
                for ids, images in self.probe:
                    captured.clear()
                    try:
                        self.model(images)
                    except _AllLayersCaptured:
                        pass
                    for name in self._modules:
                        if name not in captured:
                            raise RuntimeError(f"hndd watch: layer {name} did not run during the probe forward "
                                               f"pass (is it used in model.forward?)")
                        activations = captured[name].cpu()
                        sent_bytes += activations.element_size() * activations.nelement()
                        self.client.send(name, step, ids, activations)
        finally:
            for handle in handles:
                handle.remove()
            for module, flag in training_flags:
                module.training = flag
        return sent_bytes

    def _wire_tensor(self, name: str, step: int, activations: torch.Tensor) -> torch.Tensor:
        """`activations` cast to the wire dtype; a batch the cast would overflow (float16 ends at
        ±65504) goes as float32 instead, since hndd rejects batches holding ±inf."""
        if self.dtype is None or activations.dtype == self.dtype:
            cast = activations
        else:
            cast = activations.to(self.dtype)
        if bool(torch.isfinite(cast).all()):
            return cast
        if bool(torch.isfinite(activations).all()):
            self._warn_once("overflow", f"hndd watch: layer {name} at step {step} has activations beyond the range "
                                        f"of {self.dtype}; such batches are sent as float32")
            return activations.float()
        self._warn_once("non-finite", f"hndd watch: layer {name} at step {step} has NaN or infinite activations "
                                      f"(is training diverging?); hndd rejects such batches")
        return cast

    def _warn_once(self, kind: str, message: str) -> None:
        if kind in self._warned:
            logger.info(message)
        else:
            self._warned.add(kind)
            logger.warning(message)

    def _queue_has_room(self) -> bool:
        """False when the next pass could not be queued whole within the client's bound, or when
        a whole earlier pass is still waiting and the daemon has taken no batch for
        ``stall_seconds`` (it is gone or stuck: another pass would only be computed to wait)."""
        if self._passes_run == 0:
            return True
        stats = self.client.stats
        limit = getattr(self.client, "max_queue_bytes", None)
        if limit is not None and stats.queued_bytes + self._last_pass_bytes > limit:
            return False
        stalled = (stats.sent_batches == self._sent_after_pass
                   and time.monotonic() - self._time_after_pass >= self.stall_seconds)
        return not (stalled and stats.queued_bytes >= self._last_pass_bytes)

    def _skip(self, step: int) -> None:
        self._passes_skipped += 1
        queued = self.client.stats.queued_bytes
        message = (f"hndd watch: skipping the probe pass of step {step}: {_size(queued)} from earlier "
                   f"passes are still waiting to be sent (the daemon at {getattr(self.client, 'endpoint', '?')} "
                   f"is slow or not running)")
        self._warn_once("skip", message)

    # -- reporting and lifecycle -----------------------------------------------------------------

    @property
    def stats(self) -> WatchStats:
        client_stats = self.client.stats
        return WatchStats(passes_run=self._passes_run, passes_skipped=self._passes_skipped,
                          probe_seconds=self._probe_seconds, last_pass_seconds=self._last_pass_seconds,
                          last_pass_bytes=self._last_pass_bytes, sent_batches=client_stats.sent_batches,
                          dropped_batches=client_stats.dropped_batches, queued_bytes=client_stats.queued_bytes)

    def close(self, timeout: float = 10.0) -> None:
        """Detaches from the optimizer; closes the client if `watch` made it (sending what is
        queued, for up to ``timeout`` s)."""
        if self._closed:
            return
        self._closed = True
        if self._optimizer_hook is not None:
            self._optimizer_hook.remove()
            self._optimizer_hook = None
        if self._own_client:
            self.client.close(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class _AllLayersCaptured(Exception):
    """Raised by the last capturing hook to skip the rest of a probe forward pass."""


def watch(model: torch.nn.Module, layers: Sequence[str], dictionary, every: int, client=None, *,
          run_dir=None, run: str = "run", batch_size: int = 64, preprocess: Optional[Callable] = None,
          dtype: Optional[str] = "float16", device=None, probe: Optional[Probe] = None,
          stop_early: bool = True, stall_seconds: float = 5.0, split_by_rank: bool = True) -> Watcher:
    """Dissects ``layers`` of ``model`` every ``every`` training steps (see the module doc).

    Args:
        model: the model being trained.
        layers: module names as in ``model.named_modules()``, e.g. ``["layer4.1.conv1"]``.
        dictionary: the Face Dictionary file the daemon serves (with ``/images/pixels``).
        every: training steps between probe passes.
        client: a `hndd_client.Client`; or give ``run_dir`` (and ``run``) and one is made (and
            closed by ``Watcher.close``).
        batch_size, preprocess, device: of the `Probe` (ignored when ``probe`` is given); the
            device defaults to the model's.
        dtype: activations are cast to this before sending ("float16" halves the bytes; None
            sends them as the model makes them). A client made with ``dtype=None`` keeps it.
        stop_early: end each probe forward pass once every watched layer has run, skipping the
            layers after them (the model's later modules and their hooks do not run).
        stall_seconds: a pass is skipped while a whole earlier pass still waits in the client and
            the daemon has taken nothing for this long (it is gone or stuck).
        split_by_rank: when a ``torch.distributed`` process group is initialised, probe only this
            rank's share of the images (every ``world_size``-th one from ``rank``), so the ranks
            together send each image once and the daemon completes one pass from all of them.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive number of steps, not {every!r}")
    if isinstance(layers, str):
        layers = [layers]
    if not layers:
        raise ValueError("layers is empty: name at least one module to watch")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers lists a module twice: {list(layers)}")
    if dtype is not None and dtype not in WIRE_DTYPES:
        raise ValueError(f"dtype must be None or one of {sorted(WIRE_DTYPES)}, not {dtype!r}")
    _resolve_layers(model, layers)  # fail before making a client
    share = _distributed_share() if split_by_rank else None
    if probe is None:
        if device is None:  # where the model is
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
        probe = Probe(dictionary, batch_size=batch_size, preprocess=preprocess, device=device)
    if share is not None:
        probe = probe.share(*share)
    own_client = client is None
    if own_client:
        if run_dir is None:
            raise ValueError("give a client, or run_dir (the daemon's run directory) to make one")
        from .client import Client
        client = Client(run_dir=run_dir, run=run, rank=share[0] if share else None)
    elif run_dir is not None:
        raise ValueError("give either a client or run_dir, not both")
    if not stall_seconds >= 0:
        raise ValueError(f"stall_seconds must be a non-negative number of seconds, not {stall_seconds!r}")
    return Watcher(model, layers, probe, every, client, dtype, own_client, stop_early, float(stall_seconds))


def _distributed_share() -> Optional[Tuple[int, int]]:
    """(rank, world size) of the initialised default process group, else None (one process)."""
    distributed = getattr(torch, "distributed", None)
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return None
    return distributed.get_rank(), distributed.get_world_size()


def _resolve_layers(model: torch.nn.Module, layers: Sequence[str]) -> Dict[str, torch.nn.Module]:
    modules = dict(model.named_modules())
    resolved = {}
    for name in layers:
        if name not in modules or name == "":
            near = difflib.get_close_matches(name, [n for n in modules if n], n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(f"model {type(model).__name__} has no module named {name!r} "
                             f"(names as in model.named_modules()){hint}")
        resolved[name] = modules[name]
    return resolved


def _as_nchw(name: str, output) -> torch.Tensor:
    """A layer's output as N x C x h x w: linear outputs [N, C] become [N, C, 1, 1]."""
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"hndd watch: layer {name} returns a {type(output).__name__}, not a tensor; "
                        f"watch a submodule that returns one")
    if output.ndim == 2:
        return output[:, :, None, None]
    if output.ndim != 4:
        raise ValueError(f"hndd watch: layer {name} returns shape {tuple(output.shape)}; "
                         f"only N x C x h x w (or N x C) outputs can be dissected")
    return output


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.0f} KiB"
