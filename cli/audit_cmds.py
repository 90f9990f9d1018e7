"""`rcf audit …`: read and verify a node's local audit log."""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from rcf.auditor.checks import (
    HubResult,
    NodeResult,
    NodeView,
    VerifyReport,
    bundle_keys_text,
    check_bundle,
    crosscheck,
    make_bundle,
    open_node,
    parse_keys,
    verify_hub,
    verify_node,
    write_bundle,
)
from rcf.cli.errors import guarded
from rcf.cli.options import MEMBER_ID, node_dir_option
from rcf.cli.output import emit_json, json_option, table
from rcf.hub.audit_log import AuditLogReader
from rcf.hub.layout import HubLayout
from rcf.node.audit.anchor import AnchorStore
from rcf.node.audit.archive import archive_before
from rcf.node.audit.backlog import audit_backlog
from rcf.node.audit.chain import AuditLog
from rcf.node.federation.directory_cache import DirectoryCache
from rcf.node.ops.config import NodeLayout
from rcf.node.ops.state import StateDB
from rcf.trust.audit_leaf import log_origin
from rcf.trust.clock import now_ms
from rcf.trust.errors import ConfigError, VerificationError
from rcf.trust.files import write_private


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


node_dirs_option = click.option(
    "--node-dir",
    "node_dirs",
    type=click.Path(file_okay=False, path_type=Path),
    multiple=True,
    default=("rcf-node",),
    show_default=True,
    envvar="RCF_NODE_DIR",
    help="A node's folder (or a copy); repeat for every node the auditor can reach.",
)
audit_hub_option = click.option(
    "--hub-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The hub's folder (or a copy holding audit-log.db and hub.toml).",
)
quorum_option = click.option(
    "--quorum",
    type=click.IntRange(min=1),
    default=None,
    help="Witness cosignatures a checkpoint needs (default: the hub's audit_quorum, else 1).",
)


def _views(node_dirs: tuple[Path, ...]) -> list[NodeView]:
    views: list[NodeView] = []
    try:
        for path in node_dirs:
            views.append(open_node(path))
    except BaseException:
        for v in views:
            v.close()
        raise
    return views


def _hub(hub_dir: Path | None) -> tuple[AuditLogReader | None, int]:
    if hub_dir is None:
        return None, 1
    layout = HubLayout(hub_dir)
    config = layout.load_config()
    return AuditLogReader(layout.audit_log_db), config.audit_quorum


@audit.command("verify")
@node_dirs_option
@audit_hub_option
@click.option(
    "--trusted",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The checkpoint this auditor trusted last: checked for consistency, then advanced.",
)
@quorum_option
@click.option(
    "--strict",
    is_flag=True,
    help="Also fail when a node's audit records have waited for the hub past its "
    "audit_backlog_warn_s (shipping is stuck).",
)
@json_option
@guarded
def audit_verify(
    node_dirs: tuple[Path, ...],
    hub_dir: Path | None,
    trusted: Path | None,
    quorum: int | None,
    strict: bool,
    as_json: bool,
) -> None:
    """Verify every node's log and, with --hub-dir, its anchoring in the hub's log.

    Per node: state.db's structure; sequence, hash chain and signatures across
    archived segments (streamed, constant memory); every record against the
    copy the hub holds and the inclusion proofs the node kept; nothing shipped
    is missing. For the hub: the final checkpoint's signature and witness
    quorum, consistency with --trusted, and that its entries hash to it.
    A backlog of records not yet accepted by the hub is a warning (an error
    with --strict) once older than the node's audit_backlog_warn_s.
    """
    views = _views(node_dirs)
    reader, hub_quorum = _hub(hub_dir)
    try:
        backlogs = [_backlog_warning(view) for view in views]
        hub_result: HubResult | None = None
        final = None
        if reader is not None:
            first = views[0]
            trusted_note = trusted.read_text() if trusted is not None and trusted.exists() else ""
            hub_result, final = verify_hub(
                reader,
                origin=first.origin,
                hub_key=first.hub_key,
                witnesses=first.witnesses,
                quorum=quorum or hub_quorum,
                trusted_note=trusted_note,
            )
        results = []
        for view in views:
            if len(views) == 1 and reader is None:
                damaged = view.audit.quick_check()
                if damaged:
                    raise VerificationError(
                        f"{view.root / 'state.db'} is damaged ({damaged[0]}); restore it from "
                        "a backup.",
                        reason="audit_file_damaged",
                    )
                total = view.audit.count()

                def progress(done: int, total: int = total) -> None:
                    click.echo(f"verified {done:,} of {total:,} audit records", err=True)

                results.append(_verify_with_progress(view, progress))
            else:
                results.append(verify_node(view, reader, final))
        report = VerifyReport(results, hub_result)
    finally:
        for v in views:
            v.close()
        if reader is not None:
            reader.close()
    problems = report.problems
    if not problems and trusted is not None and final is not None:
        write_private(trusted, final.note)
    warnings = [w for w in backlogs if w]
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    if as_json:
        emit_json({**_report_json(report), **({"warnings": warnings} if warnings else {})})
        if problems:
            raise VerificationError(problems[0], reason="audit_verify_failed")
        if strict and warnings:
            raise VerificationError(warnings[0], reason="audit_backlog_stuck")
        return
    for p in problems[1:]:
        click.echo(f"problem: {p}", err=True)
    if problems:
        raise VerificationError(problems[0], reason="audit_verify_failed")
    for r in results:
        anchored = f", {r.anchored} matched in the hub log" if reader is not None else ""
        click.echo(
            f"{r.member_id}: audit log intact: {r.records} records, chain and signatures "
            f"verified, state.db structure ok; {r.shipped} shipped, {r.batches} batch proofs "
            f"verified{anchored}"
        )
    if hub_result is not None:
        click.echo(
            f"hub log intact: {hub_result.entries} entries; final checkpoint of "
            f"{hub_result.final_size} entries with {hub_result.cosignatures} witness "
            f"cosignatures; consistent with the trusted checkpoint of {hub_result.trusted_size}"
        )
    if strict and warnings:
        raise VerificationError(warnings[0], reason="audit_backlog_stuck")


