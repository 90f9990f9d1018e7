"""`rcf policy …`: read, check, change, explain and roll back this node's sharing policy.

Reading commands work on the node's folder whether or not the node runs.
`apply` and `rollback` go through the running node (which signs, stores,
audits and hot-reloads); with the node stopped they act on its folder and
the node starts with the new version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from rcf.cli.errors import guarded
from rcf.cli.operator_client import node_running, operator_stub
from rcf.cli.options import node_dir_option
from rcf.cli.output import console, emit_json, json_option, plural, table, utc_time
from rcf.node.ops.assembly import offline, read_only
from rcf.node.ops.config import NodeConfig, NodeLayout
from rcf.node.policy.admin import PolicyAdmin, PolicyGate, refusal
from rcf.node.policy.diff import access_changes, delta, rule_changes, terms
from rcf.node.policy.engine import describe_usage
from rcf.node.policy.loader import Issue, Loaded
from rcf.node.policy.model import QUERY_TYPES, Constraints, Decision, Policy, QueryDescription
from rcf.node.policy.store import StoredVersion
from rcf.node.policy.validate import Context, check_policy
from rcf.protos.v1 import operator_pb2
from rcf.trust.clock import now_ms
from rcf.trust.dictionary import default_dictionary
from rcf.trust.errors import ConfigError, VerificationError

file_argument = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))


def say(text: str) -> None:
    console.print(text, markup=False, highlight=False)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text.") from exc
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from exc


@contextmanager
def _local(node_dir: Path) -> Iterator[tuple[PolicyAdmin, NodeConfig]]:
    """A read-only policy admin over the node's folder: it verifies, never signs."""
    with read_only(NodeLayout(node_dir)) as core:
        yield core.policy, core.config


@contextmanager
def _offline(node_dir: Path) -> Iterator[PolicyAdmin]:
    """The explicit offline path: the node is stopped, so this command signs with its key."""
    with offline(NodeLayout(node_dir)) as core:
        yield core.policy


def _print_issues(issues: tuple[Issue, ...] | list[Issue]) -> None:
    for issue in issues:
        colour = "red" if issue.severity == "error" else "yellow"
        click.secho(issue.render(), fg=colour, err=True)


@click.group("policy")
def policy() -> None:
    """This node's sharing policy: validate, show, diff, apply, history, rollback, explain."""


# -- validate -----------------------------------------------------------------------


def _context(node_dir: Path) -> tuple[Context, str]:
    """What to check against: the node's directory and dictionary, if there is a node."""
    layout = NodeLayout(node_dir)
    if not layout.config.exists():
        note = (
            f"note: no node folder at {node_dir}; members were not checked against a "
            "directory (use --node-dir)"
        )
        return Context(dictionary=default_dictionary()), note
    with _local(node_dir) as (admin, _):
        return admin.context(), ""


@policy.command("validate")
@file_argument
@node_dir_option
@json_option
@guarded
def policy_validate(file: Path, node_dir: Path, as_json: bool) -> None:
    """Check FILE: every error with its line and a hint; warnings for rules that clash."""
    context, note = _context(node_dir)
    loaded = check_policy(_read(file), str(file), context)
    errors, warnings = loaded.errors, loaded.warnings
    if as_json:
        emit_json(
            {
                "file": str(file),
                "valid": not errors,
                "rules": len(loaded.policy.rules) if loaded.policy else None,
                "issues": [i.as_dict() for i in loaded.issues],
            }
        )
    else:
        _print_issues(loaded.issues)
        if note:
            click.echo(note, err=True)
        if loaded.policy is not None and not loaded.policy.rules:
            click.secho(
                f"WARNING: {file} is valid but has no rules: applied, it DENIES EVERY QUERY.",
                fg="red",
                bold=True,
                err=True,
            )
        verdict = "INVALID" if errors else "valid"
        click.echo(
            f"{file}: {verdict}: {plural(len(errors), 'error')}, {plural(len(warnings), 'warning')}"
        )
    if errors:
        raise SystemExit(1)


# -- show / history -----------------------------------------------------------------


