"""The policy format, its validation and the engine, without servers."""

from __future__ import annotations

import datetime as dt
import sqlite3
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from rcf.node.ops.state import StateDB
from rcf.node.policy.admin import PolicyGate, refusal
from rcf.node.policy.engine import decide, period_window
from rcf.node.policy.loader import Loaded, load_policy, parse_policy
from rcf.node.policy.model import Charge, QueryDescription
from rcf.node.policy.store import UsageStore
from rcf.node.policy.validate import Context, check_policy
from rcf.trust.errors import RequestRejected
from tests.policy_fixtures import AGG_RULE, BY_ID, CONTEXT, NOW_MS, policy

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def check(text: str, context: Context = CONTEXT) -> Loaded:
    return check_policy(textwrap.dedent(text), "p.toml", context)


def only_error(text: str, context: Context = CONTEXT) -> tuple[int, str, str]:
    loaded = check(text, context)
    assert loaded.policy is None
    errors = loaded.errors
    assert len(errors) == 1, [e.render() for e in errors]
    return errors[0].line, errors[0].message, errors[0].hint


# -- bad input, each located --------------------------------------------------------


def test_toml_syntax_error_names_the_line() -> None:
    line, message, hint = only_error('[[rule]]\nid = "a"\nquery = "Ping\n')
    assert line == 3
    assert "not valid TOML" in message
    assert hint


def test_unknown_key_is_an_error_with_a_suggestion() -> None:
    line, message, hint = only_error(
        """\
        [[rule]]
        id = "ping"
        requesters = ["*"]
        query = "Ping"
        requestor = "AU"
        """
    )
    assert (line, message) == (5, "unknown key 'requestor' in rule 'ping'.")
    assert "requesters" in hint


def test_unknown_top_level_key_and_policy_key() -> None:
    loaded = check('[policy]\nmembr = "TH"\n\n[rules]\nx = 1\n')
    assert [(e.line, e.message) for e in loaded.errors] == [
        (2, "unknown key 'membr' in [policy]."),
        (4, "unknown key 'rules' at the top level."),
    ]


def test_key_of_another_query_type_is_an_error() -> None:
    line, message, hint = only_error(
        '[[rule]]\nid = "p"\nrequesters = ["*"]\nquery = "Ping"\ndetail = "hit_only"\n'
    )
    assert line == 5
    assert message == "'detail' does not apply to Ping rules."
    assert "IdentityCheck" in hint


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ('min_cell_size = "5"', "'min_cell_size' must be a whole number, not a string."),
        ("min_cell_size = 5.5", "'min_cell_size' must be a whole number, not a number."),
        ('group_by = "route"', "'group_by' must be a list of strings, not a string."),
        ("noise = 1", "'noise' must be a string, not a whole number."),
        ("epsilon = true", "'epsilon' must be a number, not true/false."),
        ("budget = 5", "'budget' must be a table, not a whole number."),
    ],
)
def test_wrong_type(setting: str, expected: str) -> None:
    base = AGG_RULE.replace("min_cell_size = 5\n", "").replace('noise = "geometric"\n', "")
    base = base.replace("epsilon = 0.5\n", "").replace(
        'budget = { epsilon = 2.0, per = "month" }\n', ""
    )
    key = setting.split(" ", maxsplit=1)[0]
    base = base.replace(f"{key} = ", "# ")  # the only setting of that key is ours
    extra = ""
    if key in ("epsilon", "budget"):
        extra = 'noise = "geometric"\n'
        extra += (
            "epsilon = 0.5\n" if key == "budget" else 'budget = { epsilon = 2.0, per = "month" }\n'
        )
    if key != "min_cell_size":
        extra += "min_cell_size = 5\n"
    text = base + extra + setting + "\n"
    loaded = check(text)
    messages = [e.message for e in loaded.errors]
    assert expected in messages, messages
    line = next(e.line for e in loaded.errors if e.message == expected)
    assert text.splitlines()[line - 1].startswith(key)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("min_cell_size = 0", "'min_cell_size' must be at least 1, not 0."),
        ("min_cell_size = -5", "'min_cell_size' must be at least 1, not -5."),
        ("round_to = 0", "'round_to' must be at least 1, not 0."),
        ('rate_limit = { count = 0, per = "day" }', "'count' must be at least 1, not 0."),
        ('rate_limit = { count = -1, per = "day" }', "'count' must be at least 1, not -1."),
    ],
)
def test_zero_or_negative_thresholds(setting: str, expected: str) -> None:
    key = setting.split(" ", maxsplit=1)[0]
    text = AGG_RULE.replace(f"{key} = ", "# ") + setting + "\n"
    loaded = check(text)
    assert [e.message for e in loaded.errors] == [expected]
    assert "disable the protection" in loaded.errors[0].hint
    assert loaded.errors[0].line == len(text.splitlines())


