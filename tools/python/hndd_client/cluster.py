"""Cluster files: several daemons, the layers each serves (README § Clusters).

    {"format": "hndd-cluster", "version": 1,
     "daemons": [
       {"name": "a", "ingest": "tcp://gpu-box:5555", "publish": "tcp://gpu-box:5556",
        "control": "tcp://gpu-box:5557", "key": "a.secret", "layers": ["layer3.1.conv1"]},
       {"name": "b1", "run_dir": "/runs/b1", "layers": ["layer4.1.conv1"], "shard": "1/2"},
       {"name": "b2", "run_dir": "/runs/b2", "layers": ["layer4.1.conv1"], "shard": "2/2"}]}

A daemon is reached through its three endpoints, or `run_dir` (the endpoints.json of a daemon on
this machine); `key` is the credential for its CURVE endpoints (relative paths are relative to the
cluster file). A layer served by one daemon goes there whole; a layer served by several is split by
image: each lists a `shard` K/N and receives the images with id mod N == K - 1 (`hndd serve
--shard K/N` holds the same share), and `hndd merge` joins their passes. `hndd` reads the same file
(Sources/HNDDaemon/ClusterFile.swift).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from .jsonfile import read_json_file
from .wire import Endpoints

CLUSTER_FORMAT = "hndd-cluster"


class ClusterError(ValueError):
    """A cluster file that cannot be used; the message names the file and the daemon."""


@dataclass(frozen=True)
class Shard:
    """Image share `index` (from 1) of `count`: ids with id mod count == index - 1."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str, where: str) -> "Shard":
        try:
            k_text, n_text = text.split("/")
            k, n = int(k_text), int(n_text)
        except (ValueError, AttributeError):
            raise ClusterError(f"{where}: shard {text!r}: expected K/N, e.g. 1/2") from None
        if n < 1 or not 1 <= k <= n:
            raise ClusterError(f"{where}: shard {text}: need 1 <= K <= N (K counts from 1)")
        return cls(k, n)

    def holds(self, image_ids: np.ndarray) -> np.ndarray:
        """Which of `image_ids` (int64) are in this share."""
        return image_ids % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class DaemonEntry:
    name: str
    endpoints: Endpoints
    key: Optional[str]
    layers: Tuple[str, ...]
    shard: Optional[Shard]


@dataclass(frozen=True)
class Cluster:
    path: str
    daemons: Tuple[DaemonEntry, ...]

    def serving(self, layer: str) -> List[DaemonEntry]:
        """The daemons that serve `layer`; ValueError naming the file when none does."""
        serving = [d for d in self.daemons if layer in d.layers]
        if not serving:
            known = sorted({name for d in self.daemons for name in d.layers})
            raise ClusterError(f"{self.path}: no daemon serves layer {layer!r} (layers: {', '.join(known)})")
        return serving

    def route(self, layer: str, image_ids: np.ndarray) -> List[Tuple[DaemonEntry, Optional[np.ndarray]]]:
        """Where a batch of `layer` goes: [(daemon, None)] for a whole layer, or for a layer split
        by image [(daemon, mask of its images)] for each shard that gets some."""
        serving = self.serving(layer)
        if len(serving) == 1 and serving[0].shard is None:
            return [(serving[0], None)]
        routes = [(daemon, daemon.shard.holds(image_ids)) for daemon in serving]
        return [(daemon, mask) for daemon, mask in routes if mask.any()]


def load_cluster(path) -> Cluster:
    """Reads and checks a cluster file (see the module doc)."""
    path = os.fspath(path)
    root = read_json_file(path, "cluster file", ClusterError)
    if not isinstance(root, dict) or root.get("format") != CLUSTER_FORMAT or root.get("version") != 1:
        raise ClusterError(f"{path}: expected a JSON object with \"format\": \"{CLUSTER_FORMAT}\" and \"version\": 1")
    entries = root.get("daemons")
    if not isinstance(entries, list) or not entries:
        raise ClusterError(f"{path}: \"daemons\" must be a non-empty list of objects")
    base = os.path.dirname(os.path.abspath(path))
    daemons = tuple(_daemon(entry, f"{path}: daemons[{i}]", base) for i, entry in enumerate(entries))
    names = [d.name for d in daemons]
    for name in names:
        if names.count(name) > 1:
            raise ClusterError(f"{path}: two daemons are named {name}")
    _check_shards(path, daemons)
    return Cluster(path=path, daemons=daemons)


def _daemon(entry, where: str, base: str) -> DaemonEntry:
    if not isinstance(entry, dict):
        raise ClusterError(f"{where}: must be an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ClusterError(f"{where}: \"name\" must be a non-empty string")
    where = f"{where} ({name})"

    def resolve(p):
        return p if os.path.isabs(p) else os.path.join(base, p)

    if isinstance(entry.get("run_dir"), str):
        endpoints = Endpoints.from_run_dir(resolve(entry["run_dir"]))
    elif all(isinstance(entry.get(k), str) for k in ("ingest", "publish", "control")):
        endpoints = Endpoints(ingest=entry["ingest"], publish=entry["publish"], control=entry["control"])
    else:
        raise ClusterError(f"{where}: needs \"run_dir\", or \"ingest\", \"publish\" and \"control\" endpoints")
    layers = entry.get("layers")
    if not isinstance(layers, list) or not layers or not all(isinstance(x, str) and x for x in layers):
        raise ClusterError(f"{where}: \"layers\" must be a non-empty list of layer names")
    shard = Shard.parse(entry["shard"], where) if "shard" in entry else None
    key = entry.get("key")
    if key is not None and not isinstance(key, str):
        raise ClusterError(f"{where}: \"key\" must be the path of a credential file")
    return DaemonEntry(name=name, endpoints=endpoints, key=resolve(key) if key else None, layers=tuple(layers), shard=shard)


def _check_shards(path: str, daemons) -> None:
    """A layer on one daemon has no shard (or 1/1); on several, shards 1..N of one N."""
    layers: Dict[str, List[DaemonEntry]] = {}
    for daemon in daemons:
        for layer in daemon.layers:
            layers.setdefault(layer, []).append(daemon)
    for layer, serving in sorted(layers.items()):
        n = len(serving)
        if n == 1 and (serving[0].shard is None or serving[0].shard.count == 1):
            continue
        shards = [d.shard for d in serving]
        if any(s is None or s.count != n for s in shards) or sorted(s.index for s in shards) != list(range(1, n + 1)):
            found = ", ".join(f"{d.name} {d.shard or 'no shard'}" for d in serving)
            raise ClusterError(f"{path}: layer {layer} is served by {n} daemons: a layer split by image needs one daemon "
                               f"per shard 1/{n} .. {n}/{n} (found: {found})")
