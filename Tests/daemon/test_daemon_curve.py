"""The daemon over tcp://127.0.0.1 with CURVE (README § Security): a credential's pass completes
exactly; no key, a wrong key or an unauthorised one gets nothing accepted, and is counted and
logged; revocation takes effect without a restart; TCP without CURVE needs --insecure-tcp."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from daemon_harness import LAYER, client_environment, complete_row, find_pass, wait_until

from hndd_client import Client
from hndd_client.curve import load_credential
from hndd_client.wire import Endpoints, publish_topic

TCP = ("--ingest", "tcp", "--publish", "tcp", "--control", "tcp")


def make_client(hndd_binary, run_dir: Path, name: str) -> Path:
    """`hndd keys client`: the credential's path, as the command prints it."""
    out = subprocess.run([str(hndd_binary), "keys", "client", "--run-dir", str(run_dir), "--name", name],
                         capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    assert path == run_dir / "keys" / "clients" / f"{name}.secret" and path.stat().st_mode & 0o777 == 0o600
    return path


def write_credential(path: Path, server_public: str, name: str = "stranger") -> Path:
    """A well-formed credential whose client key no daemon authorised."""
    public, secret = zmq.curve_keypair()
    path.write_text(json.dumps({"format": "hndd-curve-credential", "version": 1, "name": name,
                                "public_key": public.decode(), "secret_key": secret.decode(),
                                "server_public_key": server_public}))
    path.chmod(0o600)
    return path


def push_to(daemon, activations, run, step, *options, timeout=60):
    """`python3 -m hndd_client push --endpoint <the daemon's ingest>` with `options`; (status, stderr)."""
    command = [sys.executable, "-m", "hndd_client", "push", "--activations", str(activations),
               "--endpoint", daemon.endpoints.ingest, "--run", run, "--step", str(step), *map(str, options)]
    done = subprocess.run(command, env=client_environment(), capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stderr


def test_a_pass_over_curve_tcp_completes_exactly_against_the_reference(dataset, run_dir, start_daemon, hndd_binary):
    key = make_client(hndd_binary, run_dir, "trainer-1")
    daemon = start_daemon(run_dir, *TCP, key=key)
    assert all(e.startswith("tcp://127.0.0.1:") for e in (daemon.endpoints.ingest, daemon.endpoints.control))
    assert daemon.status()["endpoint_security"] == {"ingest": "curve", "publish": "curve", "control": "curve"}
    status, stderr = push_to(daemon, dataset.activations, "curve", 1, "--key", key, "--shuffle", "--seed", "4")
    assert status == 0, stderr
    daemon.wait_complete("curve", 1)
    assert dataset.failures(complete_row(daemon.snapshot_file, "curve", 1)) == []
    assert daemon.status()["auth_denied"] == 0
    assert "admitted client trainer-1 from 127.0.0.1" in daemon.log()
    # hndd status reaches it with the credential.
    out = subprocess.run([str(hndd_binary), "status", "--run-dir", str(run_dir), "--key", str(key)],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["images_seen"] == dataset.n_images


def test_without_a_key_or_with_a_wrong_or_unauthorised_one_nothing_is_accepted(dataset, run_dir, new_run_dir,
                                                                              start_daemon, hndd_binary, tmp_path):
    key = make_client(hndd_binary, run_dir, "trainer-1")
    daemon = start_daemon(run_dir, *TCP, key=key)
    server_public = load_credential(key).server_public_key
    other_run = new_run_dir()
    wrong_server = make_client(hndd_binary, other_run, "elsewhere")  # a credential of another daemon
    unauthorised = write_credential(tmp_path / "stranger.secret", server_public)
    attempts = {"no key": (), "another daemon's key": ("--key", wrong_server), "an unauthorised key": ("--key", unauthorised)}
    for what, options in attempts.items():
        status, stderr = push_to(daemon, dataset.activations, "intruder", 1, "--timeout", "3", *options)
        assert status == 1 and ("did not take" in stderr or "accepted nothing" in stderr), f"{what}: {stderr}"
    def denied():
        s = daemon.status()
        return s if s["auth_denied_by_reason"]["unknown_key"] >= 1 and s["auth_denied"] >= 3 else None
    s = wait_until(denied, 10, "three refusals counted")
    assert s["images_seen"] == 0 and s["batches_accepted"] == 0 and s["layers"] == []
    assert find_pass(s, "intruder", 1) is None
    # The no-key and wrong-key clients fail before ZAP: whichever side notices first.
    reasons = s["auth_denied_by_reason"]
    assert reasons["no_curve"] + reasons["handshake_failed"] >= 2, reasons
    log = daemon.log()
    assert "refused 127.0.0.1" in log and "(unknown_key): key" in log and "is not authorised" in log
    # hndd status without the credential gets no answer, and says why.
    out = subprocess.run([str(hndd_binary), "status", "--run-dir", str(run_dir), "--timeout", "2"], capture_output=True, text=True)
    assert out.returncode == 1 and "needs a credential" in out.stderr
    # The daemon still serves its client: the refusals changed nothing.
    status, stderr = push_to(daemon, dataset.activations, "legit", 1, "--key", key)
    assert status == 0, stderr
    daemon.wait_complete("legit", 1)
    assert dataset.failures(complete_row(daemon.snapshot_file, "legit", 1)) == []
    assert daemon.status()["layers"][0]["passes_finished"] == 1  # no pass of the intruders


def subscriber(endpoint: str, key: Path) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.SUB)
    load_credential(key).apply(sock)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, publish_topic(LAYER))
    sock.connect(endpoint)
    return sock


def drain(sock: zmq.Socket, seconds: float) -> int:
    """Publications received within `seconds`."""
    count, deadline = 0, time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000)):
            sock.recv_multipart()
            count += 1
    return count


