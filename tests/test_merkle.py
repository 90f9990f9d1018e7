"""trust.merkle against the transparency-dev/merkle vectors and the RFC's own definitions;
hub.merkle_store against a naive in-memory tree."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import sqlite3
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rcf.hub.merkle_store import MerkleStore, node_position
from rcf.trust import merkle
from rcf.trust.errors import ConfigError, RequestRejected, VerificationError

VECTORS = Path(__file__).parent / "vectors" / "rfc6962-merkle"
VECTOR_FILES = sorted(VECTORS.rglob("*.json"))
# The tree the vectors are built from (tests/vectors/README.md).
VECTOR_LEAVES = [
    bytes.fromhex(h)
    for h in (
        *("", "00", "10", "2021", "3031", "40414243"),
        *("5051525354555657", "606162636465666768696a6b6c6d6e6f"),
    )
]


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _check_vector(v: dict[str, Any]) -> None:
    proof = [_b64(p) for p in v["proof"] or []]
    if "leafIdx" in v:
        merkle.verify_inclusion(
            v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), proof, _b64(v["root"])
        )
    else:
        merkle.verify_consistency(v["size1"], v["size2"], proof, _b64(v["root1"]), _b64(v["root2"]))


# -- naive reference: RFC 9162 section 2.1 definitions, recursively -----------


def naive_mth(leaves: Sequence[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:])).digest()


def naive_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


def naive_subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [naive_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*naive_subproof(m, leaves[:k], whole), naive_mth(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), naive_mth(leaves[:k])]


def _flip_each_bit(value: bytes) -> list[bytes]:
    out = []
    for i in range(len(value) * 8):
        b = bytearray(value)
        b[i // 8] ^= 1 << (i % 8)
        out.append(bytes(b))
    return out


# -- the published vectors --------------------------------------------------


def test_all_196_vectors_are_present() -> None:
    assert len(VECTOR_FILES) == 196
    kinds = {p.relative_to(VECTORS).parts[0] for p in VECTOR_FILES}
    assert kinds == {"inclusion", "consistency"}
    assert sum(not _load(p)["wantErr"] for p in VECTOR_FILES) == 12


@pytest.mark.parametrize(
    "path", VECTOR_FILES, ids=[str(p.relative_to(VECTORS)) for p in VECTOR_FILES]
)
def test_vector(path: Path) -> None:
    vector = _load(path)
    if vector["wantErr"]:
        with pytest.raises(VerificationError):
            _check_vector(vector)
    else:
        _check_vector(vector)


def test_vector_tree_roots_and_generated_proofs_match_happy_paths() -> None:
    hashes = [merkle.leaf_hash(x) for x in VECTOR_LEAVES]
    assert merkle.root_of(hashes).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )

    def range_hash(start: int, end: int) -> bytes:
        return merkle.root_of(hashes[start:end])

    checked = 0
    for path in VECTOR_FILES:
        v = _load(path)
        if v["wantErr"] or "additional" in path.parts or "single-entry" in path.parts:
            continue
        proof = [_b64(p) for p in v["proof"] or []]
        if "leafIdx" in v:
            assert _b64(v["leafHash"]) == hashes[v["leafIdx"]]
            assert _b64(v["root"]) == merkle.root_of(hashes[: v["treeSize"]])
            assert merkle.inclusion_proof(v["leafIdx"], v["treeSize"], range_hash) == proof
        else:
            assert _b64(v["root1"]) == merkle.root_of(hashes[: v["size1"]])
            assert _b64(v["root2"]) == merkle.root_of(hashes[: v["size2"]])
            assert merkle.consistency_proof(v["size1"], v["size2"], range_hash) == proof
        checked += 1
    assert checked == 10


# -- generation against the RFC's recursive definitions ---------------------


def test_generation_matches_the_rfc_definitions_for_every_small_tree() -> None:
    leaves = [bytes([i]) * (i % 5) for i in range(40)]
    hashes = [merkle.leaf_hash(x) for x in leaves]

    @cache
    def range_hash(start: int, end: int) -> bytes:
        return naive_mth(leaves[start:end])

    for n in range(1, len(leaves) + 1):
        assert merkle.root_of(hashes[:n]) == naive_mth(leaves[:n])
        for m in range(n):
            assert merkle.inclusion_proof(m, n, range_hash) == naive_path(m, leaves[:n])
        for m in range(1, n + 1):
            assert merkle.consistency_proof(m, n, range_hash) == naive_subproof(m, leaves[:n], True)
    assert merkle.root_of([]) == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_subtree_decomposition_covers_the_range_with_perfect_subtrees() -> None:
    assert merkle.subtree_decomposition(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert merkle.subtree_decomposition(8, 11) == [(1, 4), (0, 10)]
    with pytest.raises(ValueError):
        merkle.subtree_decomposition(1, 4)  # not a subtree of the recursion
    with pytest.raises(ValueError):
        merkle.subtree_decomposition(3, 3)


def test_verification_rejects_malformed_arguments() -> None:
    leaf = merkle.leaf_hash(b"a")
    ok = merkle.root_of([leaf, merkle.leaf_hash(b"b")])
    sibling = merkle.leaf_hash(b"b")
    merkle.verify_inclusion(0, 2, leaf, [sibling], ok)
    bad_calls: list[tuple[Any, ...]] = [
        (True, 2, leaf, [sibling], ok),  # a bool is not an index
        (0, 2**64, leaf, [sibling], ok),
        (-1, 2, leaf, [sibling], ok),
        (0, 2, leaf[:31], [sibling], ok),
        (0, 2, leaf, [sibling + b"\x00"], ok),
        (0, 2, leaf, [sibling] * 66, ok),
        (0, 2, leaf, [sibling], ok[:-1]),
        (2, 2, leaf, [sibling], ok),
    ]
    for args in bad_calls:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(*args)
    with pytest.raises(merkle.ProofError) as info:
        merkle.verify_consistency(0, 0, [], ok, ok)
    assert info.value.reason == "bad_tree_size"
    with pytest.raises(merkle.ProofError) as info:
        merkle.verify_consistency(1, 2, [sibling], leaf, ok[::-1])
    assert info.value.reason == "root_mismatch"
    assert str(info.value).endswith(".")


# -- hypothesis: random trees, every single-bit change fails ---------------

tree_and_index = st.integers(min_value=1, max_value=300).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n - 1), st.randoms())
)


def _random_tree(n: int, rnd: random.Random) -> tuple[list[bytes], Any]:
    hashes = [merkle.leaf_hash(rnd.randbytes(rnd.randrange(0, 20))) for _ in range(n)]

    @cache
    def range_hash(start: int, end: int) -> bytes:
        return merkle.root_of(hashes[start:end])

    return hashes, range_hash


@settings(max_examples=60, deadline=None)
@given(tree_and_index)
def test_inclusion_proofs_verify_and_every_bit_flip_fails(case: tuple[int, int, Any]) -> None:
    n, index, rnd = case
    hashes, range_hash = _random_tree(n, rnd)
    root = range_hash(0, n)
    proof = merkle.inclusion_proof(index, n, range_hash)
    merkle.verify_inclusion(index, n, hashes[index], proof, root)
    for bad_leaf in _flip_each_bit(hashes[index]):
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(index, n, bad_leaf, proof, root)
    for bad_root in _flip_each_bit(root):
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(index, n, hashes[index], proof, bad_root)
    for i, element in enumerate(proof):
        for bad in _flip_each_bit(element):
            with pytest.raises(VerificationError):
                merkle.verify_inclusion(
                    index, n, hashes[index], [*proof[:i], bad, *proof[i + 1 :]], root
                )
    for other in {index - 1, index + 1, index ^ 2, n} - {index}:
        if 0 <= other < n and hashes[other] == hashes[index]:
            continue
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(other, n, hashes[index], proof, root)


sizes_pair = st.integers(min_value=1, max_value=300).flatmap(
    lambda n: st.tuples(st.integers(min_value=1, max_value=n), st.just(n), st.randoms())
)


@settings(max_examples=60, deadline=None)
@given(sizes_pair)
def test_consistency_proofs_verify_and_every_bit_flip_fails(case: tuple[int, int, Any]) -> None:
    size1, size2, rnd = case
    _, range_hash = _random_tree(size2, rnd)
    root1, root2 = range_hash(0, size1), range_hash(0, size2)
    proof = merkle.consistency_proof(size1, size2, range_hash)
    merkle.verify_consistency(size1, size2, proof, root1, root2)
    if size1 == size2:
        assert proof == []
    for bad in _flip_each_bit(root1):
        with pytest.raises(VerificationError):
            merkle.verify_consistency(size1, size2, proof, bad, root2)
    for bad in _flip_each_bit(root2):
        with pytest.raises(VerificationError):
            merkle.verify_consistency(size1, size2, proof, root1, bad)
    for i, element in enumerate(proof):
        for bad in _flip_each_bit(element):
            with pytest.raises(VerificationError):
                merkle.verify_consistency(
                    size1, size2, [*proof[:i], bad, *proof[i + 1 :]], root1, root2
                )
    if proof:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(size1, size2, proof[:-1], root1, root2)
        with pytest.raises(VerificationError):
            merkle.verify_consistency(size1, size2, [*proof, root1], root1, root2)


# -- the SQLite store ---------------------------------------------------------


def _batches(rnd: random.Random, total: int) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    made = 0
    while made < total:
        k = min(total - made, rnd.choice([0, 1, 2, 3, 7, 64, 100]))
        out.append([rnd.randbytes(rnd.randrange(0, 50)) for _ in range(k)])
        made += k
    return out


def test_node_positions_are_post_order() -> None:
    # Building a tree of 8 leaves creates nodes in this order.
    order = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0)]
    order += [(0, 4), (0, 5), (1, 2), (0, 6), (0, 7), (1, 3), (2, 1), (3, 0)]
    assert [node_position(lv, ix) for lv, ix in order] == list(range(15))


def test_store_matches_a_naive_tree_at_every_size(tmp_path: Path) -> None:
    rnd = random.Random(12)
    leaves: list[bytes] = []
    with MerkleStore(tmp_path / "log.db") as store:
        assert store.size() == 0
        assert store.root() == merkle.EMPTY_ROOT
        for batch in _batches(rnd, 150):
            assert store.append(batch) == len(leaves)
            leaves += batch
            assert store.size() == len(leaves)
            assert store.root() == naive_mth(leaves)
        hashes = [merkle.leaf_hash(x) for x in leaves]
        for n in range(1, len(leaves) + 1):
            root = naive_mth(leaves[:n])
            assert store.root(n) == root
            for m in range(n):
                proof = store.inclusion_proof(m, n)
                assert proof == naive_path(m, leaves[:n])
                merkle.verify_inclusion(m, n, hashes[m], proof, root)
            for m in rnd.sample(range(1, n + 1), min(n, 12)):
                proof = store.consistency_proof(m, n)
                assert proof == naive_subproof(m, leaves[:n], True)
                merkle.verify_consistency(m, n, proof, naive_mth(leaves[:m]), root)
        assert [store.leaf_hash(i) for i in range(len(leaves))] == hashes
        assert [store.entry(i) for i in range(len(leaves))] == leaves


def test_store_proofs_at_random_sizes_of_a_larger_log(tmp_path: Path) -> None:
    rnd = random.Random(7)
    leaves = [rnd.randbytes(16) for _ in range(5000)]
    hashes = [merkle.leaf_hash(x) for x in leaves]
    with MerkleStore(tmp_path / "log.db") as store:
        for i in range(0, len(leaves), 999):
            store.append(leaves[i : i + 999])
        for _ in range(60):
            n = rnd.randrange(1, len(leaves) + 1)
            m = rnd.randrange(n)
            root = merkle.root_of(hashes[:n])
            assert store.root(n) == root
            merkle.verify_inclusion(m, n, hashes[m], store.inclusion_proof(m, n), root)
            s1 = rnd.randrange(1, n + 1)
            merkle.verify_consistency(
                s1, n, store.consistency_proof(s1, n), merkle.root_of(hashes[:s1]), root
            )


def test_store_survives_reopen_and_keeps_appending(tmp_path: Path) -> None:
    rnd = random.Random(3)
    leaves = [rnd.randbytes(8) for _ in range(77)]
    path = tmp_path / "log.db"
    with MerkleStore(path) as store:
        store.append(leaves[:50])
        old_root = store.root()
    with MerkleStore(path) as store:
        assert store.size() == 50
        assert store.root() == old_root == naive_mth(leaves[:50])
        assert store.append(leaves[50:]) == 50
        assert store.root() == naive_mth(leaves)
        merkle.verify_consistency(
            50, 77, store.consistency_proof(50, 77), old_root, naive_mth(leaves)
        )


def test_two_handles_on_one_file_stay_consistent(tmp_path: Path) -> None:
    """A second writer (another process in production) appends; the first one notices."""
    leaves = [bytes([i]) for i in range(30)]
    path = tmp_path / "log.db"
    with MerkleStore(path) as a, MerkleStore(path) as b:
        a.append(leaves[:11])
        assert b.size() == 11  # b catches up on read
        b.append(leaves[11:20])
        assert a.root() == naive_mth(leaves[:20])
        merkle.verify_inclusion(
            15, 20, merkle.leaf_hash(leaves[15]), a.inclusion_proof(15, 20), naive_mth(leaves[:20])
        )
        a.append(leaves[20:])
        assert a.size() == 30
        assert a.root() == naive_mth(leaves)
    with MerkleStore(path) as c:
        assert c.root() == naive_mth(leaves)


def test_store_files_are_private_and_rows_append_only(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with MerkleStore(path) as store:
        store.append([b"a", b"b", b"c"])
        for p in (path, tmp_path / "log.db-wal", tmp_path / "log.db-shm"):
            assert p.stat().st_mode & 0o777 == 0o600, p
    conn = sqlite3.connect(path)
    for sql in (
        "UPDATE merkle_nodes SET hash = zeroblob(32) WHERE pos = 0",
        "DELETE FROM merkle_entries WHERE idx = 2",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_store_refuses_out_of_range_and_bad_entries(tmp_path: Path) -> None:
    with MerkleStore(tmp_path / "log.db") as store:
        store.append([b"x"] * 5)
        for call in (
            lambda: store.inclusion_proof(5, 5),
            lambda: store.inclusion_proof(0, 6),
            lambda: store.consistency_proof(0, 5),
            lambda: store.consistency_proof(4, 3),
            lambda: store.consistency_proof(1, 6),
            lambda: store.root(6),
            lambda: store.leaf_hash(5),
            lambda: store.entry(-1),
        ):
            with pytest.raises(RequestRejected) as info:
                call()
            assert info.value.reason == "out_of_range"
        with pytest.raises(RequestRejected):
            store.append([b"ok", "not bytes"])  # type: ignore[list-item]
        with pytest.raises(RequestRejected):
            store.append([b"\x00" * (64 * 1024 + 1)])
        assert store.size() == 5  # refused batches leave nothing behind
        assert store.consistency_proof(5, 5) == []
        assert store.root(0) == merkle.EMPTY_ROOT


def test_failed_batch_rolls_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with MerkleStore(path) as store:
        store.append([b"a", b"b"])
        root = store.root()
        conn = sqlite3.connect(path)
        # Occupy the position the next leaf will take, so the batch fails mid-way.
        conn.execute("INSERT INTO merkle_entries VALUES (3, x'00')")
        conn.commit()
        conn.close()
        with pytest.raises(sqlite3.IntegrityError):
            store.append([b"c", b"d", b"e"])
        assert store.size() == 2
        assert store.root() == root


def test_damaged_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with MerkleStore(path) as store:
        store.append([b"a", b"b", b"c"])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE merkle_meta SET value = 7 WHERE key = 'size'")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match="damaged"):
        MerkleStore(path)
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError):
        MerkleStore(tmp_path / "junk.db")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(st.binary(max_size=8), max_size=9), max_size=8), st.data())
def test_store_property_random_batches(
    tmp_path: Path, batches: list[list[bytes]], data: st.DataObject
) -> None:
    leaves = [x for b in batches for x in b]
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "log.db"  # a fresh log per example
    with MerkleStore(path) as store:
        for b in batches:
            store.append(b)
        assert store.root() == naive_mth(leaves)
        if leaves:
            n = data.draw(st.integers(1, len(leaves)))
            m = data.draw(st.integers(0, n - 1))
            assert store.inclusion_proof(m, n) == naive_path(m, leaves[:n])
            s1 = data.draw(st.integers(1, n))
            assert store.consistency_proof(s1, n) == naive_subproof(s1, leaves[:n], True)