def test_max_batch_zero() -> None:
    line, message, _ = only_error(
        """\
        [[rule]]
        id = "idc"
        requesters = ["AU"]
        query = "IdentityCheck"
        datasets = ["persons"]
        detail = "hit_only"
        max_batch = 0
        """
    )
    assert (line, message) == (7, "'max_batch' must be at least 1, not 0.")


@pytest.mark.parametrize("value", ["0", "0.0", "inf", "-inf", "nan", "-0.5", "1e-9"])
def test_epsilon_zero_or_infinite(value: str) -> None:
    line, message, hint = only_error(AGG_RULE.replace("epsilon = 0.5", f"epsilon = {value}"))
    assert message.startswith("'epsilon' must be a finite number of at least 0.000001")
    assert line == 12
    assert "infinity" in hint


def test_budget_epsilon_infinite() -> None:
    _, message, _ = only_error(AGG_RULE.replace("epsilon = 2.0", "epsilon = inf"))
    assert message.startswith("'epsilon' must be a finite number")


def test_member_the_directory_does_not_know() -> None:
    text = AGG_RULE.replace('["group:steering-group"]', '["group:steering-group", "AUS"]')
    line, message, hint = only_error(text)
    assert line == 4
    assert message == "rule 'sg-agg': member 'AUS' is not in the network directory."
    assert hint == "did you mean 'AU'?"


def test_dimension_the_dictionary_does_not_have() -> None:
    line, message, hint = only_error(AGG_RULE.replace('"route"]', '"routes"]'))
    assert line == 8
    assert message == "rule 'sg-agg': dataset 'irregular_movements' has no dimension 'routes'."
    assert hint == "did you mean 'route'?"


def test_unknown_dataset_and_wrong_kind() -> None:
    _, message, hint = only_error(AGG_RULE.replace("irregular_movements", "irregular_movement"))
    assert "dataset 'irregular_movement' is not in the data dictionary" in message
    assert hint == "did you mean 'irregular_movements'?"
    _, message, _ = only_error(
        '[[rule]]\nid = "a"\nrequesters = ["AU"]\nquery = "Aggregate"\n'
        'datasets = ["persons"]\nmin_cell_size = 5\n'
    )
    assert "holds identity data; Aggregate rules need aggregate datasets" in message


def test_valid_but_empty_file_denies_everything_loudly() -> None:
    for text in ("", "# nothing yet\n", '[policy]\nmember = "TH"\n'):
        loaded = check(text)
        assert loaded.policy is not None and loaded.policy.rules == ()
        assert not loaded.errors
        (warning,) = loaded.warnings
        assert "NO RULES" in warning.message and "refuse every query" in warning.message
    empty = load_policy("", "e.toml")
    for member in BY_ID.values():
        d = decide(empty, member, QueryDescription("Ping"), now_ms=NOW_MS)
        assert (d.allowed, d.reason) == (False, "not_authorized")