def rule_dict(rule: Any) -> dict[str, Any]:
    data = asdict(rule)
    return {k: v for k, v in data.items() if v not in (None, (), "")}


def _policy_dict(policy: Policy, stored: StoredVersion | None) -> dict[str, Any]:
    return {
        "version": policy.version,
        "member": policy.member,
        "description": policy.description,
        "source_sha256": policy.source_sha256,
        "applied_at": utc_time(stored.applied_at_ms) if stored else None,
        "filename": stored.filename if stored else None,
        "rules": [rule_dict(r) for r in policy.rules],
    }


def _rules_table(title: str, policy: Policy) -> None:
    table(
        title,
        ["rule", "line", "requesters", "query", "datasets", "terms"],
        [
            [r.id, r.line, ", ".join(r.requesters), r.query, ", ".join(r.datasets) or "-", terms(r)]
            for r in policy.rules
        ],
    )


@policy.command("show")
@node_dir_option
@click.option(
    "--version", "version", type=int, default=None, help="A stored version (default: active)."
)
@click.option("--source", is_flag=True, help="Print the policy file as applied.")
@json_option
@guarded
def policy_show(node_dir: Path, version: int | None, source: bool, as_json: bool) -> None:
    """Show the active policy (or --version N): its rules and their terms."""
    with _local(node_dir) as (admin, _):
        active = admin.load_active(_seed(node_dir))
        stored = admin.store.get(version if version is not None else active.version)
        if stored is None:
            raise ConfigError(f"There is no policy version {version}; see 'rcf policy history'.")
        policy = admin.compile(stored)
    if source:
        click.echo(stored.source, nl=False)
        return
    if as_json:
        emit_json({**_policy_dict(policy, stored), "active": policy.version == active.version})
        return
    state = (
        "active" if policy.version == active.version else f"not active (active: {active.version})"
    )
    say(
        f"policy version {policy.version} ({state}), applied {utc_time(stored.applied_at_ms)} "
        f"from {stored.filename}; sha256 {stored.source_sha256[:16]}…; signature verified"
    )
    if not policy.rules:
        click.secho("this policy has no rules: every query is refused", fg="red", bold=True)
        return
    _rules_table(f"rules of {policy.member or 'this node'} (first applicable rule decides)", policy)


def _seed(node_dir: Path) -> dict[str, tuple[str, ...]]:
    return NodeLayout(node_dir).load_config().allow


@policy.command("history")
@node_dir_option
@json_option
@guarded
def policy_history(node_dir: Path, as_json: bool) -> None:
    """Every policy version applied to this node, newest last."""
    with _local(node_dir) as (admin, _):
        admin.load_active(_seed(node_dir))
        versions = admin.store.versions()
        rows = []
        for v in versions:
            try:
                admin.verify(v)
                signature = "verified"
            except VerificationError as exc:
                signature = f"BAD: {exc}"
            rows.append(
                {
                    "version": v.version,
                    "applied_at": utc_time(v.applied_at_ms),
                    "action": v.action + (f" of {v.based_on}" if v.based_on else ""),
                    "filename": v.filename,
                    "source_sha256": v.source_sha256,
                    "key_id": v.key_id,
                    "signature": signature,
                    "active": v is versions[-1],
                }
            )
    if as_json:
        emit_json(rows)
        return
    table(
        "policy history",
        ["version", "applied (UTC)", "action", "file", "sha256", "signature", ""],
        [
            [
                r["version"],
                r["applied_at"],
                r["action"],
                r["filename"],
                str(r["source_sha256"])[:12],
                r["signature"],
                "active" if r["active"] else "",
            ]
            for r in rows
        ],
    )


# -- diff -------------------------------------------------------------------------


def _checked(file: Path, context: Context) -> Loaded:
    loaded = check_policy(_read(file), str(file), context)
    if loaded.policy is None:
        _print_issues(loaded.errors)
        raise ConfigError(f"{file} has {plural(len(loaded.errors), 'error')}; fix them first.")
    return loaded


