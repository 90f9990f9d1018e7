"""The node's audit log as its operator API shows it: newest records with filters, and
a check of the whole chain with the member's signing keys (the auditor's chain check,
run by the node on its own log)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rcf.node.audit.archive import iter_all_records
from rcf.node.audit.chain import AuditLog, AuditRecord, verify_chain
from rcf.node.ops.state import StateDB
from rcf.trust.errors import RcfError

MAX_SHOWN = 1000
SCAN = 20_000  # newest records searched for a filtered view


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    records: int
    problem: str


def newest(audit: AuditLog, *, limit: int, query_type: str = "", member: str = ""
           ) -> list[AuditRecord]:  # fmt: skip
    """Up to limit newest records (newest first) of query_type and touching member."""
    limit = max(1, min(limit, MAX_SHOWN))
    out: list[AuditRecord] = []
    for rec in reversed(audit.records(limit=SCAN if (query_type or member) else limit)):
        e = rec.event
        if query_type and e.query_type != query_type:
            continue
        if member and member not in (e.requester, e.responder):
            continue
        out.append(rec)
        if len(out) >= limit:
            break
    return out


def check_chain(state: StateDB, root: Path, audit: AuditLog, keys: dict[str, bytes]) -> ChainCheck:
    """Sequence, hash chain and batch signatures of every record, archived ones too."""
    records: Iterator[AuditRecord] = iter_all_records(state, root, audit)
    try:
        return ChainCheck(True, verify_chain(records, keys), "")
    except RcfError as exc:
        return ChainCheck(False, 0, str(exc))