def test_other_structural_errors_each_located() -> None:
    text = """\
    [[rule]]
    id = "a"
    requesters = ["*"]
    query = "Pong"

    [[rule]]
    id = "b"
    requesters = ["grp:x", "th"]
    query = "Ping"

    [[rule]]
    id = "b"
    requesters = ["*"]
    query = "Ping"

    [[rule]]
    id = "c"
    requesters = ["AU"]
    query = "Aggregate"
    datasets = ["irregular_movements"]
    epsilon = 0.5

    [[rule]]
    id = "d"
    requesters = ["AU"]
    query = "Aggregate"
    datasets = ["irregular_movements"]
    min_cell_size = 5
    noise = "geometric"
    epsilon = 2.0
    budget = { epsilon = 1.0, per = "fortnight" }
    valid_from = 2027-01-01
    valid_until = 2026-01-01
    """
    loaded = check(text)
    got = [(e.line, e.message) for e in loaded.errors]
    assert got == [
        (4, "'Pong' is not a query type."),
        (8, "'grp:x' is not a valid requester: 'grp:' is neither 'group:' nor 'role:'."),
        (8, "'th' is not a valid requester: member ids are upper-case codes such as TH."),
        (12, "rule id 'b' is used twice (first at line 6)."),
        (16, "rule 'c' (Aggregate) needs 'min_cell_size'."),
        (21, "'epsilon' has no effect without noise."),
        (31, "'fortnight' is not a valid per."),
        (33, "valid_until (2026-01-01) is before valid_from (2027-01-01)."),
    ], got


def test_line_numbers_survive_multiline_values_and_subtables() -> None:
    text = '''\
    [policy]
    description = """
    colour = 1
    """

    [[rule]]
    id = "a"
    requesters = [
      "AU",  # comment with ] and "quotes"
      "TH",
    ]
    query = "Aggregate"
    datasets = ["irregular_movements"]
    min_cell_size = 5
    bogus = 1

    [rule.rate_limit]
    count = 5
    per = "week"
    extra = 2
    '''
    loaded = check(text)
    assert [(e.line, e.message) for e in loaded.errors] == [
        (15, "unknown key 'bogus' in rule 'a'."),
        (20, "unknown key 'extra' in 'rate_limit'."),
    ]


# -- the examples -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["AU", "ID", "NZ", "TH", "RSO"])
def test_example_policies_are_clean(name: str) -> None:
    path = POLICIES / f"{name}.toml"
    loaded = check_policy(path.read_text(), str(path), replace(CONTEXT, member_id=name))
    assert loaded.policy is not None, [i.render() for i in loaded.issues]
    assert loaded.issues == (), [i.render() for i in loaded.issues]
    assert loaded.policy.member == name
    ping = decide(loaded.policy, BY_ID["LK"], QueryDescription("Ping"), now_ms=NOW_MS)
    assert ping.allowed


def test_example_rso_gets_aggregates_only() -> None:
    th = load_policy((POLICIES / "TH.toml").read_text())
    rso = BY_ID["RSO"]
    agg = QueryDescription(
        "Aggregate", purpose="regional-analysis", dataset="irregular_movements",
        group_by=("nationality",),
    )  # fmt: skip
    assert decide(th, rso, agg, now_ms=NOW_MS).rule_id == "rso-regional"
    idc = QueryDescription("IdentityCheck", purpose="border-control", dataset="persons")
    assert decide(th, rso, idc, now_ms=NOW_MS).reason == "not_authorized"
    assert decide(th, BY_ID["AU"], idc, now_ms=NOW_MS).constraints.detail == "hit_with_reference"  # type: ignore[union-attr]


# -- warnings -----------------------------------------------------------------------


def test_shadowed_rule_warns() -> None:
    loaded = check(
        AGG_RULE
        + AGG_RULE.replace('id = "sg-agg"', 'id = "au-agg"')
        .replace('["group:steering-group"]', '["AU"]')
        .replace('["nationality", "route"]', '["route"]')
    )
    assert loaded.policy is not None
    (w,) = loaded.warnings
    assert w.line == 16
    assert "rule 'au-agg' is shadowed by rule 'sg-agg'" in w.message


