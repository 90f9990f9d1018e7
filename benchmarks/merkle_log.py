"""`rcf bench merkle`: the hub's Merkle log (hub.merkle_store) at 10,000,000 entries.

Figures (one run, same machine, so the ratios are what compare):

- ``build_appends_per_s``: building a log of N entries (N = 10,000,000) in
  batches of 100,000, each one transaction (leaf and node hashing, inserts,
  fsync'd commit); ``build_s`` is the whole build.
- ``appends_per_s``: then M more entries (M = 200,000) in batches of 1,000,
  the size a node ships, on top of the big log. Goal >= 5,000/s.
- ``hash_bound_per_s``: the same M entries through bare hashlib, leaf hashes
  and every interior node hash the log stores, nothing else: the bound no
  store can beat. ``append_ratio`` is the first over the second.
- ``proof_ms_10m``: mean time to generate an inclusion proof for a random
  entry in the tree of exactly N entries (``proof_p99_ms`` its 99th
  percentile, ``consistency_proof_ms`` the mean for random earlier sizes).
  Goal < 1 ms. Each proof is verified once, outside the timing.
- ``bytes_per_entry``: database file size (after a WAL checkpoint) over the
  number of entries; every entry is ``entry_bytes`` (300) bytes of payload,
  about a signed audit record, so the rest is what the tree costs.

``quick=True`` (or env RCF_BENCH_MERKLE_ENTRIES) builds 1,000,000 entries and
names its figures ``…_1m``: a smoke run, not the result.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rcf.benchmarks.common import BenchResult, percentile
from rcf.hub.merkle_store import MerkleStore
from rcf.trust import merkle

ENTRIES = 10_000_000
QUICK_ENTRIES = 1_000_000
BUILD_BATCH = 100_000
APPEND_BATCH = 1_000
APPENDS = 200_000
QUICK_APPENDS = 20_000
PROOFS = 5_000
ENTRY_BYTES = 300


def _entries(first: int, count: int, template: bytes) -> list[bytes]:
    """Distinct entries of ENTRY_BYTES bytes: a fixed body and an 8-byte counter."""
    return [template + i.to_bytes(8, "big") for i in range(first, first + count)]


def _batches(first: int, total: int, size: int, template: bytes) -> Iterator[list[bytes]]:
    for start in range(first, first + total, size):
        yield _entries(start, min(size, first + total - start), template)


def hash_only(batches: list[list[bytes]], first: int, peaks: list[bytes]) -> float:
    """Seconds to compute every hash the log stores for these entries, with bare hashlib."""
    sha256 = hashlib.sha256
    peaks = list(peaks)
    n = first
    start = time.perf_counter()
    for batch in batches:
        for data in batch:
            h = sha256(b"\x00" + data).digest()
            n += 1
            carry = n
            while not carry & 1:
                h = sha256(b"\x01" + peaks.pop() + h).digest()
                carry >>= 1
            peaks.append(h)
    return time.perf_counter() - start


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def run(*, quick: bool = False) -> BenchResult:
    """Build the big log, then measure appends, the hashing bound, proofs and storage."""
    big = int(os.environ.get("RCF_BENCH_MERKLE_ENTRIES", QUICK_ENTRIES if quick else ENTRIES))
    appends = QUICK_APPENDS if quick else APPENDS
    tag = f"{big // 1_000_000}m" if big % 1_000_000 == 0 else str(big)
    template = bytes(random.Random(1).randbytes(ENTRY_BYTES - 8))
    rnd = random.Random(2)
    result = BenchResult("merkle")
    with tempfile.TemporaryDirectory(prefix="rcf-bench-merkle-") as tmp:
        path = Path(tmp) / "log.db"
        with MerkleStore(path) as store:
            t0 = time.perf_counter()
            for batch in _batches(0, big, BUILD_BATCH, template):
                store.append(batch)
            build_s = time.perf_counter() - t0

            batches = list(_batches(big, appends, APPEND_BATCH, template))
            # Stand-in peaks: the same number of hashes over the same lengths as the store's.
            peaks = [bytes(32)] * big.bit_count()
            t0 = time.perf_counter()
            for batch in batches:
                store.append(batch)
            append_s = time.perf_counter() - t0
            hash_s = hash_only(batches, big, peaks)

            root = store.root(big)
            samples = []
            for _ in range(PROOFS):
                index = rnd.randrange(big)
                t0 = time.perf_counter()
                proof = store.inclusion_proof(index, big)
                samples.append((time.perf_counter() - t0) * 1000)
            merkle.verify_inclusion(index, big, store.leaf_hash(index), proof, root)
            cons = []
            for _ in range(PROOFS // 5):
                size1 = rnd.randrange(1, big)
                t0 = time.perf_counter()
                proof = store.consistency_proof(size1, big)
                cons.append((time.perf_counter() - t0) * 1000)
            merkle.verify_consistency(size1, big, proof, store.root(size1), root)
            entries = store.size()
        # Closing the last connection checkpoints the WAL into the database file.
        stored = _file_bytes(path)

    append_rate, hash_rate = appends / append_s, appends / hash_s
    result.add(f"build_appends_per_s_{tag}", big / build_s, f"{big:,} entries, batches of 100k")
    result.add(f"build_s_{tag}", build_s, "a few minutes at 10M")
    result.add("appends_per_s", append_rate, f"batches of {APPEND_BATCH}; goal >= 5,000")
    result.add("hash_bound_per_s", hash_rate, "bound: bare hashlib, same entries, same hashes")
    result.add("append_ratio", append_rate / hash_rate, "appends / hash bound")
    result.add(f"proof_ms_{tag}", sum(samples) / len(samples), "mean inclusion proof; goal < 1 ms")
    result.add(f"proof_p99_ms_{tag}", percentile(samples, 0.99), "99th percentile")
    result.add(f"consistency_proof_ms_{tag}", sum(cons) / len(cons), "mean, random first size")
    result.add("bytes_per_entry", stored / entries, f"file / entries, {ENTRY_BYTES}-byte entries")
    result.add("entry_bytes", ENTRY_BYTES, "payload per entry")
    return result
