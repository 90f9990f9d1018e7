"""Identity checks' registration: both rounds' specs, and how a node answers them."""

from __future__ import annotations

from dataclasses import replace

import structlog

from rcf.node.audit.operations import reconcile_operations
from rcf.node.data.dictionary import load_dictionary
from rcf.node.federation.binding import NodeServices, OperatorService, QueryType, Served
from rcf.node.identity.checks import IDENTITY_EVALUATE, IDENTITY_LOOKUP
from rcf.node.identity.maintenance import rotate as rotate_oprf
from rcf.node.identity.node_keys import load_or_create_oprf_key, load_or_create_reference_key
from rcf.node.identity.operator import IdentityOperatorServicer
from rcf.node.identity.responder import IdentityResponder
from rcf.node.identity.token_store import BuildResult
from rcf.protos.v1 import identity_pb2, identity_pb2_grpc

log = structlog.get_logger("rcf.node")

OPERATOR_SERVICE = identity_pb2.DESCRIPTOR.services_by_name["IdentityOperator"].full_name


def bind(services: NodeServices) -> Served[IdentityResponder]:
    """Both rounds answered with this node's OPRF key and token index."""
    layout = services.layout
    responder = IdentityResponder(
        member_id=services.member_id,
        key=load_or_create_oprf_key(layout.root),
        reference_key=load_or_create_reference_key(layout.root),
        data_db=layout.data_db,
        state=services.state,
        directory=services.directory,
        ttl_ms=int(services.config.identity_check_ttl_s * 1000),
    )

    def rotate() -> BuildResult:
        """A new OPRF key, the token index rebuilt under it, audited; then answered with."""
        key, result = rotate_oprf(layout.root, load_dictionary(layout))
        responder.swap_key(key)
        reconcile_operations(layout, services.audit)
        log.info("oprf_key_rotated", key_id=key.key_id, tokens=result.tokens)
        return result

    servicer = IdentityOperatorServicer(
        token=services.operator_token,
        member_id=services.member_id,
        peers=services.peers,
        directory=services.directory,
        rotate=rotate,
    )
    return Served(
        specs=(
            replace(IDENTITY_EVALUATE, answer=responder.evaluate),
            replace(IDENTITY_LOOKUP, answer=responder.lookup),
        ),
        part=responder,
        operators=(
            OperatorService(
                OPERATOR_SERVICE,
                lambda server: identity_pb2_grpc.add_IdentityOperatorServicer_to_server(
                    servicer, server
                ),
            ),
        ),
        close=responder.close,
    )


QUERY_TYPE = QueryType(name="IdentityCheck", specs=(IDENTITY_EVALUATE, IDENTITY_LOOKUP), bind=bind)
