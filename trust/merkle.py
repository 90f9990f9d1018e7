"""RFC 9162 (RFC 6962) Merkle tree hashing, proofs and proof verification, SHA-256.

Leaves are hashed as SHA-256(0x00 || entry), interior nodes as
SHA-256(0x01 || left || right); the hash of the empty tree is SHA-256("").

Proof *generation* is independent of storage: ``inclusion_ranges`` and
``consistency_ranges`` say which leaf ranges' subtree hashes (MTH) a proof is
made of, and ``inclusion_proof`` / ``consistency_proof`` fill them in through a
callback, so a store can fetch all of them in one read. Every range they name
is a subtree of the RFC's recursion: its start is a multiple of the smallest
power of two not below its length, so ``subtree_decomposition`` splits it into
at most log2(n) perfect subtrees.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, plus
the edge cases of the transparency-dev/merkle reference implementation: a
consistency proof from size 0 is always an error; equal sizes need an empty
proof and byte-identical roots; hashes must be 32 bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

from rcf.trust.errors import VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_TREE_SIZE = 2**64 - 1
# A proof in a tree of at most 2**64 leaves has at most 64 hashes (inclusion)
# or 65 (consistency, which may start with the old root's subtree).
MAX_PROOF_HASHES = 65

RangeHash = Callable[[int, int], bytes]


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof does not hold."""

    default_reason = "bad_proof"


def leaf_hash(entry: bytes) -> bytes:
    """The RFC 9162 hash of one log entry: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162's split: the largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """Combine perfect-subtree hashes, left to right, into the hash of the range they cover."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of a list of leaf hashes; SHA-256("") for the empty list."""
    if not leaf_hashes:
        return EMPTY_ROOT
    # The right edge of the tree as a stack of perfect subtrees, like an
    # append-only log grows: merge while the new size has trailing zero bits.
    stack: list[bytes] = []
    for i, leaf in enumerate(leaf_hashes):
        h, size = leaf, i + 1
        while size & 1 == 0:
            h = node_hash(stack.pop(), h)
            size >>= 1
        stack.append(h)
    return fold_right(stack)


def subtree_decomposition(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees (level, index) that make up an RFC subtree [start, end), left first.

    A perfect subtree at (level, index) covers leaves [index << level, (index + 1) << level).
    """
    if not 0 <= start < end:
        raise ValueError("a subtree needs 0 <= start < end")
    if start % (1 << (end - start - 1).bit_length()):
        raise ValueError("[start, end) is not a subtree of the RFC 9162 recursion")
    parts = []
    pos = start
    while pos < end:
        level = (end - pos).bit_length() - 1
        parts.append((level, pos >> level))
        pos += 1 << level
    return parts


def _require_size(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_TREE_SIZE:
        raise ProofError(f"The {what} must be an integer from 0 to 2^64-1.", reason="bad_tree_size")
    return value


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form PATH(index, D[size]), from the leaf upwards."""
    _require_size(index, "leaf index")
    _require_size(size, "tree size")
    if index >= size:
        raise ProofError("The leaf index is not inside the tree.", reason="bad_tree_size")
    ranges = []
    start, end = 0, size
    while end - start > 1:
        mid = start + largest_power_of_two_below(end - start)
        if index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start = mid
    ranges.reverse()
    return ranges


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form PROOF(size1, D[size2]) (RFC 9162 2.1.4.1), in order."""
    _require_size(size1, "first tree size")
    _require_size(size2, "second tree size")
    if size1 > size2:
        raise ProofError("The first tree is larger than the second.", reason="bad_tree_size")
    if size1 == 0:
        raise ProofError(
            "A consistency proof from the empty tree is meaningless.", reason="bad_tree_size"
        )
    ranges = []
    # SUBPROOF(m, D[start:end], b) unrolled; m counts leaves from start.
    m, start, end, whole = size1, 0, size2, True
    while m != end - start:
        k = largest_power_of_two_below(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def inclusion_proof(index: int, size: int, range_hash: RangeHash) -> list[bytes]:
    """PATH(index, D[size]); range_hash(start, end) returns MTH(D[start:end])."""
    return [range_hash(s, e) for s, e in inclusion_ranges(index, size)]


def consistency_proof(size1: int, size2: int, range_hash: RangeHash) -> list[bytes]:
    """PROOF(size1, D[size2]); range_hash(start, end) returns MTH(D[start:end])."""
    return [range_hash(s, e) for s, e in consistency_ranges(size1, size2)]


def _require_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"The {what} is not a 32-byte hash.", reason="bad_hash")
    return value


def _require_proof(proof: Sequence[bytes]) -> list[bytes]:
    if len(proof) > MAX_PROOF_HASHES:
        raise ProofError("The proof has more hashes than any tree needs.")
    return [_require_hash(p, "proof hash") for p in proof]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf (a leaf hash) is entry index of the tree of size with this root.

    RFC 9162 section 2.1.3.2; raises ProofError (a VerificationError) if not.
    """
    _require_size(index, "leaf index")
    _require_size(size, "tree size")
    if index >= size:
        raise ProofError("The leaf index is not inside the tree.", reason="bad_tree_size")
    _require_hash(leaf, "leaf hash")
    _require_hash(root, "root hash")
    path = _require_proof(proof)
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("The inclusion proof is longer than the tree is tall.")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("The inclusion proof is too short for the tree size.")
    if not hmac.compare_digest(r, root):
        raise ProofError(
            "The inclusion proof does not lead to the expected root hash.", reason="root_mismatch"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of size2 with root2 extends the tree of size1 with root1.

    RFC 9162 section 2.1.4.2; raises ProofError (a VerificationError) if not.
    """
    _require_size(size1, "first tree size")
    _require_size(size2, "second tree size")
    if size2 < size1:
        raise ProofError("The second tree is smaller than the first.", reason="bad_tree_size")
    if size1 == 0:
        raise ProofError(
            "A consistency proof from the empty tree is meaningless.", reason="bad_tree_size"
        )
    if size1 == size2:
        if len(proof) != 0:
            raise ProofError("Trees of equal size need an empty consistency proof.")
        if not (isinstance(root1, bytes) and isinstance(root2, bytes)) or not hmac.compare_digest(
            root1, root2
        ):
            raise ProofError(
                "Two trees of the same size have different roots.", reason="root_mismatch"
            )
        return
    _require_hash(root1, "first root hash")
    _require_hash(root2, "second root hash")
    path = _require_proof(proof)
    if not path:
        raise ProofError("The consistency proof is empty.")
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root starts the path
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("The consistency proof is longer than the tree is tall.")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("The consistency proof is too short for the tree sizes.")
    if not hmac.compare_digest(fr, root1):
        raise ProofError(
            "The consistency proof does not lead to the first root hash.", reason="root_mismatch"
        )
    if not hmac.compare_digest(sr, root2):
        raise ProofError(
            "The consistency proof does not lead to the second root hash.", reason="root_mismatch"
        )
