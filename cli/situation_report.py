"""The RSO's periodic situation report: regional queries, compared with the previous period,
written as one self-contained HTML file (charts embedded as PNG data).

For each aggregate dataset of the dictionary: regional totals by month over this period
and the previous one, the top nationalities and (where the dataset has them) routes in
both periods with the change, every member's outcome for every query, and every caveat
and disclosure note the members attached. Nothing is left out silently: a query that
failed as a whole is reported in its section.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import importlib.resources
import math
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from rcf.cli.aggregate_view import OUTCOME_LABELS, no_node
from rcf.cli.charts import chart_png
from rcf.cli.errors import BAD_OPTION
from rcf.protos.v1 import aggregate_pb2
from rcf.trust.dictionary import DataDictionary, Dataset
from rcf.trust.errors import ConfigError
from rcf.trust.status import read_refusal

TOP = 10
NATIONALITY_DIMENSIONS = ("nationality", "holder_nationality")
ROUTE_DIMENSIONS = ("route",)
_QUARTER = re.compile(r"^([0-9]{4})-Q([1-4])$")
_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
_YEAR = re.compile(r"^([0-9]{4})$")

Ask = Callable[[aggregate_pb2.AggregateOperatorRequest], aggregate_pb2.RegionalAggregate]


@dataclass(frozen=True)
class Period:
    label: str
    months: tuple[str, ...]

    @property
    def first(self) -> str:
        return self.months[0]

    @property
    def last(self) -> str:
        return self.months[-1]


def _month_list(year: int, month: int, count: int) -> tuple[str, ...]:
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return tuple(out)


def parse_period(text: str) -> Period:
    """2025-Q3, 2025-07 or 2025; ConfigError otherwise."""
    text = text.strip()
    if m := _QUARTER.match(text):
        year, q = int(m.group(1)), int(m.group(2))
        return Period(text, _month_list(year, 3 * q - 2, 3))
    if m := _MONTH.match(text):
        return Period(text, _month_list(int(m.group(1)), int(m.group(2)), 1))
    if m := _YEAR.match(text):
        return Period(text, _month_list(int(m.group(1)), 1, 12))
    raise ConfigError(
        f"--period {text!r} is not a quarter (2025-Q3), a month (2025-07) or a year.",
        reason=BAD_OPTION,
    )


def previous(period: Period) -> Period:
    """The period of the same length just before period."""
    n = len(period.months)
    year, month = int(period.first[:4]), int(period.first[5:7])
    for _ in range(n):
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    months = _month_list(year, month, n)
    if n == 3:
        label = f"{year}-Q{(month - 1) // 3 + 1}"
    elif n == 1:
        label = months[0]
    else:
        label = str(year)
    return Period(label, months)


# -- gathering -------------------------------------------------------------------------


@dataclass
class Query:
    """One regional query of the report and what came back (or why nothing did)."""

    title: str
    request: aggregate_pb2.AggregateOperatorRequest
    result: aggregate_pb2.RegionalAggregate | None = None
    error: str = ""


@dataclass
class Section:
    dataset: Dataset
    monthly: Query
    breakdowns: list[tuple[str, Query, Query]] = field(default_factory=list)  # (dim, now, before)

    @property
    def queries(self) -> list[Query]:
        out = [self.monthly]
        for _, now, before in self.breakdowns:
            out += [now, before]
        return out


RECORDS = "records"


def count_measure(dataset: Dataset, measure: str | None) -> str | None:
    """The measure a report counts: the dataset's count column (persons, victims …) unless
    ``measure`` names another; None (records) for ``records`` or a dataset without one."""
    if measure == RECORDS:
        return None
    if measure is not None:
        return measure if measure in dataset.measures else None
    return dataset.measures[0] if dataset.measures else None


def _request(
    dataset: str,
    by: Sequence[str],
    months: tuple[str, str],
    *,
    members: Sequence[str],
    deadline_ms: int,
    purpose: str,
    measure: str | None = None,
) -> aggregate_pb2.AggregateOperatorRequest:
    query = aggregate_pb2.AggregateQuery(dataset=dataset, group_by=list(by), measure=measure or "")
    query.filters.add(
        dimension="month", between=aggregate_pb2.ValueRange(low=months[0], high=months[1])
    )
    return aggregate_pb2.AggregateOperatorRequest(
        query=query,
        members=list(members),
        regional=not members,
        deadline_ms=deadline_ms,
        purpose=purpose,
    )


def plan(
    dictionary: DataDictionary,
    period: Period,
    *,
    members: Sequence[str] = (),
    deadline_ms: int = 10_000,
    purpose: str = "regional-analysis",
    datasets: Sequence[str] = (),
    measure: str | None = None,
) -> list[Section]:
    """The queries of the report, per aggregate dataset (all of them unless named), each
    counting ``count_measure(dataset, measure)``."""
    before = previous(period)
    sections = []
    for ds in dictionary.datasets.values():
        if ds.kind != "aggregate" or (datasets and ds.name not in datasets):
            continue

        def req(
            by: Sequence[str], p: Period, ds: Dataset = ds
        ) -> aggregate_pb2.AggregateOperatorRequest:
            return _request(ds.name, by, (p.first, p.last), members=members,
                            deadline_ms=deadline_ms, purpose=purpose,
                            measure=count_measure(ds, measure))  # fmt: skip

        both = Period(f"{before.label} and {period.label}", before.months + period.months)
        section = Section(ds, Query("regional totals by month", req(["month"], both)))
        for candidates in (NATIONALITY_DIMENSIONS, ROUTE_DIMENSIONS):
            dim = next((d for d in candidates if ds.dimension(d) is not None), None)
            if dim is None:
                continue
            section.breakdowns.append(
                (
                    dim,
                    Query(f"by {dim}, {period.label}", req([dim], period)),
                    Query(f"by {dim}, {before.label}", req([dim], before)),
                )
            )
        sections.append(section)
    if datasets and not sections:
        raise ConfigError("None of the named datasets is an aggregate dataset of the dictionary.")
    return sections


def gather(sections: list[Section], ask: Ask) -> None:
    """Run every query of sections; a query that fails as a whole keeps its error."""
    for section in sections:
        for q in section.queries:
            try:
                q.result = ask(q.request)
            except grpc.RpcError as exc:
                refusal = read_refusal(exc)
                q.error = refusal.message or refusal.code.name
                if refusal.reason:
                    q.error += f" [{refusal.reason}]"


# -- figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    value: int
    lower_bound: bool
    approximate: bool
    margin95: int = 0

    def text(self) -> str:
        t = f"{self.value:,}"
        if self.approximate:
            t = "~" + t
        t += "+" if self.lower_bound else ""
        return t + (f" ±{self.margin95:,}" if self.margin95 else "")


def _sum(cells: Sequence[aggregate_pb2.MergedCell]) -> Figure:
    # Independent parts: variances add, so margins add in quadrature.
    margin = math.ceil(math.sqrt(sum(c.margin95 * c.margin95 for c in cells)))
    return Figure(
        sum(c.value for c in cells),
        any(c.lower_bound for c in cells),
        any(c.approximate for c in cells),
        margin,
    )


def period_total(result: aggregate_pb2.RegionalAggregate, period: Period) -> Figure:
    """The sum of the month cells of period (monthly totals sum with little noise)."""
    return _sum([c for c in result.cells if c.key and c.key[0] in period.months])


def by_value(result: aggregate_pb2.RegionalAggregate) -> dict[str, Figure]:
    """A one-dimension table's interior cells by their value."""
    return {
        c.key[0]: Figure(c.value, c.lower_bound, c.approximate, c.margin95)
        for c in result.cells
        if c.key and c.key[0] != ""
    }


