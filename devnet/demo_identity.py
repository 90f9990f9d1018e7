"""`rcf demo` step: hit, possible hit and no hit, asked of the region by one officer.

A person from the synthetic data Thailand holds (a pooled person may be held by
other states too) is checked by Australia's officer with ``rcf query identity
--regional``: once with the full date of birth (a hit, with TH's reference and
NCP), once with the birth year only (only weak keys: a possible hit), and once
an invented person (no hit anywhere). Members whose policy grants Australia no
persons check refuse, and say so.
"""

from __future__ import annotations

import csv
import json
import subprocess
from typing import Any

from rcf.cli.output import console, table
from rcf.devnet.local_network import failure_text, rcf_command
from rcf.trust.errors import ConfigError

NO_HIT = ("Zebulon Quartermaine", "1961-02-03", "NZL")


def _rows(path: Any) -> list[dict[str, str]]:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []


def _pick(path: Any, other: Any) -> tuple[str, str, str]:
    """A person TH holds, preferably one of the shared pool that ID holds too."""
    shared = {(r["date_of_birth"], r["nationality"]) for r in _rows(other)}
    rows = _rows(path)
    rows.sort(key=lambda r: (r["date_of_birth"], r["nationality"]) not in shared)
    for row in rows:
        dob = row["date_of_birth"]
        if (
            len(dob) == 10
            and ", " in row["name_latin"]
            and row["category"] not in ("trafficking_victim",)
            and row["nationality"] != "THA"
        ):
            family, given = row["name_latin"].split(", ", 1)
            # Given name first: word order does not matter.
            return f"{given} {family}", dob, row["nationality"]
    raise ConfigError(f"No usable person in {path}.")


def step_identity(demo: Any) -> None:
    if "AU" not in demo.ids or "TH" not in demo.ids:
        return
    data = demo.net.root / "data"
    name, dob, nationality = _pick(data / "TH-persons.csv", data / "ID-persons.csv")
    au = str(demo.net.node_layout("AU").root)
    cases = [
        ("hit", name, dob, nationality),
        ("possible hit", name, dob[:4], nationality),
        ("no hit", *NO_HIT),
    ]
    rows = []
    contacts: dict[str, str] = {}
    for label, n, d, nat in cases:
        result = subprocess.run(
            [*rcf_command(), "query", "identity", "--name", n, "--dob", d, "--nationality", nat,
             "--regional", "--node-dir", au, "--json"],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise ConfigError(f"rcf query identity failed: {failure_text(result)}")
        answers = json.loads(result.stdout)["responders"]
        cells = []
        for member, a in sorted(answers.items()):
            if a["error"]:
                cells.append(f"{member}: refused ({a['reason'].split(':')[-1]})")
                continue
            ref = a["references"][0]
            cells.append(f"{member}: {a['outcomes'][0]}" + (f" ref {ref[:12]}…" if ref else ""))
            if a["contact"] and a["contact"]["agency"] and a["outcomes"][0] != "no hit":
                contacts[member] = f"{a['contact']['agency']} ({a['contact']['phone']})"
        rows.append([label, f"{n}, born {d}, {nat}", "; ".join(cells)])
    table(
        "AU's officer asks the region: rcf query identity --regional (blinded OPRF keys; "
        "no name, date or number leaves AU)",
        ["expected", "asked about", "answers"],
        rows,
    )
    for member, contact in sorted(contacts.items()):
        console.print(f"follow up a {member} hit through official channels: {contact}")
    console.print("TH's officers see the hit notices: rcf hits --node-dir …/nodes/TH")