@policy.command("diff")
@file_argument
@node_dir_option
@json_option
@guarded
def policy_diff(file: Path, node_dir: Path, as_json: bool) -> None:
    """What applying FILE would change, rule by rule and for whom."""
    with _local(node_dir) as (admin, _):
        old = admin.load_active(_seed(node_dir))
        context = admin.context()
        new = _checked(file, context).policy
        assert new is not None
    today = dt.datetime.now(dt.UTC).date()
    rules = rule_changes(old, new)
    access = access_changes(old, new, context.directory, today=today)
    if as_json:
        emit_json(
            {
                "from_version": old.version,
                "file": str(file),
                "rules": [asdict(c) for c in rules],
                "access": [asdict(c) for c in access],
            }
        )
        return
    if not rules and not access:
        click.echo(f"{file} grants exactly what active version {old.version} grants")
        return
    table(
        f"rules: active version {old.version} -> {file}",
        ["rule", "change", "details"],
        [[c.rule_id, c.change, "\n".join(c.details)] for c in rules],
    )
    table(
        "what changes for whom (today)",
        ["member", "query", "dataset", "before", "after"],
        [[a.member, a.query, a.dataset or "-", *delta(a.before, a.after)] for a in access],
    )


# -- apply / rollback --------------------------------------------------------------


def _report(version: int, digest: str, warnings: list[Issue], where: str) -> None:
    _print_issues(warnings)
    click.echo(f"policy version {version} is active ({where}); sha256 {digest[:16]}…")


def _issue_from(w: operator_pb2.PolicyIssue) -> Issue:
    return Issue(w.severity, w.file, w.line, w.message, w.hint)


@policy.command("apply")
@file_argument
@node_dir_option
@guarded
def policy_apply(file: Path, node_dir: Path) -> None:
    """Validate FILE, store it as the next version (signed by the node) and make it active."""
    text = _read(file)
    layout = NodeLayout(node_dir)
    with _local(node_dir) as (admin, _):
        loaded = _checked(file, admin.context())
        if loaded.policy is not None and not loaded.policy.rules:
            click.secho(
                f"WARNING: {file} has no rules; this node will refuse every query.",
                fg="red",
                bold=True,
                err=True,
            )
    if not node_running(layout):
        with _offline(node_dir) as signer:
            applied = signer.apply(text, str(file))
            _report(
                applied.version.version,
                applied.version.source_sha256,
                list(applied.warnings),
                "node not running: signed offline with its key; it starts with this version",
            )
            return
    with operator_stub(layout) as (stub, md):
        r = stub.ApplyPolicy(
            operator_pb2.ApplyPolicyRequest(source=text, filename=str(file)),
            metadata=md,
            timeout=30,
        )
    _report(r.version, r.source_sha256, [_issue_from(w) for w in r.warnings], "hot-reloaded")


@policy.command("rollback")
@click.argument("version", type=int)
@node_dir_option
@guarded
def policy_rollback(version: int, node_dir: Path) -> None:
    """Make stored VERSION active again (recorded as a new version)."""
    layout = NodeLayout(node_dir)
    if not node_running(layout):
        with _offline(node_dir) as signer:
            signer.load_active(_seed(node_dir))
            applied = signer.rollback(version)
        _report(
            applied.version.version,
            applied.version.source_sha256,
            list(applied.warnings),
            f"restores version {version}; node not running: signed offline with its key; "
            "it starts with this version",
        )
        return
    with operator_stub(layout) as (stub, md):
        r = stub.RollbackPolicy(
            operator_pb2.RollbackPolicyRequest(version=version), metadata=md, timeout=30
        )
    _report(
        r.version,
        r.source_sha256,
        [_issue_from(w) for w in r.warnings],
        f"restores version {version}; hot-reloaded",
    )


# -- explain ------------------------------------------------------------------------