def change(now: Figure, before: Figure) -> str:
    """The change in percent, or a dash where it would mislead (no base, bounds only)."""
    if before.value <= 0 or now.lower_bound or before.lower_bound:
        return "—"
    return f"{(now.value - before.value) / before.value * 100:+.0f}%"


# -- HTML ---------------------------------------------------------------------------------

# The page around the sections: package data, so that a report's look is edited as HTML.
TEMPLATE = "situation-report.html"


def _page(title: str, content: str) -> str:
    """content inside the shipped page template (title and content are HTML already)."""
    text = (importlib.resources.files("rcf.cli") / "templates" / TEMPLATE).read_text("utf-8")
    return string.Template(text).substitute(title=title, content=content)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{_e(v)}</td>' if i >= numeric_from else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def no_answer(result: aggregate_pb2.RegionalAggregate) -> str:
    """What to print instead of figures when no member answered."""
    with_node = [m for m in result.members if not no_node(m)]
    if with_node and all(m.outcome == "refused" for m in with_node):
        return "No answer: refused by all members."
    return "No answer: no member answered."


def _top_table(dim: str, now: Query, before: Query, period: Period, prior: Period) -> str:
    if now.result is None or before.result is None:
        return f'<p class="bad">{_e(now.error or before.error)}</p>'
    if not any(m.outcome == "answered" for m in now.result.members):
        return f'<p class="bad">{_e(no_answer(now.result))}</p>'
    cur, old = by_value(now.result), by_value(before.result)
    zero = Figure(0, False, False)
    top = sorted((k for k in cur if cur[k].value > 0), key=lambda k: -cur[k].value)[:TOP]
    rows = [
        [k, cur[k].text(), old.get(k, zero).text(), change(cur[k], old.get(k, zero))] for k in top
    ]
    if not rows:
        return '<p class="note">No value was released for this period.</p>'
    return _table([dim, period.label, prior.label, "change"], rows)


