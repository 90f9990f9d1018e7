"""Aggregate's registration: its spec, and how a node serves it from its store."""

from __future__ import annotations

from rcf.node.aggregate.operator import AggregateOperatorServicer
from rcf.node.aggregate.reciprocity import ContributorRegistry
from rcf.node.aggregate.responder import AGGREGATE, AggregateResponder
from rcf.node.federation.binding import NodeServices, OperatorService, QueryType, Served
from rcf.protos.v1 import aggregate_pb2, aggregate_pb2_grpc

OPERATOR_SERVICE = aggregate_pb2.DESCRIPTOR.services_by_name["AggregateOperator"].full_name


def bind(services: NodeServices) -> Served[AggregateResponder]:
    """Aggregate answered from this node's data.db under its policy."""
    contributors = ContributorRegistry(services.state)
    responder = AggregateResponder(
        data_db=services.layout.data_db,
        dictionary=services.dictionary,
        state=services.state,
        contributors=contributors,
    )
    servicer = AggregateOperatorServicer(
        token=services.operator_token,
        peers=services.peers,
        directory=services.directory.current,
        dictionary=services.dictionary,
        contributors=contributors,
    )
    return Served(
        specs=(responder.spec(),),
        part=responder,
        operators=(
            OperatorService(
                OPERATOR_SERVICE,
                lambda server: aggregate_pb2_grpc.add_AggregateOperatorServicer_to_server(
                    servicer, server
                ),
            ),
        ),
    )


QUERY_TYPE = QueryType(name="Aggregate", specs=(AGGREGATE,), bind=bind)
