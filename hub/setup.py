"""Creating a hub folder and opening its registry."""

from __future__ import annotations

import json
from pathlib import Path

from rcf.hub.layout import (
    DEFAULT_AUDIT_QUORUM,
    DEFAULT_DIRECTORY_TTL_S,
    DEFAULT_ENROLL_LISTEN,
    DEFAULT_LISTEN,
    HubLayout,
)
from rcf.hub.registry import Registry
from rcf.trust import pki
from rcf.trust.errors import ConfigError
from rcf.trust.files import private_dir, write_private
from rcf.trust.keys import SigningKey, public_key_text


def init_hub(
    root: Path,
    *,
    network: str,
    directory_ttl_s: int = DEFAULT_DIRECTORY_TTL_S,
    listen: str = DEFAULT_LISTEN,
    enroll_listen: str = DEFAULT_ENROLL_LISTEN,
    public_address: str = "",
    enroll_public_address: str = "",
    audit_quorum: int = DEFAULT_AUDIT_QUORUM,
) -> HubLayout:
    """Create the network CA, the hub's TLS certificate and signing key, and the registry.

    Empty public addresses mean "the address the running hub is bound to", which
    only a network on one machine can use (`rcf hub token create --local`).
    """
    layout = HubLayout(root)
    if layout.config.exists():
        raise ConfigError(f"{root} already holds a hub; refusing to overwrite its keys.")
    if audit_quorum < 1:
        raise ConfigError("The audit witness quorum must be at least 1.")
    if directory_ttl_s < 1:
        raise ConfigError("The directory lifetime must be at least one second.")
    private_dir(root)
    ca_key, ca_cert = pki.create_ca(network)
    write_private(layout.ca_key, ca_key)
    write_private(layout.ca_cert, ca_cert)
    tls_key = pki.new_private_key_pem()
    write_private(layout.tls_key, tls_key)
    write_private(
        layout.tls_cert,
        pki.issue_certificate(
            ca_key_pem=ca_key,
            ca_cert_pem=ca_cert,
            csr_pem=pki.make_csr(tls_key, "hub"),
            common_name="hub",
            dns_name=pki.HUB_NAME,
        ),
    )
    signing = SigningKey.generate()
    signing.save(layout.signing_key)
    # Verifying commands read this, never the private key file.
    write_private(layout.public_key, public_key_text(signing.public_key))
    # The config file is written last: its presence marks a complete hub folder.
    write_private(
        layout.config,
        "# rcf hub configuration; edit and restart the hub to apply.\n"
        f"network = {json.dumps(network)}\n"
        f"directory_ttl_s = {int(directory_ttl_s)}\n"
        "# Where 'rcf hub serve' listens (mutual TLS, and join-token enrolment).\n"
        f"listen = {json.dumps(listen)}\n"
        f"enroll_listen = {json.dumps(enroll_listen)}\n"
        "# What nodes dial: join tokens and enrolment responses carry these.\n"
        f"public_address = {json.dumps(public_address)}\n"
        f"enroll_public_address = {json.dumps(enroll_public_address)}\n"
        "# Witness cosignatures (by member nodes) that make an audit checkpoint final.\n"
        f"audit_quorum = {int(audit_quorum)}\n",
    )
    open_registry(layout).close()
    return layout


def open_registry(layout: HubLayout, *, read_only: bool = False) -> Registry:
    """The hub's registry; read_only opens it without the private signing and CA keys
    (for commands that only read and verify), so it cannot sign or enrol."""
    config = layout.load_config()
    try:
        ca_key = b"" if read_only else layout.ca_key.read_bytes()
        ca_cert = layout.ca_cert.read_bytes()
    except OSError as exc:
        raise ConfigError(f"Cannot read the hub CA in {layout.root}: {exc.strerror}.") from exc
    return Registry(
        layout.registry_db,
        network=config.network,
        signing_key=None if read_only else layout.load_signing_key(),
        ca_key_pem=ca_key,
        ca_cert_pem=ca_cert,
        directory_ttl_s=config.directory_ttl_s,
    )
