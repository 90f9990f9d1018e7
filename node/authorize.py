"""The interim allow-list (default deny) until sharing policies replace it."""

from __future__ import annotations

from dataclasses import dataclass

from trust.directory import Member
from trust.errors import RequestRejected


@dataclass(frozen=True)
class AllowList:
    """query type → entries: a member id, ``group:NAME``, ``role:NAME`` or ``*``."""

    rules: dict[str, tuple[str, ...]]

    def allows(self, query_type: str, requester: Member) -> bool:
        for entry in self.rules.get(query_type, ()):
            if entry in ("*", requester.member_id):
                return True
            kind, _, name = entry.partition(":")
            if (kind == "group" and name in requester.groups) or (
                kind == "role" and name in requester.roles
            ):
                return True
        return False

    def check(self, query_type: str, requester: Member) -> None:
        if not self.allows(query_type, requester):
            raise RequestRejected(
                f"{requester.member_id} is not allowed to send {query_type} queries to this node.",
                reason="not_authorized",
            )
