"""hndd_client: the trainer side of hndd, the live Hierarchical Network Dissection daemon.

`Client` pushes activation batches to `hndd serve`; `python3 -m hndd_client push` replays an
activations file. Names are loaded on first use, so the other commands (and `import hndd_client`)
need neither ZeroMQ nor protobuf; torch is imported only by `Probe` and `watch`.
"""
import importlib

_EXPORTS = {
    "Client": "hndd_client.client",
    "ClientStats": "hndd_client.client",
    "Endpoints": "hndd_client.wire",
    "PROTOCOL_VERSION": "hndd_client.wire",
    "publish_topic": "hndd_client.wire",
    # PyTorch integration: imports torch only when used.
    "Probe": "hndd_client.torch",
    "watch": "hndd_client.torch",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hndd_client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
