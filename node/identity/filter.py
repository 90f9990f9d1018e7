"""The membership structure ("filter") a responder publishes over its token tags.

Matching happens at the asker: the responder answers round 1 (blinded elements
in, evaluated elements out) and publishes, to each requester its policy lets
check a dataset, the sorted list of ``filter_value(tag)`` of every tag it holds
for that requester (records the rule excludes are absent). The asker finalises
its tokens, computes the same values and looks them up locally; only a person
with a value in the filter gets a round 2. A no hit sends the responder no
finalised token, so a responder that logs everything has nothing to test a
guess against; and because each value is derived from an OPRF output under the
responder's secret key, the asker cannot test a guess against the filter
without that responder's (rate-limited) online evaluation.

Values are ``SHA-256(FILTER_DOMAIN || tag)[:VALUE_BYTES]`` with ``tag`` the first
16 bytes of the RFC 9497 token. With n distinct values a foreign value is found
by accident with probability at most ``n / 2**64``: at most 1e-9 per element for
up to 1.8e10 values, far above any member's index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FILTER_DOMAIN = b"rcf-identity-filter-v1"
VALUE_BYTES = 8
PAGE_VALUES = 65_536  # 512 KiB of values per page, within the default 1 MiB message
TAG_BYTES = 16
# An asker refuses a larger filter: one of every possible value would make every person
# "match" and so send the responder round 2 tokens of persons it does not hold.
MAX_FILTER_VALUES = 1 << 24


def filter_value(tag: bytes) -> bytes:
    """The filter value of a 16-byte tag (or of a 64-byte token: its first 16 bytes)."""
    return hashlib.sha256(FILTER_DOMAIN + tag[:TAG_BYTES]).digest()[:VALUE_BYTES]


def filter_values(tags: Iterable[bytes]) -> list[bytes]:
    """The distinct filter values of tags, ascending."""
    return sorted({filter_value(t) for t in tags})


def filter_version(key_id: str, serial: int, dataset: str, view: Sequence[str]) -> str:
    """Opaque version of one requester's filter: key, index serial, dataset and policy view."""
    text = "\n".join((key_id, str(serial), dataset, *view))
    return hashlib.sha256(FILTER_DOMAIN + b"\0" + text.encode()).hexdigest()[:32]


def pages_of(count: int) -> int:
    """Pages a filter of count values takes (at least one, also when empty)."""
    return max(1, -(-count // PAGE_VALUES))


@dataclass(frozen=True)
class Filter:
    """One responder's filter for one dataset, as the asker holds it (values sorted)."""

    responder: str
    dataset: str
    version: str
    key_id: str
    values: bytes  # count * VALUE_BYTES, ascending

    @property
    def count(self) -> int:
        return len(self.values) // VALUE_BYTES

    def page(self, number: int) -> bytes:
        start = number * PAGE_VALUES * VALUE_BYTES
        return self.values[start : start + PAGE_VALUES * VALUE_BYTES]

    def _array(self) -> npt.NDArray[np.uint64]:
        return np.frombuffer(self.values, dtype=">u8")

    def contains_all(self, values: Sequence[bytes]) -> list[bool]:
        """For each 8-byte value, whether it is in the filter (one vectorised search)."""
        if not values:
            return []
        held = self._array()
        wanted = np.frombuffer(b"".join(values), dtype=">u8")
        at = np.searchsorted(held, wanted)
        found = np.zeros(len(wanted), dtype=bool)
        inside = at < len(held)
        found[inside] = held[at[inside]] == wanted[inside]
        return [bool(x) for x in found]

    def matches(self, tokens: Sequence[bytes]) -> list[bool]:
        """For each finalised token, whether its value is in the filter."""
        return self.contains_all([filter_value(t) for t in tokens])

    def __repr__(self) -> str:
        return f"Filter({self.responder}, {self.dataset}, {self.count} values)"


def is_sorted_unique(values: bytes) -> bool:
    """Whether packed values are strictly ascending (what a receiver must check)."""
    if len(values) % VALUE_BYTES:
        return False
    prev = b""
    for i in range(0, len(values), VALUE_BYTES):
        v = values[i : i + VALUE_BYTES]
        if v <= prev:
            return False
        prev = v
    return True
