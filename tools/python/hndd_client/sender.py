"""The background sender of a Client: one thread per daemon owns its ZeroMQ PUSH socket (sockets
are not thread-safe) and hands queued batches to it.

A socket monitor tells the thread when the daemon refuses it (a CURVE daemon without a credential,
an unauthorised or revoked key): that is logged once, with what to do, and counted.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Optional

import zmq
from zmq.utils.monitor import recv_monitor_message

logger = logging.getLogger("hndd_client")

#: Messages libzmq may hold per connection beyond our queue: keeps memory bounded by the queue.
SEND_HIGH_WATER_MARK = 2
#: Monitor events the sender reads.
MONITORED_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_DISCONNECTED)


class SenderState:
    """What a client and one sender thread share; holds no reference to the Client, so the
    Client can be garbage-collected (and its finalizer close the thread).

    `unreachable_after`: when set, a daemon that has taken nothing for this many seconds while a
    batch waits is *unreachable*: the client then drops its batches at once (counted) instead of
    queueing them, so that the other daemons of a cluster keep getting theirs.
    """

    def __init__(self, endpoint: str, max_queue_bytes: int, credential=None, name: str = "",
                 unreachable_after: Optional[float] = None):
        self.endpoint = endpoint
        self.name = name or endpoint
        self.max_queue_bytes = max_queue_bytes
        self.credential = credential
        self.unreachable_after = unreachable_after
        self.condition = threading.Condition()
        self.queue = collections.deque()  # (frames, nbytes)
        self.queued_bytes = 0
        self.sending_since = None  # monotonic time the head of the queue began waiting for ZeroMQ
        self.sent_batches = self.sent_bytes = 0
        self.dropped_batches = self.dropped_bytes = 0
        self.unreachable_batches = 0
        self.auth_refusals = 0
        self.was_unreachable = False
        self.closing = False  # no new batches
        self.abort_at = None  # monotonic time after which unsent batches are given up
        self.error = None
        self.thread = None
        self._refusal_logged = False

    # -- the thread --------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=f"hndd-client-sender-{self.name}", daemon=True)
        self.thread.start()

    def run(self):
        context = zmq.Context(io_threads=1)
        sock = context.socket(zmq.PUSH)
        monitor = None
        linger_ms = 0
        try:
            sock.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)
            sock.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing in ZeroMQ while no daemon is connected
            if self.credential is not None:
                self.credential.apply(sock)
            monitor = sock.get_monitor_socket(MONITORED_EVENTS)
            sock.connect(self.endpoint)
            while self._send_next(sock, monitor):
                pass
            with self.condition:
                if self.abort_at is not None:
                    linger_ms = max(0, int((self.abort_at - time.monotonic()) * 1000))
        except Exception as error:  # noqa: BLE001 - reported to the caller by send/flush/close
            logger.error("hndd client: sender thread for %s failed: %s", self.endpoint, error)
            self._fail(error)
        finally:
            # Batches already inside ZeroMQ get until the close deadline to reach the daemon.
            if monitor is not None:
                sock.disable_monitor()
                monitor.close(linger=0)
            sock.close(linger=linger_ms)
            context.term()

    def _send_next(self, sock, monitor) -> bool:
        """Sends the head of the queue; False once closing with nothing left."""
        with self.condition:
            while not self.queue and not self.closing:
                self.condition.wait()
            if not self.queue:
                return False
            frames, nbytes = self.queue[0]
            self.sending_since = time.monotonic()
        delivered = self._send(sock, monitor, frames)
        with self.condition:
            self.queue.popleft()
            self.queued_bytes -= nbytes
            self.sending_since = None
            if delivered:
                self.sent_batches += 1
                self.sent_bytes += nbytes
                self._note_reachable()
            else:
                self.dropped_batches += 1
                self.dropped_bytes += nbytes
            self.condition.notify_all()
        return True

    def _send(self, sock, monitor, frames) -> bool:
        """Waits until ZeroMQ takes the message, or the close deadline passes (returns False)."""
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLOUT)
        poller.register(monitor, zmq.POLLIN)
        while True:
            with self.condition:
                deadline = self.abort_at
            wait_ms = 100
            if deadline is not None:
                remaining_ms = (deadline - time.monotonic()) * 1000
                if remaining_ms <= 0:
                    return False
                wait_ms = max(1, min(wait_ms, int(remaining_ms)))
            ready = dict(poller.poll(wait_ms))
            if monitor in ready:
                self._read_monitor(monitor)
            if sock in ready:
                try:
                    sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                    return True
                except zmq.Again:
                    pass

    def _read_monitor(self, monitor) -> None:
        while monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._refused("refused this client's credential"
                              + (f" {self.credential.name} ({self.credential.path}): it is not authorised, or was revoked"
                                 if self.credential else ""))
            elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self._refused("did not complete a handshake: "
                              + ("it serves CURVE; give a credential (key=FILE, made by hndd keys client)"
                                 if self.credential is None else
                                 f"is {self.credential.path} a credential of this daemon (its server key)?"))
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED and self._refusal_logged:
                self._refusal_logged = False
                logger.info("hndd client: the daemon at %s accepts this client again", self.endpoint)

    def _refused(self, what: str) -> None:
        with self.condition:
            self.auth_refusals += 1
        if not self._refusal_logged:
            self._refusal_logged = True
            logger.warning("hndd client: the daemon at %s %s", self.endpoint, what)

    def _fail(self, error) -> None:
        with self.condition:
            self.error = error
            for _, nbytes in self.queue:
                self.dropped_batches += 1
                self.dropped_bytes += nbytes
            self.queue.clear()
            self.queued_bytes = 0
            self.sending_since = None
            self.condition.notify_all()

    # -- what the client asks (under self.condition) -----------------------------------------------

    def is_unreachable(self) -> bool:
        """The daemon took nothing for `unreachable_after` s while a batch waited (caller holds the lock)."""
        if self.unreachable_after is None or self.sending_since is None:
            return False
        return time.monotonic() - self.sending_since >= self.unreachable_after

    def note_unreachable_drop(self, nbytes: int) -> None:
        """Counts a batch dropped because the daemon is unreachable (caller holds the lock)."""
        self.unreachable_batches += 1
        self.dropped_batches += 1
        self.dropped_bytes += nbytes
        if not self.was_unreachable:
            self.was_unreachable = True
            logger.warning("hndd client: daemon %s at %s has taken nothing for %.0f s: dropping its batches "
                           "(the other daemons still get theirs) until it takes one again",
                           self.name, self.endpoint, self.unreachable_after)

    def give_up_waiting(self) -> None:
        """The daemon is unreachable: drops (counted, logged) every waiting batch but the one in
        ZeroMQ's hands, which the sender thread gives up at close (caller holds the lock)."""
        head = 1 if self.sending_since is not None and self.queue else 0
        waiting = list(self.queue)[head:]
        for _, nbytes in waiting:
            self.queued_bytes -= nbytes
            self.note_unreachable_drop(nbytes)
        for _ in waiting:
            self.queue.pop()
        self.condition.notify_all()

    def _note_reachable(self) -> None:
        if self.was_unreachable:
            self.was_unreachable = False
            logger.warning("hndd client: daemon %s at %s takes batches again (%d were dropped while it did not)",
                           self.name, self.endpoint, self.unreachable_batches)

    def drained(self) -> bool:
        return not self.queue and self.sending_since is None

    def shut_down(self, timeout):
        """Waits up to `timeout` s for pending batches, then stops the thread."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self.condition:
            self.closing = True
            self.abort_at = deadline
            self.condition.notify_all()
        if self.thread is not None:
            self.thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