def _outcomes(section: Section) -> str:
    members: list[str] = []
    for q in section.queries:
        for m in q.result.members if q.result else ():
            if m.member_id not in members:
                members.append(m.member_id)
    header = ["member", *[q.title for q in section.queries]]
    rows = []
    for member in members:
        row = [member]
        for q in section.queries:
            found = {x.member_id: x for x in q.result.members} if q.result else {}
            outcome = found.get(member)
            if outcome is None:
                row.append("not asked" if q.result else "query failed")
            elif no_node(outcome):
                row.append("no node")  # IOM, UNHCR: not a failure
            else:
                label = OUTCOME_LABELS.get(outcome.outcome, outcome.outcome)
                row.append(f"{label} ({outcome.reason})" if outcome.reason else label)
        rows.append(row)
    return _table(header, rows, numeric_from=len(header))


def _caveats(section: Section) -> dict[str, set[str]]:
    """Each distinct caveat of the section's answers, with the members that attached it."""
    out: dict[str, set[str]] = {}
    for q in section.queries:
        for m in q.result.members if q.result else ():
            if m.outcome == "answered" and m.disclosure.caveat:
                out.setdefault(m.disclosure.caveat, set()).add(m.member_id)
    return out


def _disclosure_notes(section: Section) -> tuple[list[str], list[str]]:
    """(disclosure notes per member, distinct caveats with their members)."""
    notes: dict[str, set[str]] = {}
    for q in section.queries:
        for m in q.result.members if q.result else ():
            if m.outcome != "answered":
                continue
            d = m.disclosure
            parts = [f"cells under {d.min_cell_size} suppressed, with complements"]
            if d.noise and d.noise != "none":
                extra = f", delta {d.delta:g}" if d.delta else ""
                parts.append(
                    f"{d.noise} noise, epsilon {d.epsilon:g}{extra}, scale {d.noise_scale:.3g}"
                )
            if d.round_to:
                parts.append(f"random rounding to base {d.round_to}")
            parts.extend(f"flag: {f}" for f in d.flags)
            notes.setdefault(m.member_id, set()).add("; ".join(parts))
    caveats = _caveats(section)
    lines = [f"{member}: {' | '.join(sorted(n))}" for member, n in sorted(notes.items())]
    return lines, [f"{text} ({', '.join(sorted(who))})" for text, who in caveats.items()]


