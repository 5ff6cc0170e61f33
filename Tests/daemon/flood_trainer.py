"""A trainer that pushes as fast as it can: one layer's activations for STEPS consecutive steps,
through `hndd_client.Client` (on_full="block"). Prints one JSON object on stdout: when it started
and finished sending (after loading the activations; until the last batch was handed to ZeroMQ),
how many bytes it sent, and how long it was held back (blocked in `send` or `flush`).

    python3 flood_trainer.py RUN_DIR ACTIVATIONS LAYER RUN FIRST_STEP STEPS BATCH

RUN_DIR may hold a real daemon or a mere PULL socket at RUN_DIR/ingest.sock (to time the trainer
alone).
"""

from __future__ import annotations

import json
import sys
import time

import h5py

from hndd_client import Client


def main(argv: list[str]) -> int:
    run_dir, activations, layer, run = argv[:4]
    first_step, steps, batch = (int(value) for value in argv[4:7])
    with h5py.File(activations, "r") as file:
        maps = file[f"layers/{layer}/activations"][()]
        image_ids = file[f"layers/{layer}/image_ids"][()]
    client = Client(run_dir=run_dir, run=run, on_full="block", block_timeout=300, max_queue_mb=64)
    started_unix = time.time()
    held_back = 0.0
    for step in range(first_step, first_step + steps):
        for start in range(0, len(image_ids), batch):
            before = time.monotonic()
            if not client.send(layer, step, image_ids[start:start + batch], maps[start:start + batch]):
                print(f"flood_trainer: a batch of step {step} was dropped", file=sys.stderr)
                return 1
            held_back += time.monotonic() - before
    before = time.monotonic()
    if not client.flush(300):
        print("flood_trainer: the daemon did not take the last batches within 300 s", file=sys.stderr)
        return 1
    held_back += time.monotonic() - before
    finished_unix = time.time()
    client.close()
    print(json.dumps({"started_unix": started_unix, "finished_unix": finished_unix, "held_back": held_back,
                      "sent_bytes": client.stats.sent_bytes, "sent_batches": client.stats.sent_batches}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
