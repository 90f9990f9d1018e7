"""trust/: the network CA, certificates, and the signed directory's checks."""

from __future__ import annotations

import pytest

from rcf.protos.v1 import directory_pb2
from rcf.trust import pki
from rcf.trust.directory import (
    Directory,
    Member,
    MemberStatus,
    NodeEntry,
    SigningKeyInfo,
    sign_directory,
    verify_directory,
)
from rcf.trust.dsse import Envelope, Signature
from rcf.trust.errors import ConfigError, DirectoryError, VerificationError
from rcf.trust.join_token import JoinToken
from rcf.trust.keys import SigningKey


def test_issued_certificate_carries_member_id_and_chains_to_ca() -> None:
    ca_key, ca_cert = pki.create_ca("test")
    key = pki.new_private_key_pem()
    cert = pki.issue_certificate(
        ca_key_pem=ca_key,
        ca_cert_pem=ca_cert,
        csr_pem=pki.make_csr(key, "TH"),
        common_name="TH",
        dns_name=pki.node_server_name("TH"),
    )
    assert pki.common_name(cert) == "TH"
    assert pki.certificate_matches_key(cert, key)
    assert not pki.certificate_matches_key(cert, pki.new_private_key_pem())
    pki.verify_issued_by(cert, ca_cert)
    _, other_ca = pki.create_ca("other")
    with pytest.raises(VerificationError, match="not issued by the network CA"):
        pki.verify_issued_by(cert, other_ca)
    assert len(pki.fingerprint(cert)) == 64


def test_csr_for_another_member_is_refused() -> None:
    ca_key, ca_cert = pki.create_ca("test")
    csr = pki.make_csr(pki.new_private_key_pem(), "AU")
    with pytest.raises(VerificationError, match="asks for 'AU'"):
        pki.issue_certificate(
            ca_key_pem=ca_key, ca_cert_pem=ca_cert, csr_pem=csr, common_name="TH", dns_name="x"
        )
    with pytest.raises(VerificationError, match="signing request"):
        pki.csr_common_name(b"not a csr")


@pytest.mark.parametrize("bad", ["th", "T", "TH!", "A" * 17, "ÄB", "-TH", "TH\n", "TH "])
def test_member_ids_are_checked(bad: str) -> None:
    with pytest.raises(ConfigError):
        pki.check_member_id(bad)


def _directory(serial: int, *, issued: int = 1_000, expires: int = 10_000_000) -> Directory:
    key = SigningKey.generate()
    return Directory(
        network="t",
        serial=serial,
        issued_at_ms=issued,
        expires_at_ms=expires,
        members=(
            Member(
                member_id="TH",
                name="Thailand",
                status=MemberStatus.ACTIVE,
                groups=("steering-group",),
                nodes=(NodeEntry("127.0.0.1:1", "ab" * 32),),
                signing_keys=(SigningKeyInfo(key.key_id, key.public_key, 0, 0),),
            ),
        ),
    )


def test_directory_sign_verify_round_trip() -> None:
    hub = SigningKey.generate()
    d = _directory(5)
    got = verify_directory(sign_directory(d, hub), hub_public_key=hub.public_key, now_ms=2_000)
    assert got == d
    assert got.member("TH") is not None
    assert got.signing_key(d.members[0].signing_keys[0].key_id) is not None


def test_directory_rollback_and_freeze_are_refused() -> None:
    hub = SigningKey.generate()
    env = sign_directory(_directory(5, expires=3_000), hub)
    with pytest.raises(DirectoryError) as info:
        verify_directory(env, hub_public_key=hub.public_key, now_ms=2_000, min_serial=6)
    assert info.value.reason == "directory_rollback"
    with pytest.raises(DirectoryError) as info:
        verify_directory(env, hub_public_key=hub.public_key, now_ms=3_000)
    assert info.value.reason == "directory_expired"
    # Reading a cache skips the freeze check; using it enforces it.
    assert verify_directory(env, hub_public_key=hub.public_key, now_ms=None).serial == 5


def _resign_payload(env: Envelope, mutate: object) -> Envelope:
    msg = directory_pb2.Directory()
    msg.ParseFromString(env.payload)
    mutate(msg)  # type: ignore[operator]
    return Envelope(msg.SerializeToString(), env.payload_type, env.signatures)


@pytest.mark.parametrize(
    "field",
    ["serial", "issued_at_ms", "expires_at_ms", "network", "status", "endpoint", "signing_key"],
)
def test_directory_tampering_of_each_field_breaks_the_signature(field: str) -> None:
    hub = SigningKey.generate()
    env = sign_directory(_directory(5), hub)

    def mutate(msg: directory_pb2.Directory) -> None:
        m = msg.members[0]
        if field == "serial":
            msg.serial += 1
        elif field == "issued_at_ms":
            msg.issued_at_ms += 1
        elif field == "expires_at_ms":
            msg.expires_at_ms += 10_000
        elif field == "network":
            msg.network = "evil"
        elif field == "status":
            m.status = directory_pb2.MEMBER_STATUS_REVOKED
        elif field == "endpoint":
            m.nodes[0].endpoint = "10.0.0.1:1"
        else:
            m.signing_keys[0].public_key = SigningKey.generate().public_key

    with pytest.raises(DirectoryError) as info:
        verify_directory(_resign_payload(env, mutate), hub_public_key=hub.public_key, now_ms=2_000)
    assert info.value.reason == "directory_bad_signature"


def test_directory_signed_by_another_key_is_refused() -> None:
    hub, impostor = SigningKey.generate(), SigningKey.generate()
    env = sign_directory(_directory(5), impostor)
    with pytest.raises(DirectoryError, match="not the hub key"):
        verify_directory(env, hub_public_key=hub.public_key, now_ms=2_000)
    unsigned = Envelope(env.payload, env.payload_type, ())
    with pytest.raises(DirectoryError, match="not signed"):
        verify_directory(unsigned, hub_public_key=hub.public_key, now_ms=2_000)
    forged = Envelope(
        env.payload, env.payload_type, (Signature(env.signatures[0].key_id, b"0" * 64),)
    )
    with pytest.raises(DirectoryError):
        verify_directory(forged, hub_public_key=impostor.public_key, now_ms=2_000)


def test_join_token_round_trip_and_damage() -> None:
    tok = JoinToken("s3cret", "TH", "127.0.0.1:1", "127.0.0.1:2", b"PEM", b"k" * 32)
    assert JoinToken.decode(tok.encode()) == tok
    with pytest.raises(ConfigError, match="not an rcf join token"):
        JoinToken.decode("hello")
    with pytest.raises(ConfigError, match="damaged"):
        JoinToken.decode(tok.encode()[:-10])
