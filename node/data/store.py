"""The node's record store: one SQLite file (WAL) whose tables follow the data dictionary.

One table per dataset, named after it: ``record_id`` is the primary key (the
importer upserts on it), each dimension and measure is a column, and
``_import_id`` says which import last wrote the row. Codes, dates (ISO
``YYYY-MM-DD``) and months (``YYYY-MM``) are stored as text, so string order
is time order; measures and int dimensions are integers.

Two kinds of schema change:

- the store's own structure (bookkeeping tables) moves forward through the
  numbered ``MIGRATIONS``, each applied once in its own transaction and
  recorded in ``schema_migrations``;
- dataset tables are derived from the dictionary: ``sync_schema`` creates
  missing tables, columns and indexes, so a new dictionary version (which can
  only add codes, or in a new major add fields) never needs hand-written DDL.

Table and column names come from the dictionary, which only admits
``[a-z][a-z0-9_]*`` identifiers, so building SQL text from them is safe.

Indexes serve the queries later issues run: every dataset on its date field
(period filters and retention), documents on number + issuing state and
persons on Latin name (identity lookups). Aggregates group by dimensions over
a period range, which the date index narrows; more indexes would slow every
import for little gain.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from rcf.node.aggregate.execute import ensure_aggregate_indexes
from rcf.node.identity import token_store
from rcf.node.identity.node_keys import load_or_create_oprf_key
from rcf.trust.clock import now_ms
from rcf.trust.dictionary import ID_FIELD, DataDictionary, Dataset
from rcf.trust.errors import ConfigError
from rcf.trust.files import private_file
from rcf.trust.oprf import OprfKey
from rcf.trust.sqlite import immediate

IMPORT_COLUMN = "_import_id"
# The cell-key method's fixed random record key (node.aggregate.cellkey): drawn once,
# when the record is first inserted, and kept by every later import of the record.
RECORD_KEY_COLUMN = "_record_key"
RECORD_KEY_SQL = "(random() & 4294967295)"  # uniform on 0 .. 2^32-1, never negative
CACHE_KIB = -65536  # negative: KiB, as SQLite takes it

# Extra indexes beyond the date field, per dataset: lookups later issues make.
EXTRA_INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    "documents": (("document_number", "issuing_state"),),
    "persons": (("name_latin",),),
}


def _m1_bookkeeping(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    db.execute(
        "CREATE TABLE imports (import_id INTEGER PRIMARY KEY, dataset TEXT NOT NULL,"
        " source TEXT NOT NULL, format TEXT NOT NULL, dictionary_version TEXT NOT NULL,"
        " started_at_ms INTEGER NOT NULL, finished_at_ms INTEGER NOT NULL,"
        " rows_read INTEGER NOT NULL, inserted INTEGER NOT NULL, updated INTEGER NOT NULL,"
        " unchanged INTEGER NOT NULL, rejected INTEGER NOT NULL)"
    )


def _m2_purges(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE purges (purge_id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,"
        " cutoff TEXT NOT NULL, dataset TEXT NOT NULL, deleted INTEGER NOT NULL)"
    )


MIGRATIONS: tuple[tuple[int, str, Callable[[sqlite_utils.Database], None]], ...] = (
    (1, "bookkeeping: store_meta, imports", _m1_bookkeeping),
    (2, "retention log: purges", _m2_purges),
)


def column_type(dataset: Dataset, column: str) -> str:
    """The SQLite type of a dataset column."""
    if column in dataset.measures:
        return "INTEGER"
    dim = dataset.dimension(column)
    return "INTEGER" if dim is not None and dim.kind == "int" else "TEXT"


def table_ddl(dataset: Dataset) -> list[str]:
    """CREATE statements for a dataset's table and indexes (also the benchmark's bare schema)."""
    cols = [f"{ID_FIELD} TEXT PRIMARY KEY"]
    for d in dataset.dimensions:
        cols.append(f"{d.name} {column_type(dataset, d.name)}{'' if d.optional else ' NOT NULL'}")
    cols += [f"{m} INTEGER NOT NULL" for m in dataset.measures]
    cols.append(f"{IMPORT_COLUMN} INTEGER NOT NULL")
    cols.append(f"{RECORD_KEY_COLUMN} INTEGER NOT NULL DEFAULT {RECORD_KEY_SQL}")
    stmts = [f"CREATE TABLE IF NOT EXISTS {dataset.name} ({', '.join(cols)})"]
    for index_cols in index_columns(dataset):
        stmts.append(
            f"CREATE INDEX IF NOT EXISTS ix_{dataset.name}_{'_'.join(index_cols)}"
            f" ON {dataset.name} ({', '.join(index_cols)})"
        )
    return stmts


def index_columns(dataset: Dataset) -> list[tuple[str, ...]]:
    cols: list[tuple[str, ...]] = []
    if dataset.date_field:
        cols.append((dataset.date_field,))
    cols += [c for c in EXTRA_INDEXES.get(dataset.name, ()) if all(dataset.dimension(x) for x in c)]
    return cols


@dataclass(frozen=True)
class DatasetStats:
    dataset: str
    records: int
    earliest: str | None
    latest: str | None
    imports: int
    last_import_ms: int | None


class DataStore:
    """The node's data.db: open, migrate, sync with the dictionary, transact."""

    def __init__(
        self, path: Path, *, dictionary: DataDictionary, oprf_key: OprfKey | None = None
    ) -> None:
        self._oprf_key = oprf_key
        try:
            private_file(path)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so one
            # import is exactly one transaction, whatever the driver thinks.
            self.conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"Cannot open the node's data store {path}: {exc}.") from exc
        self.path = path
        self.db = sqlite_utils.Database(self.conn)
        self.dictionary = dictionary
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            # 64 MB of page cache (the default is 2 MB): a big import otherwise
            # spills index pages to the WAL over and over. Still far inside the
            # memory budget (peak < 500 MB on 10M rows).
            self.conn.execute(f"PRAGMA cache_size={CACHE_KIB}")
            self.conn.execute(f"PRAGMA temp.cache_size={CACHE_KIB}")
            self.migrate()
            self.sync_schema()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise ConfigError(f"{path} is not a usable data store: {exc}.") from exc

    def close(self) -> None:
        self.conn.close()

    def oprf_key(self) -> OprfKey:
        """The OPRF key the token index is built with: the node folder's (created at
        first use) unless one was given."""
        if self._oprf_key is None:
            self._oprf_key = load_or_create_oprf_key(self.path.parent)
        return self._oprf_key

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception (also KeyboardInterrupt)."""
        return immediate(self.conn)

    # -- schema ---------------------------------------------------------------

    def schema_version(self) -> int:
        if "schema_migrations" not in self.db.table_names():
            return 0
        row = self.conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> None:
        """Apply every migration not yet applied, each in its own transaction."""
        with self.transaction():
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " description TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)"
            )
        for version, description, apply in MIGRATIONS:
            if version <= self.schema_version():
                continue
            with self.transaction():
                apply(self.db)
                self.conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (version, description, now_ms()),
                )

    def sync_schema(self) -> None:
        """Create the tables, columns and indexes the dictionary calls for."""
        with self.transaction():
            for dataset in self.dictionary.datasets.values():
                table = self.db[dataset.name]
                if table.exists():
                    have = {c.name for c in table.columns}
                    for col in dataset.columns:
                        if col not in have:
                            # Added columns are nullable: rows imported before
                            # the field existed have no value for it.
                            self.conn.execute(
                                f"ALTER TABLE {dataset.name} ADD COLUMN {col}"
                                f" {column_type(dataset, col)}"
                            )
                    if RECORD_KEY_COLUMN not in have:
                        # A store from before the cell-key method: every record gets
                        # its key now (ALTER TABLE cannot take a random default).
                        self.conn.execute(
                            f"ALTER TABLE {dataset.name} ADD COLUMN {RECORD_KEY_COLUMN} INTEGER"
                        )
                        self.conn.execute(
                            f"UPDATE {dataset.name} SET {RECORD_KEY_COLUMN} = {RECORD_KEY_SQL}"  # noqa: S608
                        )
                for stmt in table_ddl(dataset):
                    self.conn.execute(stmt)
            # Covering indexes for the common aggregate group-bys (node.aggregate.execute).
            ensure_aggregate_indexes(self.conn, self.dictionary)
            # The identity token index and the triggers that keep it in step.
            token_store.ensure_schema(self.conn, self.dictionary.datasets)
            self.conn.execute(
                "INSERT INTO store_meta VALUES ('dictionary_version', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (self.dictionary.version,),
            )

    def after_import(self, dataset: str) -> None:
        """Refresh the planner's statistics of an aggregate dataset after an import, so
        it picks the covering indexes for group-bys (ANALYZE reads a sample; cheap)."""
        ds = self.dictionary.dataset(dataset)
        if ds is not None and ds.kind == "aggregate":
            self.conn.execute(f"ANALYZE {ds.name}")

    # -- reading --------------------------------------------------------------

    def count(self, dataset: str) -> int:
        if dataset not in self.dictionary.datasets:
            raise ConfigError(f"Unknown dataset {dataset!r}.")
        sql = f"SELECT COUNT(*) FROM {dataset}"  # noqa: S608
        return int(self.conn.execute(sql).fetchone()[0])

    def stats(self) -> list[DatasetStats]:
        """What the node holds, per dataset."""
        out = []
        for ds in self.dictionary.datasets.values():
            date = ds.date_field
            row = self.conn.execute(
                f"SELECT COUNT(*), MIN({date}), MAX({date}) FROM {ds.name}"  # noqa: S608
            ).fetchone()
            imp = self.conn.execute(
                "SELECT COUNT(*), MAX(finished_at_ms) FROM imports WHERE dataset = ?", (ds.name,)
            ).fetchone()
            out.append(
                DatasetStats(
                    dataset=ds.name,
                    records=int(row[0]),
                    earliest=row[1],
                    latest=row[2],
                    imports=int(imp[0]),
                    last_import_ms=imp[1],
                )
            )
        return out

    # -- retention ------------------------------------------------------------

    def purge(
        self, *, cutoff: str, datasets: list[str] | None = None, dry_run: bool = False
    ) -> dict[str, int]:
        """Delete records whose date field is before cutoff (YYYY-MM-DD); one transaction.

        A month counts as older only when the whole month is before the cutoff.
        dry_run: count what would go, change nothing.
        """
        names = datasets or list(self.dictionary.datasets)
        deleted: dict[str, int] = {}
        at = now_ms()
        if dry_run:
            for name in names:
                ds = self.dictionary.datasets[name]
                sql = f"SELECT COUNT(*) FROM {name} WHERE {ds.date_field} < ?"  # noqa: S608
                (deleted[name],) = self.conn.execute(
                    sql, (self._purge_bound(name, cutoff),)
                ).fetchone()
            return deleted
        with self.transaction():
            for name in names:
                ds = self.dictionary.datasets[name]
                bound = self._purge_bound(name, cutoff)
                sql = f"DELETE FROM {name} WHERE {ds.date_field} < ?"  # noqa: S608
                cur = self.conn.execute(sql, (bound,))
                deleted[name] = cur.rowcount
                self.conn.execute(
                    "INSERT INTO purges (at_ms, cutoff, dataset, deleted) VALUES (?, ?, ?, ?)",
                    (at, cutoff, name, cur.rowcount),
                )
        return deleted

    def _purge_bound(self, name: str, cutoff: str) -> str:
        ds = self.dictionary.datasets[name]
        dim = ds.dimension(ds.date_field)
        return cutoff[:7] if dim is not None and dim.kind == "month" else cutoff
