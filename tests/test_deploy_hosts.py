"""docs/deploy.md's one-machine rehearsal, run line by line: a hub and three nodes,
each on its own loopback address with a public address, enrolled from the tokens
the documented commands print, then a signed ping between them.

Every `rcf` line of the rehearsal's code blocks runs as written, with the
variables filled in, `rehearsal/` under tmp_path, and addresses in a random
127.x.y.0/24 so that parallel runs do not meet on the fixed ports.
"""

from __future__ import annotations

import json
import random
import re
import shlex
from contextlib import ExitStack
from pathlib import Path

import pytest

from rcf.trust.join_token import JoinToken
from tests.cli_helpers import ok, serving

DOC = Path(__file__).parent.parent / "docs" / "deploy.md"


def rehearsal_blocks() -> tuple[list[list[str]], list[tuple[str, str]]]:
    """The rehearsal's sh blocks (their rcf lines) and its (member, last octet) pairs."""
    text = DOC.read_text()
    section = text[text.index("## Rehearse it on one machine") :]
    blocks = [
        [line.strip() for line in block.splitlines() if line.strip().startswith("rcf ")]
        for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    ]
    members = re.findall(r"\b([A-Z]{2,3}) at 127\.0\.0\.(\d+)", section)
    return blocks, members


def fill(line: str, values: dict[str, str], root: Path) -> str:
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        line = line.replace(f"${name}", value)
    return line.replace("rehearsal/", f"{root}/")


def run(line: str, stack: ExitStack, servers: dict[str, ExitStack] | None = None) -> str:
    """Run one documented line: `… &` in the background, `… > FILE` into FILE.

    A background server is entered on its own stack, kept in servers by its folder
    name, so that a test can stop and restart one of them."""
    if line.endswith("&"):
        args = shlex.split(line[:-1])[1:]
        folder = Path(args[args.index("--hub-dir" if args[0] == "hub" else "--node-dir") + 1])
        ready = folder / ("hub-runtime.json" if args[0] == "hub" else "node-runtime.json")
        own = stack.enter_context(ExitStack())
        own.enter_context(serving(*args, ready=ready))
        if servers is not None:
            servers[folder.name] = own
        return ""
    command, _, target = line.partition(" > ")
    out = ok(*shlex.split(command)[1:])
    if target:
        Path(target.strip()).write_text(out)
    return out


@pytest.fixture
def subnet() -> str:
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}."


def test_enrol_and_ping_across_hosts_as_documented(tmp_path: Path, subnet: str) -> None:
    blocks, members = rehearsal_blocks()
    hub_block, node_block, check_block = blocks
    assert [m for m, _ in members] == ["TH", "AU", "ID"]
    hub = subnet + "2"
    ips = {m: subnet + octet for m, octet in members}
    outputs: dict[str, str] = {}
    servers: dict[str, ExitStack] = {}
    serve_lines: dict[str, str] = {}
    with ExitStack() as stack:
        for line in hub_block:
            run(fill(line, {"HUB": hub}, tmp_path), stack)
        for member, ip in ips.items():
            for line in node_block:
                filled = fill(line, {"HUB": hub, "M": member, "IP": ip}, tmp_path)
                if " serve " in filled:
                    serve_lines[member] = filled
                run(filled, stack, servers)
            # The token the documented command printed carries the hub's public addresses.
            token = JoinToken.decode((tmp_path / f"{member}.token").read_text())
            assert (token.hub_address, token.enroll_address) == (f"{hub}:7443", f"{hub}:7444")
            config = (tmp_path / member / "node.toml").read_text()
            assert f'listen = "{ip}:7445"' in config
            assert f'public_address = "{ip}:7445"' in config
            assert f'hub_address = "{hub}:7443"' in config
        for line in check_block:
            outputs[line.split(" --")[0]] = run(fill(line, {"HUB": hub}, tmp_path), stack)

        # The directory lists each node at its public address.
        listed = json.loads(
            ok("hub", "member", "list", "--hub-dir", str(tmp_path / "hub"), "--json")
        )
        assert {m["member_id"]: m["endpoint"] for m in listed} == {
            m: f"{ip}:7445" for m, ip in ips.items()
        }
        assert all(f"{ip}:7445" in outputs["rcf hub member list"] for ip in ips.values())
        pings = json.loads(ok("ping", "AU", "ID", "--node-dir", str(tmp_path / "TH"), "--json"))
        assert [(p["member_id"], p["ok"], p["signer"]) for p in pings] == [
            ("AU", True, "AU"),
            ("ID", True, "ID"),
        ]
        assert outputs["rcf ping AU ID"].count(" ok ") == 2
        # Every member has an NCP, which TH's node lists from its cached directory.
        assert all(a in outputs["rcf ncp list"] for a in ("Royal Thai", "Australian", "NCB"))

        # Restart AU: it comes back on the same fixed port, so TH reaches it at once,
        # without anyone waiting for a directory refresh; and AU reaches the others.
        servers["AU"].close()
        run(serve_lines["AU"], stack, servers)
        again = json.loads(ok("ping", "AU", "--node-dir", str(tmp_path / "TH"), "--json"))
        assert [(p["member_id"], p["ok"]) for p in again] == [("AU", True)]
        back = json.loads(ok("ping", "TH", "ID", "--node-dir", str(tmp_path / "AU"), "--json"))
        assert [(p["member_id"], p["ok"]) for p in back] == [("TH", True), ("ID", True)]
