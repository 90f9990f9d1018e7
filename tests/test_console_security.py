"""The console's security over real HTTPS against AU's real node: cookies, CSRF, session
fixation and expiry, lock-out, TOTP, roles enforced by the server, inert HTML, audit."""

from __future__ import annotations

import json
import re
import sqlite3
import ssl
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pyotp
import pytest

from rcf.console.accounts import LOCK_AFTER, AccountStore, LoginFailed
from rcf.console.app import COOKIE
from tests.cli_helpers import fails, ok, serving
from tests.console_net import PASSWORD, ConsoleNet, console_network


@pytest.fixture(scope="module")
def cn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleNet]:
    with console_network(tmp_path_factory.mktemp("console-sec")) as c:
        yield c


def client(cn: ConsoleNet) -> httpx.Client:
    trust = ssl.create_default_context(cafile=str(cn.server.layout.cert))
    return httpx.Client(base_url=cn.url, verify=trust, timeout=60)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def login(c: httpx.Client, name: str, password: str = PASSWORD, code: str = "") -> httpx.Response:
    token = csrf_of(c.get("/login").text)
    return c.post(
        "/login", data={"csrf": token, "username": name, "password": password, "code": code}
    )


def test_headers_and_cookie_flags(cn: ConsoleNet) -> None:
    with client(cn) as c:
        r = c.get("/login")
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["cache-control"] == "no-store"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(COOKIE + "=")
        flags = cookie.lower()
        assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags
        assert "<script" not in r.text  # no inline script anywhere, not even a tag


def test_login_needs_the_forms_csrf_token(cn: ConsoleNet) -> None:
    with client(cn) as c:
        c.get("/login")
        missing = c.post("/login", data={"username": "olga", "password": PASSWORD})
        wrong = c.post("/login", data={"csrf": "x" * 43, "username": "olga", "password": PASSWORD})
        assert missing.status_code == wrong.status_code == 403
        assert c.get("/").status_code == 303  # still not logged in


def test_every_post_needs_the_sessions_csrf_token(cn: ConsoleNet) -> None:
    with client(cn) as c:
        assert login(c, "olga").status_code == 303
        form = {"kind": "person", "name": "Muhammad KHAN", "dob": "1985-03-14",
                "nationality": "AFG", "scope": "chosen", "members": "TH",
                "purpose": "border-control"}  # fmt: skip
        assert c.post("/checks", data=form).status_code == 403
        assert c.post("/checks", data={**form, "csrf": "forged"}).status_code == 403
        # Another session's token is no good either.
        with client(cn) as other:
            login(other, "olga")
            theirs = csrf_of(other.get("/checks").text)
        assert c.post("/checks", data={**form, "csrf": theirs}).status_code == 403
        assert c.post("/logout", data={}).status_code == 403


def test_login_issues_a_new_session_id(cn: ConsoleNet) -> None:
    with client(cn) as c:
        c.get("/login")
        before = c.cookies[COOKIE]
        assert login(c, "olga").status_code == 303
        after = c.cookies[COOKIE]
        assert after != before
        assert c.get("/").status_code == 200
    # The pre-login id a fixer might have planted is dead.
    with client(cn) as fixer:
        fixer.cookies.set(COOKIE, before)
        assert fixer.get("/").status_code == 303


