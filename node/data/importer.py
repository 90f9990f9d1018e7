"""Importing CSV and JSON Lines files into the node's store, validated against the dictionary.

How one import runs, and why:

1. The file is streamed (never read whole) through a strict UTF-8 decoder; a
   UTF-8 byte-order mark is accepted and dropped, UTF-16/32 files and bytes
   that are not UTF-8 stop the import with the line where it went wrong.
2. The header (CSV) or the first object's keys (JSON Lines) must be the
   dataset's fields; a file that fits another dataset better is named as such.
3. Every row is checked against the dictionary (required fields, types, code
   lists, real and not future dates) and bad rows are reported by line number,
   column and rule, never with a value they hold: any value in any column may
   be an identifier put in the wrong place (a name in a code column, a record
   line taken for a header). Only the rejects file holds the values.
4. Valid rows go into a TEMP staging table; duplicate record ids inside the
   file are found there by SQLite, on disk, so a 10-million-row file needs no
   in-memory set. The staging rows are then merged into the dataset's table
   with an upsert that only touches rows whose values changed, so importing a
   file twice changes nothing and a changed row is updated.
5. All of it is one transaction (BEGIN IMMEDIATE … COMMIT): an error, a
   Ctrl-C or a kill -9 leaves the store exactly as it was before. By default
   any bad row aborts the import; with ``skip_invalid`` bad rows are written to
   ``FILE.rejects.csv`` (mode 0600) and the rest is imported. Rejected rows
   stream to that file as they are found; only their count and the first
   ``MAX_REPORTED`` line numbers and reasons stay in memory, so a file of
   millions of bad rows costs no more memory than one of good rows.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import datetime as dt
import difflib
import heapq
import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from rcf.node.data.store import IMPORT_COLUMN, RECORD_KEY_COLUMN, RECORD_KEY_SQL, DataStore
from rcf.node.identity import token_store
from rcf.trust.clock import now_ms
from rcf.trust.dictionary import ID_FIELD, DataDictionary, Dataset, Dimension
from rcf.trust.errors import RcfError
from rcf.trust.files import open_private

log = structlog.get_logger("rcf.import")

MAX_REPORTED = 20  # bad rows kept in memory and listed; the rejects file has all
MAX_TEXT = 512
CACHE_LIMIT = 100_000  # distinct values remembered per column (codes, dates)
MIN_YEAR = 1900
FORMATS = ("csv", "jsonl")
_DOC_NUMBER = re.compile(r"[A-Z0-9<]{1,20}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DataImportError(RcfError):
    """The file cannot be imported; nothing was written."""

    default_reason = "import_failed"
    default_status = "INVALID_ARGUMENT"


class RowError(ValueError):
    """One field of one row is invalid; the message names the rule broken, never the value."""


@dataclass(frozen=True)
class Rejected:
    """A rejected row as reported: its line and why (the values are only in the rejects file)."""

    line: int
    reason: str


@dataclass
class ImportResult:
    dataset: str
    source: str
    format: str
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    committed: bool = False
    bom: bool = False
    rejects_path: Path | None = None
    errors: list[Rejected] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "source": self.source,
            "format": self.format,
            "rows_read": self.rows_read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "committed": self.committed,
            "rejects_file": str(self.rejects_path) if self.rejects_path else None,
            "seconds": round(self.seconds, 3),
        }


# -- value checks ---------------------------------------------------------------


def _today() -> dt.date:
    # A day's grace: a record made today in a timezone ahead of UTC is not "future".
    return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)


def _parse_date(value: str) -> dt.date:
    # date.fromisoformat also takes 20240101 and week dates; the dictionary says YYYY-MM-DD.
    if len(value) != 10 or value[4] != "-" or value[7] != "-":
        raise RowError("is not a date of the form YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise RowError("is not a real calendar date") from None
    if day.year < MIN_YEAR or day > _today():
        raise RowError("is before 1900 or in the future")
    return day


def _check_month(value: str) -> str:
    if len(value) != 7 or value[4] != "-" or not (value[:4] + value[5:]).isdigit():
        raise RowError("is not a month of the form YYYY-MM")
    year, month = int(value[:4]), int(value[5:])
    if not 1 <= month <= 12:
        raise RowError("is not a real month")
    if year < MIN_YEAR or dt.date(year, month, 1) > _today():
        raise RowError("is before 1900 or in the future")
    return value


def _check_partial_date(value: str) -> str:
    if len(value) == 4 and value.isdigit():
        if not MIN_YEAR <= int(value) <= _today().year:
            raise RowError("is before 1900 or in the future")
        return value
    if len(value) == 7:
        return _check_month(value)
    _parse_date(value)
    return value


def _checker(dim: Dimension, nationalities: frozenset[str]) -> Callable[[str], Any]:
    """A function that validates one raw text value and returns what is stored."""
    kind = dim.kind
    if kind == "code":
        codes = frozenset(dim.codes)

        def check_code(v: str) -> str:
            if v not in codes:
                raise RowError("is not a known code")
            return v

        return check_code
    if kind == "date":
        return lambda v: _parse_date(v).isoformat()
    if kind == "month":
        return _check_month
    if kind == "partial_date":
        return _check_partial_date
    if kind == "int":
        return _check_int
    if kind == "document_refs":

        def check_refs(v: str) -> str:
            refs = [r.strip() for r in v.split(";") if r.strip()]
            for ref in refs:
                issuer, sep, number = ref.partition(":")
                if not sep or issuer not in nationalities or not _DOC_NUMBER.fullmatch(number):
                    raise RowError("must be ISSUER:NUMBER pairs (e.g. MMR:MA1234567)")
            return ";".join(refs)

        return check_refs
    pattern = re.compile(dim.pattern) if dim.pattern else None

    def check_text(v: str) -> str:
        if len(v) > MAX_TEXT or _CONTROL.search(v):
            raise RowError(f"is longer than {MAX_TEXT} characters or holds control characters")
        if pattern is not None and not pattern.fullmatch(v):
            raise RowError(f"does not have the required form ({dim.pattern})")
        return v

    return check_text


def _check_int(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise RowError("is not a whole number") from None
    if n < 0 or n > 2**53:
        raise RowError("is not a whole number between 0 and 2^53")
    return n


def _check_record_id(v: str) -> str:
    if len(v) > 128 or _CONTROL.search(v):
        raise RowError("must be at most 128 characters without control characters")
    return v


class RowValidator:
    """Validates rows of one dataset, given as strings in ``dataset.columns`` order."""

    def __init__(self, dataset: Dataset, dictionary: DataDictionary) -> None:
        self.dataset = dataset
        self.columns = dataset.columns
        nat_dim = next(
            (
                d
                for ds in dictionary.datasets.values()
                for d in ds.dimensions
                if d.name == "nationality"
            ),
            None,
        )
        nationalities = frozenset(nat_dim.codes) if nat_dim else frozenset()
        checks: list[Callable[[str], Any]] = [_check_record_id]
        required = [True]
        # Only values from small domains are memoised; free text would just fill memory.
        cacheable = [False]
        for d in dataset.dimensions:
            checks.append(_checker(d, nationalities))
            required.append(not d.optional)
            cacheable.append(d.kind in ("code", "date", "month"))
        for _ in dataset.measures:
            checks.append(_check_int)
            required.append(True)
            cacheable.append(True)
        self._plan = list(zip(self.columns, checks, required, cacheable, strict=True))
        self._caches: list[dict[str, Any]] = [{} for _ in self.columns]

    def validate(self, values: list[str]) -> tuple[Any, ...]:
        """The stored tuple for one row; raises RowError naming the first bad field."""
        out: list[Any] = []
        caches = self._caches
        for i, (name, check, required, cacheable) in enumerate(self._plan):
            raw = values[i].strip()
            if not raw:
                if required:
                    raise RowError(f"{name} is required but empty")
                out.append(None)
                continue
            if cacheable:
                cache = caches[i]
                hit = cache.get(raw)
                if hit is not None:
                    out.append(hit)
                    continue
            try:
                value = check(raw)
            except RowError as exc:
                raise RowError(f"{name} {exc}") from None
            if cacheable and len(caches[i]) < CACHE_LIMIT:
                caches[i][raw] = value
            out.append(value)
        return tuple(out)


# -- reading files ------------------------------------------------------------------


class _CountingReader(io.RawIOBase):
    """Counts bytes read, for the progress bar, without buffering the file."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n or 0
        return int(n or 0)


