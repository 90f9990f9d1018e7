"""Processes that start, stop and restart cleanly (issue 17 item 7, issue 27).

A parent killed with SIGKILL takes the servers it started with it; Ctrl-C
stops worker pools without their tracebacks; restarted servers keep their
addresses and find each other again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from rcf.devnet.local_network import LocalNetwork, MemberSpec
from rcf.node.ops.config import NodeLayout
from tests.cli_helpers import fails, ok, rcf
from tests.network import Network, set_node_config
from tests.test_alerts import alert_net, draft, held, wait_until  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie waiting for its reaper has stopped running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: list[int], timeout_s: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _start_parent(script: str, tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """Run script (which prints one JSON line of child pids, then waits) as a parent."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        raise AssertionError(proc.stderr.read() if proc.stderr else "parent exited")
    return proc, json.loads(line)


LOCAL_NETWORK_PARENT = """
    import json, sys, time
    from pathlib import Path
    from rcf.devnet.local_network import LocalNetwork, MemberSpec
    net = LocalNetwork(Path(sys.argv[1]))
    net.init_hub([MemberSpec("TH", "Thailand"), MemberSpec("AU", "Australia")])
    net.start_hub()
    for m in ("TH", "AU"):
        net.enroll(m)
        net.start_node(m)
    print(json.dumps({k: p.pid for k, p in net.procs.items()}), flush=True)
    time.sleep(600)
"""

SERVING_HELPER_PARENT = """
    import json, sys, time
    from pathlib import Path
    from rcf.hub.setup import init_hub
    from tests.cli_helpers import serving
    hub = init_hub(Path(sys.argv[1]) / "hub", network="test")
    with serving("hub", "serve", "--hub-dir", str(hub.root), "--listen", "127.0.0.1:0",
                 ready=hub.runtime) as proc:
        print(json.dumps({"hub": proc.pid}), flush=True)
        time.sleep(600)
"""


@pytest.mark.parametrize(
    "script", [LOCAL_NETWORK_PARENT, SERVING_HELPER_PARENT], ids=["local_network", "cli_helpers"]
)
def test_servers_die_with_a_parent_killed_by_sigkill(tmp_path: Path, script: str) -> None:
    parent, children = _start_parent(script, tmp_path)
    try:
        pids = list(children.values())
        assert pids and all(_alive(p) for p in pids), children
        parent.send_signal(signal.SIGKILL)  # no finally, no atexit
        parent.wait(timeout=30)
        assert _wait_gone(pids) == [], f"still running after the parent died: {children}"
    finally:
        for pid in children.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


WORKER_POOL_PARENT = """
    import json, sys, time
    from rcf.node.identity.index import worker_pool
    pool = worker_pool(2)
    # Both workers started, then waiting for work between two batches of an import.
    for f in [pool.submit(time.sleep, 0.2) for _ in range(2)]:
        f.result()
    print(json.dumps({str(i): p for i, p in enumerate(pool._processes)}), flush=True)
    try:
        time.sleep(600)
    except KeyboardInterrupt:
        pool.shutdown(cancel_futures=True)
        print("stopped", flush=True)
        sys.exit(130)
"""


def test_ctrl_c_stops_worker_pools_without_their_tracebacks(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WORKER_POOL_PARENT)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert proc.stdout is not None and proc.stderr is not None
    workers = [int(p) for p in json.loads(proc.stdout.readline()).values()]
    assert len(workers) == 2
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped" in out
    assert "KeyboardInterrupt" not in err, err
    assert "Traceback" not in err, err
    assert _wait_gone(workers) == []


def _wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s:.0f} s"
        time.sleep(0.2)


def test_restarts_keep_addresses_and_a_stuck_backlog_is_not_silent(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path / "net")
    try:
        net.init_hub([MemberSpec("TH", "Thailand"), MemberSpec("AU", "Australia")])
        net.start_hub()
        hub_address = net.hub_layout.read_runtime()["address"]
        for member in ("TH", "AU"):
            set_node_config(net.enroll(member), audit_backlog_warn_s=1.0)
            net.start_node(member)
        th, au = net.node_layout("TH"), net.node_layout("AU")
        th_address = th.read_runtime()["address"]
        assert "hub_address = " + json.dumps(hub_address) in th.config.read_text()
        th_dir, au_dir = str(th.root), str(au.root)
        ok("ping", "--node-dir", au_dir, "TH")

        # The hub dies at the worst moment: nothing it held is cleaned up.
        net.procs.pop("hub").kill()
        ok("ping", "--node-dir", au_dir, "TH")  # records that cannot be shipped now
        _wait_for(
            lambda: rcf("audit", "verify", "--node-dir", th_dir, "--strict").returncode != 0,
            "a stuck-backlog failure",
        )
        err = fails("audit", "verify", "--node-dir", th_dir, "--strict")
        assert "TH: " in err and "audit records are not anchored at the hub" in err, err
        # Without --strict: intact, with the same sentence as a warning.
        loose = rcf("audit", "verify", "--node-dir", th_dir)
        assert loose.returncode == 0, loose.stderr
        assert "warning: TH: " in loose.stderr and "not anchored at the hub" in loose.stderr
        status = rcf("node", "status", "--node-dir", th_dir, "--strict")
        assert status.returncode != 0 and "not anchored at the hub" in status.stderr
        assert "Traceback" not in status.stderr
        metrics = _metrics(th)
        assert metrics["rcf_audit_unshipped_records"] >= 1
        assert metrics["rcf_audit_oldest_unshipped_age_seconds"] > 1

        # Restarted with the README's command, the hub is back on its address, and
        # shipping resumes (the backoff is capped) without anyone touching the nodes.
        net.start_hub()
        assert net.hub_layout.read_runtime()["address"] == hub_address
        _wait_for(
            lambda: rcf("audit", "verify", "--node-dir", th_dir, "--strict").returncode == 0,
            "shipping after the hub came back",
        )
        assert _metrics(th)["rcf_audit_unshipped_records"] == 0
        status_json = json.loads(ok("node", "status", "--node-dir", th_dir, "--json"))
        assert status_json["audit_unshipped_records"] == 0
        assert status_json["audit_backlog_warning"] == ""

        # A node killed and restarted with `rcf node serve` keeps its address too.
        net.procs.pop("TH").kill()
        net.start_node("TH")
        assert th.read_runtime()["address"] == th_address
        ok("ping", "--node-dir", au_dir, "TH")
    finally:
        net.stop_all()


def _metrics(layout: NodeLayout) -> dict[str, float]:
    address = layout.read_runtime()["metrics_address"]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in text.splitlines())
        if name and not name.startswith("#")
    }


def test_subscriber_finds_a_raiser_restarted_on_a_new_address(
    alert_net: Network,  # noqa: F811 (the fixture imported above)
) -> None:
    au = alert_net.nodes["AU"]
    first = alert_net.nodes["TH"].alerts.raise_alert(draft(document_number="AD0000001"))
    wait_until(lambda: held(au, first.alert.alert_id))
    old_address = alert_net.nodes["TH"].address
    alert_net.stop_node("TH")
    th = alert_net.start_node("TH")  # listen 127.0.0.1:0: another port, published at start
    assert th.address != old_address
    later = th.alerts.raise_alert(draft(document_number="AD0000002"))
    # Well inside the 60 s directory refresh period: the refused connection to the old
    # address made AU fetch the directory at once and dial the new one.
    wait_until(lambda: held(au, later.alert.alert_id), 20)
    assert au.alerts.duplicates == 0