def test_sessions_expire_when_idle_and_after_the_absolute_limit(cn: ConsoleNet) -> None:
    sessions = cn.server.console.sessions
    with client(cn) as c:
        login(c, "olga")
        cn.clock.now += sessions.idle - 1
        assert c.get("/").status_code == 200  # a request restarts the idle clock
        cn.clock.now += sessions.idle + 1
        r = c.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login"
    with client(cn) as c:
        login(c, "olga")
        for _ in range(int(sessions.absolute // (sessions.idle / 2)) + 1):
            cn.clock.now += sessions.idle / 2
            last = c.get("/")
        assert last.status_code == 303


def test_logout_ends_the_session(cn: ConsoleNet) -> None:
    with client(cn) as c:
        login(c, "olga")
        token = csrf_of(c.get("/").text)
        sid = c.cookies[COOKIE]
        assert c.post("/logout", data={"csrf": token}).status_code == 303
    with client(cn) as c:
        c.cookies.set(COOKIE, sid)
        assert c.get("/").status_code == 303


def test_wrong_passwords_lock_the_account(cn: ConsoleNet, tmp_path: Path) -> None:
    cn.server.console.accounts.add("victim", roles=("officer",), password=PASSWORD)
    with client(cn) as c:
        for _ in range(LOCK_AFTER):
            r = login(c, "victim", "guess number one")
            assert r.status_code == 401 and "Wrong name, password or code" in r.text
        locked = login(c, "victim")
        assert locked.status_code == 401  # the right password no longer opens it
        # A name that does not exist reads the same.
        assert "Wrong name, password or code" in login(c, "nobody").text
    cn.server.console.accounts.unlock("victim")
    with client(cn) as c:
        assert login(c, "victim").status_code == 303


def test_totp_code_is_required_and_good_once(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    store = AccountStore(tmp_path / "c", clock=lambda: now[0])
    secret = store.add("tina", roles=("officer",), password=PASSWORD, totp=True)
    code = pyotp.TOTP(secret).at(int(now[0]))
    with pytest.raises(LoginFailed):
        store.authenticate("tina", PASSWORD)
    assert store.authenticate("tina", PASSWORD, code).roles == ("officer",)
    with pytest.raises(LoginFailed):
        store.authenticate("tina", PASSWORD, code)  # replayed
    assert (tmp_path / "c" / "accounts.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    assert "$argon2id$" in (tmp_path / "c" / "accounts.db").read_bytes().decode("latin-1")


@pytest.mark.parametrize(
    ("user", "path"),
    [("olga", "/policies"), ("olga", "/users"), ("aud", "/checks"), ("ana", "/alerts"),
     ("pat", "/checks"), ("ops", "/policies")],
)  # fmt: skip
def test_a_role_gets_403_for_pages_that_are_not_its(cn: ConsoleNet, user: str, path: str) -> None:
    with client(cn) as c:
        login(c, user)
        r = c.get(path)
        assert r.status_code == 403 and "Not for your role" in r.text
        assert f'href="{path}"' not in r.text  # nor is it in the menu


def test_a_role_cannot_post_to_another_roles_page(cn: ConsoleNet) -> None:
    node = cn.net.nodes["AU"]
    before = len(node.policy.store.versions())
    with client(cn) as c:
        login(c, "olga")
        token = csrf_of(c.get("/checks").text)
        r = c.post("/policies", data={"csrf": token, "source": '[policy]\nmember = "AU"\n'})
        assert r.status_code == 403
    assert len(node.policy.store.versions()) == before
    with client(cn) as anonymous:
        assert anonymous.post("/checks", data={"name": "x"}).status_code == 403


def test_html_in_text_fields_is_rendered_inert(cn: ConsoleNet) -> None:
    payload = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    with client(cn) as c:
        login(c, "pat")
        token = csrf_of(c.get("/policies").text)
        source = f'# {payload}\n[policy]\nmember = "AU"\n'
        r = c.post("/policies", data={"csrf": token, "source": source})
        assert r.status_code == 200, r.text
        assert payload not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
        login_page = c.post("/login", data={"csrf": token, "username": payload, "password": "x"})
        assert payload not in login_page.text


def test_a_check_is_audited_with_the_console_users_name(cn: ConsoleNet) -> None:
    with client(cn) as c:
        login(c, "olga")
        token = csrf_of(c.get("/checks").text)
        r = c.post("/checks", data={
            "csrf": token, "kind": "person", "name": "Muhammad KHAN", "dob": "1985-03-14",
            "nationality": "AFG", "scope": "chosen", "members": "TH, ID",
            "purpose": "border-control",
        })  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        assert "Royal Thai Police" in r.text and "HIT" in r.text
    records = [
        rec.event for rec in cn.net.nodes["AU"].audit.records(limit=50)
        if rec.event.query_type == "console_person_check"
    ]  # fmt: skip
    assert records, "no console record"
    event = records[-1]
    assert event.reason.startswith("user=olga ") and "hits=2" in event.reason
    assert "KHAN" not in event.reason.upper() and "1985" not in event.reason


def test_console_user_cli(cn: ConsoleNet, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = str(cn.server.layout.root)
    node = str(cn.net.layout("AU").root)
    monkeypatch.setenv("RCF_CONSOLE_PASSWORD", PASSWORD)
    out = ok("console", "user", "add", "carol", "--role", "analyst", "--role", "auditor",
             "--console-dir", folder, "--node-dir", node)  # fmt: skip
    assert "carol added (analyst, auditor)" in out and "not audited" not in out
    assert "carol\tanalyst,auditor" in ok("console", "user", "list", "--console-dir", folder)
    events = [r.event for r in cn.net.nodes["AU"].audit.records(limit=20)]
    assert any(e.query_type == "console_user_add" and "account=carol" in e.reason
               for e in events)  # fmt: skip
    fails("console", "user", "add", "carol", "--role", "analyst", "--console-dir", folder,
          "--node-dir", node)  # fmt: skip
    fails("console", "user", "add", "Bad Name", "--role", "analyst", "--console-dir", folder,
          "--node-dir", node)  # fmt: skip
    monkeypatch.setenv("RCF_CONSOLE_PASSWORD", "short")
    fails("console", "user", "add", "dave", "--role", "analyst", "--console-dir", folder,
          "--node-dir", node)  # fmt: skip


def test_rcf_console_serve_over_https_stops_cleanly(cn: ConsoleNet, tmp_path: Path) -> None:
    folder = tmp_path / "console"
    node = str(cn.net.layout("AU").root)
    with serving("console", "serve", "--listen", "127.0.0.1:0", "--console-dir", str(folder),
                 "--node-dir", node, ready=folder / "console.json"):  # fmt: skip
        url = json.loads((folder / "console.json").read_text())["url"]
        trust = ssl.create_default_context(cafile=str(folder / "console-cert.pem"))
        with httpx.Client(base_url=url, verify=trust, timeout=30) as c:
            r = c.get("/login")
            assert r.status_code == 200 and "Log in" in r.text
        modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
        assert set(modes.values()) == {0o600}, modes
        assert folder.stat().st_mode & 0o777 == 0o700
    assert not (folder / "console.json").exists()
    fails("console", "serve", "--console-dir", str(folder), "--node-dir", str(tmp_path / "none"))


def test_zz_a_tampered_record_fails_the_consoles_chain_check(cn: ConsoleNet) -> None:
    """Last in this file: it breaks AU's chain on purpose."""
    api = cn.server.console.node
    assert api.audit_log(verify=True).verified
    with closing(sqlite3.connect(cn.net.layout("AU").state_db)) as conn:
        conn.execute("DROP TRIGGER audit_no_update")  # an attacker with file access
        conn.execute("UPDATE audit SET reason = 'edited' WHERE seq = 1")
        conn.commit()
    reply = api.audit_log(verify=True)
    assert not reply.verified and reply.problem
