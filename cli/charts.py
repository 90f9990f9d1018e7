"""Charts of merged regional tables (matplotlib, drawn off-screen into PNG bytes).

Values that are lower bounds (a member suppressed its part) are drawn hollow and
the legend says so: a chart must not look more certain than its table.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from rcf.protos.v1 import aggregate_pb2

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MAX_SERIES = 8  # lines or bars shown; the rest are summed into "other"


def _interior(result: aggregate_pb2.RegionalAggregate) -> list[aggregate_pb2.MergedCell]:
    return [c for c in result.cells if all(part != "" for part in c.key)]


def _pyplot() -> ModuleType:
    # Loaded when a chart is drawn, not when rcf starts: every command would pay ~0.4 s.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def chart_png(result: aggregate_pb2.RegionalAggregate, *, title: str) -> bytes:
    """The merged table as a PNG: months on the x axis when grouped by month, else bars."""
    plt = _pyplot()
    dims = list(result.dimensions)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    try:
        if "month" in dims and len(dims) <= 2:
            _lines(ax, result, dims)
        else:
            _bars(ax, result, dims)
        ax.set_title(title, fontsize=11)
        ax.set_ylabel(result.measure or "records")
        # Counts start at zero: a cut axis exaggerates small changes.
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
        note = (
            "hollow: lower bound (a member suppressed its part); "
            "whiskers: ± at 95% of the members' perturbation, noise and rounding"
        )
        fig.text(0.01, 0.01, note, fontsize=7, color="#555555")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def has_figures(result: aggregate_pb2.RegionalAggregate) -> bool:
    """Whether a chart would show anything: an answer with a value to draw."""
    return any(m.outcome == "answered" for m in result.members) and any(
        c.value or c.lower_bound for c in _interior(result) or result.cells
    )


def write_chart(result: aggregate_pb2.RegionalAggregate, path: Path, *, title: str) -> None:
    path.write_bytes(chart_png(result, title=title))


def _lines(ax: Axes, result: aggregate_pb2.RegionalAggregate, dims: list[str]) -> None:
    m = dims.index("month")
    cells = _interior(result)
    months = sorted({c.key[m] for c in cells})
    if len(dims) == 1:
        series = {"total": {c.key[0]: c for c in cells}}
    else:
        other = 1 - m
        totals: dict[str, int] = {}
        for c in cells:
            totals[c.key[other]] = totals.get(c.key[other], 0) + c.value
        top = sorted(totals, key=lambda k: -totals[k])[:MAX_SERIES]
        series = {name: {c.key[m]: c for c in cells if c.key[other] == name} for name in top}
    for name, by_month in series.items():
        ys = [by_month[mo].value if mo in by_month else 0 for mo in months]
        errs = [by_month[mo].margin95 if mo in by_month else 0 for mo in months]
        line = ax.plot(months, ys, marker="o", label=name)[0]
        if any(errs):
            ax.errorbar(months, ys, yerr=errs, fmt="none", ecolor=line.get_color(), alpha=0.5)
        hollow = [i for i, mo in enumerate(months) if mo in by_month and by_month[mo].lower_bound]
        if hollow:
            ax.plot([months[i] for i in hollow], [ys[i] for i in hollow], "o",
                    markerfacecolor="white", markeredgecolor=line.get_color())  # fmt: skip
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    if len(series) > 1:
        ax.legend(fontsize=8, ncol=2)


def _bars(ax: Axes, result: aggregate_pb2.RegionalAggregate, dims: list[str]) -> None:
    cells = _interior(result)
    if not dims:
        cells = list(result.cells)
    if len(dims) > 1:  # sum the other dimensions away, keeping lower-bound marks
        summed: dict[str, tuple[int, bool]] = {}
        for c in cells:
            v, lb = summed.get(c.key[0], (0, False))
            summed[c.key[0]] = (v + c.value, lb or c.lower_bound)
        items = sorted(summed.items(), key=lambda kv: -kv[1][0])[: MAX_SERIES * 2]
        labels = [k for k, _ in items]
        values = [v for _, (v, _) in items]
        lower = [lb for _, (_, lb) in items]
    else:
        ordered = sorted((c for c in cells if c.value > 0), key=lambda c: -c.value)
        ordered = ordered[: MAX_SERIES * 2]
        labels = [c.key[0] if c.key else "total" for c in ordered]
        values = [c.value for c in ordered]
        lower = [c.lower_bound for c in ordered]
        errs = [c.margin95 for c in ordered]
        if any(errs):
            ax.errorbar(labels, values, yerr=errs, fmt="none", ecolor="#555555", alpha=0.6)
    bars = ax.bar(labels, values, color="#3b6ea5")
    for bar, lb in zip(bars, lower, strict=True):
        if lb:
            bar.set_facecolor("white")
            bar.set_edgecolor("#3b6ea5")
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
