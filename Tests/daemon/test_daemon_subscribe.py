"""A subscriber that joins late (`hndd subscribe --once --json` after a pass finished, or while a
pass waits for its second half) prints the current state at once; the partial state is docs/3-numbers.md
applied to the images received so far."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import zmq
from hndd_client.push import select_rows

from daemon_harness import LAYER, complete_row, control_request, hndd_pb2, hnd_reference

RUN = "late"
#: `subscribe --once` waits this long for a publication when the daemon has no current state; a
#: late subscriber must answer well before it.
SUBSCRIBE_TIMEOUT = 20


def subscribe_once(hndd_binary, run_dir) -> tuple[dict, float]:
    started = time.monotonic()
    result = subprocess.run([str(hndd_binary), "subscribe", "--layer", LAYER, "--run-dir", str(run_dir), "--once",
                             "--json", "--timeout", str(SUBSCRIBE_TIMEOUT)],
                            capture_output=True, text=True, timeout=SUBSCRIBE_TIMEOUT + 30)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"hndd subscribe --once failed: {result.stderr}"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"--once prints exactly one JSON line, got {lines}"
    return json.loads(lines[0]), elapsed


def interpretable_units(row) -> int:
    return int(((np.asarray(row["global_biased"]) != 0).any(axis=1) | (np.asarray(row["local_paired"]) != 0).any(axis=1)).sum())


def snapshot_as_row(snapshot: "hndd_pb2.Snapshot") -> dict:
    """A control-endpoint Snapshot in the shape of a docs/4-snapshots.md row."""
    units, subgroups, concepts = snapshot.units, len(snapshot.taxonomy.subgroups), len(snapshot.taxonomy.concepts)
    return {
        "images_seen": snapshot.images_seen, "images_total": snapshot.images_total,
        "threshold": np.array(snapshot.threshold, np.float32),
        "global_prob": np.array(snapshot.global_prob, np.float32).reshape(units, subgroups),
        "global_biased": np.array(snapshot.global_biased, np.uint8).reshape(units, subgroups),
        "iou": np.array(snapshot.iou, np.float32).reshape(units, concepts),
        "region": np.array(snapshot.region, np.int32),
        "local_prob": np.array(snapshot.local_prob, np.float32).reshape(units, concepts),
        "local_paired": np.array(snapshot.local_paired, np.uint8).reshape(units, concepts),
        "netdissect_concept": np.array(snapshot.netdissect_concept, np.int32),
    }


def test_late_subscriber_gets_the_finished_pass_at_once(dataset, run_dir, start_daemon, push, hndd_binary):
    daemon = start_daemon(run_dir)
    push(run_dir, dataset.activations, RUN, 9, "--batch-size", "200")
    daemon.wait_complete(RUN, 9)
    time.sleep(0.5)  # nothing is published any more: the subscriber must ask for the state

    line, elapsed = subscribe_once(hndd_binary, run_dir)
    print(f"\nlate subscriber after the pass: answered in {elapsed:.2f} s")
    assert elapsed < 5, f"a late subscriber waited {elapsed:.1f} s for the current state"
    row = complete_row(daemon.snapshot_file, RUN, 9)
    assert (line["layer"], line["run"], line["step"]) == (LAYER, RUN, 9)
    assert line["complete"] is True
    assert line["images_seen"] == line["images_total"] == dataset.n_images
    assert line["units"] == len(row["region"])
    assert line["interpretable_units"] == interpretable_units(row)
    assert line["region"] == row["region"].tolist()
    assert line["netdissect_concept"] == row["netdissect_concept"].tolist()

    # `hndd summary --json` says the same of the row the daemon wrote, with the same keys: only
    # the duplicates are unknown to the file.
    summary = subprocess.run([str(hndd_binary), "summary", str(daemon.snapshot_file), "--json", "--run", RUN, "--step", "9"],
                             capture_output=True, text=True, timeout=60)
    assert summary.returncode == 0, summary.stderr
    [written] = [json.loads(text) for text in summary.stdout.splitlines()]
    assert set(written) == set(line)
    assert written.pop("duplicates_reported") is None and line.pop("duplicates_reported") == 0
    assert written == line


def test_late_subscriber_mid_pass_gets_the_partial_state(dataset, run_dir, start_daemon, push, hndd_binary):
    daemon = start_daemon(run_dir)
    push(run_dir, dataset.activations, RUN, 10, "--shuffle", "--seed", "4", "--part", "1/2", "--batch-size", "100")
    rows = select_rows(dataset.n_images, True, 4, (1, 2))
    daemon.wait_pass(RUN, 10, lambda p: p["images_seen"] == len(rows), "the first half")
    time.sleep(1.5)  # past the last partial publication

    line, elapsed = subscribe_once(hndd_binary, run_dir)
    print(f"\nlate subscriber mid-pass: answered in {elapsed:.2f} s")
    assert elapsed < 5, f"a late subscriber waited {elapsed:.1f} s for the current state"
    assert (line["run"], line["step"], line["complete"]) == (RUN, 10, False)
    assert line["images_seen"] == len(rows) and line["images_total"] == dataset.n_images

    # The partial state is the exact dissection of the images received so far.
    request = hndd_pb2.ControlRequest()
    request.snapshot.layer = LAYER
    reply = control_request(daemon.endpoints.control, request)
    assert reply.WhichOneof("reply") == "snapshot", reply
    partial = snapshot_as_row(reply.snapshot)
    reference = hnd_reference.dissect_reference(dataset.dictionary, dataset.maps[rows],
                                                image_ids=dataset.image_ids[rows])
    failures = dataset.failures(partial, reference)
    assert not failures, "partial snapshot vs the reference over the images received:\n" + "\n".join(failures)
    assert line["interpretable_units"] == interpretable_units(partial)
    assert line["region"] == partial["region"].tolist()


def test_control_refusals_name_what_is_wrong(dataset, run_dir, start_daemon, push):
    """Refused control requests are answered with what is wrong: bytes that are no request, and a
    snapshot of a layer never sent (naming the layers that were); the daemon goes on answering."""
    daemon = start_daemon(run_dir)
    push(run_dir, dataset.activations, RUN, 11, "--batch-size", "200")
    daemon.wait_complete(RUN, 11)

    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    try:
        sock.connect(daemon.endpoints.control)
        sock.send(b"\xff\xff\xff not a control request")
        reply = hndd_pb2.ControlReply()
        reply.ParseFromString(sock.recv())
    finally:
        sock.close()
    assert reply.WhichOneof("reply") == "error" and reply.error.message, reply

    request = hndd_pb2.ControlRequest()
    request.snapshot.layer = "no.such.layer"
    reply = control_request(daemon.endpoints.control, request)
    assert reply.WhichOneof("reply") == "error", reply
    assert reply.error.message == f"no snapshot of layer no.such.layer yet (layers: {LAYER})"
    assert daemon.status()["rejected_batches"].get("control_malformed") == 1


def test_refused_layer_names_are_forgotten(dataset, run_dir, start_daemon, push):
    """Batches of many bogus layer names, every one refused (an image id outside the dictionary),
    leave nothing behind: the names are not listed where the daemon names its layers, and the real
    layer pushed after them works as before."""
    daemon = start_daemon(run_dir)
    bogus = [f"bogus.{i}" for i in range(300)]
    _, units, height, width = dataset.maps.shape
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    try:
        sock.connect(daemon.endpoints.ingest)
        for layer in bogus:
            header = hndd_pb2.BatchHeader(protocol_version=1, run=RUN, layer=layer, step=3, dtype=hndd_pb2.DTYPE_FLOAT32,
                                          units=units, height=height, width=width, sender="misspeller")
            header.image_ids.append(dataset.n_images)  # one past the last image
            sock.send_multipart([header.SerializeToString(), np.ascontiguousarray(dataset.maps[:1], dtype="<f4").tobytes()])
    finally:
        sock.close()
    push(run_dir, dataset.activations, RUN, 3, "--batch-size", "200")
    daemon.wait_complete(RUN, 3)
    status = daemon.status()
    assert status["rejected_batches"]["image_id_out_of_range"] == len(bogus)
    assert [layer["layer"] for layer in status["layers"]] == [LAYER]
    request = hndd_pb2.ControlRequest()
    request.snapshot.layer = bogus[0]
    reply = control_request(daemon.endpoints.control, request)
    assert reply.WhichOneof("reply") == "error", reply
    assert reply.error.message == f"no snapshot of layer {bogus[0]} yet (layers: {LAYER})"
    request.snapshot.layer = LAYER
    reply = control_request(daemon.endpoints.control, request)
    assert reply.WhichOneof("reply") == "snapshot" and reply.snapshot.complete, reply

