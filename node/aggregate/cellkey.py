"""The cell-key method: consistent perturbation from a published table.

Every record carries a fixed random **record key**, an integer drawn uniformly from
0 … 2³²-1 when the record is first imported (``_record_key`` in the store) and never
changed afterwards. A cell's **cell key** is the sum of its records' keys modulo 2³²
(the integer form of "the sum of record keys in [0, 1), modulo 1"). The perturbation
of a cell that holds n records is read from the published table below at (n, the
cell key's top 8 bits): the same records always give the same answer, whoever asks,
in whatever table, however often — so repeats average to nothing new — and a
population that differs by one record has an unrelated cell key, so its answer moves
by an unpredictable amount, not by one.

The table (version ``cell_key_v1``) maps the bucket b = cell key >> 24 (0 … 255) to a
perturbation p, with p = 0 for n = 0 (an empty cell stays 0: no phantom records):

=====  ===============================================  ============
n      buckets → p                                      variance
=====  ===============================================  ============
1      0-63 → -1, 64-191 → 0, 192-255 → +1              0.5
≥ 2    0-15 → -2, 16-63 → -1, 64-191 → 0,               0.875
       192-239 → +1, 240-255 → +2
=====  ===============================================  ============

Every row has mean 0 (so merged sums are unbiased) and keeps n + p ≥ 0.
A measure sum S over n records is perturbed by p * round(S / n) (the cell's mean
value per record, at least 1 when S > 0), with p read at (n, cell key): the same
records again give the same answer, and a sum of zero stays zero.
"""

from __future__ import annotations

import math

CELL_KEY = "cell_key"
VERSION = "cell_key_v1"
KEY_MODULUS = 1 << 32
_BUCKET_SHIFT = 24  # 32-bit cell key -> 256 buckets

# (upper bucket bound exclusive, perturbation) per row.
_ROW_ONE = ((64, -1), (192, 0), (256, 1))
_ROW_MANY = ((16, -2), (64, -1), (192, 0), (240, 1), (256, 2))
VARIANCE_ONE = 0.5
VARIANCE_MANY = 0.875
Z95 = 1.959963984540054  # the two-sided 95% point of the normal distribution


def cell_key(key_sum: int) -> int:
    """The cell key of a cell whose records' keys sum to key_sum."""
    return key_sum % KEY_MODULUS


def perturbation(records: int, key: int) -> int:
    """The published table's perturbation for a cell of ``records`` records and cell key."""
    if records <= 0:
        return 0
    bucket = (key % KEY_MODULUS) >> _BUCKET_SHIFT
    row = _ROW_ONE if records == 1 else _ROW_MANY
    return next(p for bound, p in row if bucket < bound)


def variance(records: int) -> float:
    """The variance of the perturbation of a count of ``records`` over random record keys."""
    if records <= 0:
        return 0.0
    return VARIANCE_ONE if records == 1 else VARIANCE_MANY


def perturb_count(records: int, key: int) -> int:
    """A count's released value (never negative: p ≥ -records in every row)."""
    return records + perturbation(records, key)


def perturb_sum(total: int, records: int, key: int) -> tuple[int, float]:
    """A measure sum's released value and the variance of its perturbation."""
    if records <= 0 or total == 0:
        return total, 0.0
    step = max(1, round(total / records))
    return total + perturbation(records, key) * step, variance(records) * step * step


def margin95(var: float) -> int:
    """The ± half-width at 95% for a perturbation of variance var (rounded up)."""
    return math.ceil(Z95 * math.sqrt(var)) if var > 0 else 0