def _backlog_warning(view: NodeView) -> str:
    """The node's stuck-backlog sentence ("" if its records reach the hub in time)."""
    threshold_s = NodeLayout(view.root).load_config().audit_backlog_warn_s
    backlog = audit_backlog(view.audit, view.anchor)
    return backlog.warning(now_ms(), threshold_s, member_id=view.member_id)


def _verify_with_progress(view: NodeView, progress: Callable[[int], None]) -> NodeResult:
    """One node, no hub: the same checks, reporting progress on a long log."""
    problems = view.audit.quick_check()
    if problems:
        raise VerificationError(
            f"{view.root / 'state.db'} is damaged ({problems[0]}); restore it from a backup.",
            reason="audit_file_damaged",
        )
    result = verify_node(view, None, None, progress=progress)
    if not result.problems:
        return result
    # Re-raise the chain's own sentence (it names the record).
    raise VerificationError(result.problems[0], reason="audit_verify_failed")


def _report_json(report: VerifyReport) -> dict[str, Any]:
    if len(report.nodes) == 1 and report.hub is None:
        n = report.nodes[0]
        return {"intact": not n.problems, "records": n.records, "file_check": "ok",
                "shipped": n.shipped}  # fmt: skip
    return {
        "intact": not report.problems,
        "problems": report.problems,
        "nodes": [
            {
                "member": n.member_id,
                "records": n.records,
                "shipped": n.shipped,
                "batches": n.batches,
                "anchored": n.anchored,
            }
            for n in report.nodes
        ],
        "hub": None
        if report.hub is None
        else {
            "entries": report.hub.entries,
            "final_size": report.hub.final_size,
            "cosignatures": report.hub.cosignatures,
            "trusted_size": report.hub.trusted_size,
        },
    }