def test_revocation_takes_effect_without_a_restart(dataset, run_dir, start_daemon, hndd_binary):
    alice, bob = make_client(hndd_binary, run_dir, "alice"), make_client(hndd_binary, run_dir, "bob")
    daemon = start_daemon(run_dir, *TCP, "--snapshot-interval", "0.2", key=bob)
    half = dataset.n_images // 2
    ids = dataset.image_ids
    alice_sub, bob_sub = subscriber(daemon.endpoints.publish, alice), subscriber(daemon.endpoints.publish, bob)
    with Client(endpoint=daemon.endpoints.ingest, key=alice, run="revoked", on_full="block") as client:
        for start in range(0, half, 200):
            assert client.send(LAYER, 1, ids[start:start + 200], dataset.maps[start:start + 200])
        assert client.flush(30)
        daemon.wait_pass("revoked", 1, lambda p: p["images_seen"] == half, "alice's first half")
        assert drain(alice_sub, 1.0) >= 1 and drain(bob_sub, 0.5) >= 0  # both subscribers receive
        # Revoking deletes alice's credential file; a copy stands for one that leaked, which is what
        # revocation must stop (without it, the push below fails before connecting at all).
        leaked = run_dir / "alice-leaked.secret"
        shutil.copy2(alice, leaked)
        subprocess.run([str(hndd_binary), "keys", "revoke", "--run-dir", str(run_dir), "--name", "alice"], check=True,
                       capture_output=True)
        # The same connection, made before the revocation: its batches are dropped now.
        for start in range(half, dataset.n_images, 200):
            client.send(LAYER, 1, ids[start:start + 200], dataset.maps[start:start + 200])
        assert client.flush(30)
        wait_until(lambda: daemon.status()["auth_denied_by_reason"]["revoked_connection"] >= 1, 10,
                   "alice's later batches refused")
    s = daemon.status()
    assert find_pass(s, "revoked", 1)["images_seen"] == half and s["images_seen"] == half
    # A new connection with alice's key is refused as revoked.
    # Generous waits: on a loaded machine (CI shares two cores) the refused handshake can reach the
    # daemon's count seconds after the client has given up.
    assert not alice.exists()
    status, stderr = push_to(daemon, dataset.activations, "revoked-again", 1, "--key", leaked, "--timeout", "10")
    assert status == 1, stderr
    wait_until(lambda: daemon.status()["auth_denied_by_reason"]["revoked_key"] >= 1, 30,
               f"a revoked key refused (denials when the wait began: {daemon.status()['auth_denied_by_reason']})")
    assert find_pass(daemon.status(), "revoked-again", 1) is None
    # Subscribers were dropped and reconnected: bob's gets the snapshots of bob's pass, alice's none.
    drain(alice_sub, 0.5), drain(bob_sub, 0.5)
    status, stderr = push_to(daemon, dataset.activations, "bob", 1, "--key", bob)
    assert status == 0, stderr
    daemon.wait_complete("bob", 1)
    assert drain(bob_sub, 2.0) >= 1
    assert drain(alice_sub, 0.5) == 0
    assert "the key of client alice was revoked" in daemon.log()
    alice_sub.close(), bob_sub.close()


