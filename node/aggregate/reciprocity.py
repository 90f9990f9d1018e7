"""Reciprocity: only members that contribute a dataset receive others' aggregates of it.

A policy rule with reciprocity on answers a requester only if the requester is a
contributor of the dataset. Who contributes is network knowledge, not the
responder's opinion: the caller passes the contributors of the dataset (from the
signed directory, or, for a regional merge, the members that answered with data),
and this module only decides.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from node.aggregate.merge import ANSWERED, MemberResult
from trust.errors import RequestRejected

RECIPROCITY_REQUIRED = "reciprocity_required"


def check_reciprocity(requester: str, dataset: str, contributors: Collection[str]) -> None:
    """Refuse (reason ``reciprocity_required``) unless requester contributes dataset."""
    if requester not in contributors:
        raise RequestRejected(
            f"Refused: only members that contribute {dataset} receive aggregates of it.",
            reason=RECIPROCITY_REQUIRED,
        )


def contributors_of(results: Sequence[MemberResult]) -> frozenset[str]:
    """The members whose answer in a regional query carried a table (they contribute)."""
    return frozenset(r.member for r in results if r.outcome == ANSWERED)
