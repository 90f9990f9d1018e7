"""Running a node: the federation server (mutual TLS), the operator server
(127.0.0.1, token), and the background directory refresh."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, TypeVar, cast

import structlog

from rcf.node.audit import view as audit_view
from rcf.node.audit.anchor import AnchorStore, AuditShipper
from rcf.node.audit.backlog import audit_backlog
from rcf.node.audit.operations import console_action_event, reconcile_operations
from rcf.node.data.dictionary import cached_dictionary, load_dictionary, sync_dictionary
from rcf.node.data.store import DataStore
from rcf.node.federation.binding import (
    NodeServices,
    QueryType,
    Served,
    bind_all,
    check_registrations,
)
from rcf.node.federation.hub_client import HubClient
from rcf.node.federation.peers import PeerClient
from rcf.node.federation.pipeline import Limits, Pipeline
from rcf.node.federation.registry import QUERY_TYPES
from rcf.node.federation.replay import ReplayGuard
from rcf.node.federation.service import federation_handler
from rcf.node.ops.assembly import build_core
from rcf.node.ops.config import NodeLayout
from rcf.node.ops.metrics import NodeGauges, NodeMetrics
from rcf.node.ops.operator import OperatorServicer
from rcf.protos.v1 import federation_pb2, operator_pb2, operator_pb2_grpc
from rcf.trust.audit_leaf import log_origin, witness_keys
from rcf.trust.clock import now_ms
from rcf.trust.errors import ConfigError, RcfError
from rcf.trust.serving import InstanceLock, bind, build_server

log = structlog.get_logger("rcf.node")
P = TypeVar("P")

LOOPBACK_PREFIXES = ("127.", "localhost:", "[::1]:")
# At most one refresh triggered by a stale-looking failure per this many seconds.
URGENT_REFRESH_EVERY_S = 5.0


class NodeServer:
    def __init__(
        self,
        layout: NodeLayout,
        *,
        query_types: tuple[QueryType[Any], ...] = QUERY_TYPES,
        pull_from_peers: bool = True,
    ) -> None:
        """query_types: what the node serves (the registry's; tests add their own).
        pull_from_peers False: serve, but take nothing in from peers in the background
        (tests that count records)."""
        check_registrations(query_types)  # before anything is opened
        self.layout = layout
        self.config = config = layout.load_config()
        if not config.operator_listen.startswith(LOOPBACK_PREFIXES):
            raise ConfigError("operator_listen must be a loopback address (127.0.0.1:PORT).")
        self.signing_key = layout.load_signing_key()
        self.tls = layout.load_tls()
        self._token = layout.operator_token.read_text().strip()
        self.metrics = NodeMetrics()
        core = build_core(layout, signing_key=self.signing_key)
        self.directory, self.state = core.directory, core.state
        self.audit, self.policy = core.audit, core.policy
        self.floor = core.floor
        self._purposes = frozenset(load_dictionary(layout).purposes)
        self.pipeline = Pipeline(
            member_id=config.member_id,
            signing_key=self.signing_key,
            directory=self.directory,
            replay=ReplayGuard(self.state),
            audit=self.audit,
            policy=self.policy.open_gate(seed_allow=config.allow),
            limits=Limits(
                max_message_bytes=config.max_message_bytes,
                max_clock_skew_ms=int(config.max_clock_skew_s * 1000),
                max_request_ttl_ms=int(config.max_request_ttl_s * 1000),
            ),
            purposes=lambda: self._purposes,
            on_stale_directory=self.refresh_soon,
            observe=self.metrics.observe_request,
        )
        self.state.gather(
            lambda: self.pipeline.inflight + self.peers.inflight,
            window_s=config.audit_gather_ms / 1000,
        )
        self.peers = PeerClient(
            member_id=config.member_id,
            signing_key=self.signing_key,
            tls=self.tls,
            directory=self.directory,
            audit=self.audit,
            request_ttl_ms=int(config.request_ttl_s * 1000),
            max_message_bytes=config.max_message_bytes,
        )
        self.peers.refresh_directory = self.refresh_now
        self.peers.observe = self.metrics.observe_peer_call
        self.hub = HubClient(address=config.hub_address, tls=self.tls)
        self._refresh_lock = threading.Lock()
        self._urgent_lock = threading.Lock()
        self._last_urgent = -URGENT_REFRESH_EVERY_S
        self._stop = threading.Event()
        # Anchors the audit log in the hub's log and witnesses its checkpoints.
        self.shipper = AuditShipper(
            member_id=config.member_id,
            signing_key=self.signing_key,
            audit=self.audit,
            anchor=AnchorStore(self.state),
            channel=self.hub.channel,
            hub_public_key=config.hub_public_key,
            origin=lambda: log_origin(self.directory.peek().network),
            witnesses=lambda: witness_keys(self.directory.peek(), at_ms=now_ms()),
        )
        self._shipping = threading.Thread(
            target=self.shipper.run,
            args=(self._stop, config.audit_ship_interval_s),
            name="audit-ship",
            daemon=True,
        )
        # gRPC itself stops messages far past the limit; between the two the
        # pipeline refuses them with an audit record.
        transport_limit = config.max_message_bytes * 2 + 64 * 1024
        # The node's data.db exists (schema, indexes) before a query type reads it.
        self.dictionary = cached_dictionary(layout)
        DataStore(layout.data_db, dictionary=self.dictionary()).close()
        services = NodeServices(
            layout=layout,
            config=config,
            signing_key=self.signing_key,
            state=self.state,
            audit=self.audit,
            directory=self.directory,
            policy=self.policy,
            peers=self.peers,
            dictionary=self.dictionary,
            operator_token=self._token,
            pull_from_peers=pull_from_peers,
        )
        # Each registered query type bound once: its handlers and operator services.
        self._served: dict[str, Served[Any]] = bind_all(query_types, services)
        # A streaming query type (Alerts) holds one stream per peer open here: room
        # for them beside the queries.
        self._server, _ = build_server(
            max_workers=256,
            max_message_bytes=transport_limit,
            service_names=[federation_pb2.DESCRIPTOR.services_by_name["Federation"].full_name],
        )
        self._server.add_generic_rpc_handlers(
            (
                federation_handler(
                    self.pipeline, [spec for s in self._served.values() for spec in s.specs]
                ),
            )
        )
        operators = [op for s in self._served.values() for op in s.operators]
        self._operator, _ = build_server(
            max_workers=8,
            max_message_bytes=transport_limit,
            service_names=[
                operator_pb2.DESCRIPTOR.services_by_name["Operator"].full_name,
                *(op.name for op in operators),
            ],
        )
        # The node's own operator service (status, directory, policy, ping a peer).
        operator_pb2_grpc.add_OperatorServicer_to_server(
            OperatorServicer(
                token=self._token,
                peers=self.peers,
                status=self.status,
                refresh=lambda: self.refresh_directory(patient=True),
                policy=self.policy,
                record_operations=lambda: reconcile_operations(self.layout, self.audit),
                record_console_action=self.record_console_action,
                audit_log=self.audit_log,
            ),
            self._operator,
        )
        for op in operators:
            op.add(self._operator)
        self.address = ""
        self.operator_address = ""
        self.metrics_address = ""
        self._instance: InstanceLock | None = None
        self._endpoint_published = False
        self.last_refresh_error = ""
        self._refresher = threading.Thread(
            target=self._refresh_loop, name="dir-refresh", daemon=True
        )

    def start(self, *, listen: str | None = None) -> None:
        self._instance = InstanceLock(
            self.layout.root / "serve.lock", f"A node for {self.config.member_id}"
        )
        reconcile_operations(self.layout, self.audit)
        self.address = bind(
            self._server, listen or self.config.listen, self.tls.server_credentials()
        )
        port = self._operator.add_insecure_port(self.config.operator_listen)
        if port == 0:
            raise ConfigError(f"Cannot listen on {self.config.operator_listen}.")
        self.operator_address = f"{self.config.operator_listen.rsplit(':', 1)[0]}:{port}"
        self._server.start()
        self._operator.start()
        self.metrics_address = self.metrics.serve(
            self.config.metrics_listen,
            NodeGauges(
                member_id=lambda: self.config.member_id,
                directory_serial=lambda: self.directory.peek().serial,
                directory_fetched_at_ms=lambda: self.directory.fetched_at_ms,
                directory_expires_at_ms=lambda: self.directory.peek().expires_at_ms,
                policy_version=lambda: self.policy.gate.policy.version if self.policy.gate else 0,
                audit_batches=lambda: (self.state.batches, self.state.batched_writes),
                audit_backlog=lambda: audit_backlog(self.audit, self.shipper.anchor),
                data_db=self.layout.data_db,
            ),
        )
        self.refresh_directory(raise_errors=False)
        self._write_runtime()
        self._refresher.start()
        self._shipping.start()
        for served in self._served.values():
            served.start()
        log.info(
            "node_started",
            member=self.config.member_id,
            address=self.address,
            operator=self.operator_address,
        )

    def _write_runtime(self) -> None:
        tmp = self.layout.runtime.with_name(self.layout.runtime.name + ".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(
            json.dumps(
                {
                    "member_id": self.config.member_id,
                    "address": self.address,
                    "operator_address": self.operator_address,
                    "metrics_address": self.metrics_address,
                    "pid": os.getpid(),
                }
            )
        )
        tmp.replace(self.layout.runtime)

    def refresh_now(self) -> None:
        """Fetch the newest directory now, unless that was tried in the last few seconds:
        what a stale-looking failure triggers (a hostile peer cannot make the node
        hammer the hub)."""
        with self._urgent_lock:
            if time.monotonic() - self._last_urgent < URGENT_REFRESH_EVERY_S:
                return
            self._last_urgent = time.monotonic()
        self.refresh_directory(raise_errors=False)

    def refresh_soon(self) -> None:
        """refresh_now in the background (for request threads, which must not wait)."""
        threading.Thread(target=self.refresh_now, name="dir-refresh-now", daemon=True).start()

    def refresh_directory(self, *, raise_errors: bool = True, patient: bool = False) -> None:
        """Publish our endpoint if not yet done, then fetch the newest directory.

        patient: wait for the hub channel to (re)connect within the call's timeout
        instead of failing at once while it backs off (for an operator's refresh)."""
        with self._refresh_lock:
            self._refresh(raise_errors=raise_errors, patient=patient)

    def _refresh(self, *, raise_errors: bool, patient: bool) -> None:
        try:
            # A node that is not serving (a pure client) has no endpoint to publish.
            if self.address and not self._endpoint_published:
                envelope = self.hub.update_endpoint(
                    member_id=self.config.member_id,
                    endpoint=self.config.public_address or self.address,
                    key=self.signing_key,
                    wait_for_ready=patient,
                )
                self.directory.update(envelope)
                self._endpoint_published = True
            envelope = self.hub.get_directory(
                have_serial=self.directory.peek().serial, wait_for_ready=patient
            )
            if self.directory.update(envelope):
                log.info("directory_updated", serial=self.directory.peek().serial)
            if sync_dictionary(
                self.layout,
                self.hub,
                hub_public_key=self.config.hub_public_key,
                version=self.directory.peek().dictionary_version,
                floor=self.floor,
            ):
                self._purposes = frozenset(load_dictionary(self.layout).purposes)
                log.info("dictionary_updated", version=self.directory.peek().dictionary_version)
            self.peers.prune()
            self.last_refresh_error = ""
            # The hub answered: audit shipping need not sit out its backoff.
            self.shipper.hub_seen()
        except RcfError as exc:
            self.last_refresh_error = str(exc)
            log.warning("directory_refresh_failed", reason=exc.reason, error=str(exc))
            if raise_errors:
                raise

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.config.directory_refresh_s):
            self.refresh_directory(raise_errors=False)

    def audit_log(self, request: operator_pb2.AuditLogRequest) -> operator_pb2.AuditLogResponse:
        """The newest audit records (filtered) and, if asked, a check of the whole chain."""
        records = audit_view.newest(
            self.audit, limit=request.limit or 100, query_type=request.query_type,
            member=request.member,
        )  # fmt: skip
        reply = operator_pb2.AuditLogResponse(last_seq=self.audit.last_seq())
        for rec in records:
            e = rec.event
            reply.entries.add(
                seq=rec.seq, ts_ms=rec.ts_ms, query_id=e.query_id, query_type=e.query_type,
                purpose=e.purpose, requester=e.requester, responder=e.responder, side=e.side,
                decision=e.decision, reason=e.reason, record_hash=rec.record_hash,
            )  # fmt: skip
        if request.verify:
            member = self.directory.current().member(self.config.member_id)
            keys = {k.key_id: k.public_key for k in member.signing_keys} if member else {}
            check = audit_view.check_chain(self.state, self.layout.root, self.audit, keys)
            reply.verified, reply.verified_records, reply.problem = (
                check.ok, check.records, check.problem,
            )  # fmt: skip
        return reply

    def record_console_action(
        self, user: str, action: str, detail: str, query_ids: list[str]
    ) -> str:
        """Audit a web-console user's action (operator API); returns the record's id."""
        event = console_action_event(
            self.config.member_id, user=user, action=action, detail=detail, query_ids=query_ids
        )
        self.audit.append(event)
        return event.query_id

    def status(self) -> operator_pb2.StatusResponse:
        directory = self.directory.peek()
        backlog = audit_backlog(self.audit, self.shipper.anchor)
        return operator_pb2.StatusResponse(
            member_id=self.config.member_id,
            federation_endpoint=self.address,
            metrics_endpoint=self.metrics_address,
            directory_serial=directory.serial,
            directory_expires_at_ms=directory.expires_at_ms,
            directory_fetched_at_ms=self.directory.fetched_at_ms,
            last_refresh_error=self.last_refresh_error,
            audit_records=self.audit.count(),
            signing_key_id=self.signing_key.key_id,
            audit_unshipped_records=backlog.unshipped,
            audit_oldest_unshipped_at_ms=backlog.oldest_at_ms,
            audit_backlog_warning=backlog.warning(
                now_ms(), self.config.audit_backlog_warn_s, member_id=self.config.member_id
            ),
            audit_ship_error=self.shipper.last_error,
        )

    def served(self, query_type: QueryType[P]) -> P:
        """The node-side part query_type built when this node bound it (its responder,
        service, …): for the node's own tools and tests."""
        return cast(P, self._served[query_type.name].part)

    def wait(self) -> None:
        self._server.wait_for_termination()

    def stop(self, grace: float = 1.0) -> None:
        self._stop.set()
        self.shipper.wake()
        if self._shipping.is_alive():
            self._shipping.join(timeout=15)
        for served in self._served.values():
            served.stop()
        self._operator.stop(grace).wait()
        self._server.stop(grace).wait()
        self.metrics.stop()
        self.peers.close()
        for served in self._served.values():
            served.close()
        self.hub.close()
        self.state.close()
        if self._instance is not None:
            self.layout.runtime.unlink(missing_ok=True)
            self._instance.release()
        log.info("node_stopped", member=self.config.member_id)