def serve_briefly(hndd_binary, dataset, run_dir: Path, *options) -> subprocess.CompletedProcess:
    """`hndd serve` that must either refuse at once or start: stopped by SIGTERM after it answers."""
    process = subprocess.Popen([str(hndd_binary), "serve", "--dictionary", str(dataset.dictionary), "--run-dir",
                                str(run_dir), *map(str, options)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 15
        while process.poll() is None and not (run_dir / "endpoints.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            time.sleep(0.3)
            process.terminate()
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    (run_dir / "endpoints.json").unlink(missing_ok=True)
    return subprocess.CompletedProcess(process.args, process.returncode, out, "")


def test_tcp_without_curve_needs_insecure_tcp_and_is_warned_at_every_start(dataset, run_dir, hndd_binary):
    everywhere = ("--ingest", "tcp://0.0.0.0:*")
    refused = serve_briefly(hndd_binary, dataset, run_dir, *everywhere)
    assert refused.returncode == 1, refused.stdout
    assert "tcp://0.0.0.0:*" in refused.stdout and "not loopback" in refused.stdout and "--insecure-tcp" in refused.stdout
    assert not (run_dir / "snapshots.h5").exists()  # refused before anything was made
    for start in range(2):
        insecure = serve_briefly(hndd_binary, dataset, run_dir, *everywhere, "--insecure-tcp")
        assert insecure.returncode == 0, insecure.stdout
        assert "--insecure-tcp: the ingest endpoint tcp://0.0.0.0:* has no encryption" in insecure.stdout, f"start {start}"
        assert "anyone who can reach this port" in insecure.stdout
    # Loopback without keys is refused as well: CURVE on every TCP endpoint.
    assert serve_briefly(hndd_binary, dataset, run_dir, "--ingest", "tcp").returncode == 1
    # With the server's keys, the same bind serves CURVE.
    subprocess.run([str(hndd_binary), "keys", "--run-dir", str(run_dir)], check=True, capture_output=True)
    secured = serve_briefly(hndd_binary, dataset, run_dir, *everywhere)
    assert secured.returncode == 0 and "ingest curve" in secured.stdout and "--insecure-tcp" not in secured.stdout, secured.stdout


def test_key_files_readable_by_others_are_warned_about(dataset, run_dir, start_daemon, hndd_binary):
    key = make_client(hndd_binary, run_dir, "careless")
    (run_dir / "keys" / "server.secret").chmod(0o644)
    key.chmod(0o640)
    daemon = start_daemon(run_dir, *TCP, key=key)
    assert f"{run_dir}/keys/server.secret holds a secret key but its mode is 0644" in daemon.log()
    assert daemon.status()["credential_warnings"] == 1
    out = subprocess.run([str(hndd_binary), "status", "--run-dir", str(run_dir), "--key", str(key)], capture_output=True, text=True)
    assert out.returncode == 0 and f"{key} holds a secret key but its mode is 0640" in out.stderr
    status, stderr = push_to(daemon, dataset.activations, "careless", 1, "--key", key)
    assert status == 0 and f"{key} holds a secret key but its mode is 0640" in stderr
    with pytest.warns(RuntimeWarning, match="mode is 0640"):
        client = Client(endpoint=daemon.endpoints.ingest, key=key, run="x")
    assert client.stats.credential_warnings == 1
    client.close(0)
