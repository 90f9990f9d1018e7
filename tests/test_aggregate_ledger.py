"""The query history on a real SQLite file; the regional merge."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from rcf.node.aggregate.disclosure import (
    DIFFERENCING_SUSPECTED,
    EXACT,
    SUPPRESSED_PRIMARY,
    ReleasedCell,
    ReleasedTable,
    ReleaseRefused,
    ReleaseRules,
    release,
)
from rcf.node.aggregate.execute import CellTable
from rcf.node.aggregate.ledger import AggregateLedger
from rcf.node.aggregate.merge import (
    ANSWERED,
    INVALID,
    REFUSED,
    TIMED_OUT,
    UNREACHABLE,
    MemberResult,
    merge,
)
from rcf.node.aggregate.reciprocity import check_reciprocity, contributors_of
from rcf.trust.errors import RequestRejected

TV = "trafficking_victims"


def test_the_query_history_is_append_only(tmp_path: Path) -> None:
    ledger = AggregateLedger.open(tmp_path / "state.db")
    ledger.record_population(requester="ID", dataset=TV, query_id="q", population=10)
    for sql in (
        "UPDATE aggregate_query_history SET population = 1",
        "DELETE FROM aggregate_query_history",
    ):
        with pytest.raises(sqlite3.DatabaseError):
            ledger.conn.execute(sql)
    ledger.close()


def test_a_differencing_pair_is_refused_across_a_restart(tmp_path: Path) -> None:
    """The requester's history is kept in the file: the second query of a pair that differs
    by two records is refused, even after the node restarted in between."""
    path = tmp_path / "state.db"
    rules = ReleaseRules(min_cell_size=5)
    first = CellTable(
        TV,
        None,
        ("sex",),
        (("F", "M"),),
        {("F",): 40, ("M",): 60},
        {("F",): 40, ("M",): 60},
        100,
        1,
    )
    ledger = AggregateLedger.open(path)
    history = ledger.populations_near("ID", TV, first.population, rules.min_cell_size)
    release(first, rules, rng=random.Random(1), history=history)
    ledger.record_population(requester="ID", dataset=TV, query_id="q1", population=100)
    ledger.close()

    second = CellTable(
        TV, None, ("sex",), (("F", "M"),), {("F",): 40, ("M",): 58}, {("F",): 40, ("M",): 58}, 98, 1
    )
    ledger = AggregateLedger.open(path)
    history = ledger.populations_near("ID", TV, second.population, rules.min_cell_size)
    assert history == (100,)
    with pytest.raises(ReleaseRefused) as exc:
        release(second, rules, rng=random.Random(1), history=history)
    assert exc.value.reason == DIFFERENCING_SUSPECTED
    # Another requester meets the same history (two members can pool their answers);
    # another dataset has its own.
    assert ledger.populations_near("AU", TV, 98, 5) == (100,)
    assert ledger.populations_near("ID", "asylum_applications", 98, 5) == ()
    ledger.close()


# -- the regional merge --------------------------------------------------------------------------


def table(cells: dict[tuple[str | None], int | None], caveat: str = "c") -> ReleasedTable:
    return ReleasedTable(
        dataset=TV,
        measure=None,
        dimensions=("sex",),
        cells=tuple(
            ReleasedCell(key, value, EXACT if value is not None else SUPPRESSED_PRIMARY)
            for key, value in cells.items()
        ),
        caveat=caveat,
        min_cell_size=5,
    )


def test_merge_sums_answers_marks_lower_bounds_and_keeps_every_outcome() -> None:
    th = table({("F",): 40, ("M",): None, (None,): 43}, "TH caveat")
    au = table({("F",): None, ("M",): 70, ("X",): None, (None,): 75}, "AU caveat")
    id_ = table({("F",): 12, (None,): 12})
    odd = ReleasedTable(TV, "victims", ("sex",), (), "", 5)
    results = [
        MemberResult("TH", ANSWERED, table=th),
        MemberResult("AU", ANSWERED, table=au),
        MemberResult("ID", ANSWERED, table=id_),
        MemberResult("NZ", REFUSED, reason="not_authorized"),
        MemberResult("MY", UNREACHABLE),
        MemberResult("PH", TIMED_OUT),
        MemberResult("LK", ANSWERED, table=odd),
    ]
    merged = merge(results, dataset=TV, measure=None, dimensions=("sex",))
    f, m, x, total = (merged.cell(k) for k in [("F",), ("M",), ("X",), (None,)])
    assert f is not None and (f.value, f.lower_bound, f.suppressed_by) == (52, True, ("AU",))
    assert m is not None and (m.value, m.lower_bound, m.suppressed_by) == (70, True, ("TH",))
    assert x is not None and (x.value, x.lower_bound) == (0, True)
    # Totals come from the members' released totals: exact although cells were hidden.
    assert total is not None and (total.value, total.lower_bound) == (130, False)
    assert not merged.complete
    assert [(o.member, o.outcome, o.reason) for o in merged.outcomes] == [
        ("TH", ANSWERED, ""),
        ("AU", ANSWERED, ""),
        ("ID", ANSWERED, ""),
        ("NZ", REFUSED, "not_authorized"),
        ("MY", UNREACHABLE, ""),
        ("PH", TIMED_OUT, ""),
        ("LK", INVALID, "answer_mismatch"),
    ]
    assert ("TH", "TH caveat") in merged.caveats and ("AU", "AU caveat") in merged.caveats
    with pytest.raises(ValueError):
        MemberResult("TH", ANSWERED)
    with pytest.raises(ValueError):
        MemberResult("TH", "lost")


def test_reciprocity_answers_only_contributors() -> None:
    results = [
        MemberResult("TH", ANSWERED, table=table({(None,): 10})),
        MemberResult("NZ", REFUSED, reason="not_authorized"),
    ]
    contributors = contributors_of(results)
    assert contributors == frozenset({"TH"})
    check_reciprocity("TH", TV, contributors)
    with pytest.raises(RequestRejected) as exc:
        check_reciprocity("NZ", TV, contributors)
    assert exc.value.reason == "reciprocity_required"
