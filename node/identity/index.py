"""The responder's token index: every match key of its records, evaluated with its OPRF key.

``build_token_index`` turns a batch of ``persons`` / ``documents`` records into
rows (record id, key kind, strength, token) built with one key (``key_id``).
A token is the RFC 9497 OPRF output of the key bytes under the node's key: exactly what an asker's
``finalize`` gives for the same key, so a lookup is a byte comparison. No
storage here; rotating the key means a new ``OprfKey`` (``OprfKey.generate``)
and a rebuild; the batch carries ``key_id`` so a store can keep the old rows
until the new ones are in and then drop them.

The work (normalisation, hashing to the group, one scalar multiplication per
key) is CPU-bound Python and libsodium calls; it is spread over worker
processes (``spawn``: safe beside gRPC threads) in chunks of records. Small
batches run in-process, where starting workers would cost more than it saves.
A record whose identifiers cannot be used is reported by record id and rule,
never by value, and does not stop the batch.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

from rcf.node.identity.errors import InvalidIdentifier
from rcf.node.identity.keys import DocumentRecord, PersonRecord, Role, document_keys, person_keys
from rcf.trust.oprf import OprfKey, evaluate

Record = PersonRecord | DocumentRecord
IN_PROCESS_BELOW = 500  # records; below this a pool costs more than it saves
CHUNK = 250


class TokenRow(NamedTuple):
    """One row of the token index: plain values (cheap to pass between processes and store).

    ``kind`` and ``strength`` are the values of ``KeyKind`` and ``Strength``.
    """

    record_id: str
    kind: str
    strength: str
    token: bytes  # the 64-byte OPRF output


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out of the index: its id, the field and the rule (never the value)."""

    record_id: str
    field: str
    rule: str


@dataclass(frozen=True)
class IndexBatch:
    """Rows built with the key ``key_id``, and the records left out."""

    key_id: str
    rows: list[TokenRow]
    skipped: list[SkippedRecord]

    @property
    def keys_evaluated(self) -> int:
        return len(self.rows)


def _index_chunk(secret: bytes, records: Sequence[Record]) -> IndexBatch:
    key = OprfKey.from_secret(secret)
    rows: list[TokenRow] = []
    skipped: list[SkippedRecord] = []
    for record in records:
        try:
            if isinstance(record, PersonRecord):
                keys = person_keys(record, role=Role.INDEX)
            else:
                keys = document_keys(record)
        except InvalidIdentifier as exc:
            skipped.append(SkippedRecord(record.record_id, exc.field, exc.rule))
            continue
        rid = record.record_id
        rows += [TokenRow(rid, k.kind.value, k.strength.value, evaluate(key, k.data)) for k in keys]
    return IndexBatch(key.key_id, rows, skipped)


def _chunks(records: Sequence[Record], size: int) -> Iterator[Sequence[Record]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _ignore_interrupts() -> None:
    # A Ctrl-C goes to the terminal's whole process group: the parent stops the
    # pool; a worker that took it too would only print its own traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of spawned workers that leave SIGINT to the parent (every pool here)."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_ignore_interrupts,
    )


def build_token_index(
    records: Sequence[Record],
    key: OprfKey,
    *,
    workers: int | None = None,
    executor: ProcessPoolExecutor | None = None,
) -> IndexBatch:
    """Token rows for every usable record, in record order; skipped records listed apart.

    ``workers`` defaults to one per core; ``executor`` lets a caller reuse a pool
    across batches (an import of many batches should).
    """
    n_workers = workers or default_workers()
    if executor is None and (n_workers <= 1 or len(records) < IN_PROCESS_BELOW):
        return _index_chunk(key.secret, records)
    size = max(1, min(CHUNK, -(-len(records) // n_workers)))
    own = executor is None
    pool = executor or worker_pool(n_workers)
    try:
        futures = [pool.submit(_index_chunk, key.secret, c) for c in _chunks(records, size)]
        rows: list[TokenRow] = []
        skipped: list[SkippedRecord] = []
        for f in futures:
            batch = f.result()
            rows += batch.rows
            skipped += batch.skipped
    except BaseException:
        if own:
            # Interrupted: drop the chunks not started; the running ones end soon.
            pool.shutdown(cancel_futures=True)
        raise
    finally:
        if own:
            pool.shutdown()
    return IndexBatch(key.key_id, rows, skipped)