def test_contradictory_rules_warn_but_specific_before_general_does_not() -> None:
    general = AGG_RULE
    specific = (
        AGG_RULE.replace('id = "sg-agg"', 'id = "au-agg"')
        .replace('["group:steering-group"]', '["AU", "LK"]')
        .replace("min_cell_size = 5", "min_cell_size = 10")
        .replace('["event_date"]', '["event_date", "route"]')
    )
    clash = check(general + specific)
    assert clash.policy is not None
    (w,) = clash.warnings
    assert "rules 'sg-agg' (line 2) and 'au-agg' both grant Aggregate on irregular_movements" in (
        w.message
    )
    assert "to AU with different min_cell_size" in w.message
    calm = check(specific.replace('["AU", "LK"]', '["AU"]') + general)
    assert calm.warnings == []


# -- the engine -----------------------------------------------------------------------


P = policy(
    """\
    [[rule]]
    id = "ping"
    requesters = ["*"]
    query = "Ping"
    """
    + AGG_RULE
    + """
    [[rule]]
    id = "rso"
    requesters = ["role:coordinator"]
    query = "Aggregate"
    datasets = ["irregular_movements", "asylum_applications"]
    group_by = ["nationality"]
    measures = ["persons"]
    min_cell_size = 10

    [[rule]]
    id = "au-idc"
    requesters = ["AU"]
    query = "IdentityCheck"
    datasets = ["persons"]
    detail = "hit_only"
    max_batch = 100
    valid_from = 2026-06-01
    valid_until = 2026-06-30

    [[rule]]
    id = "alerts"
    requesters = ["group:steering-group"]
    query = "Alerts"
    categories = ["forged"]
    fields = ["issuing_state"]
    """
)


def agg(**kw: object) -> QueryDescription:
    base: dict[str, object] = {
        "query_type": "Aggregate", "purpose": "analysis", "dataset": "irregular_movements",
        "group_by": ("nationality",),
    }  # fmt: skip
    base.update(kw)
    return QueryDescription(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("member", "query", "allowed", "reason", "rule"),
    [
        ("LK", QueryDescription("Ping"), True, "ok", "ping"),
        ("AU", agg(), True, "ok", "sg-agg"),
        ("LK", agg(), False, "not_authorized", None),
        ("AU", agg(purpose="curiosity"), False, "purpose_not_allowed", "sg-agg"),
        ("AU", agg(group_by=("sex",)), False, "dimension_not_allowed", "sg-agg"),
        ("AU", agg(filters=("nationality",)), False, "filter_not_allowed", "sg-agg"),
        ("AU", agg(filters=("event_date",)), True, "ok", "sg-agg"),
        ("AU", agg(epsilon=0.6), False, "epsilon_too_large", "sg-agg"),
        ("AU", agg(epsilon=0.25), True, "ok", "sg-agg"),
        ("AU", agg(dataset="asylum_applications"), False, "not_authorized", None),
        ("RSO", agg(purpose=""), True, "ok", "rso"),
        ("RSO", agg(measure="persons"), True, "ok", "rso"),
        ("RSO", agg(measure="deaths"), False, "measure_not_allowed", "rso"),
        ("RSO", agg(group_by=("route",)), False, "dimension_not_allowed", "rso"),
        ("AU", QueryDescription("IdentityCheck", dataset="persons", items=100), True, "ok",
         "au-idc"),
        ("AU", QueryDescription("IdentityCheck", dataset="persons", items=101), False,
         "batch_too_large", "au-idc"),
        ("TH", QueryDescription("IdentityCheck", dataset="persons"), False, "not_authorized",
         None),
        ("TH", QueryDescription("Alerts", alert_category="forged"), True, "ok", "alerts"),
        ("TH", QueryDescription("Alerts", alert_category="impostor"), False,
         "category_not_allowed", "alerts"),
        ("TH", QueryDescription("Alerts"), True, "ok", "alerts"),
        ("TH", QueryDescription("Teleport"), False, "unknown_query_type", None),
    ],
)  # fmt: skip
def test_decisions(
    member: str, query: QueryDescription, allowed: bool, reason: str, rule: str | None
) -> None:
    d = decide(P, BY_ID[member], query, now_ms=NOW_MS)
    assert (d.allowed, d.reason, d.rule_id) == (allowed, reason, rule), d.explanation
    assert d.constraints is not None if allowed else d.constraints is None


