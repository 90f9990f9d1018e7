"""Operator operations on the data store (imports, purges, identity index builds and
OPRF key rotations) and their audit records.

An import or a purge commits in data.db; its audit record lands in state.db.
Two files cannot share a transaction, so a crash between the two commits could
leave a committed operation unaudited. Instead of trusting the caller to write
the record, the node derives it from the committed store: every import and
purge row that has no marker in ``audited_operations`` is audited, and the
marker is written in the same transaction as its audit record. The node does
this when it starts, whenever the CLI tells it an operation finished, and on
the offline path, so whatever is committed is audited, exactly once.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

from rcf.node.audit.chain import AuditEvent, AuditLog, local_event
from rcf.node.ops.config import NodeLayout

SCHEMA = "CREATE TABLE IF NOT EXISTS audited_operations (operation TEXT PRIMARY KEY) WITHOUT ROWID"


@dataclass(frozen=True)
class Operation:
    operation: str  # stable id: "import-12", "purge-1732800000000"
    event: AuditEvent


def _digest(fields: object) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _committed(layout: NodeLayout, member_id: str) -> Iterator[Operation]:
    path = layout.data_db
    if not path.exists():
        return
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "imports" in tables:
            for row in conn.execute(
                "SELECT import_id, dataset, source, format, dictionary_version, started_at_ms,"
                " finished_at_ms, rows_read, inserted, updated, unchanged, rejected"
                " FROM imports ORDER BY import_id"
            ):
                import_id, dataset, *_, inserted, updated, unchanged, rejected = row
                op = f"import-{import_id}"
                yield Operation(
                    op,
                    local_event(
                        member_id,
                        action="data_import",
                        purpose=f"import {dataset}",
                        decision="imported",
                        reason=(
                            f"inserted={inserted} updated={updated} unchanged={unchanged} "
                            f"rejected={rejected}"
                        ),
                        subject_sha256=_digest(list(row)),
                        query_id=op,
                    ),
                )
        if "identity_index_builds" in tables:
            for row in conn.execute(
                "SELECT build_id, at_ms, reason, key_id, persons, documents, tokens, skipped"
                " FROM identity_index_builds ORDER BY build_id"
            ):
                build_id, _, reason, key_id, persons, documents, tokens, skipped = row
                op = f"index-{build_id}"
                yield Operation(
                    op,
                    local_event(
                        member_id,
                        action="oprf_key_rotation" if reason == "rotate" else "identity_reindex",
                        purpose="identity index",
                        decision="rebuilt",
                        reason=(
                            f"key={key_id} persons={persons} documents={documents} "
                            f"tokens={tokens} skipped={skipped}"
                        ),
                        subject_sha256=_digest(list(row)),
                        query_id=op,
                    ),
                )
        if "purges" in tables:
            purges: dict[int, list[tuple[str, str, int]]] = {}
            for at_ms, cutoff, dataset, deleted in conn.execute(
                "SELECT at_ms, cutoff, dataset, deleted FROM purges ORDER BY purge_id"
            ):
                purges.setdefault(int(at_ms), []).append((str(cutoff), str(dataset), int(deleted)))
            for at_ms, rows in purges.items():
                op = f"purge-{at_ms}"
                yield Operation(
                    op,
                    local_event(
                        member_id,
                        action="data_purge",
                        purpose="retention",
                        decision="purged",
                        reason=f"deleted={sum(r[2] for r in rows)} cutoff={rows[0][0]}",
                        subject_sha256=_digest([at_ms, rows]),
                        query_id=op,
                    ),
                )


def reconcile_operations(layout: NodeLayout, audit: AuditLog) -> int:
    """Audit every committed operation not yet audited; return how many were."""
    state = audit.state
    state.run(lambda conn: conn.execute(SCHEMA))
    done = {str(r[0]) for r in state.read("SELECT operation FROM audited_operations")}
    member_id = layout.load_config().member_id
    count = 0
    for op in _committed(layout, member_id):
        if op.operation in done:
            continue

        def mark(conn: sqlite3.Connection, name: str = op.operation) -> None:
            conn.execute("INSERT INTO audited_operations VALUES (?)", (name,))

        audit.append(op.event, with_write=mark)
        count += 1
    return count


def console_action_event(
    member_id: str, *, user: str, action: str, detail: str, query_ids: list[str]
) -> AuditEvent:
    """The audit record of what a web-console user did: the account name in the reason
    (never a subject), the peer queries it made by id, so `rcf audit log` shows who."""
    reason = f"user={user}" + (f" {detail}" if detail else "")
    if query_ids:
        reason += " queries=" + ",".join(query_ids)
    return local_event(
        member_id,
        action=f"console_{action}",
        purpose="console",
        decision="done",
        reason=reason,
        subject_sha256=_digest([user, action, detail, query_ids]),
    )
