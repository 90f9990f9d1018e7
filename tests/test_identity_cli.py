"""The identity-check commands as an officer and an operator run them (subprocesses)
against real nodes; the token index kept in step with imports, purges and rotations."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcf.devnet.synthetic import mrz_td3
from rcf.node.ops.assembly import read_only
from tests.cli_helpers import fails, ok, rcf
from tests.identity_net import identity_network, import_rows
from tests.network import Network


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = identity_network(tmp_path_factory.mktemp("identity-cli"))
    try:
        yield network
    finally:
        network.close()


def au(net: Network) -> str:
    return str(net.layout("AU").root)


def test_query_identity_hit_with_reference_and_contact(net: Network) -> None:
    out = json.loads(
        ok("query", "identity", "--name", "Muhammad KHAN", "--dob", "1985-03-14",
           "--nationality", "AFG", "--to", "TH,ID", "--node-dir", au(net), "--json")
    )  # fmt: skip
    th, id_ = out["responders"]["TH"], out["responders"]["ID"]
    assert th["outcomes"] == ["HIT"] and len(th["references"][0]) == 32
    assert th["contact"]["agency"] == "Royal Thai Police, Immigration Bureau"
    assert id_["outcomes"] == ["HIT"] and id_["references"] == [""]
    table = ok("query", "identity", "--name", "Kyaw Min", "--dob", "1990-05-12", "--to", "TH",
               "--node-dir", au(net))  # fmt: skip
    assert "HIT ref" in table and "Royal Thai Police" in table


def test_query_regional_manifest_with_csv(net: Network, tmp_path: Path) -> None:
    manifest = tmp_path / "passengers.csv"
    manifest.write_text(
        "name,date_of_birth,nationality,document_number,issuing_state\n"
        "Mohamad Khan,1985-03-14,AFG,,\n"
        "HASSAN Omar,1990-05-12,SYR,,\n"
        "Jane Citizen,1971-02-03,AUS,PA1234567,AUS\n",
        encoding="utf-8",
    )
    out_csv = tmp_path / "results.csv"
    out = json.loads(
        ok("query", "identity", "--manifest", str(manifest), "--regional", "--csv", str(out_csv),
           "--node-dir", au(net), "--json")
    )  # fmt: skip
    assert out["responders"]["TH"]["outcomes"] == ["HIT", "possible hit", "no hit"]
    assert out["responders"]["ID"]["outcomes"] == ["HIT", "no hit", "no hit"]
    # NZ holds nothing and grants nothing: refused, the others still answered.
    assert out["responders"]["NZ"]["reason"] == "refused:not_permitted"
    shown = ok("query", "identity", "--manifest", str(manifest), "--regional",
               "--node-dir", au(net))  # fmt: skip
    assert "NZ: refused by policy (not_permitted)" in shown and "FAILED" not in shown
    assert out_csv.stat().st_mode & 0o777 == 0o600
    assert "HIT ref" in out_csv.read_text()


def test_query_document_by_mrz_and_by_number(net: Network) -> None:
    line1, line2 = mrz_td3(doc_type="P", issuing_state="IDN", family="SANTOSO", given="BUDI",
                           number="C1234567", nationality="IDN", birth="800101", sex="M",
                           expiry="300101")  # fmt: skip
    out = json.loads(ok("query", "document", "--mrz", f"{line1}\n{line2}", "--to", "TH",
                        "--node-dir", au(net), "--json"))  # fmt: skip
    assert out["responders"]["TH"]["outcomes"] == ["HIT"]
    out = json.loads(ok("query", "document", "--number", "C7777777", "--issuer", "IDN", "--to",
                        "TH", "--node-dir", au(net), "--json"))  # fmt: skip
    assert out["responders"]["TH"]["outcomes"] == ["no hit"]
    # A wrong check digit: one clear sentence, and the number is not echoed.
    bad = line2[:9] + str((int(line2[9]) + 1) % 10) + line2[10:]
    err = fails("query", "document", "--mrz", f"{line1}\n{bad}", "--to", "TH", "--node-dir",
                au(net))  # fmt: skip
    assert "check digit" in err and "C1234567" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["--name", "", "--dob", "1980"],
        ["--name", "Ali 2", "--dob", "1980"],
        ["--name", "Ali Khan", "--dob", "1980-13-01"],
        ["--name", "Ali Khan", "--dob", "2999"],
        ["--name", "Ali Khan", "--dob", "1980", "--doc", "X1"],
    ],
)
def test_bad_input_is_one_sentence(net: Network, args: list[str]) -> None:
    err = fails("query", "identity", *args, "--to", "TH", "--node-dir", au(net))
    for value in args[1::2]:
        if len(value) > 3:
            assert value not in err


def test_manifest_over_policy_max_batch_is_refused(net: Network, tmp_path: Path) -> None:
    manifest = tmp_path / "big.csv"
    manifest.write_text(
        "name,date_of_birth,nationality\n"
        + "".join(f"Person Number {'I' * (i % 7)} Test,1980,AFG\n" for i in range(51))
    )
    result = rcf("query", "identity", "--manifest", str(manifest), "--to", "TH",
                 "--node-dir", au(net), "--json")  # fmt: skip
    assert result.returncode == 1  # nobody answered
    out = json.loads(result.stdout)
    assert out["responders"]["TH"]["reason"] == "refused:not_permitted"  # max_batch 50


def test_hits_lists_notices_without_identifiers(net: Network) -> None:
    ok("query", "identity", "--name", "Mohammed Khan", "--dob", "1985-03-14", "--to", "TH",
       "--node-dir", au(net))  # fmt: skip
    notices = json.loads(ok("hits", "--node-dir", str(net.layout("TH").root), "--json"))
    assert notices and notices[0]["record_id"] == "TH-P-1" and notices[0]["requester"] == "AU"
    assert "Khan" not in json.dumps(notices)


def test_index_follows_imports_purges_and_rotation(tmp_path: Path) -> None:
    net = identity_network(tmp_path)
    try:
        th_dir = str(net.layout("TH").root)
        args = ("query", "identity", "--name", "Siti Rahayu", "--dob", "1991-09-09",
                "--to", "TH", "--node-dir", au(net), "--json")  # fmt: skip
        assert json.loads(ok(*args))["responders"]["TH"]["outcomes"] == ["no hit"]
        import_rows(net, "TH", "persons", [("TH-P-9", "", "RAHAYU, Siti", "", "1991-09-09", "F",
                                            "IDN", "", "missing_person")])  # fmt: skip
        assert json.loads(ok(*args))["responders"]["TH"]["outcomes"] == ["HIT"]
        # Rotation while the node runs: new key, same answers, audited.
        db = net.layout("TH").data_db
        before = set(sqlite3.connect(db).execute("SELECT tag FROM identity_tokens"))
        assert "new OPRF key" in ok("node", "rotate-oprf-key", "--yes", "--node-dir", th_dir)
        after = set(sqlite3.connect(db).execute("SELECT tag FROM identity_tokens"))
        assert before and after and not before & after
        assert json.loads(ok(*args))["responders"]["TH"]["outcomes"] == ["HIT"]
        assert "token index rebuilt" in ok("data", "reindex", "--node-dir", th_dir)
        with read_only(net.layout("TH")) as core:
            actions = [r.event.query_type for r in core.audit.records()]
        assert "oprf_key_rotation" in actions and "identity_reindex" in actions
        assert (net.layout("TH").root / "oprf.key").stat().st_mode & 0o777 == 0o600
        # A retention purge deletes the record and, by trigger, its tokens.
        conn = sqlite3.connect(db)
        conn.execute("DELETE FROM persons WHERE record_id = 'TH-P-9'")
        conn.commit()
        left = conn.execute(
            "SELECT COUNT(*) FROM identity_tokens WHERE record_id = 'TH-P-9'"
        ).fetchone()[0]
        conn.close()
        assert left == 0
        assert json.loads(ok(*args))["responders"]["TH"]["outcomes"] == ["no hit"]
    finally:
        net.close()