def test_grant_carries_constraints_and_charges() -> None:
    d = decide(P, BY_ID["AU"], agg(epsilon=0.25, items=2), now_ms=NOW_MS)
    assert d.constraints is not None
    assert (d.constraints.min_cell_size, d.constraints.noise, d.constraints.epsilon) == (
        5, "geometric", 0.25,
    )  # fmt: skip
    assert d.charges == (
        Charge("budget", "irregular_movements", "month:2026-06", 250_000, 2_000_000),
        Charge("rate", "Aggregate:irregular_movements", "day:2026-06-15", 2, 3),
    )
    alerts = decide(P, BY_ID["TH"], QueryDescription("Alerts"), now_ms=NOW_MS).constraints
    assert alerts is not None
    assert (alerts.alert_categories, alerts.alert_fields) == (("forged",), ("issuing_state",))


def test_validity_dates_are_inclusive_days_utc() -> None:
    q = QueryDescription("IdentityCheck", dataset="persons")

    def at(y: int, m: int, d: int, h: int = 0) -> int:
        return int(dt.datetime(y, m, d, h, tzinfo=dt.UTC).timestamp() * 1000)

    assert not decide(P, BY_ID["AU"], q, now_ms=at(2026, 5, 31, 23)).allowed
    assert decide(P, BY_ID["AU"], q, now_ms=at(2026, 6, 1)).allowed
    assert decide(P, BY_ID["AU"], q, now_ms=at(2026, 6, 30, 23)).allowed
    late = decide(P, BY_ID["AU"], q, now_ms=at(2026, 7, 1))
    assert (late.allowed, late.reason) == (False, "not_authorized")
    assert "expired on 2026-06-30" in late.trace[-2].why


def test_first_applicable_rule_that_is_met_decides() -> None:
    p = policy(
        AGG_RULE.replace("min_cell_size = 5", "min_cell_size = 20")
        + AGG_RULE.replace('id = "sg-agg"', 'id = "wider"').replace(
            '["nationality", "route"]', '["nationality", "route", "sex"]'
        )
    )
    assert decide(p, BY_ID["AU"], agg(), now_ms=NOW_MS).rule_id == "sg-agg"
    d = decide(p, BY_ID["AU"], agg(group_by=("sex",)), now_ms=NOW_MS)
    assert (d.allowed, d.rule_id) == (True, "wider")
    assert [t.outcome for t in d.trace] == ["refuses", "decides"]


def test_limits_refuse_with_the_rule_that_decides() -> None:
    def usage(requester: str, charge: Charge) -> int:
        return 1_900_000 if charge.kind == "budget" else 0

    d = decide(P, BY_ID["AU"], agg(), now_ms=NOW_MS, usage=usage)
    assert (d.allowed, d.reason, d.rule_id) == (False, "budget_exhausted", "sg-agg")
    assert "1.9 of 2 epsilon used" in d.explanation
    assert decide(P, BY_ID["AU"], agg(epsilon=0.1), now_ms=NOW_MS, usage=usage).allowed


def test_refusal_tells_a_code_not_the_policy() -> None:
    err = refusal("dimension_not_allowed")
    assert isinstance(err, RequestRejected)
    # The requester learns only not_permitted; the detail stays in the audit record.
    assert err.reason == "not_permitted" and err.status == "PERMISSION_DENIED"
    assert err.audit_reason == "dimension_not_allowed"
    text = str(err)
    for secret in ("sg-agg", "nationality", "route", "steering", "min_cell"):
        assert secret not in text
    limited = refusal("rate_limited")
    assert (limited.reason, limited.status) == ("limit_reached", "RESOURCE_EXHAUSTED")
    assert refusal("budget_exhausted").reason == "limit_reached"
    assert str(limited) == str(refusal("budget_exhausted"))


def test_period_windows() -> None:
    assert [period_window(p, NOW_MS) for p in ("minute", "hour", "day", "week", "month")] == [
        "minute:2026-06-15T12:00", "hour:2026-06-15T12", "day:2026-06-15", "week:2026-W25",
        "month:2026-06",
    ]  # fmt: skip
    assert period_window("quarter", NOW_MS) == "quarter:2026-Q2"
    assert period_window("year", NOW_MS) == "year:2026"


