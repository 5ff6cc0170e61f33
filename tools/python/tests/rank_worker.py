"""One data-parallel rank of test_torch_ranks.py: joins a gloo process group over tcp://127.0.0.1,
checks the group with an all-reduce, and runs one `watch` probe pass of its share to the daemon's
CURVE ingest endpoint with its own credential.

    python3 rank_worker.py RANK WORLD PORT DICTIONARY ENDPOINT KEY RUN STEP
"""
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from hndd_client import Client
from hndd_client.torch import watch
from test_torch_watch import TinyNet


def main(rank: int, world: int, port: int, dictionary: str, endpoint: str, key: str, run: str, step: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        ones = torch.ones(1)
        dist.all_reduce(ones)
        assert int(ones.item()) == world, f"all_reduce gave {ones.item()}, not {world}"
        with Client(endpoint=endpoint, key=key, run=run, rank=rank, on_full="block") as client:
            watcher = watch(TinyNet(), ["stem", "block.1"], dictionary, every=1, client=client, batch_size=4)
            assert len(watcher.probe.image_ids) > 0 and all(int(i) % world == rank for i in watcher.probe.image_ids)
            assert watcher.step(step)
            assert client.flush(timeout=30), "the daemon did not take this rank's share"
        print(f"rank {rank}: {len(watcher.probe.image_ids)} images sent", flush=True)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    r, w, p, d, e, k, run, s = sys.argv[1:]
    main(int(r), int(w), int(p), d, e, k, run, int(s))