def _section_html(section: Section, period: Period, prior: Period) -> str:
    ds = section.dataset
    out = [f'<section id="{_e(ds.name)}">', f"<h2>{_e(ds.name)}</h2>"]
    if ds.description:
        out.append(f"<p>{_e(ds.description)}</p>")
    monthly = section.monthly
    what = monthly.request.query.measure or RECORDS
    if monthly.result is None:
        out.append(f'<p class="bad">Regional totals by month: {_e(monthly.error)}</p>')
    elif not any(m.outcome == "answered" for m in monthly.result.members):
        # Nobody answered: say so; never totals of 0 or an empty chart.
        out.append(f"<h3>Regional totals ({_e(what)})</h3>")
        out.append(f'<p class="bad">{_e(no_answer(monthly.result))}</p>')
    else:
        now, before = period_total(monthly.result, period), period_total(monthly.result, prior)
        out.append(f"<h3>Regional totals ({_e(what)})</h3>")
        totals = [[what, before.text(), now.text(), change(now, before)]]
        out.append(_table(["", prior.label, period.label, "change"], totals))
        months = [c for c in monthly.result.cells if c.key and c.key[0] != ""]
        title = f"{ds.name}: {what} by month, {prior.first} to {period.last}"
        out.append(_img(chart_png(monthly.result, title=title), title))
        by_month = [
            [c.key[0], Figure(c.value, c.lower_bound, c.approximate, c.margin95).text()]
            for c in sorted(months, key=lambda c: c.key[0])
        ]
        out.append(_table(["month", f"regional total ({what})"], by_month))
    for dim, now_q, before_q in section.breakdowns:
        out.append(
            f"<h3>Top {_e(dim.replace('_', ' '))} values, {_e(period.label)} ({_e(what)})</h3>"
        )
        out.append(_top_table(dim, now_q, before_q, period, prior))
    out.append("<h3>Member outcomes</h3>")
    out.append(_outcomes(section))
    notes, caveats = _disclosure_notes(section)
    out.append("<h3>Disclosure notes</h3>")
    out.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>" if notes
               else '<p class="note">No member answered.</p>')  # fmt: skip
    for c in caveats:
        out.append(f'<div class="caveat">{_e(c)}</div>')
    out.append("</section>")
    return "\n".join(out)


def render_html(
    sections: Sequence[Section], period: Period, *, member: str, generated_at: dt.datetime
) -> str:
    """The whole report as one HTML document (no external resources)."""
    prior = previous(period)
    all_caveats: dict[str, set[str]] = {}
    for s in sections:
        for text, who in _caveats(s).items():
            all_caveats.setdefault(text, set()).update(who)
    intro = [
        f"<h1>Regional situation report, {_e(period.label)}</h1>",
        f'<p class="note">Compared with {_e(prior.label)}. Compiled by the {_e(member)} node on '
        f"{_e(generated_at.strftime('%Y-%m-%d %H:%M UTC'))} from regional queries to every member; "
        "each member answered from its own records under its own sharing policy.</p>",
        '<p class="note">How to read the figures: ~N means members added noise or rounded; '
        "N+ means at least N, because a member suppressed small numbers; a dash in a change "
        "column means the change cannot be stated honestly. Members that did not answer are "
        "not in the totals; each section says who answered.</p>",
        "<nav><ul>"
        + "".join(
            f'<li><a href="#{_e(s.dataset.name)}">{_e(s.dataset.name)}</a></li>' for s in sections
        )
        + "</ul></nav>",
    ]
    intro += [
        f'<div class="caveat">{_e(text)} ({_e(", ".join(sorted(who)))})</div>'
        for text, who in all_caveats.items()
    ]
    body = [_section_html(s, period, prior) for s in sections]
    return _page(f"Regional situation report {_e(period.label)}", "\n".join(intro + body))