# -- the gate and its persistent usage ---------------------------------------------


def test_gate_charges_budget_down_to_exactly_zero(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.db")
    try:
        p = policy(AGG_RULE.replace('count = 3, per = "day"', 'count = 100, per = "day"'))
        gate = PolicyGate(p, UsageStore(state))
        for _ in range(4):  # 4 x 0.5 = the whole budget of 2.0
            gate.check(BY_ID["AU"], agg())
        with pytest.raises(RequestRejected) as refused:
            gate.check(BY_ID["AU"], agg(epsilon=0.000001))
        assert refused.value.audit_reason == "budget_exhausted"
        # Another member's budget is its own.
        gate.check(BY_ID["TH"], agg())
        rows = state.read("SELECT requester, used FROM policy_usage WHERE kind = 'budget'")
        assert sorted(rows) == [("AU", 2_000_000), ("TH", 500_000)]
    finally:
        state.close()


def test_rate_limit_survives_a_restart(tmp_path: Path) -> None:
    p = policy(AGG_RULE.replace('epsilon = 2.0, per = "month"', 'epsilon = 100.0, per = "month"'))
    state = StateDB(tmp_path / "state.db")
    PolicyGate(p, UsageStore(state)).check(BY_ID["AU"], agg())
    PolicyGate(p, UsageStore(state)).check(BY_ID["AU"], agg())
    state.close()
    state = StateDB(tmp_path / "state.db")
    try:
        gate = PolicyGate(p, UsageStore(state))
        gate.check(BY_ID["AU"], agg())
        with pytest.raises(RequestRejected) as refused:
            gate.check(BY_ID["AU"], agg())
        assert refused.value.audit_reason == "rate_limited"
        assert refused.value.status == "RESOURCE_EXHAUSTED"
    finally:
        state.close()


def test_usage_charges_are_all_or_nothing(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.db")
    try:
        usage = UsageStore(state)
        ok = Charge("rate", "s", "day:x", 1, 10)
        too_much = Charge("budget", "s", "month:x", 5, 4)
        overdraw = usage.charge("AU", (ok, too_much))
        assert overdraw is not None and overdraw.charge == too_much
        assert usage.used("AU", ok) == 0
        assert usage.charge("AU", (ok,)) is None
        assert usage.used("AU", ok) == 1
        # A new period starts from zero and the old one is dropped.
        assert usage.charge("AU", (replace(ok, window="day:y"),)) is None
        assert usage.used("AU", ok) == 0
    finally:
        state.close()


def test_parse_never_raises_on_garbage() -> None:
    for text in ("[[rule]]\n[[rule]]\n", "rule = 5\n", "[policy]\nmember = 5\n", "rule = [1, 2]\n"):
        loaded = parse_policy(text, "g.toml")
        assert loaded.policy is None and loaded.errors


def test_store_refuses_to_change_a_version(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.db")
    try:
        from rcf.node.policy.store import PolicyStore
        from rcf.trust.keys import SigningKey

        store = PolicyStore(state)
        key = SigningKey.generate()
        store.append(member_id="TH", key=key, source="", source_sha256="x", filename="f",
                     action="apply")  # fmt: skip
        with pytest.raises(sqlite3.IntegrityError, match="kept as applied"):
            state.run(lambda c: c.execute("UPDATE policy_versions SET source = 'x'"))
    finally:
        state.close()


def test_policy_for_another_member_and_bad_alert_field() -> None:
    loaded = check(
        '[policy]\nmember = "AU"\n\n[[rule]]\nid = "a"\nrequesters = ["*"]\nquery = "Alerts"\n'
        'categories = ["forged"]\nfields = ["document_numbr"]\n'
    )
    assert [(e.line, e.message, e.hint) for e in loaded.errors] == [
        (
            2,
            "this policy is for AU, but this node is TH.",
            "apply each member's policy on its own node",
        ),
        (
            9,
            "'document_numbr' is not a valid entry of 'fields'.",
            "did you mean 'document_number'?",
        ),
    ]
