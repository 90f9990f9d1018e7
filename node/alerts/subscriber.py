"""Subscribing to every peer's alerts, in background threads, resuming from stored cursors.

One thread per active peer with an endpoint in the directory. Each opens the
peer's ``Alerts`` stream from the cursor held in state.db, hands every message
to ``AlertService.ingest`` (which stores the alert and the new cursor in one
transaction), and on any failure reconnects after an exponential backoff with
jitter (0.2 s doubling to 15 s; reset after a message arrives). A stream lives
at most ``stream_lifetime_s``; then it is reopened at once, so a connection
that died silently costs no more than that.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

import structlog

from rcf.node.alerts.service import PURPOSE, AlertService
from rcf.node.alerts.spec import ALERTS
from rcf.node.federation.directory_cache import DirectoryCache
from rcf.node.federation.peers import PeerClient
from rcf.node.federation.pipeline import STALE_DIRECTORY_REASONS
from rcf.protos.v1 import alerts_pb2
from rcf.trust.clock import now_ms
from rcf.trust.errors import RcfError

log = structlog.get_logger("rcf.alerts")

MIN_BACKOFF_S = 0.2
MAX_BACKOFF_S = 15.0
# A peer whose policy grants us nothing: ask again now and then, and at once when
# our directory changes or the operator asks (``reconnect``).
REFUSED_BACKOFF_S = 60.0
POLICY_REFUSALS = ("refused:not_permitted", "refused:limit_reached")
DEFAULT_STREAM_LIFETIME_S = 300.0
MANAGE_EVERY_S = 2.0


@dataclass
class PeerState:
    member_id: str
    state: str = "connecting"
    last_error: str = ""
    connected_since_ms: int = 0


class AlertSubscriptions:
    def __init__(
        self,
        *,
        service: AlertService,
        peers: PeerClient,
        directory: DirectoryCache,
        member_id: str,
        stream_lifetime_s: float = DEFAULT_STREAM_LIFETIME_S,
    ) -> None:
        self._service = service
        self._peers = peers
        self._directory = directory
        self._member_id = member_id
        self._lifetime_s = stream_lifetime_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._wake: dict[str, threading.Event] = {}
        self._serial = 0
        self.states: dict[str, PeerState] = {}
        self._manager = threading.Thread(target=self._manage, name="alert-subs", daemon=True)

    def start(self) -> None:
        self._manager.start()

    def stop(self) -> None:
        """Stop subscribing; streams end when the peer client's channels close."""
        self._stop.set()
        self.reconnect()

    def join(self, timeout_s: float) -> None:
        """Wait (up to timeout_s in all) for the subscription threads to end after stop()."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = [*self._threads.values(), self._manager]
        for thread in threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def reconnect(self) -> None:
        """Retry every waiting subscription now (after a policy change at a peer, say)."""
        with self._lock:
            for event in self._wake.values():
                event.set()

    def _manage(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # a bad directory entry must not end all subscriptions
                log.exception("alert_subscriptions_failed")
            self._stop.wait(MANAGE_EVERY_S)

    def sync(self) -> None:
        """Start a subscription for every active peer with an endpoint that has none."""
        directory = self._directory.peek()
        if directory.serial != self._serial:
            self._serial = directory.serial
            self.reconnect()  # statuses, groups or endpoints may have changed
        for member in directory.members:
            peer = member.member_id
            if peer == self._member_id or not member.active:
                continue
            if not any(n.endpoint for n in member.nodes):
                continue
            with self._lock:
                thread = self._threads.get(peer)
                if thread is not None and thread.is_alive():
                    continue
                self.states[peer] = PeerState(peer)
                self._wake[peer] = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(peer,), name=f"alerts-{peer}", daemon=True
                )
                self._threads[peer] = thread
            thread.start()

    def _refresh_directory(self) -> None:
        refresh = self._peers.refresh_directory
        if refresh is None:
            return
        try:
            refresh()
        except RcfError as exc:  # the hub is down: the next attempt tries again
            log.info("directory_refresh_failed", reason=exc.reason)

    def _listed(self, peer: str) -> bool:
        member = self._directory.peek().member(peer)
        return member is not None and member.active and any(n.endpoint for n in member.nodes)

    def _run(self, peer: str) -> None:
        state = self.states[peer]
        wake = self._wake[peer]
        backoff = MIN_BACKOFF_S
        while not self._stop.is_set() and self._listed(peer):
            wake.clear()
            cursor = self._service.store.cursor(peer)

            def fill(request: alerts_pb2.AlertsRequest, cursor: int = cursor) -> None:
                request.after_position = cursor

            try:
                state.state = "connecting"
                for answer in self._peers.stream(
                    ALERTS,
                    responder=peer,
                    purpose=PURPOSE,
                    fill=fill,
                    timeout_s=self._lifetime_s,
                ):
                    if state.state != "connected":
                        state.state, state.connected_since_ms = "connected", now_ms()
                        state.last_error = ""
                    backoff = MIN_BACKOFF_S
                    response = answer.response
                    if response.HasField("alert"):
                        self._service.ingest(response.alert, via=peer, position=response.position)
                    else:
                        self._service.advance(peer, response.position)
                    if self._stop.is_set():
                        return
                wait = 0.0  # the responder ended the stream (shutting down): reopen
            except RcfError as exc:
                if self._stop.is_set():
                    return
                state.last_error = str(exc)
                if exc.reason == "timeout":
                    wait = 0.0  # the stream's lifetime ran out: reopen at once
                elif exc.reason in POLICY_REFUSALS:
                    state.state, wait = "refused", REFUSED_BACKOFF_S
                elif exc.reason.removeprefix("refused:") in STALE_DIRECTORY_REASONS:
                    # One side's directory lags (a node subscribed before the peer saw its
                    # key): the refusal made the peer fetch its own; fetch ours too and
                    # retry with the newer one.
                    state.state, wait = "catching up", backoff
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    self._refresh_directory()
                else:
                    state.state, wait = "retrying", backoff
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                log.info("alert_stream_ended", peer=peer, reason=exc.reason)
            except Exception as exc:
                state.state, state.last_error = "retrying", type(exc).__name__
                log.exception("alert_stream_failed", peer=peer)
                wait = backoff
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            if wait:
                wake.wait(wait * random.uniform(0.8, 1.2))
                if self._stop.is_set():
                    return
        state.state = "stopped"
