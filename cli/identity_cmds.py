"""`rcf query identity|document` and `rcf hits`: hit/no-hit checks against other members.

The CLI holds no key and sends the subjects only to its own node, over 127.0.0.1
with the operator token; the node blinds them, asks the members named (or the
region) and streams back progress and one outcome per person and member.
"""

from __future__ import annotations

import csv
from pathlib import Path

import click
import grpc
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from rcf.cli.errors import (
    BAD_OPTION,
    EXIT_ERROR,
    EXIT_UNAVAILABLE,
    describe_rpc_error,
    exit_code_for_rpc,
    guarded,
)
from rcf.cli.operator_client import operator_stub
from rcf.cli.options import node_dir_option
from rcf.cli.output import console, emit_json, failure_words, json_option, table, utc_time
from rcf.cli.query_cmds import query
from rcf.node.identity.errors import InvalidIdentifier
from rcf.node.identity.mrz import parse_mrz
from rcf.node.identity.responder import read_hits
from rcf.node.ops.assembly import read_only
from rcf.node.ops.config import NodeLayout
from rcf.protos.v1 import identity_pb2, identity_pb2_grpc
from rcf.trust.errors import ConfigError
from rcf.trust.files import open_private

LABELS = {
    identity_pb2.IDENTITY_OUTCOME_HIT: "HIT",
    identity_pb2.IDENTITY_OUTCOME_POSSIBLE_HIT: "possible hit",
    identity_pb2.IDENTITY_OUTCOME_NO_HIT: "no hit",
}
MANIFEST_COLUMNS = ("name", "date_of_birth", "nationality", "document_number", "issuing_state")

to_option = click.option("--to", "to", default="", help="Members to ask, comma-separated: TH,ID.")
regional_option = click.option(
    "--regional", is_flag=True, help="Ask every other member with a node."
)
purpose_option = click.option(
    "--purpose", default="border-control", show_default=True, help="Purpose stated to responders."
)
csv_option = click.option(
    "--csv",
    "csv_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the results to this CSV file (0600).",
)


def _subject(name: str, dob: str, nationality: str, number: str, issuer: str
             ) -> identity_pb2.CheckSubject:  # fmt: skip
    subject = identity_pb2.CheckSubject(
        name=name.strip(), date_of_birth=dob.strip(), nationality=nationality.strip().upper()
    )
    if number.strip() or issuer.strip():
        if not (number.strip() and issuer.strip()):
            raise ConfigError(
                "Give a document number together with its issuing state.", reason=BAD_OPTION
            )
        subject.documents.append(
            identity_pb2.DocumentRef(issuing_state=issuer.strip().upper(), number=number.strip())
        )
    return subject


