"""`rcf bench identity-index`: token-index build at import against bare scalar multiplications.

Figures (one run, same machine, so the ratio is what compares):

- ``index_persons_per_s``: ``node.identity.index.build_token_index`` on N
  synthetic ``persons`` records (N = 20,000; realistic names in their scripts,
  aliases, partial dates, documents) with a fresh OPRF key, on every core:
  normalisation, transliteration, match keys, HashToGroup, one scalar
  multiplication and one SHA-512 per key.
- ``index_bound_persons_per_s``: the same number of keys as that build
  evaluated, as bare ``rbcl`` ristretto255 scalar multiplications (one fixed
  valid point, the same key) split over the same number of worker processes,
  reported per person: the bound no index build can beat. The two alternate
  in four rounds over a quarter of the persons each, so that load from other
  processes on this shared machine weighs on both alike.
- ``index_ratio``: the first over the second; goal >= 0.5.
- ``index_keys_per_person``: how many keys (and so tokens) a person gets.

``quick=True`` (or env RCF_BENCH_INDEX_ROWS) scales N down for a smoke run.
"""

from __future__ import annotations

import os
import time

import rbcl

from rcf.benchmarks.common import BenchResult
from rcf.devnet.synthetic import generate_rows
from rcf.node.identity.index import build_token_index, default_workers, worker_pool
from rcf.node.identity.keys import PersonRecord
from rcf.trust.oprf import OprfKey, hash_to_group

ROWS = 20_000
ROUNDS = 4

BOUNDS: dict[str, str] = {
    "index_persons_per_s": "build_token_index, persons → OPRF tokens, all cores",
    "index_bound_persons_per_s": "bound: bare rbcl scalar mults, same key count, all cores",
    "index_ratio": "goal >= 0.5",
    "index_keys_per_person": "keys (tokens) per person",
}


def _bare_mults(secret: bytes, count: int) -> int:
    point = hash_to_group(b"rcf bench identity-index")
    mult = rbcl.crypto_scalarmult_ristretto255
    for _ in range(count):
        mult(secret, point)
    return count


def _noop() -> None:
    return None


def persons(n: int) -> list[PersonRecord]:
    """N realistic persons from several members' synthetic data."""
    members = ("TH", "MY", "AU", "LK", "BD")
    per = -(-n // len(members))
    out: list[PersonRecord] = []
    for member in members:
        for row in generate_rows(member, "persons", seed=2024, rows=per):
            out.append(PersonRecord.from_row({k: str(v) for k, v in row.items()}))
    return out[:n]


def run(*, quick: bool = False) -> BenchResult:
    """Measure and return the figures; quick scales rows down (a smoke run)."""
    n = int(os.environ.get("RCF_BENCH_INDEX_ROWS", 2_000 if quick else ROWS))
    records = persons(n)
    key = OprfKey.generate()
    workers = default_workers()
    result = BenchResult("identity-index")
    with worker_pool(workers) as pool:
        # Start the workers (and their imports) before timing, as an import reusing a pool would.
        for f in [pool.submit(_noop) for _ in range(workers)]:
            f.result()
        build_token_index(records[: min(len(records), 500)], key, executor=pool)
        # Rounds alternate index and bound so that load from elsewhere hits both alike.
        index_s = bare_s = 0.0
        keys = 0
        step = -(-len(records) // ROUNDS)
        for r in range(ROUNDS):
            part = records[r * step : (r + 1) * step]
            start = time.perf_counter()
            batch = build_token_index(part, key, executor=pool)
            index_s += time.perf_counter() - start
            count = batch.keys_evaluated
            keys += count
            share = -(-count // workers)
            start = time.perf_counter()
            done = sum(
                f.result()
                for f in [
                    pool.submit(_bare_mults, key.secret, min(share, count - i * share))
                    for i in range(workers)
                ]
            )
            bare_s += time.perf_counter() - start
            if done != count:
                raise RuntimeError("the bound did not run as many multiplications as keys")
    index_rate, bound_rate = len(records) / index_s, len(records) / bare_s
    result.add("index_persons_per_s", index_rate, BOUNDS["index_persons_per_s"])
    result.add("index_bound_persons_per_s", bound_rate, BOUNDS["index_bound_persons_per_s"])
    result.add("index_ratio", index_rate / bound_rate, BOUNDS["index_ratio"])
    result.add("index_keys_per_person", keys / len(records), BOUNDS["index_keys_per_person"])
    return result
