"""Setting up a node folder and enrolling it with the hub.

Two ways: a join token (the node calls the hub's enrolment port), or an
offline file exchange (``enroll-request.json`` goes to the hub admin, a
response file comes back). Either way the node ends with its TLS certificate,
the CA, the pinned hub key and a verified directory in its folder.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcf.node.federation.hub_client import enroll_over_wire
from rcf.node.ops.config import LOCAL_LISTEN, NodeLayout, render_config
from rcf.protos.v1 import envelope_pb2
from rcf.trust import pki
from rcf.trust.clock import now_ms
from rcf.trust.directory import verify_directory
from rcf.trust.dsse import Envelope
from rcf.trust.errors import ConfigError, RcfError
from rcf.trust.files import private_dir, write_private
from rcf.trust.join_token import JoinToken
from rcf.trust.keys import SigningKey
from rcf.trust.serving import InstanceLock
from rcf.trust.signed import store_envelope

REQUEST_KIND = "rcf-enroll-request/v1"
RESPONSE_KIND = "rcf-enroll-response/v1"
DEFAULT_ALLOW = {"Ping": ["*"]}


@dataclass(frozen=True)
class EnrollmentMaterial:
    """What the hub hands back, however it travelled."""

    member_id: str
    certificate_pem: bytes
    ca_pem: bytes
    hub_public_key: bytes
    hub_address: str
    directory: Envelope


@dataclass(frozen=True)
class NodeAddresses:
    """Where the federation API listens, and the public address peers dial
    (empty: the bound address, for a network on one machine)."""

    listen: str = LOCAL_LISTEN
    public_address: str = ""


def _prepare(root: Path, member_id: str) -> tuple[NodeLayout, bytes, SigningKey]:
    pki.check_member_id(member_id)
    layout = NodeLayout(root)
    if layout.config.exists() or layout.tls_key.exists():
        raise ConfigError(f"{root} already holds a node; refusing to overwrite its keys.")
    private_dir(root)
    key_pem = pki.new_private_key_pem()
    write_private(layout.tls_key, key_pem)
    signing = SigningKey.generate()
    signing.save(layout.signing_key)
    return layout, pki.make_csr(key_pem, member_id), signing


def init_with_token(
    root: Path,
    *,
    member_id: str,
    token_text: str,
    addresses: NodeAddresses | None = None,
) -> NodeLayout:
    """Create keys, enrol over the wire with a join token, and write the node folder."""
    token = JoinToken.decode(token_text)
    if token.member_id != member_id:
        raise ConfigError(f"This join token is for {token.member_id}, not {member_id}.")
    layout, csr, signing = _prepare(root, member_id)
    try:
        reply = enroll_over_wire(
            enroll_address=token.enroll_address,
            ca_pem=token.ca_pem,
            secret=token.secret,
            member_id=member_id,
            csr_pem=csr,
            signing_public_key=signing.public_key,
        )
    except RcfError:
        _discard_keys(layout)
        raise
    _install(
        layout,
        EnrollmentMaterial(
            member_id=member_id,
            certificate_pem=reply.certificate_pem,
            ca_pem=token.ca_pem,
            hub_public_key=token.hub_public_key,
            hub_address=token.hub_address,
            directory=Envelope.from_proto(reply.directory),
        ),
        addresses or NodeAddresses(),
    )
    return layout


def init_offline(root: Path, *, member_id: str, addresses: NodeAddresses | None = None) -> Path:
    """Create keys and write the enrolment request file for the hub admin.

    The node's addresses travel in the request file (the hub admin may read where
    the node will be) and are written into node.toml when the response comes back.
    """
    addresses = addresses or NodeAddresses()
    layout, csr, signing = _prepare(root, member_id)
    request = {
        "kind": REQUEST_KIND,
        "member_id": member_id,
        "csr_pem": csr.decode(),
        "signing_public_key": signing.public_key.hex(),
        "signing_key_id": signing.key_id,
        "listen": addresses.listen,
        "public_address": addresses.public_address,
    }
    write_private(layout.enroll_request, json.dumps(request, indent=2) + "\n")
    return layout.enroll_request


def read_request(path: Path) -> tuple[str, bytes, bytes]:
    """(member id, CSR, signing public key) from an offline enrolment request file."""
    data = _read_json(path, REQUEST_KIND)
    try:
        return (
            str(data["member_id"]),
            str(data["csr_pem"]).encode(),
            bytes.fromhex(str(data["signing_public_key"])),
        )
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{path} is not a complete enrolment request.") from exc


def write_response(path: Path, material: EnrollmentMaterial) -> None:
    body = {
        "kind": RESPONSE_KIND,
        "member_id": material.member_id,
        "certificate_pem": material.certificate_pem.decode(),
        "ca_pem": material.ca_pem.decode(),
        "hub_public_key": material.hub_public_key.hex(),
        "hub_address": material.hub_address,
        "directory": material.directory.to_proto().SerializeToString().hex(),
    }
    write_private(path, json.dumps(body, indent=2) + "\n")


def complete_offline(root: Path, *, response_path: Path) -> NodeLayout:
    """Install the hub's answer to an offline enrolment request."""
    layout = NodeLayout(root)
    if layout.config.exists():
        raise ConfigError(f"{root} is already enrolled.")
    if not layout.enroll_request.exists():
        raise ConfigError(
            f"{root} has no pending enrolment request; run 'rcf node init --offline'."
        )
    asked_member, _, asked_key = read_request(layout.enroll_request)
    asked = _read_json(layout.enroll_request, REQUEST_KIND)
    addresses = NodeAddresses(
        listen=str(asked.get("listen", LOCAL_LISTEN)),
        public_address=str(asked.get("public_address", "")),
    )
    data = _read_json(response_path, RESPONSE_KIND)
    try:
        msg = envelope_pb2.Envelope()
        msg.ParseFromString(bytes.fromhex(str(data["directory"])))
        material = EnrollmentMaterial(
            member_id=str(data["member_id"]),
            certificate_pem=str(data["certificate_pem"]).encode(),
            ca_pem=str(data["ca_pem"]).encode(),
            hub_public_key=bytes.fromhex(str(data["hub_public_key"])),
            hub_address=str(data["hub_address"]),
            directory=Envelope.from_proto(msg),
        )
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{response_path} is not a complete enrolment response.") from exc
    if material.member_id != asked_member:
        raise ConfigError(f"{response_path} is for {material.member_id}, not {asked_member}.")
    if layout.load_signing_key().public_key != asked_key:
        raise ConfigError("The signing key in this folder is not the one the request carried.")
    _install(layout, material, addresses)
    layout.enroll_request.unlink()
    return layout