def read_manifest(path: Path) -> list[identity_pb2.CheckSubject]:
    """Subjects from a CSV with a header naming some of MANIFEST_COLUMNS."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header = set(reader.fieldnames or ())
            if "name" not in header and "document_number" not in header:
                raise ConfigError(
                    f"{path.name} needs a header with name (and date_of_birth, nationality) "
                    "or document_number and issuing_state."
                )
            unknown = header - set(MANIFEST_COLUMNS)
            if unknown:
                raise ConfigError(
                    f"{path.name}: unknown column '{sorted(unknown)[0]}'; the columns are "
                    f"{', '.join(MANIFEST_COLUMNS)}."
                )
            out = []
            for line, row in enumerate(reader, start=2):
                try:
                    out.append(_subject(*(row.get(c) or "" for c in MANIFEST_COLUMNS)))
                except ConfigError as exc:
                    raise ConfigError(f"{path.name} line {line}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name} is not UTF-8 text.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from exc
    if not out:
        raise ConfigError(f"{path.name} lists nobody.")
    return out


def _responders(to: str, regional: bool) -> list[str]:
    members = [m.strip().upper() for m in to.split(",") if m.strip()]
    if bool(members) == regional:
        raise ConfigError(
            "Give either --to MEMBERS (e.g. --to TH,ID) or --regional.", reason=BAD_OPTION
        )
    return members


def _run(
    node_dir: Path,
    dataset: str,
    subjects: list[identity_pb2.CheckSubject],
    responders: list[str],
    regional: bool,
    purpose: str,
    *,
    show_progress: bool,
) -> list[identity_pb2.IdentityCheckUpdate]:
    request = identity_pb2.IdentityCheckRequest(
        dataset=dataset, subjects=subjects, responders=responders, regional=regional,
        purpose=purpose,
    )  # fmt: skip
    finals: list[identity_pb2.IdentityCheckUpdate] = []
    with operator_stub(NodeLayout(node_dir)) as (_, md):
        runtime = NodeLayout(node_dir).read_runtime()
        with grpc.insecure_channel(
            str(runtime["operator_address"]),
            options=[("grpc.max_send_message_length", 64 << 20),
                     ("grpc.max_receive_message_length", 64 << 20)],
        ) as channel:  # fmt: skip
            stub = identity_pb2_grpc.IdentityOperatorStub(channel)
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} persons"),
                console=console,
                transient=True,
                disable=not show_progress,
            ) as bar:
                tasks: dict[str, TaskID] = {}
                stream = stub.Check(request, metadata=md, timeout=3600)
                for update in stream:
                    if update.responder not in tasks:
                        tasks[update.responder] = bar.add_task(
                            update.responder, total=update.persons_total or len(subjects)
                        )
                    bar.update(tasks[update.responder], completed=update.persons_done)
                    if update.done:
                        finals.append(update)
    return finals


def _report(
    subjects: list[identity_pb2.CheckSubject],
    finals: list[identity_pb2.IdentityCheckUpdate],
    *,
    as_json: bool,
    csv_out: Path | None,
    what: str,
) -> None:
    ok = [f for f in finals if not f.error]
    rows = []
    for i, s in enumerate(subjects):
        label = s.name or ", ".join(f"{d.issuing_state} {d.number}" for d in s.documents)
        cells = []
        for f in ok:
            outcome = LABELS.get(f.outcomes[i], "?")
            ref = f.references[i]
            cells.append(f"{outcome} ref {ref}" if ref else outcome)
        rows.append([i + 1, label, *cells])
    if csv_out is not None:
        with open_private(csv_out) as fh:
            w = csv.writer(fh)
            w.writerow(["row", "subject", *(f.responder for f in ok)])
            w.writerows(rows)
    if as_json:
        emit_json(
            {
                "responders": {
                    f.responder: {
                        "error": f.error or None,
                        "reason": f.error_reason or None,
                        "outcomes": [LABELS.get(o, "?") for o in f.outcomes],
                        "references": list(f.references),
                        "contact": {
                            "agency": f.contact.agency, "role": f.contact.role,
                            "name": f.contact.name, "phone": f.contact.phone,
                            "email": f.contact.email,
                        } if f.HasField("contact") else None,
                        "seconds": round(f.seconds, 3),
                    }
                    for f in finals
                }
            }
        )  # fmt: skip
    else:
        hits = sum(o != identity_pb2.IDENTITY_OUTCOME_NO_HIT for f in ok for o in f.outcomes)
        if len(subjects) <= 200:
            columns = ["#", "subject", *(f.responder for f in ok)]
            table(f"{what}: {len(subjects):,} checked", columns, rows)
        else:
            shown = [r for r in rows if any(not str(c).startswith("no hit") for c in r[2:])]
            table(
                f"{what}: {len(subjects):,} checked, {len(shown):,} with a hit or possible hit",
                ["#", "subject", *(f.responder for f in ok)],
                shown,
            )
        for f in ok:
            if f.HasField("contact") and f.contact.agency:
                c = f.contact
                console.print(
                    f"{f.responder}: contact {c.agency}, {c.role} ({c.phone or c.email}) "
                    "through official channels, quoting the reference",
                    highlight=False,
                )
        for f in finals:
            if f.error:
                console.print(f"{f.responder}: {failure_words(f.error, f.error_reason)}",
                              highlight=False)  # fmt: skip
        console.print(f"{hits:,} hit(s) or possible hit(s); answered by "
                      f"{len(ok)}/{len(finals)} members", highlight=False)  # fmt: skip
    # Members that refuse or are down are reported above; the command fails only when
    # nobody answered, since a regional check normally meets members that grant nothing.
    if finals and not ok:
        unavailable = all(f.error_reason in ("unreachable", "timeout") for f in finals)
        raise SystemExit(EXIT_UNAVAILABLE if unavailable else EXIT_ERROR)


def _call(node_dir: Path, dataset: str, subjects: list[identity_pb2.CheckSubject], to: str,
          regional: bool, purpose: str, as_json: bool, csv_out: Path | None, what: str
          ) -> None:  # fmt: skip
    responders = _responders(to, regional)
    try:
        finals = _run(node_dir, dataset, subjects, responders, regional, purpose,
                      show_progress=not as_json and len(subjects) > 1)  # fmt: skip
    except grpc.RpcError as exc:
        click.echo(f"error: {describe_rpc_error(exc)}", err=True)
        raise SystemExit(exit_code_for_rpc(exc)) from None
    _report(subjects, finals, as_json=as_json, csv_out=csv_out, what=what)


@query.command("identity")
@click.option("--name", default="", help="Full name, any script and order.")
@click.option("--dob", default="", help="Date of birth: YYYY, YYYY-MM or YYYY-MM-DD.")
@click.option("--nationality", default="", help="ISO 3166 alpha-3, e.g. MMR.")
@click.option("--doc", "number", default="", help="Travel document number.")
@click.option("--issuer", default="", help="Issuing state of --doc (alpha-3).")
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="CSV: name,date_of_birth,nationality[,document_number,issuing_state].",
)
@to_option
@regional_option
@purpose_option
@csv_option
@node_dir_option
@json_option
@guarded
def query_identity(name: str, dob: str, nationality: str, number: str, issuer: str,
                   manifest: Path | None, to: str, regional: bool, purpose: str,
                   csv_out: Path | None, node_dir: Path, as_json: bool) -> None:  # fmt: skip
    """Check a person (or a whole manifest) against other members' persons records."""
    if manifest is not None:
        if name or dob or nationality or number or issuer:
            raise ConfigError(
                "Give either --manifest or --name/--dob/…, not both.", reason=BAD_OPTION
            )
        subjects = read_manifest(manifest)
    else:
        if not name.strip():
            raise ConfigError(
                "Give --name (with --dob and --nationality), or --manifest FILE.", reason=BAD_OPTION
            )
        subjects = [_subject(name, dob, nationality, number, issuer)]
    _call(node_dir, "persons", subjects, to, regional, purpose, as_json, csv_out,
          "identity check")  # fmt: skip


