"""gRPC adapter for the federation API: every call goes through the Pipeline."""

from __future__ import annotations

import grpc

from node.pipeline import Pipeline
from node.queries import PING, answer_ping
from protos.rcf.v1 import envelope_pb2, federation_pb2_grpc
from trust.serving import refusals_as_status
from trust.tls import peer_certificate_pem


class FederationServicer(federation_pb2_grpc.FederationServicer):
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    @refusals_as_status
    def Ping(
        self, request: envelope_pb2.Envelope, context: grpc.ServicerContext
    ) -> envelope_pb2.Envelope:
        return self._pipeline.run(PING, request, peer_certificate_pem(context), answer_ping)
