"""The network CA and TLS material (X.509 through `cryptography`).

TLS keys are ECDSA P-256, which every gRPC TLS stack accepts. A node's
certificate carries its member id as the subject common name and the DNS name
``<member>.node.rcf``, which clients pin with a target-name override.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rcf.trust.errors import ConfigError, VerificationError

ORGANISATION = "rcf-exchange"
HUB_NAME = "hub.rcf"
DEFAULT_CERT_DAYS = 365
MEMBER_ID_MAX = 16
# PROTOCOL.md §2: 2-16 of A-Z, 0-9 and '-', not starting with '-'. The one pattern
# the hub, the policy loader and the alert checks share (use fullmatch).
MEMBER_ID_RE = re.compile(r"[A-Z0-9][A-Z0-9-]{1,15}")  # 15 = MEMBER_ID_MAX - 1


def node_server_name(member_id: str) -> str:
    """The DNS name a member's node certificate carries and clients check."""
    return f"{member_id.lower()}.node.rcf"


def check_member_id(member_id: str) -> str:
    """Member ids are short upper-case codes (ISO alpha-2/3 or an organisation code)."""
    if not MEMBER_ID_RE.fullmatch(member_id):
        raise ConfigError(
            f"'{member_id}' is not a member id: use 2-16 upper-case letters, digits or '-' "
            "(not first)."
        )
    return member_id


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_private_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError("The TLS private key is not a valid PEM key.") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("The TLS private key must be an ECDSA key.")
    return key


def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise VerificationError("Not a valid PEM certificate.", reason="bad_certificate") from exc


def create_ca(network: str, *, days: int = 3650) -> tuple[bytes, bytes]:
    """A new self-signed network CA: (key PEM, certificate PEM)."""
    key_pem = new_private_key_pem()
    key = _load_key(key_pem)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{network} network CA"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def make_csr(key_pem: bytes, common_name: str) -> bytes:
    """A CSR for common_name (a member id, or the hub's name)."""
    key = _load_key(key_pem)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_common_name(csr_pem: bytes) -> str:
    """The common name a CSR asks for, after checking its self-signature."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise VerificationError(
            "Not a valid certificate signing request.", reason="bad_csr"
        ) from exc
    if not csr.is_signature_valid:
        raise VerificationError("The CSR's signature does not verify.", reason="bad_csr")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise VerificationError("The CSR must name exactly one subject.", reason="bad_csr")
    return str(names[0].value)


def issue_certificate(
    *,
    ca_key_pem: bytes,
    ca_cert_pem: bytes,
    csr_pem: bytes,
    common_name: str,
    dns_name: str,
    days: int = DEFAULT_CERT_DAYS,
) -> bytes:
    """Issue a TLS certificate (client and server use) for a CSR naming common_name."""
    asked = csr_common_name(csr_pem)
    if asked != common_name:
        raise VerificationError(
            f"The CSR asks for '{asked}' but enrolment is for '{common_name}'.", reason="bad_csr"
        )
    csr = x509.load_pem_x509_csr(csr_pem)
    ca_key = _load_key(ca_key_pem)
    ca_cert = load_certificate(ca_cert_pem)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def verify_issued_by(cert_pem: bytes, ca_cert_pem: bytes) -> None:
    """Raise unless cert_pem was signed by the CA (used on enrolment answers)."""
    cert = load_certificate(cert_pem)
    ca = load_certificate(ca_cert_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise VerificationError(
            "The certificate was not issued by the network CA.", reason="bad_certificate"
        ) from exc


def common_name(cert_pem: bytes) -> str:
    """The subject common name of a certificate (a member id for node certificates)."""
    names = load_certificate(cert_pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise VerificationError(
            "The certificate names no single subject.", reason="bad_certificate"
        )
    return str(names[0].value)


def fingerprint(cert_pem: bytes) -> str:
    """Hex SHA-256 of the certificate's DER encoding."""
    der = load_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def certificate_matches_key(cert_pem: bytes, key_pem: bytes) -> bool:
    """True if the certificate certifies the public half of key_pem."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    cert_pub = (
        load_certificate(cert_pem).public_key().public_bytes(serialization.Encoding.DER, spki)
    )
    key_pub = _load_key(key_pem).public_key().public_bytes(serialization.Encoding.DER, spki)
    return cert_pub == key_pub


def certificate_matches_csr(cert_pem: bytes, csr_pem: bytes) -> bool:
    """True if the certificate certifies the public key the CSR carries."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        csr_pub = x509.load_pem_x509_csr(csr_pem).public_key()
    except ValueError:
        return False
    cert_pub = load_certificate(cert_pem).public_key()
    return bool(
        cert_pub.public_bytes(serialization.Encoding.DER, spki)
        == csr_pub.public_bytes(serialization.Encoding.DER, spki)
    )


@functools.lru_cache(maxsize=1024)
def peer_identity(cert_pem: bytes) -> tuple[str, str]:
    """(common name, fingerprint) of a peer certificate, cached: peers reconnect with the
    same certificate for every call, and parsing it each time is measurable."""
    return common_name(cert_pem), fingerprint(cert_pem)
