"""Running the hub: two gRPC servers, one per port.

The main port requires a client certificate from the network CA (mutual TLS).
The enrolment port authenticates only the hub, because a node that is still
enrolling has no certificate yet; it is a separate server that knows nothing
but ``Enroll`` and health checking (no reflection, no other method), with a
small request size limit.
"""

from __future__ import annotations

import json
import os
from concurrent import futures

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from rcf.hub.audit_log import HubAuditLog
from rcf.hub.audit_service import AuditHubServicer
from rcf.hub.layout import HubLayout
from rcf.hub.service import HubServicer
from rcf.hub.setup import open_registry
from rcf.protos.v1 import audit_pb2, audit_pb2_grpc, hub_pb2, hub_pb2_grpc
from rcf.trust.audit_leaf import log_origin
from rcf.trust.files import loose_modes, write_private
from rcf.trust.serving import InstanceLock, bind, build_server

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_ENROLL_REQUEST_BYTES = 64 * 1024  # a CSR and a public key
HUB_SERVICE = hub_pb2.DESCRIPTOR.services_by_name["Hub"].full_name
AUDIT_SERVICE = audit_pb2.DESCRIPTOR.services_by_name["AuditHub"].full_name

log = structlog.get_logger("rcf.hub")


class HubServer:
    def __init__(self, layout: HubLayout) -> None:
        self.layout = layout
        self._registry = open_registry(layout)
        self._tls = layout.load_tls()
        self._server, _ = build_server(
            max_workers=8,
            max_message_bytes=MAX_MESSAGE_BYTES,
            service_names=[HUB_SERVICE, AUDIT_SERVICE],
        )
        config = layout.load_config()
        signing_key = layout.load_signing_key()
        servicer = HubServicer(self._registry, signing_key)
        hub_pb2_grpc.add_HubServicer_to_server(servicer, self._server)
        self.audit_log = HubAuditLog(
            layout.audit_log_db,
            signing_key=signing_key,
            origin=log_origin(config.network),
            quorum=config.audit_quorum,
            witnesses=dict,
        )
        self.audit_servicer = AuditHubServicer(
            self.audit_log, peer_member=servicer.peer_member, snapshot=servicer.snapshot
        )
        self.audit_log.set_witnesses(self.audit_servicer.witnesses)
        audit_pb2_grpc.add_AuditHubServicer_to_server(self.audit_servicer, self._server)
        self._enroll_server = _enrolment_server(servicer)
        self.address = ""
        self.enroll_address = ""
        self._instance: InstanceLock | None = None

    def start(self, *, listen: str = "127.0.0.1:0", enroll_listen: str = "127.0.0.1:0") -> None:
        self._instance = InstanceLock(self.layout.root / "serve.lock", "A hub")
        self.address = bind(self._server, listen, self._tls.server_credentials())
        self.enroll_address = bind(
            self._enroll_server,
            enroll_listen,
            self._tls.server_credentials(require_client_auth=False),
        )
        self._server.start()
        self._enroll_server.start()
        write_private(
            self.layout.runtime,
            json.dumps(
                {"address": self.address, "enroll_address": self.enroll_address, "pid": os.getpid()}
            ),
        )
        log.info("hub_started", address=self.address, enroll_address=self.enroll_address)
        for warning in loose_modes(self.layout.root):
            log.warning("file_mode_loose", detail=warning)

    def wait(self) -> None:
        self._server.wait_for_termination()

    def stop(self, grace: float = 1.0) -> None:
        self._enroll_server.stop(grace).wait()
        self._server.stop(grace).wait()
        self.layout.runtime.unlink(missing_ok=True)
        self._registry.close()
        self.audit_log.close()
        if self._instance is not None:
            self._instance.release()
        log.info("hub_stopped")


def _enrolment_server(servicer: HubServicer) -> grpc.Server:
    """A server with Hub.Enroll and health checking only."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[
            ("grpc.max_receive_message_length", MAX_ENROLL_REQUEST_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    enroll = grpc.unary_unary_rpc_method_handler(
        servicer.Enroll,
        request_deserializer=hub_pb2.EnrollRequest.FromString,
        response_serializer=hub_pb2.EnrollResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(HUB_SERVICE, {"Enroll": enroll}),)
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (HUB_SERVICE, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server
