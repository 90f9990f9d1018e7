"""`rcf data …`: generate, import, inspect and purge a node's records.

These work on the node folder directly (``--node-dir``), whether or not the
node is running: the store is SQLite in WAL mode, so a running node keeps
reading while an import writes, and sees the import whole once it commits.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import re
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from rcf.cli.errors import BAD_OPTION, EXIT_ERROR, guarded
from rcf.cli.operator_client import record_operations
from rcf.cli.options import confirm, node_dir_option, yes_option
from rcf.cli.output import console, emit_json, json_option, table
from rcf.devnet.synthetic import DATASET_CODES, generate_member_data
from rcf.node.data.dictionary import load_dictionary
from rcf.node.data.importer import ImportResult, import_file
from rcf.node.data.store import DataStore
from rcf.node.identity.maintenance import reindex
from rcf.node.ops.config import NodeLayout
from rcf.trust.errors import ConfigError

_AGE = re.compile(r"^(\d+)\s*([dwmy])$")


def open_store(node_dir: Path) -> tuple[NodeLayout, DataStore]:
    """The node's data store, migrated and in step with its dictionary."""
    layout = NodeLayout(node_dir)
    layout.require()
    return layout, DataStore(layout.data_db, dictionary=load_dictionary(layout))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks: the audit trail names what was imported."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cutoff_for(older_than: str, today: dt.date) -> dt.date:
    """The first date kept by ``--older-than`` (e.g. 90d, 12w, 18m, 2y)."""
    m = _AGE.match(older_than.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise ConfigError(
            f"--older-than {older_than!r} is not an age like 90d, 12w, 18m or 2y.",
            reason=BAD_OPTION,
        )
    n, unit = int(m.group(1)), m.group(2)
    if unit in ("d", "w"):
        return today - dt.timedelta(days=n * (7 if unit == "w" else 1))
    months = today.year * 12 + today.month - 1 - (n * 12 if unit == "y" else n)
    year, month = divmod(months, 12)
    month += 1
    if year < 1:
        raise ConfigError(f"--older-than {older_than!r} reaches before year 1.")
    # 31 March minus one month is 28 (or 29) February.
    return dt.date(year, month, min(today.day, calendar.monthrange(year, month)[1]))


@click.group("data")
def data() -> None:
    """Generate, import, inspect and purge the node's records."""


@data.command("generate")
@click.option("--member", "members", multiple=True, required=True, help="Member id (repeatable).")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    type=click.Choice(list(DATASET_CODES)),
    help="Dataset (repeatable; default all).",
)
@click.option(
    "--rows", default=1000, show_default=True, type=click.IntRange(1), help="Per dataset."
)
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same data.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for MEMBER-DATASET.csv files.",
)
@json_option
@guarded
def data_generate(
    members: tuple[str, ...],
    datasets: tuple[str, ...],
    rows: int,
    seed: int,
    out_dir: Path,
    as_json: bool,
) -> None:
    """Write realistic synthetic CSV files for the given members."""
    written: dict[str, dict[str, str]] = {}
    for member in members:
        paths = generate_member_data(
            member, out_dir, seed=seed, rows=rows, datasets=list(datasets) or None
        )
        written[member.upper()] = {k: str(v) for k, v in paths.items()}
    if as_json:
        emit_json(written)
        return
    table(
        f"synthetic data (seed {seed}, {rows} rows per dataset)",
        ["member", "dataset", "file"],
        [[m, _generated_label(d), p] for m, files in written.items() for d, p in files.items()],
    )


def _generated_label(key: str) -> str:
    if key == "persons_mrz":
        return "(MRZ lines of the persons' documents, for rcf query document --mrz; not imported)"
    return key


def _print_result(result: ImportResult) -> None:
    if result.committed:
        console.print(
            f"[green]imported[/green] {result.source} into {result.dataset}: "
            f"{result.rows_read:,} rows read, {result.inserted:,} inserted, "
            f"{result.updated:,} updated, {result.unchanged:,} unchanged, "
            f"{result.rejected:,} rejected ({result.seconds:.1f} s)",
            highlight=False,
        )
        if result.bom:
            console.print("note: the file starts with a UTF-8 byte-order mark; it was ignored.")
        if result.rejects_path:
            console.print(f"rejected rows, with line and reason: {result.rejects_path}")
        return
    click.echo(
        f"error: {result.source} has {result.rejected:,} invalid row"
        f"{'s' if result.rejected != 1 else ''}; nothing was imported.",
        err=True,
    )
    for r in result.errors:
        click.echo(f"  {r.reason}", err=True)
    if result.rejected > len(result.errors):
        click.echo(f"  … and {result.rejected - len(result.errors):,} more", err=True)
    click.echo(
        "Fix the file, or use --skip-invalid to import the valid rows and write every "
        "rejected row to FILE.rejects.csv.",
        err=True,
    )