@query.command("document")
@click.option("--mrz", default="", help="The MRZ lines (TD1, TD2 or TD3), separated by newlines.")
@click.option("--number", default="", help="Document number.")
@click.option("--issuer", default="", help="Issuing state (alpha-3).")
@to_option
@regional_option
@purpose_option
@csv_option
@node_dir_option
@json_option
@guarded
def query_document(mrz: str, number: str, issuer: str, to: str, regional: bool, purpose: str,
                   csv_out: Path | None, node_dir: Path, as_json: bool) -> None:  # fmt: skip
    """Check a travel document against other members' lost, stolen and revoked documents."""
    if mrz.strip():
        if number or issuer:
            raise ConfigError(
                "Give either --mrz or --number and --issuer, not both.", reason=BAD_OPTION
            )
        lines = [line for line in mrz.replace("\\n", "\n").splitlines() if line.strip()]
        try:
            doc = parse_mrz(lines)
        except InvalidIdentifier as exc:
            raise ConfigError(f"The MRZ cannot be used: {exc}") from None
        number, issuer = doc.document_number, doc.issuing_state
    elif not (number.strip() and issuer.strip()):
        raise ConfigError("Give --mrz, or --number and --issuer.", reason=BAD_OPTION)
    subjects = [_subject("", "", "", number, issuer)]
    _call(node_dir, "documents", subjects, to, regional, purpose, as_json, csv_out,
          "document check")  # fmt: skip


@click.command("hits")
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Newest notices shown.",
)
@node_dir_option
@json_option
@guarded
def hits(limit: int, node_dir: Path, as_json: bool) -> None:
    """This node's hit notices: which of our records other members' checks matched."""
    with read_only(NodeLayout(node_dir)) as core:
        notices = read_hits(core.state, limit=limit)
    if as_json:
        emit_json([n.__dict__ for n in notices])
        return
    table(
        "hit notices (for this node's officers; the requester holds the reference)",
        ["when", "requester", "purpose", "dataset", "record", "outcome", "reference"],
        [[utc_time(n.at_ms), n.requester, n.purpose, n.dataset, n.record_id, n.outcome,
          n.reference] for n in notices],
    )  # fmt: skip


def register(root: click.Group) -> None:
    root.add_command(hits)  # identity and document join `rcf query` (cli/query_cmds.py)


__all__ = ["EXIT_ERROR", "register"]
