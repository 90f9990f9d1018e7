"""The signed, versioned network directory and the checks every reader makes.

The hub signs it with its Ed25519 key; readers refuse one that does not verify,
one with a lower serial than they hold (rollback) and one past its expiry
(freeze), so a hub that is down or hostile cannot wind the network back.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from rcf.protos.v1 import directory_pb2
from rcf.trust.dsse import Envelope
from rcf.trust.errors import DirectoryError, VerificationError
from rcf.trust.keys import SigningKey, key_id_for
from rcf.trust.signed import open_document, sign_document


class MemberStatus(enum.Enum):
    ACTIVE = directory_pb2.MEMBER_STATUS_ACTIVE
    SUSPENDED = directory_pb2.MEMBER_STATUS_SUSPENDED
    REVOKED = directory_pb2.MEMBER_STATUS_REVOKED

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class SigningKeyInfo:
    key_id: str
    public_key: bytes
    valid_from_ms: int
    valid_until_ms: int = 0  # 0: open-ended

    def valid_at(self, t_ms: int) -> bool:
        return self.valid_from_ms <= t_ms and (
            self.valid_until_ms == 0 or t_ms < self.valid_until_ms
        )


@dataclass(frozen=True)
class NodeEntry:
    endpoint: str
    tls_cert_sha256: str


@dataclass(frozen=True)
class Ncp:
    ncp_id: str
    agency: str
    role: str
    name: str
    email: str = ""
    phone: str = ""
    languages: tuple[str, ...] = ()
    working_hours: str = ""


@dataclass(frozen=True)
class Member:
    member_id: str
    name: str
    status: MemberStatus
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    nodes: tuple[NodeEntry, ...] = ()
    signing_keys: tuple[SigningKeyInfo, ...] = ()
    ncps: tuple[Ncp, ...] = ()

    @property
    def active(self) -> bool:
        return self.status is MemberStatus.ACTIVE


@dataclass(frozen=True)
class Directory:
    network: str
    serial: int
    issued_at_ms: int
    expires_at_ms: int
    members: tuple[Member, ...]
    dictionary_version: str = ""
    _by_id: dict[str, Member] = field(default_factory=dict, init=False, repr=False, compare=False)
    _keys: dict[str, tuple[Member, SigningKeyInfo]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for m in self.members:
            self._by_id[m.member_id] = m
            for k in m.signing_keys:
                self._keys[k.key_id] = (m, k)

    def member(self, member_id: str) -> Member | None:
        return self._by_id.get(member_id)

    def signing_key(self, key_id: str) -> tuple[Member, SigningKeyInfo] | None:
        """The member that owns key_id and the key's record, if listed."""
        return self._keys.get(key_id)

    def key_resolver(self, *, at_ms: int, member_id: str | None = None) -> Callable[[str], bytes]:
        """A resolve_key for verify_envelope: keys listed here and valid at at_ms.

        With member_id, only that member's keys are trusted.
        """

        def resolve(key_id: str) -> bytes:
            found = self.signing_key(key_id)
            if found is None:
                raise VerificationError(
                    f"The message is signed by key {key_id}, which the directory does not list.",
                    reason="unknown_key",
                )
            member, key = found
            if member_id is not None and member.member_id != member_id:
                raise VerificationError(
                    f"Key {key_id} belongs to {member.member_id}, not {member_id}.",
                    reason="wrong_signer",
                )
            if not key.valid_at(at_ms):
                raise VerificationError(
                    f"Key {key_id} of {member.member_id} is not valid now (rotated or not yet "
                    "valid).",
                    reason="key_not_valid",
                )
            return key.public_key

        return resolve

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_at_ms

    # -- protobuf edge ---------------------------------------------------

    def to_proto(self) -> directory_pb2.Directory:
        return directory_pb2.Directory(
            network=self.network,
            serial=self.serial,
            issued_at_ms=self.issued_at_ms,
            expires_at_ms=self.expires_at_ms,
            dictionary_version=self.dictionary_version,
            members=[
                directory_pb2.Member(
                    member_id=m.member_id,
                    name=m.name,
                    status=m.status.value,
                    groups=list(m.groups),
                    roles=list(m.roles),
                    nodes=[
                        directory_pb2.NodeEntry(
                            endpoint=n.endpoint, tls_cert_sha256=n.tls_cert_sha256
                        )
                        for n in m.nodes
                    ],
                    signing_keys=[
                        directory_pb2.SigningKey(
                            key_id=k.key_id,
                            public_key=k.public_key,
                            valid_from_ms=k.valid_from_ms,
                            valid_until_ms=k.valid_until_ms,
                        )
                        for k in m.signing_keys
                    ],
                    ncps=[
                        directory_pb2.Ncp(
                            ncp_id=c.ncp_id,
                            agency=c.agency,
                            role=c.role,
                            name=c.name,
                            email=c.email,
                            phone=c.phone,
                            languages=list(c.languages),
                            working_hours=c.working_hours,
                        )
                        for c in m.ncps
                    ],
                )
                for m in self.members
            ],
        )

    @classmethod
    def from_proto(cls, msg: directory_pb2.Directory) -> Directory:
        members = []
        for m in msg.members:
            keys = []
            for k in m.signing_keys:
                if key_id_for(k.public_key) != k.key_id:
                    raise DirectoryError(f"Directory lists key {k.key_id} under a wrong id.")
                keys.append(
                    SigningKeyInfo(k.key_id, k.public_key, k.valid_from_ms, k.valid_until_ms)
                )
            try:
                status = MemberStatus(m.status)
            except ValueError as exc:
                raise DirectoryError(f"Member {m.member_id} has no valid status.") from exc
            members.append(
                Member(
                    member_id=m.member_id,
                    name=m.name,
                    status=status,
                    groups=tuple(m.groups),
                    roles=tuple(m.roles),
                    nodes=tuple(NodeEntry(n.endpoint, n.tls_cert_sha256) for n in m.nodes),
                    signing_keys=tuple(keys),
                    ncps=tuple(
                        Ncp(
                            ncp_id=c.ncp_id,
                            agency=c.agency,
                            role=c.role,
                            name=c.name,
                            email=c.email,
                            phone=c.phone,
                            languages=tuple(c.languages),
                            working_hours=c.working_hours,
                        )
                        for c in m.ncps
                    ),
                )
            )
        return cls(
            network=msg.network,
            serial=msg.serial,
            issued_at_ms=msg.issued_at_ms,
            expires_at_ms=msg.expires_at_ms,
            members=tuple(members),
            dictionary_version=msg.dictionary_version,
        )


def sign_directory(directory: Directory, hub_key: SigningKey) -> Envelope:
    """The hub's signed publication of directory."""
    return sign_document(directory.to_proto(), [hub_key])


def verify_directory(
    envelope: Envelope,
    *,
    hub_public_key: bytes,
    now_ms: int | None,
    min_serial: int = 0,
) -> Directory:
    """Verify a signed directory against the pinned hub key, rollback and freeze rules.

    ``now_ms=None`` skips the freeze check, for reading a cache whose expiry is
    enforced later, at the moment it is used.
    """
    opened = open_document(
        envelope,
        directory_pb2.Directory,
        what="directory",
        pinned_key=hub_public_key,
        error=DirectoryError,
        bad_signature_reason="directory_bad_signature",
    )
    directory = Directory.from_proto(opened.message)
    if directory.serial < min_serial:
        raise DirectoryError(
            f"Refusing directory serial {directory.serial}: serial {min_serial} is already held "
            "(rollback).",
            reason="directory_rollback",
        )
    if now_ms is not None and directory.expired(now_ms):
        raise DirectoryError(
            f"The directory (serial {directory.serial}) expired; the hub has not been reachable "
            "to renew it, so this node fails closed.",
            reason="directory_expired",
        )
    return directory