@data.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", required=True, help="Dataset of the data dictionary the file holds.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="Default: by extension.")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Import the valid rows; write the others to FILE.rejects.csv.",
)
@node_dir_option
@json_option
@guarded
def data_import(
    file: Path, dataset: str, fmt: str | None, skip_invalid: bool, node_dir: Path, as_json: bool
) -> None:
    """Validate FILE (CSV or JSON Lines) against the dictionary and import it in one go."""
    if not file.exists():
        raise ConfigError(f"{file} does not exist.")
    layout, store = open_store(node_dir)
    try:
        with Progress(
            TextColumn("importing {task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=as_json,
        ) as bar:
            task = bar.add_task(file.name, total=max(file.stat().st_size, 1))
            result = import_file(
                store,
                file,
                dataset=dataset,
                fmt=fmt,
                skip_invalid=skip_invalid,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    finally:
        store.close()
    if result.committed:
        record_operations(layout)
    if as_json:
        emit_json(
            {
                **result.as_dict(),
                "errors": [{"line": r.line, "reason": r.reason} for r in result.errors],
            }
        )
    else:
        _print_result(result)
    if not result.committed:
        raise SystemExit(EXIT_ERROR)


@data.command("stats")
@node_dir_option
@json_option
@guarded
def data_stats(node_dir: Path, as_json: bool) -> None:
    """Show what the node holds: records per dataset, date range, imports."""
    _, store = open_store(node_dir)
    try:
        stats = store.stats()
        version = store.dictionary.version
    finally:
        store.close()
    if as_json:
        emit_json(
            {
                "dictionary_version": version,
                "datasets": {
                    s.dataset: {
                        "records": s.records,
                        "earliest": s.earliest,
                        "latest": s.latest,
                        "imports": s.imports,
                        "last_import_ms": s.last_import_ms,
                    }
                    for s in stats
                },
            }
        )
        return
    table(
        f"node data (dictionary {version})",
        ["dataset", "records", "earliest", "latest", "imports", "last import (UTC)"],
        [
            [
                s.dataset,
                f"{s.records:,}",
                s.earliest or "",
                s.latest or "",
                s.imports,
                dt.datetime.fromtimestamp(s.last_import_ms / 1000, dt.UTC).strftime(
                    "%Y-%m-%d %H:%M"
                )
                if s.last_import_ms
                else "",
            ]
            for s in stats
        ],
    )


@data.command("purge")
@click.option("--older-than", required=True, help="Age of records to delete: 90d, 12w, 18m, 2y.")
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets (repeatable).")
@click.option(
    "--dry-run", is_flag=True, help="Say how many records per dataset would go; delete nothing."
)
@yes_option
@node_dir_option
@json_option
@guarded
def data_purge(
    older_than: str,
    datasets: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    node_dir: Path,
    as_json: bool,
) -> None:
    """Apply retention: delete records dated before the cutoff (asks first unless --yes),
    and audit it."""
    cutoff = cutoff_for(older_than, dt.datetime.now(dt.UTC).date()).isoformat()
    layout, store = open_store(node_dir)
    try:
        unknown = [d for d in datasets if d not in store.dictionary.datasets]
        if unknown:
            raise ConfigError(f"Unknown dataset {unknown[0]!r}.")
        would = store.purge(cutoff=cutoff, datasets=list(datasets) or None, dry_run=True)
        if dry_run:
            if as_json:
                emit_json({"cutoff": cutoff, "would_delete": would, "dry_run": True})
            else:
                table(
                    f"dry run: records dated before {cutoff} that would be deleted",
                    ["dataset", "would delete"],
                    [[k, f"{v:,}"] for k, v in would.items()],
                )
            return
        if sum(would.values()):
            confirm(
                f"Delete {sum(would.values()):,} records dated before {cutoff} "
                f"({', '.join(f'{k} {v:,}' for k, v in would.items() if v)})? "
                "This cannot be undone.",
                yes=yes,
            )
        deleted = store.purge(cutoff=cutoff, datasets=list(datasets) or None)
    finally:
        store.close()
    record_operations(layout)
    if as_json:
        emit_json({"cutoff": cutoff, "deleted": deleted})
        return
    table(
        f"purged records dated before {cutoff}",
        ["dataset", "deleted"],
        [[k, f"{v:,}"] for k, v in deleted.items()],
    )


@data.command("reindex")
@node_dir_option
@json_option
@guarded
def data_reindex(node_dir: Path, as_json: bool) -> None:
    """Rebuild the identity token index of persons and documents (one transaction, audited)."""
    layout = NodeLayout(node_dir)
    layout.require()
    result = reindex(layout.root, load_dictionary(layout))
    how = record_operations(layout)
    if as_json:
        emit_json({**result.__dict__, "audit": how})
        return
    console.print(
        f"token index rebuilt under OPRF key {result.key_id}: {result.persons:,} persons, "
        f"{result.documents:,} documents, {result.tokens:,} tokens, {result.skipped:,} records "
        f"skipped ({result.seconds:.1f} s); {how}",
        highlight=False,
    )


def register(root: click.Group) -> None:
    root.add_command(data)
