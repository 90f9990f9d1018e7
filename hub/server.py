"""Running the hub: one gRPC server on two ports.

The main port requires a client certificate from the network CA (mutual TLS).
The enrolment port authenticates only the hub, because a node that is still
enrolling has no certificate yet; it serves nothing but join-token enrolment.
"""

from __future__ import annotations

import json
import os

import structlog

from hub.layout import HubLayout
from hub.service import HubServicer
from hub.setup import open_registry
from protos.rcf.v1 import hub_pb2, hub_pb2_grpc
from trust.files import loose_modes, write_private
from trust.serving import InstanceLock, bind, build_server

MAX_MESSAGE_BYTES = 4 * 1024 * 1024

log = structlog.get_logger("rcf.hub")


class HubServer:
    def __init__(self, layout: HubLayout) -> None:
        self.layout = layout
        self._registry = open_registry(layout)
        self._tls = layout.load_tls()
        self._server, _ = build_server(
            max_workers=8,
            max_message_bytes=MAX_MESSAGE_BYTES,
            service_names=[hub_pb2.DESCRIPTOR.services_by_name["Hub"].full_name],
        )
        hub_pb2_grpc.add_HubServicer_to_server(
            HubServicer(self._registry, layout.load_signing_key()), self._server
        )
        self.address = ""
        self.enroll_address = ""
        self._instance: InstanceLock | None = None

    def start(self, *, listen: str = "127.0.0.1:0", enroll_listen: str = "127.0.0.1:0") -> None:
        self._instance = InstanceLock(self.layout.root / "serve.lock", "A hub")
        self.address = bind(self._server, listen, self._tls.server_credentials())
        self.enroll_address = bind(
            self._server, enroll_listen, self._tls.server_credentials(require_client_auth=False)
        )
        self._server.start()
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
        self._server.stop(grace).wait()
        self.layout.runtime.unlink(missing_ok=True)
        self._registry.close()
        if self._instance is not None:
            self._instance.release()
        log.info("hub_stopped")
