"""The node's Prometheus endpoint, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import re
import urllib.request

import grpc
import pytest

from rcf.node.federation.ping import PING
from rcf.node.federation.server import NodeServer
from rcf.trust.errors import ConfigError
from tests.network import Network, set_node_config


def scrape(node: NodeServer) -> str:
    assert node.metrics_address.startswith("127.0.0.1:")
    with urllib.request.urlopen(f"http://{node.metrics_address}/metrics", timeout=5) as r:
        return str(r.read().decode())


def value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if m is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    raise AssertionError(f"{name} {labels} not in the scrape")


def test_a_scrape_shows_requests_latency_audit_batches_directory_and_policy(
    net: Network,
) -> None:
    th, au = net.nodes["TH"], net.nodes["AU"]
    client = net.client("AU")
    for _ in range(3):
        client.ping(th)
    with pytest.raises(grpc.RpcError):
        client.ping(th, purpose="curiosity")
    text = scrape(th)
    answered = value(
        text, "rcf_requests_total", query_type="Ping", requester="AU", decision="answered"
    )
    assert answered == 3
    refused = value(text, "rcf_requests_total", requester="AU", reason="unknown_purpose")
    assert refused == 1
    assert value(text, "rcf_request_seconds_count", query_type="Ping") == 4
    assert value(text, "rcf_directory_serial") == th.directory.peek().serial
    assert value(text, "rcf_policy_version") >= 1
    assert value(text, "rcf_audit_records_committed_total") >= 4
    assert value(text, "rcf_audit_commits_total") >= 1
    assert 0 <= value(text, "rcf_directory_age_seconds") < 3600
    au.peers.call(
        PING, responder="TH", purpose="connectivity-check", fill=lambda r: None, timeout_s=5
    )
    assert value(scrape(au), "rcf_peer_calls_total", responder="TH", outcome="answered") == 1
    # Nothing a requester sent becomes a label: a refused purpose is not in the scrape.
    assert "curiosity" not in scrape(th)


def test_metrics_listen_must_be_loopback(net: Network) -> None:
    layout = net.enroll("ID")
    set_node_config(layout, metrics_listen="0.0.0.0:0")
    with pytest.raises(ConfigError, match="loopback"):
        NodeServer(layout)