def _install(layout: NodeLayout, material: EnrollmentMaterial, addresses: NodeAddresses) -> None:
    """Check the hub's answer, then write the node folder; node.toml is written last."""
    pki.verify_issued_by(material.certificate_pem, material.ca_pem)
    if pki.common_name(material.certificate_pem) != material.member_id:
        raise ConfigError("The issued certificate names a different member.")
    if not pki.certificate_matches_key(material.certificate_pem, layout.tls_key.read_bytes()):
        raise ConfigError("The issued certificate is not for this node's TLS key.")
    directory = verify_directory(
        material.directory, hub_public_key=material.hub_public_key, now_ms=now_ms()
    )
    member = directory.member(material.member_id)
    signing = layout.load_signing_key()
    if member is None or signing.key_id not in {k.key_id for k in member.signing_keys}:
        raise ConfigError("The hub's directory does not list this node's signing key.")
    write_private(layout.tls_cert, material.certificate_pem)
    write_private(layout.ca_cert, material.ca_pem)
    store_envelope(layout.directory_cache, material.directory)
    write_private(layout.operator_token, secrets.token_urlsafe(32) + "\n")
    write_private(
        layout.config,
        render_config(
            member_id=material.member_id,
            hub_address=material.hub_address,
            hub_public_key=material.hub_public_key,
            allow=DEFAULT_ALLOW,
            listen=addresses.listen,
            public_address=addresses.public_address,
        ),
    )


def rotate_keys(root: Path, *, token_text: str) -> str:
    """Replace the node's signing key and TLS certificate through a join token.

    The hub closes the old key's validity rather than deleting it, so earlier
    signatures (audit records among them) still verify; the old key file is kept
    as ``retired-<key id>.key``. The node must be stopped. Returns the new key id.
    """
    layout = NodeLayout(root)
    config = layout.load_config()
    token = JoinToken.decode(token_text)
    if token.member_id != config.member_id:
        raise ConfigError(f"This join token is for {token.member_id}, not {config.member_id}.")
    if token.hub_public_key != config.hub_public_key:
        raise ConfigError("This join token names a different hub key than the one this node pins.")
    try:
        lock = InstanceLock(layout.root / "serve.lock", f"A node for {config.member_id}")
    except ConfigError as exc:
        raise ConfigError(f"{exc} Stop it before rotating its keys.") from exc
    try:
        tls_key = pki.new_private_key_pem()
        signing = SigningKey.generate()
        reply = enroll_over_wire(
            enroll_address=token.enroll_address,
            ca_pem=layout.ca_cert.read_bytes(),
            secret=token.secret,
            member_id=config.member_id,
            csr_pem=pki.make_csr(tls_key, config.member_id),
            signing_public_key=signing.public_key,
        )
        pki.verify_issued_by(reply.certificate_pem, layout.ca_cert.read_bytes())
        if not pki.certificate_matches_key(reply.certificate_pem, tls_key):
            raise ConfigError("The hub issued a certificate for a different key.")
        envelope = Envelope.from_proto(reply.directory)
        directory = verify_directory(
            envelope, hub_public_key=config.hub_public_key, now_ms=now_ms()
        )
        member = directory.member(config.member_id)
        if member is None or signing.key_id not in {k.key_id for k in member.signing_keys}:
            raise ConfigError("The hub's directory does not list the new signing key.")
        old = layout.load_signing_key()
        retired = layout.root / f"retired-{old.key_id.replace(':', '-')}.key"
        if not retired.exists():  # a retried rotation retires the same key once
            old.save(retired)
        # Each file is replaced atomically; the certificate and its key go first so that
        # a crash in between leaves a node that fails loudly at start, never one that
        # signs with a key the directory no longer lists as current.
        for path, data in ((layout.tls_key, tls_key), (layout.tls_cert, reply.certificate_pem)):
            write_private(path, data)
        fresh = layout.signing_key.with_name(layout.signing_key.name + ".new")
        fresh.unlink(missing_ok=True)
        signing.save(fresh)
        fresh.replace(layout.signing_key)
        store_envelope(layout.directory_cache, envelope)
        return signing.key_id
    finally:
        lock.release()


def _discard_keys(layout: NodeLayout) -> None:
    layout.tls_key.unlink(missing_ok=True)
    layout.signing_key.unlink(missing_ok=True)


def _read_json(path: Path, kind: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON.") from exc
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise ConfigError(f"{path} is not an {kind} file.")
    return data
