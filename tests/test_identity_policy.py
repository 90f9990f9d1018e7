"""Policy keys of identity checks: exclusions parsed, validated and handed to the handler;
the rate charged once per check."""

from __future__ import annotations

import pytest

from rcf.node.policy.engine import decide
from rcf.node.policy.loader import PolicyError, load_policy
from rcf.node.policy.model import IDENTITY_CHECK, QueryDescription
from tests.policy_fixtures import BY_ID, NOW_MS

RULE = """
[[rule]]
id = "sg"
requesters = ["AU"]
query = "IdentityCheck"
datasets = ["persons"]
detail = "hit_only"
max_batch = 10
rate_limit = {{ count = 12, per = "day" }}
{extra}
"""


def test_exclusions_reach_the_constraints() -> None:
    policy = load_policy(RULE.format(
        extra='exclude_categories = ["trafficking_victim"]\nexclude_own_nationals = true'
    ))  # fmt: skip
    d = decide(policy, BY_ID["AU"], QueryDescription(IDENTITY_CHECK, dataset="persons", items=3),
               now_ms=NOW_MS)  # fmt: skip
    assert d.allowed and d.constraints is not None
    assert d.constraints.exclude_categories == ("trafficking_victim",)
    assert d.constraints.exclude_own_nationals is True
    assert [c.amount for c in d.charges] == [3]


def test_later_chunks_and_round_two_charge_nothing() -> None:
    policy = load_policy(RULE.format(extra=""))
    d = decide(policy, BY_ID["AU"], QueryDescription(IDENTITY_CHECK, dataset="persons", items=0),
               now_ms=NOW_MS, usage=lambda member, charge: 12)  # fmt: skip
    assert d.allowed and d.charges == ()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('exclude_categories = ["victims"]', "'victims' is not a valid entry"),
        ('exclude_own_nationals = "yes"', "must be true or false"),
    ],
)
def test_bad_exclusions_are_errors(extra: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy(RULE.format(extra=extra))
    assert message in str(err.value.issues)


def test_exclusion_keys_belong_to_identity_rules() -> None:
    with pytest.raises(PolicyError) as err:
        load_policy('[[rule]]\nid = "p"\nrequesters = ["*"]\nquery = "Ping"\n'
                    "exclude_own_nationals = true\n")  # fmt: skip
    assert "does not apply to Ping rules" in str(err.value.issues)
