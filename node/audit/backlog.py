"""The audit records a node wrote and the hub has not accepted yet: how many, how old.

Store and forward means a hub outage only delays anchoring; but a backlog that
never drains (the hub moved, its address is wrong, it refuses us) must not be
silent. ``rcf node status``, ``rcf audit verify`` and the metrics read the
same figures from here; past ``audit_backlog_warn_s`` (node.toml) they warn.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcf.node.audit.anchor import AnchorStore
from rcf.node.audit.chain import AuditLog


@dataclass(frozen=True)
class Backlog:
    unshipped: int
    oldest_at_ms: int  # when the oldest unshipped record was written (0: none)

    def age_s(self, now_ms: int) -> float:
        """Seconds the oldest unshipped record has waited (0 when nothing waits)."""
        return max(0, now_ms - self.oldest_at_ms) / 1000 if self.unshipped else 0.0

    def warning(self, now_ms: int, threshold_s: float, *, member_id: str) -> str:
        """One sentence when the backlog is older than threshold_s; "" otherwise."""
        age = self.age_s(now_ms)
        if not self.unshipped or age <= threshold_s:
            return ""
        return (
            f"{member_id}: {self.unshipped:,} audit records are not anchored at the hub, the "
            f"oldest for {_duration(age)} (threshold {_duration(threshold_s)}): shipping is "
            "stuck; check that the hub is up and that hub_address in node.toml names it."
        )


def audit_backlog(audit: AuditLog, anchor: AnchorStore) -> Backlog:
    """The current backlog of audit records not yet accepted by the hub."""
    shipped = anchor.shipped_seq()
    oldest = audit.records_after(shipped, 1)
    if not oldest:
        return Backlog(0, 0)
    return Backlog(max(0, audit.last_seq() - shipped), oldest[0].ts_ms)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