@audit.command("crosscheck")
@node_dirs_option
@json_option
@guarded
def audit_crosscheck(node_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Check that every query appears at requester and responder with matching digests."""
    views = _views(node_dirs)
    try:
        matched, mismatches = crosscheck(views)
    finally:
        for v in views:
            v.close()
    failing = [m for m in mismatches if m.failing]
    if as_json:
        emit_json({"matched": matched, "mismatches": [asdict(m) for m in mismatches]})
    else:
        if mismatches:
            table(
                "queries not found on both sides with matching digests",
                ["query id", "requester", "responder", "problem", "counts"],
                [[m.query_id, m.requester, m.responder, m.problem,
                  "yes" if m.failing else "no (never reached the responder)"]
                 for m in mismatches],
            )  # fmt: skip
        click.echo(
            f"{matched} queries logged on both sides with matching digests; "
            f"{len(failing)} mismatches"
        )
    if failing:
        raise VerificationError(
            f"{len(failing)} queries are not logged on both sides with matching digests.",
            reason="crosscheck_failed",
        )


def _since(value: str | None) -> int:
    if not value:
        return 0
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter("give a date or time like 2026-11-28 or 2026-11-28T10:00") from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


@audit.command("log")
@node_dirs_option
@click.option("--member", type=MEMBER_ID, default=None, help="Only the log of this member.")
@click.option("--type", "query_type", default=None, help="Only query types containing this.")
@click.option("--since", default=None, help="Only records from this UTC date or time on.")
@click.option("--limit", default=200, show_default=True, help="At most this many (newest).")
@json_option
@guarded
def audit_log(
    node_dirs: tuple[Path, ...],
    member: str | None,
    query_type: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """A read-only view of audit records (across archived segments); never query contents."""
    since_ms = _since(since)
    views = _views(node_dirs)
    rows: deque[dict[str, Any]] = deque(maxlen=limit)
    try:
        for view in views:
            if member is not None and view.member_id != member:
                continue
            for r in view.records():
                if r.ts_ms < since_ms:
                    continue
                if query_type and query_type.lower() not in r.event.query_type.lower():
                    continue
                rows.append({"log": view.member_id, "seq": r.seq, "ts_ms": r.ts_ms,
                             **asdict(r.event), "record_hash": r.record_hash})  # fmt: skip
    finally:
        for v in views:
            v.close()
    if as_json:
        emit_json(list(rows))
        return
    table(
        "audit records",
        ["log", "seq", "time (UTC)", "side", "type", "requester", "responder", "decision",
         "reason"],
        [[r["log"], r["seq"], _clock(r["ts_ms"]), r["side"], r["query_type"], r["requester"],
          r["responder"], r["decision"], r["reason"]] for r in rows],
    )  # fmt: skip


@audit.command("prove")
@click.argument("query_id")
@node_dirs_option
@audit_hub_option
@quorum_option
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
    help="Where to write the proof bundle (JSON).",
)  # fmt: skip
@click.option(
    "--keys-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Also write the hub and witness public keys check-bundle needs.",
)  # fmt: skip
@guarded
def audit_prove(
    query_id: str,
    node_dirs: tuple[Path, ...],
    hub_dir: Path | None,
    quorum: int | None,
    out: Path,
    keys_out: Path | None,
) -> None:
    """Write an offline proof bundle: the query's records and their inclusion proofs in
    the hub log's final checkpoint (hub-signed, cosigned by a quorum of witnesses)."""
    if hub_dir is None:
        raise ConfigError("Give --hub-dir: the proofs come from the hub's audit log.")
    views = _views(node_dirs[:1])
    reader, hub_quorum = _hub(hub_dir)
    assert reader is not None
    try:
        view = views[0]
        hub_result, final = verify_hub(
            reader, origin=view.origin, hub_key=view.hub_key, witnesses=view.witnesses,
            quorum=quorum or hub_quorum, trusted_note="",
        )  # fmt: skip
        if final is None:
            raise VerificationError(hub_result.problems[0] if hub_result.problems else
                                    "The hub log has no final checkpoint.")  # fmt: skip
        bundle = make_bundle(reader, final, query_id)
        keys = bundle_keys_text(view, quorum or hub_quorum)
    finally:
        views[0].close()
        reader.close()
    write_bundle(out, bundle)
    if keys_out is not None:
        write_private(keys_out, keys)
    click.echo(
        f"wrote {out}: {len(bundle['entries'])} records of query {query_id}, proven in the "
        f"checkpoint of {final.checkpoint.size} entries"
    )


@audit.command("keys")
@node_dirs_option
@quorum_option
def audit_keys(node_dirs: tuple[Path, ...], quorum: int | None) -> None:
    """Print the hub and witness keys (C2SP vkeys, from the signed directory) for check-bundle."""

    def run() -> None:
        views = _views(node_dirs[:1])
        try:
            click.echo(bundle_keys_text(views[0], quorum or 1), nl=False)
        finally:
            views[0].close()

    guarded(run)()


@audit.command("check-bundle")
@click.argument("bundle_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--keys", "keys_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
    help="The hub and witness public keys (rcf audit keys / prove --keys-out).",
)  # fmt: skip
@json_option
@guarded
def audit_check_bundle(bundle_file: Path, keys_file: Path, as_json: bool) -> None:
    """Verify a proof bundle offline, with only the hub's and witnesses' public keys."""
    try:
        data = json.loads(bundle_file.read_text())
        keys = parse_keys(keys_file.read_text())
    except OSError as exc:
        raise ConfigError(f"Cannot read {exc.filename}: {exc.strerror}.") from exc
    except ValueError as exc:
        raise VerificationError(
            f"{bundle_file} is not an audit proof bundle.", reason="malformed_bundle"
        ) from exc
    leaves = check_bundle(data, keys)
    rows = [{"log": leaf.member_id, "seq": leaf.record.seq, **asdict(leaf.record.event)}
            for leaf in leaves]  # fmt: skip
    if as_json:
        emit_json({"valid": True, "records": rows})
        return
    for r in rows:
        click.echo(
            f"proven: {r['log']} record {r['seq']}: {r['side']} {r['query_type']} "
            f"{r['requester']} -> {r['responder']} {r['decision']} ({r['reason']})"
        )
    click.echo(f"bundle valid: {len(rows)} records included in a final checkpoint")


@audit.command("archive")
@node_dir_option
@click.option("--before", required=True, help="Archive records older than this UTC date.")
@guarded
def audit_archive(node_dir: Path, before: str) -> None:
    """Move records covered by a final checkpoint and older than --before into a segment."""
    layout = NodeLayout(node_dir)
    config = layout.load_config()
    directory = DirectoryCache(layout.directory_cache, hub_public_key=config.hub_public_key).peek()
    state = StateDB(layout.state_db, sync=config.audit_sync)
    try:
        audit_log = AuditLog(state, None)
        done = archive_before(
            root=node_dir,
            member_id=config.member_id,
            state=state,
            audit=audit_log,
            anchor=AnchorStore(state),
            origin=log_origin(directory.network),
            before_ms=_since(before),
        )
    finally:
        state.close()
    if done is None:
        click.echo("nothing to archive: no shipped, finally checkpointed records before that date")
        return
    click.echo(
        f"archived {done.records} records (seq {done.segment.first_seq} to "
        f"{done.segment.last_seq}) into {done.segment.path}"
    )


def register(root: click.Group) -> None:
    root.add_command(audit)
