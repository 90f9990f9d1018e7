"""`rcf query aggregate` and `rcf report situation` as a coordinator runs them: the CLI as a
subprocess against real nodes (mutual TLS between them, the operator API to its own)."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rcf.trust.dictionary import default_dictionary
from tests.aggregate_fixtures import setup_region
from tests.cli_helpers import fails, ok, rcf
from tests.network import Network

QUERY = ["query", "aggregate", "--dataset", "irregular_movements", "--by", "nationality,month",
         "--from", "2025-01", "--to", "2025-12"]  # fmt: skip


@pytest.fixture
def rso(net: Network, tmp_path: Path) -> str:
    """The region with an RSO node; returns the RSO's --node-dir."""
    net.add_node("RSO", roles=("coordinator",))
    net.refresh_all()
    setup_region(net, tmp_path)
    return str(net.layout("RSO").root)


def test_regional_query_as_json_shows_every_member(rso: str) -> None:
    data = json.loads(ok(*QUERY, "--regional", "--node-dir", rso, "--json"))
    outcome = {m["member"]: (m["outcome"], m["reason"]) for m in data["members"]}
    assert outcome == {
        "AU": ("answered", ""),
        "TH": ("answered", ""),
        "NZ": ("refused", "not_permitted"),
        "RSO": ("refused", "not_permitted"),  # the RSO's own node shares no data
    }
    assert data["complete"] is False
    cells = {tuple(c["key"]): c for c in data["cells"]}
    assert cells[("MMR", "2025-03")]["value"] == 70
    answered = [m for m in data["members"] if m["outcome"] == "answered"]
    assert all(m["caveat"].startswith("RESTRICTED") for m in answered)


def test_table_csv_and_chart(rso: str, tmp_path: Path) -> None:
    chart = tmp_path / "chart.png"
    text = ok(*QUERY, "--members", "AU,TH", "--node-dir", rso, "--chart", str(chart))
    assert "2 of 2 members with a node answered" in text
    assert "at least N" in text and "Caveat (AU, TH): RESTRICTED" in text
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(io.StringIO(ok(*QUERY, "--members", "AU,TH", "--node-dir", rso,
                                              "--csv"))))  # fmt: skip
    total = next(r for r in rows if r["nationality"] == "" and r["month"] == "")
    assert total["is_total"] == "1" and total["lower_bound"] == "1"
    mmr = next(r for r in rows if (r["nationality"], r["month"]) == ("MMR", "2025-03"))
    assert mmr["value"] == "70" and mmr["members"] == "2"


def test_unreachable_member_exits_unavailable_when_nobody_answers(net: Network, rso: str) -> None:
    net.stop_node("AU")
    net.stop_node("TH")
    result = rcf(*QUERY, "--members", "AU,TH", "--node-dir", rso, "--deadline", "2s", "--json")
    assert result.returncode == 3, result.stderr
    outcome = {m["member"]: m["outcome"] for m in json.loads(result.stdout)["members"]}
    assert outcome == {"AU": "unreachable", "TH": "unreachable"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "no_such", "--regional"], "no aggregate dataset"),
        (["--dataset", "irregular_movements", "--by", "colour", "--regional"], "no dimension"),
        (["--dataset", "irregular_movements", "--regional", "--deadline", "0s"], "above 0"),
        (["--dataset", "irregular_movements", "--regional", "--members", "AU"], "one of them"),
        (["--dataset", "irregular_movements", "--regional", "--from", "2025-13"], "YYYY-MM"),
        (["--dataset", "irregular_movements", "--regional", "--filter", "route"], "DIMENSION="),
        (["--dataset", "irregular_movements", "--members", "ZZ"], "not a member"),
    ],
)
def test_bad_input_is_one_sentence(rso: str, args: list[str], message: str) -> None:
    assert message in fails("query", "aggregate", *args, "--node-dir", rso)


class _Checker(HTMLParser):
    """Fails on a closing tag that does not close the innermost open element."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.section_ids: list[str] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.section_ids.append(str(a.get("id")))
        if tag == "img" and str(a.get("src", "")).startswith("data:image/png;base64,"):
            self.images += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()


def test_situation_report_is_one_html_file_with_every_dataset(rso: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    text = ok("report", "situation", "--period", "2025-Q3", "--out", str(out), "--node-dir", rso)
    assert "situation report 2025-Q3 (against 2025-Q2)" in text
    html = out.read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert checker.stack == []
    aggregate = [n for n, d in default_dictionary().datasets.items() if d.kind == "aggregate"]
    assert checker.section_ids == aggregate
    # Only movements are shared; a dataset refused by all says so and draws no chart.
    assert checker.images == 1
    assert html.count("No answer: refused by all members.") >= len(aggregate) - 1
    assert "Regional totals (persons)" in html and "regional total (persons)" in html
    assert "RESTRICTED - Bali Process members only" in html
    assert "http://" not in html and "https://" not in html  # self-contained
    # Q2 holds AU's and TH's records: the monthly totals of Q2 are there, Q3 empty.
    assert "2025-06" in html and "REFUSED (not_permitted)" in html


def test_report_rejects_a_bad_period(rso: str, tmp_path: Path) -> None:
    assert "not a quarter" in fails("report", "situation", "--period", "2025-Q5", "--out",
                                    str(tmp_path / "r.html"), "--node-dir", rso)  # fmt: skip


def test_refused_by_all_is_not_zero_and_draws_no_chart(rso: str, tmp_path: Path) -> None:
    # No member's rule grants trafficking figures: every member with a node refuses.
    chart = tmp_path / "none.png"
    words = ["query", "aggregate", "--dataset", "trafficking_victims", "--by", "nationality",
             "--regional", "--node-dir", rso]  # fmt: skip
    result = rcf(*words, "--chart", str(chart))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Refused by all members: no figures." in result.stdout
    assert "(merged)" not in result.stdout  # no table of zeros
    assert "no member released a figure" in result.stderr and not chart.exists()
    data = json.loads(rcf(*words, "--json").stdout)
    assert data["cells"] == [] and {m["outcome"] for m in data["members"]} == {"refused"}