def _names(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


def decision_dict(decision: Decision, used: list[str]) -> dict[str, Any]:
    return {
        "allowed": decision.allowed,
        "reason": decision.reason,
        "rule": decision.rule_id,
        "policy_version": decision.policy_version,
        "explanation": decision.explanation,
        "constraints": asdict(decision.constraints) if decision.constraints else None,
        "usage": used,
        "trace": [asdict(t) for t in decision.trace],
    }


@policy.command("explain")
@click.option("--requester", required=True, help="Member id asking, e.g. AU.")
@click.option(
    "--query", "query_type", required=True, type=click.Choice(QUERY_TYPES), help="Query type."
)
@click.option("--dataset", default="", help="Dataset (Aggregate, IdentityCheck).")
@click.option("--group-by", "group_by", multiple=True, help="Group-by dimensions (comma list).")
@click.option("--filter", "filters", multiple=True, help="Dimensions filtered on (comma list).")
@click.option("--measure", default="", help="Measure (Aggregate).")
@click.option("--purpose", default="", help="Purpose stated in the request.")
@click.option("--epsilon", type=float, default=None, help="Epsilon asked for (Aggregate).")
@click.option("--items", type=int, default=1, show_default=True, help="Batch size (IdentityCheck).")
@click.option("--category", default="", help="Alert category (Alerts).")
@click.option("--issuing-state", default="", help="Alert's issuing state (Alerts).")
@click.option("--severity", default="", help="Alert severity (Alerts).")
@click.option(
    "--at",
    "at_date",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Decide as on this date (UTC) instead of now.",
)
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Explain with this policy file instead of the active policy.",
)
@node_dir_option
@json_option
@guarded
def policy_explain(
    requester: str,
    query_type: str,
    dataset: str,
    group_by: tuple[str, ...],
    filters: tuple[str, ...],
    measure: str,
    purpose: str,
    epsilon: float | None,
    items: int,
    category: str,
    issuing_state: str,
    severity: str,
    at_date: dt.datetime | None,
    file: Path | None,
    node_dir: Path,
    as_json: bool,
) -> None:
    """Which rule decides a query from --requester, and why. A dry run: nothing is charged."""
    with _local(node_dir) as (admin, _):
        active = admin.load_active(_seed(node_dir))
        context = admin.context()
        policy = active
        if file is not None:
            checked = _checked(file, context).policy
            assert checked is not None
            policy = checked
        member = context.directory.member(requester) if context.directory else None
        if member is None:
            raise ConfigError(f"{requester} is not in this node's copy of the network directory.")
        query = QueryDescription(
            query_type=query_type,
            purpose=purpose,
            dataset=dataset,
            group_by=_names(group_by),
            filters=_names(filters),
            measure=measure,
            epsilon=epsilon,
            items=items,
            alert_category=category,
            alert_issuing_state=issuing_state.upper(),
            alert_severity=severity,
        )
        at_ms = int(at_date.replace(tzinfo=dt.UTC).timestamp() * 1000) if at_date else now_ms()
        decision = PolicyGate(policy, admin.usage).decide(member, query, at_ms=at_ms)
        used = [describe_usage(c, admin.usage.used(requester, c)) for c in decision.charges]
    told = "" if decision.allowed else refusal(decision.reason).reason
    if told and policy.discloses_reasons_to(member):
        told = decision.reason
    if as_json:
        emit_json({**decision_dict(decision, used), "requester_told": told})
        return
    source = f"file {file}" if file else f"active policy version {policy.version}"
    verdict = "ALLOWED" if decision.allowed else f"REFUSED ({decision.reason})"
    console.print(f"[bold]{escape(verdict)}[/bold] under {escape(source)}")
    say(decision.explanation)
    if not decision.allowed:
        say(f"the requester is told only: reason code '{told}'")
    c = decision.constraints
    if c is not None:
        # Only what the rule sets: a default (no noise, no caveat, …) says nothing.
        defaults = asdict(Constraints())
        shown = {k: v for k, v in asdict(c).items() if v != defaults[k]}
        for k, v in shown.items():
            value = ", ".join(v) if isinstance(v, tuple) else v
            say(f"  {k}: {value}")
    for line in used:
        say(f"  {line}")
    if decision.trace:
        table(
            "rules considered, in order",
            ["rule", "line", "outcome", "why"],
            [[t.rule_id, t.line, t.outcome, t.why] for t in decision.trace],
        )


def register(root: click.Group) -> None:
    root.add_command(policy)
