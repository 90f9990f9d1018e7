"""The regional merge: several members' released tables of one query as one table.

A regional query fans out to every member; each member's outcome is kept — answered,
refused (with its reason code), unreachable, timed out, or an answer that does not
fit the query (invalid) — so a partial result is explicit, never silent.

Each merged entry is the sum of the members' released values for it. Where a member
suppressed the entry, its part is missing and the sum is only a **lower bound**
(``lower_bound``; ``suppressed_by`` names the members). Totals are merged from the
members' released totals, not recomputed from merged cells, so a member's total
counts even where its cells were suppressed. Where a member noised or rounded,
the sum is approximate (``approximate``). A member with no entry for a key (its grid
did not reach that value) contributes 0 there: absent from an observed grid means
no records. Members that did not answer contribute nothing, and the table says so
(``complete`` is False).

Perturbed and noised values are summed as released, never clamped, so a merged sum is
unbiased; its ``margin95`` is the ± half-width at 95% of the sum's perturbation, noise
and rounding (from each member's stated variance, assuming independent members).
Totals are each member's own protected total, not sums of perturbed cells.
An interior cell that no member released a non-zero value for, and none suppressed,
is not a row: a code nobody recorded is not shown (its count is ``dropped``).

The merged table carries every answering member's caveat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rcf.node.aggregate.cellkey import margin95
from rcf.node.aggregate.disclosure import EXACT, ReleasedCell, ReleasedTable, TotalKey

ANSWERED = "answered"
REFUSED = "refused"
UNREACHABLE = "unreachable"
TIMED_OUT = "timed_out"
INVALID = "invalid"
OUTCOMES = (ANSWERED, REFUSED, UNREACHABLE, TIMED_OUT, INVALID)


@dataclass(frozen=True)
class MemberResult:
    """One member's outcome: its table when answered, its reason code when refused."""

    member: str
    outcome: str
    reason: str = ""
    table: ReleasedTable | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if (self.outcome == ANSWERED) != (self.table is not None):
            raise ValueError("a table comes with, and only with, an answered outcome")


@dataclass(frozen=True)
class MemberOutcome:
    member: str
    outcome: str
    reason: str = ""


@dataclass(frozen=True)
class MergedCell:
    key: TotalKey
    value: int
    lower_bound: bool  # some member suppressed this entry: the true sum may be larger
    approximate: bool  # some member's part is noised or rounded
    members: int  # members whose released value is in the sum
    suppressed_by: tuple[str, ...] = ()
    margin95: int = 0  # ± at 95% of the sum's perturbation, noise and rounding

    @property
    def is_total(self) -> bool:
        return any(v is None for v in self.key)


@dataclass(frozen=True)
class MergedTable:
    dataset: str
    measure: str | None
    dimensions: tuple[str, ...]
    cells: tuple[MergedCell, ...]
    outcomes: tuple[MemberOutcome, ...]
    caveats: tuple[tuple[str, str], ...]  # (member, caveat)
    dropped: int = 0  # interior cells left out: nothing released by any member

    @property
    def complete(self) -> bool:
        """Whether every member answered."""
        return all(o.outcome == ANSWERED for o in self.outcomes)

    def cell(self, key: TotalKey) -> MergedCell | None:
        return next((c for c in self.cells if c.key == key), None)


def _fits(table: ReleasedTable, dataset: str, measure: str | None, dims: tuple[str, ...]) -> bool:
    return (table.dataset, table.measure, table.dimensions) == (dataset, measure, dims)


def merge(
    results: Sequence[MemberResult],
    *,
    dataset: str,
    measure: str | None,
    dimensions: tuple[str, ...],
) -> MergedTable:
    """Merge the answered tables of results for the query (dataset, measure, dimensions)."""
    outcomes: list[MemberOutcome] = []
    answered: list[tuple[str, ReleasedTable, dict[TotalKey, ReleasedCell]]] = []
    for r in results:
        if r.table is not None and not _fits(r.table, dataset, measure, dimensions):
            outcomes.append(MemberOutcome(r.member, INVALID, "answer_mismatch"))
            continue
        outcomes.append(MemberOutcome(r.member, r.outcome, r.reason))
        if r.table is not None:
            answered.append((r.member, r.table, r.table.as_dict()))
    keys: dict[TotalKey, None] = {}
    for _, table, _ in answered:
        for released in table.cells:
            keys.setdefault(released.key, None)
    cells = []
    dropped = 0
    for key in keys:
        value = 0
        variance = 0.0
        nonzero = False
        members = 0
        approximate = False
        suppressed_by: list[str] = []
        for member, _, by_key in answered:
            c = by_key.get(key)
            if c is None:
                members += 1  # outside this member's grid: no records there
                continue
            if c.value is None:
                suppressed_by.append(member)
                continue
            value += c.value
            variance += c.variance
            nonzero = nonzero or c.value != 0
            members += 1
            approximate = approximate or c.status != EXACT
        if not nonzero and not suppressed_by and not any(v is None for v in key):
            dropped += 1
            continue
        cells.append(
            MergedCell(
                key=key,
                value=value,
                lower_bound=bool(suppressed_by),
                approximate=approximate,
                members=members,
                suppressed_by=tuple(suppressed_by),
                margin95=margin95(variance),
            )
        )
    return MergedTable(
        dataset=dataset,
        measure=measure,
        dimensions=dimensions,
        cells=tuple(cells),
        outcomes=tuple(outcomes),
        caveats=tuple((member, t.caveat) for member, t, _ in answered),
        dropped=dropped,
    )