def _first_bad_utf8_line(path: Path) -> tuple[int, str]:
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, f"byte 0x{line[exc.start]:02x} at column {exc.start + 1}"
    return 0, ""


def detect_format(path: Path, explicit: str | None) -> str:
    if explicit:
        if explicit not in FORMATS:
            raise DataImportError(f"Unknown format {explicit!r}; use csv or jsonl.")
        return explicit
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise DataImportError(
        f"Cannot tell the format of {path.name} from its extension; use --format csv or jsonl."
    )


def _check_prefix(path: Path) -> bool:
    """Refuse empty and UTF-16/32 files up front; True if a UTF-8 BOM is present."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise DataImportError(f"{path.name} is empty; there is nothing to import.")
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise DataImportError(f"{path.name} is UTF-32 encoded; save it as UTF-8 and try again.")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataImportError(f"{path.name} is UTF-16 encoded; save it as UTF-8 and try again.")
    return head.startswith(codecs.BOM_UTF8)


def _dataset_hint(columns: set[str], wanted: Dataset, dictionary: DataDictionary) -> str:
    """' It looks like a X file …' when the columns fit another dataset better."""
    best, best_score = None, len(columns & set(wanted.columns))
    for ds in dictionary.datasets.values():
        score = len(columns & set(ds.columns))
        if ds.name != wanted.name and score > best_score:
            best, best_score = ds.name, score
    if best is None:
        return ""
    return f" It looks like a {best} file; use --dataset {best}."


def _field_names(dictionary: DataDictionary) -> frozenset[str]:
    return frozenset(c for ds in dictionary.datasets.values() for c in ds.columns)


def _name_column(name: str, position: int, dataset: Dataset, known: frozenset[str]) -> str:
    """How a message names a column: by its name if that is a dictionary field, else by its
    position (the text may be a record's value taken for a header), with a suggestion when it
    is close to a field of the dataset."""
    if name in known:
        return f"column {name!r}"
    close = difflib.get_close_matches(name.strip().lower(), dataset.columns, n=1, cutoff=0.8)
    return f"column {position}" + (f" (did you mean {close[0]}?)" if close else "")


def check_columns(
    found: list[str], dataset: Dataset, dictionary: DataDictionary, *, where: str
) -> None:
    """Raise DataImportError unless found names exactly the dataset's fields (optional ones may
    be left out). Messages never repeat a name that is not a dictionary field."""
    known = _field_names(dictionary)
    if found and not set(found) & known:
        raise DataImportError(
            f"{where} names none of {dataset.name}'s fields; is the header line missing? "
            f"It must name the columns: {', '.join(dataset.columns)}."
        )
    seen: dict[str, int] = {}
    for position, c in enumerate(found, start=1):
        if c in seen:
            twice = (
                f"column {c!r}"
                if c in known
                else f"the same column (columns {seen[c]} and {position})"
            )
            raise DataImportError(f"{where} names {twice} twice.")
        seen[c] = position
    have = set(found)
    missing = [
        c
        for c in dataset.columns
        if c not in have and (c == ID_FIELD or c in dataset.measures or _required(dataset, c))
    ]
    extra = [(p, c) for p, c in enumerate(found, start=1) if c not in dataset.columns]
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(f"misses column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if extra:
        shown = ", ".join(_name_column(c, p, dataset, known) for p, c in extra[:5])
        parts.append(f"has {shown} not in {dataset.name}")
    raise DataImportError(
        f"{where} {' and '.join(parts)}.{_dataset_hint(have, dataset, dictionary)}"
    )


def _required(dataset: Dataset, column: str) -> bool:
    dim = dataset.dimension(column)
    return dim is not None and not dim.optional


@dataclass
class _Row:
    line: int
    values: list[str] | None  # in dataset.columns order; None if the line did not parse
    error: str = ""
    raw: str = ""


def _csv_rows(
    text: io.TextIOBase, dataset: Dataset, dictionary: DataDictionary, name: str
) -> Iterator[_Row]:
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataImportError(f"{name} is empty; there is nothing to import.") from None
    except csv.Error as exc:
        raise DataImportError(f"{name} line 1 (the header) is not valid CSV: {exc}.") from exc
    header = [h.strip() for h in header]
    check_columns(header, dataset, dictionary, where=f"{name}'s header")
    positions = [header.index(c) if c in header else -1 for c in dataset.columns]
    width = len(header)
    line = 1
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # An unterminated quote runs to the end of the file: a truncated last line.
            hint = "; is the file truncated?" if "end of data" in str(exc) else ""
            yield _Row(start, None, f"is not valid CSV ({exc}){hint}")
            continue
        line = start
        if not fields:
            continue  # blank line
        if len(fields) != width:
            yield _Row(
                line,
                None,
                f"has {len(fields)} fields, the header has {width}"
                + ("; is the file truncated?" if len(fields) < width else ""),
                raw=",".join(fields),
            )
            continue
        yield _Row(line, [fields[p] if p >= 0 else "" for p in positions])


def _jsonl_rows(
    text: io.TextIOBase, dataset: Dataset, dictionary: DataDictionary, name: str
) -> Iterator[_Row]:
    columns = dataset.columns
    known = _field_names(dictionary)
    checked = False
    for line, raw in enumerate(text, start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        try:
            obj = json.loads(stripped)
        except ValueError:
            yield _Row(line, None, "is not valid JSON; is the file truncated?", raw=stripped)
            continue
        if not isinstance(obj, dict):
            yield _Row(line, None, "is not a JSON object", raw=stripped)
            continue
        if not checked:
            check_columns(list(obj), dataset, dictionary, where=f"{name} line {line}")
            checked = True
        extra = [(p, k) for p, k in enumerate(obj, start=1) if k not in dataset.columns]
        if extra:
            p, k = extra[0]
            named = repr(k) if k in known else f"number {p}"
            yield _Row(line, None, f"has field {named} not in {dataset.name}", raw=stripped)
            continue
        values = []
        bad = ""
        for c in columns:
            v = obj.get(c)
            if v is None:
                values.append("")
            elif isinstance(v, bool) or not isinstance(v, (str, int)):
                bad = f"{c} must be a string or a whole number"
                break
            else:
                values.append(str(v))
        if bad:
            yield _Row(line, None, bad, raw=stripped)
            continue
        yield _Row(line, values)
    if not checked:
        raise DataImportError(f"{name} holds no JSON objects; there is nothing to import.")


# -- the import ---------------------------------------------------------------------

ProgressFn = Callable[[int, int], None]  # (bytes read, total bytes)


def rejects_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".rejects.csv")


class _RejectSink:
    """Where rejected rows go: counted, the MAX_REPORTED lowest lines kept for the report, and
    every one streamed to the rejects file when there is one. Memory stays flat.

    Rows arrive in runs, each in line order (the row checks, then the repeated record ids);
    each run goes to its own part file and ``publish`` merges the parts by line.
    """

    def __init__(self, path: Path | None, columns: tuple[str, ...]) -> None:
        self.count = 0
        self.first: list[Rejected] = []
        self._path = path
        self._columns = columns
        self._parts: list[Path] = []
        self._files = ExitStack()
        self._writer: Any = None

    def start_run(self) -> None:
        if self._path is None:
            return
        part = self._path.with_name(f"{self._path.name}.part{len(self._parts)}")
        self._parts.append(part)
        self._writer = csv.writer(self._files.enter_context(open_private(part)))

    def add(self, line: int, reason: str, values: Sequence[str] | None, raw: str = "") -> None:
        self.count += 1
        if len(self.first) < MAX_REPORTED or line < self.first[-1].line:
            bisect.insort(self.first, Rejected(line, reason), key=lambda r: r.line)
            del self.first[MAX_REPORTED:]
        if self._writer is not None:
            cells = values if values is not None else [""] * len(self._columns)
            self._writer.writerow([line, reason, *cells, raw])

    def publish(self) -> Path | None:
        """Merge the runs into the rejects file (0600, replaced atomically); its path."""
        self._files.close()
        if self._path is None or not self.count:
            self.discard()
            return None
        tmp = self._path.with_name(self._path.name + ".tmp")
        with ExitStack() as stack:
            readers: list[Iterator[list[str]]] = [
                csv.reader(stack.enter_context(open(p, encoding="utf-8", newline="")))
                for p in self._parts
            ]
            out = csv.writer(stack.enter_context(open_private(tmp)))
            out.writerow(["line", "reason", *self._columns, "raw"])
            merged: Iterator[list[str]] = heapq.merge(*readers, key=_line_of)
            out.writerows(merged)
        tmp.replace(self._path)
        self.discard()
        return self._path

    def discard(self) -> None:
        self._files.close()
        for part in self._parts:
            part.unlink(missing_ok=True)
        self._parts = []


def _line_of(row: list[str]) -> int:
    return int(row[0])


def import_file(
    store: DataStore,
    path: Path,
    *,
    dataset: str,
    fmt: str | None = None,
    skip_invalid: bool = False,
    progress: ProgressFn | None = None,
) -> ImportResult:
    """Validate and import one file in one transaction; see the module docstring."""
    started = now_ms()
    dictionary = store.dictionary
    ds = dictionary.dataset(dataset)
    if ds is None:
        raise DataImportError(
            f"Unknown dataset {dataset!r}; the dictionary has {', '.join(dictionary.datasets)}."
        )
    fmt = detect_format(path, fmt)
    try:
        total = path.stat().st_size
    except OSError as exc:
        raise DataImportError(f"Cannot read {path}: {exc.strerror}.") from exc
    result = ImportResult(dataset=ds.name, source=path.name, format=fmt)
    result.bom = _check_prefix(path)
    validator = RowValidator(ds, dictionary)
    columns = ds.columns
    sink = _RejectSink(rejects_path_for(path) if skip_invalid else None, columns)
    staging_cols = ", ".join(columns)
    placeholders = ", ".join("?" for _ in range(len(columns) + 1))

    try:
        with open(path, "rb") as raw_fh, store.transaction() as conn:
            counter = _CountingReader(raw_fh)
            text = io.TextIOWrapper(
                io.BufferedReader(counter, buffer_size=1 << 20),
                encoding="utf-8-sig",
                errors="strict",
                newline="" if fmt == "csv" else None,
            )
            reader = (_csv_rows if fmt == "csv" else _jsonl_rows)(text, ds, dictionary, path.name)
            conn.execute("DROP TABLE IF EXISTS temp.staging")
            conn.execute(f"CREATE TEMP TABLE staging ({staging_cols}, _line INTEGER NOT NULL)")
            sink.start_run()

            def valid_rows() -> Iterator[tuple[Any, ...]]:
                n = 0
                for row in reader:
                    n += 1
                    if progress is not None and n % 20_000 == 0:
                        progress(counter.count, total)
                    if row.values is None:
                        sink.add(row.line, f"line {row.line}: {row.error}", None, row.raw)
                        continue
                    try:
                        values = validator.validate(row.values)
                    except RowError as exc:
                        sink.add(row.line, f"line {row.line}: {exc}", row.values)
                        continue
                    yield (*values, row.line)
                result.rows_read = n

            try:
                conn.executemany(
                    f"INSERT INTO staging VALUES ({placeholders})",  # noqa: S608
                    valid_rows(),
                )
            except UnicodeDecodeError:
                number, where = _first_bad_utf8_line(path)
                raise DataImportError(
                    f"{path.name} line {number} is not UTF-8 ({where}); save the file as UTF-8 "
                    "and try again."
                ) from None
            _reject_duplicates(conn, columns, sink)
            result.rejected = sink.count
            result.errors = list(sink.first)
            if sink.count and not skip_invalid:
                raise _Invalid()
            if result.rows_read == 0:
                raise DataImportError(
                    f"{path.name} has a header but no records; nothing to import."
                )
            import_id = _merge(store, conn, ds, result, started)
            if ds.name in token_store.INDEXED_DATASETS:
                # Same transaction: the records and their tokens commit together.
                token_store.index_import(conn, ds.name, import_id, store.oprf_key())
            conn.execute("DROP TABLE temp.staging")
        result.committed = True
    except _Invalid:
        pass  # rolled back; the caller reports result.errors
    finally:
        result.seconds = (now_ms() - started) / 1000
        if result.committed:
            result.rejects_path = sink.publish()
        else:
            sink.discard()
    if result.committed:
        store.after_import(ds.name)
    if progress is not None:
        progress(total, total)
    log.info(
        "data_imported" if result.committed else "data_import_refused",
        dataset=ds.name,
        rows=result.rows_read,
        inserted=result.inserted,
        updated=result.updated,
        rejected=result.rejected,
    )
    return result


class _Invalid(Exception):
    """Internal: roll the transaction back because rows were invalid."""


def _reject_duplicates(conn: Any, columns: tuple[str, ...], sink: _RejectSink) -> None:
    """Move every repeat of a record id (after its first line) from staging to rejects.

    The repeats are listed in a TEMP table (on disk, like staging) and read back through
    a cursor, so a file of millions of repeats is never held in memory."""
    conn.execute("DROP TABLE IF EXISTS temp.repeats")
    conn.execute(
        "CREATE TEMP TABLE repeats AS SELECT s.rowid AS rid, s._line AS line,"
        " f.first_line AS first_line FROM staging s JOIN"
        " (SELECT record_id, MIN(rowid) AS keep, MIN(_line) AS first_line FROM staging"
        "  GROUP BY record_id HAVING COUNT(*) > 1) f USING (record_id)"
        " WHERE s.rowid != f.keep"
    )
    if conn.execute("SELECT EXISTS (SELECT 1 FROM repeats)").fetchone()[0]:
        sink.start_run()
        cursor = conn.execute(
            f"SELECT r.line, r.first_line, {', '.join(f's.{c}' for c in columns)}"  # noqa: S608
            " FROM repeats r JOIN staging s ON s.rowid = r.rid ORDER BY r.line"
        )
        for line, first, *values in cursor:
            sink.add(
                int(line),
                f"line {line}: record_id repeats the one on line {first}",
                ["" if v is None else str(v) for v in values],
            )
        conn.execute("DELETE FROM staging WHERE rowid IN (SELECT rid FROM repeats)")
    conn.execute("DROP TABLE temp.repeats")


def _merge(store: DataStore, conn: Any, ds: Dataset, result: ImportResult, started: int) -> int:
    """Upsert staging into the dataset table, touching only rows whose values changed;
    return the import id."""
    columns = ds.columns
    data_cols = columns[1:]
    import_id = int(
        conn.execute("SELECT COALESCE(MAX(import_id), 0) + 1 FROM imports").fetchone()[0]
    )
    before = store.count(ds.name)
    changes_before = conn.total_changes
    sets = ", ".join(f"{c} = excluded.{c}" for c in data_cols)
    differs = (
        f"({', '.join(f'{ds.name}.{c}' for c in data_cols)}) IS NOT"
        f" ({', '.join(f'excluded.{c}' for c in data_cols)})"
    )
    conn.execute(
        f"INSERT INTO {ds.name} ({', '.join(columns)}, {IMPORT_COLUMN}, {RECORD_KEY_COLUMN})"  # noqa: S608
        f" SELECT {', '.join(columns)}, ?, {RECORD_KEY_SQL} FROM staging WHERE true ORDER BY rowid"
        f" ON CONFLICT({ID_FIELD}) DO UPDATE SET {sets}, {IMPORT_COLUMN} = excluded.{IMPORT_COLUMN}"
        f" WHERE {differs}",
        (import_id,),
    )
    changed = conn.total_changes - changes_before
    staged = result.rows_read - result.rejected
    result.inserted = store.count(ds.name) - before
    result.updated = changed - result.inserted
    result.unchanged = staged - changed
    conn.execute(
        "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            import_id,
            ds.name,
            result.source,
            result.format,
            store.dictionary.version,
            started,
            now_ms(),
            result.rows_read,
            result.inserted,
            result.updated,
            result.unchanged,
            result.rejected,
        ),
    )
    return import_id
