"""gRPC adapter for the federation API, built from the registered query types.

Each query type becomes one method of ``rcf.v1.Federation``. Requests arrive as
raw bytes so the pipeline can bound their size, name the TLS peer in the audit
record of an oversize or malformed body, and parse the envelope itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from rcf.node.federation.pipeline import Pipeline
from rcf.node.federation.protocol import FEDERATION_SERVICE, QuerySpec
from rcf.trust.errors import RcfError
from rcf.trust.serving import internal_error, log
from rcf.trust.status import abort_with
from rcf.trust.tls import peer_certificate_pem


def _identity(data: bytes) -> bytes:
    return data


def _unary(pipeline: Pipeline, spec: QuerySpec[Any, Any]) -> Callable[..., bytes]:
    def handle(raw: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            return pipeline.run(spec, raw, peer_certificate_pem(context)).SerializeToString()
        except RcfError as exc:
            abort_with(context, exc)
        except Exception as exc:  # the pipeline audits its own; this is the last net
            log.exception("internal_error", method=spec.name, error=type(exc).__name__)
            abort_with(context, internal_error())

    return handle


def _streaming(pipeline: Pipeline, spec: QuerySpec[Any, Any]) -> Callable[..., Iterator[bytes]]:
    def handle(raw: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            for sealed in pipeline.run_stream(spec, raw, peer_certificate_pem(context)):
                yield sealed.SerializeToString()
        except RcfError as exc:
            abort_with(context, exc)
        except Exception as exc:
            log.exception("internal_error", method=spec.name, error=type(exc).__name__)
            abort_with(context, internal_error())

    return handle


def federation_handler(
    pipeline: Pipeline, specs: Iterable[QuerySpec[Any, Any]]
) -> grpc.GenericRpcHandler[bytes, bytes]:
    """The Federation service: one method per registered query type."""
    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {}
    for spec in specs:
        if spec.streaming:
            handlers[spec.name] = grpc.unary_stream_rpc_method_handler(
                _streaming(pipeline, spec),
                request_deserializer=_identity,
                response_serializer=_identity,
            )
        else:
            handlers[spec.name] = grpc.unary_unary_rpc_method_handler(
                _unary(pipeline, spec),
                request_deserializer=_identity,
                response_serializer=_identity,
            )
    return grpc.method_handlers_generic_handler(FEDERATION_SERVICE, handlers)
