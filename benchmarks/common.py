"""What every benchmark shares: the result shape and percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class BenchResult:
    """Figures (name → number) and, for the table, each figure's bound or goal."""

    name: str
    figures: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: float, note: str = "") -> None:
        self.figures[name] = round(value, 4)
        if note:
            self.notes[name] = note


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
