"""`rcf audit …`: read and verify a node's local audit log."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path

import click

from cli.errors import guarded
from cli.options import node_dir_option
from cli.output import emit_json, json_option, table
from node.audit import AuditLog
from node.config import NodeLayout
from node.directory_cache import DirectoryCache
from node.state import StateDB
from trust.audit_record import verify_chain
from trust.errors import VerificationError


def _clock(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@click.group("audit")
def audit() -> None:
    """Inspect and verify audit trails."""


def _open(node_dir: Path) -> tuple[NodeLayout, StateDB, AuditLog]:
    """The log, read-only: the CLI never opens the member's signing key."""
    layout = NodeLayout(node_dir)
    config = layout.load_config()
    state = StateDB(layout.state_db, sync=config.audit_sync)
    return layout, state, AuditLog(state, None)


@audit.command("show")
@node_dir_option
@click.option("--limit", default=50, show_default=True, help="Most recent N records.")
@json_option
@guarded
def audit_show(node_dir: Path, limit: int, as_json: bool) -> None:
    """List the node's most recent audit records (never query contents)."""
    _, state, log = _open(node_dir)
    try:
        records = log.records(limit=limit)
    finally:
        state.close()
    rows = [
        {"seq": r.seq, "ts_ms": r.ts_ms, **asdict(r.event), "record_hash": r.record_hash}
        for r in records
    ]
    if as_json:
        emit_json(rows)
        return
    table(
        "audit log",
        ["seq", "time (UTC)", "side", "type", "requester", "responder", "decision", "reason"],
        [
            [r["seq"], _clock(r["ts_ms"]),
             r["side"], r["query_type"], r["requester"], r["responder"], r["decision"], r["reason"]]
            for r in rows
        ],
    )  # fmt: skip


@audit.command("verify")
@node_dir_option
@json_option
@guarded
def audit_verify(node_dir: Path, as_json: bool) -> None:
    """Check state.db's structure, then the log's sequence, hash chain and signatures.

    The log is read page by page, so memory stays flat however long it is; a
    long log reports its progress on stderr.
    """
    layout, state, log = _open(node_dir)
    try:
        problems = log.quick_check()
        if problems:
            raise VerificationError(
                f"{layout.state_db} is damaged ({problems[0]}); restore it from a backup.",
                reason="audit_file_damaged",
            )
        directory = DirectoryCache(
            layout.directory_cache, hub_public_key=layout.load_config().hub_public_key
        ).peek()
        member = directory.member(layout.load_config().member_id)
        keys = {k.key_id: k.public_key for k in member.signing_keys} if member else {}
        total = log.count()

        def progress(done: int) -> None:
            click.echo(f"verified {done:,} of {total:,} audit records", err=True)

        count = verify_chain(log.iter_records(), keys, progress=progress)
    finally:
        state.close()
    if as_json:
        emit_json({"intact": True, "records": count, "file_check": "ok"})
        return
    click.echo(
        f"audit log intact: {count} records, chain and signatures verified, state.db structure ok"
    )


def register(root: click.Group) -> None:
    root.add_command(audit)
