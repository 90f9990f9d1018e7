"""A node's folder, its `node.toml`, and loading both with clear errors.

`node.toml` holds what an operator may edit: the hub's address, listen
addresses and the public address peers dial (``public_address``, which the node
publishes in the directory), time windows, size limit, refresh interval, and ``[allow]`` (query
type → member ids, ``group:NAME``, ``role:NAME`` or ``*``), which only seeds
the node's first sharing policy when it first starts; from then on the policy
in state.db decides (``rcf policy``, see policies/README.md).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcf.trust.errors import ConfigError
from rcf.trust.join_token import split_address, unreachable_kind
from rcf.trust.keys import SigningKey
from rcf.trust.tls import TlsMaterial

# `rcf node init` writes a fixed port, so a restart keeps the endpoint peers know.
DEFAULT_LISTEN = "0.0.0.0:7445"
# For networks on one machine (tests, the demo): any free port, published as bound.
LOCAL_LISTEN = "127.0.0.1:0"

DEFAULTS: dict[str, Any] = {
    # Older node.toml files have no listen key; they keep their old behaviour.
    "listen": LOCAL_LISTEN,
    "public_address": "",
    "operator_listen": "127.0.0.1:0",
    "directory_refresh_s": 60.0,
    "max_message_bytes": 1024 * 1024,
    "max_clock_skew_s": 30.0,
    "max_request_ttl_s": 300.0,
    "request_ttl_s": 60.0,
    "audit_sync": "normal",
    # How long a group-commit leader waits for overlapping requests' audit records
    # (0 disables; a lone request never waits). `rcf bench ping` measures its effect.
    "audit_gather_ms": 2.0,
    # Prometheus metrics (loopback only); see metrics_listen_for.
    "metrics_listen": "127.0.0.1:0",
    # Seconds between shipping audit records to the hub and witnessing its checkpoints.
    "audit_ship_interval_s": 2.0,
    # Warn (rcf node status, rcf audit verify, metrics) when the oldest audit record
    # the hub has not accepted is older than this: long against the shipping interval
    # and its capped backoff, short against what an auditor would call a gap.
    "audit_backlog_warn_s": 600.0,
    # How long a responder remembers an identity check between its two rounds.
    "identity_check_ttl_s": 120.0,
}
METRICS_PORT = 9465


def metrics_listen_for(listen: str) -> str:
    """Where a node listening on listen serves metrics: a fixed port (9465) on its own
    loopback address, or on 127.0.0.1 for a wildcard listen; any free port when the
    federation port is not fixed either (tests, the demo)."""
    host, port = split_address(listen, what="listen address")
    if port == 0:
        return "127.0.0.1:0"
    loopback = unreachable_kind(listen) == "a loopback address"
    return f"{host if loopback else '127.0.0.1'}:{METRICS_PORT}"


KNOWN_KEYS = {"member_id", "hub_address", "hub_public_key", "allow", *DEFAULTS}


@dataclass(frozen=True)
class NodeConfig:
    member_id: str
    hub_address: str
    hub_public_key: bytes
    listen: str
    public_address: str
    operator_listen: str
    directory_refresh_s: float
    max_message_bytes: int
    max_clock_skew_s: float
    max_request_ttl_s: float
    request_ttl_s: float
    audit_sync: str
    audit_gather_ms: float = 2.0
    metrics_listen: str = "127.0.0.1:0"
    audit_ship_interval_s: float = 2.0
    identity_check_ttl_s: float = 120.0
    audit_backlog_warn_s: float = 600.0
    allow: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def render_config(
    *,
    member_id: str,
    hub_address: str,
    hub_public_key: bytes,
    allow: dict[str, list[str]],
    listen: str = LOCAL_LISTEN,
    public_address: str = "",
) -> str:
    settings = {
        **DEFAULTS,
        "listen": listen,
        "public_address": public_address,
        "metrics_listen": metrics_listen_for(listen),
    }
    lines = [
        "# rcf node configuration; edit and restart the node to apply.",
        f"member_id = {_toml_value(member_id)}",
        f"hub_address = {_toml_value(hub_address)}",
        f"hub_public_key = {_toml_value(hub_public_key.hex())}",
        "# listen: where the federation API binds. public_address: the HOST:PORT other",
        "# nodes dial, published in the directory (empty: the bound address, which only",
        "# a network on one machine can use).",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in settings.items()]
    lines += [
        "",
        "# Seeds this node's first sharing policy when it first starts; after that",
        "# it has no effect: use 'rcf policy apply' (see policies/README.md).",
        "[allow]",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in allow.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class NodeLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "node.toml"

    @property
    def tls_key(self) -> Path:
        return self.root / "tls.key"

    @property
    def tls_cert(self) -> Path:
        return self.root / "tls.pem"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def signing_key(self) -> Path:
        return self.root / "signing.key"

    @property
    def directory_cache(self) -> Path:
        return self.root / "directory.signed"

    @property
    def dictionary_cache(self) -> Path:
        return self.root / "dictionary.signed"

    @property
    def data_db(self) -> Path:
        return self.root / "data.db"

    @property
    def state_db(self) -> Path:
        return self.root / "state.db"

    @property
    def operator_token(self) -> Path:
        return self.root / "operator.token"

    @property
    def runtime(self) -> Path:
        return self.root / "node-runtime.json"

    @property
    def enroll_request(self) -> Path:
        return self.root / "enroll-request.json"

    def require(self) -> None:
        if self.config.exists():
            return
        if self.enroll_request.exists():
            raise ConfigError(
                f"{self.root} is not an enrolled node folder yet "
                "(enrolment is pending: run 'rcf node enroll --response FILE')."
            )
        if not self.root.exists():
            # Most often RCF_NODE_DIR is unset and the default folder name was used.
            raise ConfigError(
                f"There is no node folder at {self.root}: give --node-dir DIR or set "
                "RCF_NODE_DIR to the folder 'rcf node init' created."
            )
        raise ConfigError(
            f"{self.root} is not an enrolled node folder: give --node-dir DIR or set "
            "RCF_NODE_DIR to the folder 'rcf node init' created."
        )

    def load_config(self) -> NodeConfig:
        self.require()
        try:
            data = tomllib.loads(self.config.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.config} is not valid TOML: {exc}.") from exc
        except OSError as exc:
            raise ConfigError(f"Cannot read {self.config}: {exc.strerror}.") from exc
        unknown = set(data) - KNOWN_KEYS
        if unknown:
            raise ConfigError(f"{self.config}: unknown setting '{sorted(unknown)[0]}'.")
        merged = {**DEFAULTS, **data}
        try:
            allow = _parse_allow(self.config, merged.get("allow", {}))
            config = NodeConfig(
                member_id=str(merged["member_id"]),
                hub_address=str(merged["hub_address"]),
                hub_public_key=bytes.fromhex(str(merged["hub_public_key"])),
                listen=str(merged["listen"]),
                public_address=str(merged["public_address"]),
                operator_listen=str(merged["operator_listen"]),
                directory_refresh_s=float(merged["directory_refresh_s"]),
                max_message_bytes=int(merged["max_message_bytes"]),
                max_clock_skew_s=float(merged["max_clock_skew_s"]),
                max_request_ttl_s=float(merged["max_request_ttl_s"]),
                request_ttl_s=float(merged["request_ttl_s"]),
                audit_sync=str(merged["audit_sync"]),
                audit_gather_ms=float(merged["audit_gather_ms"]),
                metrics_listen=str(merged["metrics_listen"]),
                audit_ship_interval_s=float(merged["audit_ship_interval_s"]),
                identity_check_ttl_s=float(merged["identity_check_ttl_s"]),
                audit_backlog_warn_s=float(merged["audit_backlog_warn_s"]),
                allow=allow,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"{self.config} is missing or has a bad value: {exc}.") from exc
        if (
            config.max_message_bytes < 1024
            or config.directory_refresh_s <= 0
            or config.audit_ship_interval_s <= 0
            or config.audit_backlog_warn_s <= 0
        ):
            raise ConfigError(
                f"{self.config}: limits must be positive (max_message_bytes >= 1024)."
            )
        split_address(config.metrics_listen, what=f"metrics_listen in {self.config}")
        if unreachable_kind(config.metrics_listen) != "a loopback address":
            raise ConfigError(
                f"{self.config}: metrics_listen must be a loopback address (127.0.0.1:PORT); "
                "the metrics are for this host's operator."
            )
        if not 0 <= config.audit_gather_ms <= 50:
            raise ConfigError(f"{self.config}: audit_gather_ms must be from 0 to 50.")
        if not 0 < config.identity_check_ttl_s <= 3600:
            raise ConfigError(f"{self.config}: identity_check_ttl_s must be 0 < s <= 3600.")
        if config.audit_sync not in ("normal", "full"):
            raise ConfigError(f"{self.config}: audit_sync must be 'normal' or 'full'.")
        split_address(config.listen, what=f"listen address in {self.config}")
        if config.public_address:
            split_address(config.public_address, what=f"public_address in {self.config}")
        elif unreachable_kind(config.listen) == "a wildcard address":
            raise ConfigError(
                f"{self.config}: listen is {config.listen}, a wildcard address peers cannot "
                "dial; set public_address to the HOST:PORT other nodes reach this node at."
            )
        return config

    def load_signing_key(self) -> SigningKey:
        return SigningKey.load(self.signing_key)

    def load_tls(self) -> TlsMaterial:
        return TlsMaterial.load(key=self.tls_key, cert=self.tls_cert, ca=self.ca_cert)

    def read_runtime(self) -> dict[str, Any]:
        try:
            data = json.loads(self.runtime.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"The node in {self.root} is not running; start it with 'rcf node serve'.",
                reason="not_running",
                status="UNAVAILABLE",
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{self.runtime} is damaged; restart the node.")
        return data


def _parse_allow(path: Path, raw: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [allow] must be a table of query type = [requesters].")
    allow = {}
    for query_type, entries in raw.items():
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ConfigError(
                f"{path}: [allow] {query_type} must be a list of member ids, 'group:NAME', "
                "'role:NAME' or '*'."
            )
        allow[str(query_type)] = tuple(entries)
    return allow
