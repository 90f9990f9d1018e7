"""Shared values for the sharing-policy tests: a demo directory and small policies."""

from __future__ import annotations

import datetime as dt
import textwrap

from rcf.node.policy.loader import load_policy
from rcf.node.policy.model import Policy
from rcf.node.policy.validate import Context
from rcf.trust.dictionary import default_dictionary
from rcf.trust.directory import Directory, Member, MemberStatus

SG = ("steering-group",)
MEMBERS = (
    Member("AU", "Australia", MemberStatus.ACTIVE, groups=SG),
    Member("ID", "Indonesia", MemberStatus.ACTIVE, groups=SG),
    Member("NZ", "New Zealand", MemberStatus.ACTIVE, groups=SG),
    Member("TH", "Thailand", MemberStatus.ACTIVE, groups=SG),
    Member("RSO", "Regional Support Office", MemberStatus.ACTIVE, roles=("coordinator",)),
    Member("UNHCR", "UNHCR", MemberStatus.ACTIVE, roles=("unhcr",)),
    Member("IOM", "IOM", MemberStatus.ACTIVE, roles=("iom",)),
    Member("LK", "Sri Lanka", MemberStatus.ACTIVE),
)
DIRECTORY = Directory(
    network="test", serial=1, issued_at_ms=0, expires_at_ms=2**62, members=MEMBERS
)
BY_ID = {m.member_id: m for m in MEMBERS}
CONTEXT = Context(directory=DIRECTORY, dictionary=default_dictionary(), member_id="TH")
# Noon UTC, 15 June 2026: far from any period boundary.
NOW_MS = int(dt.datetime(2026, 6, 15, 12, tzinfo=dt.UTC).timestamp() * 1000)


def policy(text: str) -> Policy:
    return load_policy(textwrap.dedent(text), "test.toml")


AGG_RULE = """
[[rule]]
id = "sg-agg"
requesters = ["group:steering-group"]
query = "Aggregate"
datasets = ["irregular_movements"]
purposes = ["analysis"]
group_by = ["nationality", "route"]
filters = ["event_date"]
min_cell_size = 5
noise = "geometric"
epsilon = 0.5
budget = { epsilon = 2.0, per = "month" }
rate_limit = { count = 3, per = "day" }
"""
