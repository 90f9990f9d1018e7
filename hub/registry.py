"""The hub registry: members, nodes, signing keys, NCPs, join tokens, directories.

Every change is one SQLite transaction that also publishes the next signed
directory, so a reader never sees a change without its directory or the other
way round.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sqlite_utils

from rcf.hub import dictionary_store
from rcf.protos.v1 import envelope_pb2
from rcf.trust import pki
from rcf.trust.clock import now_ms
from rcf.trust.dictionary import DataDictionary
from rcf.trust.directory import (
    Directory,
    Member,
    MemberStatus,
    Ncp,
    NodeEntry,
    SigningKeyInfo,
    sign_directory,
)
from rcf.trust.dsse import Envelope
from rcf.trust.endpoints import check_endpoint
from rcf.trust.errors import ConfigError, RegistryError
from rcf.trust.files import private_file
from rcf.trust.keys import SigningKey, key_id_for
from rcf.trust.sqlite import immediate

JOIN_TOKEN_TTL_MS = 24 * 3600 * 1000
MAX_JOIN_TOKEN_TTL_MS = 30 * 24 * 3600 * 1000
GROUP_NAME_MAX = 64


def _check_label(kind: str, value: str) -> str:
    ok = value and len(value) <= GROUP_NAME_MAX and value.replace("-", "").isalnum()
    if not ok or value != value.lower():
        raise RegistryError(
            f"'{value}' is not a valid {kind}: use lower-case letters, digits, '-'."
        )
    return value


@dataclass(frozen=True)
class EnrollResult:
    member_id: str
    certificate_pem: bytes
    ca_certificate_pem: bytes
    directory: Envelope


class Registry:
    """Business operations on one hub's registry database."""

    def __init__(
        self,
        db_path: Path,
        *,
        network: str,
        signing_key: SigningKey | None,
        ca_key_pem: bytes,
        ca_cert_pem: bytes,
        directory_ttl_s: int,
    ) -> None:
        private_file(db_path)
        self._conn = sqlite3.connect(
            db_path, timeout=30, check_same_thread=False, isolation_level=None
        )
        self._db = sqlite_utils.Database(self._conn)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._network = network
        self._key = signing_key
        self._ca_key = ca_key_pem
        self._ca_cert = ca_cert_pem
        self._ttl_ms = directory_ttl_s * 1000
        self._ensure_schema()

    def close(self) -> None:
        self._conn.close()

    # -- schema and transactions ------------------------------------------

    def _ensure_schema(self) -> None:
        with self._tx():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS members (member_id TEXT PRIMARY KEY,"
                " name TEXT NOT NULL,"
                " status TEXT NOT NULL, groups_json TEXT NOT NULL, roles_json TEXT NOT NULL,"
                " created_at_ms INTEGER NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS nodes (member_id TEXT PRIMARY KEY REFERENCES members,"
                " endpoint TEXT NOT NULL, cert_pem TEXT NOT NULL, tls_cert_sha256 TEXT NOT NULL,"
                " enrolled_at_ms INTEGER NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS signing_keys (key_id TEXT PRIMARY KEY,"
                " member_id TEXT NOT NULL REFERENCES members, public_key BLOB NOT NULL,"
                " valid_from_ms INTEGER NOT NULL, valid_until_ms INTEGER NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS ncps (ncp_id TEXT PRIMARY KEY,"
                " member_id TEXT NOT NULL REFERENCES members, agency TEXT NOT NULL,"
                " role TEXT NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL, phone TEXT NOT NULL,"
                " languages_json TEXT NOT NULL, working_hours TEXT NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS join_tokens (token_sha256 TEXT PRIMARY KEY,"
                " member_id TEXT NOT NULL, created_at_ms INTEGER NOT NULL,"
                " expires_at_ms INTEGER NOT NULL, used_at_ms INTEGER)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS directories (serial INTEGER PRIMARY KEY,"
                " issued_at_ms INTEGER NOT NULL, envelope BLOB NOT NULL)"
            )
            dictionary_store.ensure_schema(self._conn, self._key)

    def _signer(self) -> SigningKey:
        """The hub's signing key; a registry opened to read only (without it) refuses."""
        if self._key is None:
            raise ConfigError(
                "This registry was opened read-only, without the hub's private key; "
                "signing needs it."
            )
        return self._key

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate(self._conn)

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cur = self._conn.execute(sql, params)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    # -- members ------------------------------------------------------------

    def add_member(
        self,
        member_id: str,
        *,
        name: str,
        groups: tuple[str, ...] = (),
        roles: tuple[str, ...] = (),
    ) -> Member:
        pki.check_member_id(member_id)
        groups = tuple(_check_label("group", g) for g in groups)
        roles = tuple(_check_label("role", r) for r in roles)
        with self._tx():
            if self._member_row(member_id) is not None:
                raise RegistryError(f"Member {member_id} already exists.")
            self._conn.execute(
                "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?)",
                (
                    member_id,
                    name or member_id,
                    "active",
                    json.dumps(groups),
                    json.dumps(roles),
                    now_ms(),
                ),
            )
            directory = self._publish()
        member = directory.member(member_id)
        assert member is not None
        return member

    def set_status(self, member_id: str, status: MemberStatus) -> Member:
        """Suspend, reinstate or revoke. Revocation is final."""
        with self._tx():
            row = self._require_member(member_id)
            if row["status"] == "revoked":
                raise RegistryError(f"Member {member_id} is revoked; revocation cannot be undone.")
            self._conn.execute(
                "UPDATE members SET status = ? WHERE member_id = ?", (status.label, member_id)
            )
            directory = self._publish()
        member = directory.member(member_id)
        assert member is not None
        return member

    def set_groups_roles(
        self, member_id: str, *, groups: tuple[str, ...], roles: tuple[str, ...]
    ) -> Member:
        groups = tuple(_check_label("group", g) for g in groups)
        roles = tuple(_check_label("role", r) for r in roles)
        with self._tx():
            self._require_member(member_id)
            self._conn.execute(
                "UPDATE members SET groups_json = ?, roles_json = ? WHERE member_id = ?",
                (json.dumps(groups), json.dumps(roles), member_id),
            )
            directory = self._publish()
        member = directory.member(member_id)
        assert member is not None
        return member

    def members(self) -> tuple[Member, ...]:
        return self.snapshot().members

    def snapshot(self) -> Directory:
        """The registry's current state as an unsigned directory (serial 0)."""
        return self._build_directory(serial=0, issued_at_ms=0)

    def _member_row(self, member_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM members WHERE member_id = ?", (member_id,))
        return rows[0] if rows else None

    def _require_member(self, member_id: str) -> dict[str, Any]:
        row = self._member_row(member_id)
        if row is None:
            raise RegistryError(f"No member {member_id} in the registry.", reason="unknown_member")
        return row

    # -- NCPs ---------------------------------------------------------------

    def add_ncp(self, member_id: str, ncp: Ncp) -> Ncp:
        with self._tx():
            self._require_member(member_id)
            ncp_id = ncp.ncp_id or f"{member_id}-{secrets.token_hex(3)}"
            if self._rows("SELECT 1 FROM ncps WHERE ncp_id = ?", (ncp_id,)):
                raise RegistryError(f"NCP {ncp_id} already exists.")
            ncp = replace(ncp, ncp_id=ncp_id)
            self._write_ncp(member_id, ncp, insert=True)
            self._publish()
        return ncp

    def update_ncp(self, ncp_id: str, changes: dict[str, Any]) -> Ncp:
        with self._tx():
            rows = self._rows("SELECT * FROM ncps WHERE ncp_id = ?", (ncp_id,))
            if not rows:
                raise RegistryError(f"No NCP {ncp_id} in the registry.")
            current = _ncp_from_row(rows[0])
            unknown = set(changes) - {
                "agency", "role", "name", "email", "phone", "languages", "working_hours",
            }  # fmt: skip
            if unknown:
                raise RegistryError(f"NCPs have no field {sorted(unknown)[0]}.")
            updated = replace(current, **changes)
            self._write_ncp(str(rows[0]["member_id"]), updated, insert=False)
            self._publish()
        return updated

    def remove_ncp(self, ncp_id: str) -> None:
        with self._tx():
            cur = self._conn.execute("DELETE FROM ncps WHERE ncp_id = ?", (ncp_id,))
            if cur.rowcount == 0:
                raise RegistryError(f"No NCP {ncp_id} in the registry.")
            self._publish()

    def ncps(self, member_id: str | None = None) -> list[tuple[str, Ncp]]:
        sql = "SELECT * FROM ncps" + (" WHERE member_id = ?" if member_id else "")  # noqa: S608 - constant text, values bound
        rows = self._rows(sql + " ORDER BY member_id, ncp_id", (member_id,) if member_id else ())
        return [(str(r["member_id"]), _ncp_from_row(r)) for r in rows]

    def _write_ncp(self, member_id: str, ncp: Ncp, *, insert: bool) -> None:
        values = (
            ncp.agency, ncp.role, ncp.name, ncp.email, ncp.phone,
            json.dumps(list(ncp.languages)), ncp.working_hours,
        )  # fmt: skip
        if insert:
            self._conn.execute(
                "INSERT INTO ncps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ncp.ncp_id, member_id, *values),
            )
        else:
            self._conn.execute(
                "UPDATE ncps SET agency=?, role=?, name=?, email=?, phone=?, languages_json=?,"
                " working_hours=? WHERE ncp_id = ?",
                (*values, ncp.ncp_id),
            )

    # -- enrolment ------------------------------------------------------------

    def create_join_token(self, member_id: str, *, ttl_ms: int = JOIN_TOKEN_TTL_MS) -> str:
        """A one-time secret that lets member_id's node enrol over the wire.

        Its lifetime is positive and at most 30 days; only an active member gets one."""
        if not 0 < ttl_ms <= MAX_JOIN_TOKEN_TTL_MS:
            raise RegistryError(
                "A join token's lifetime must be more than zero and at most 30 days.",
                reason="bad_token_ttl",
                status="INVALID_ARGUMENT",
            )
        secret = secrets.token_urlsafe(32)
        with self._tx():
            row = self._require_member(member_id)
            if row["status"] != "active":
                raise RegistryError(
                    f"Member {member_id} is {row['status']}; join tokens are only for active "
                    "members.",
                    reason=f"member_{row['status']}",
                )
            now = now_ms()
            self._conn.execute(
                "INSERT INTO join_tokens VALUES (?, ?, ?, ?, NULL)",
                (hashlib.sha256(secret.encode()).hexdigest(), member_id, now, now + ttl_ms),
            )
        return secret

    def enroll_with_token(
        self, *, secret: str, member_id: str, csr_pem: bytes, signing_public_key: bytes
    ) -> EnrollResult:
        """Redeem a join token and enrol in one transaction: a failure uses nothing up."""
        digest = hashlib.sha256(secret.encode()).hexdigest()
        with self._tx():
            rows = self._rows("SELECT * FROM join_tokens WHERE token_sha256 = ?", (digest,))
            if not rows:
                raise RegistryError("The join token is not known to this hub.", reason="bad_token")
            token = rows[0]
            if token["used_at_ms"] is not None:
                raise RegistryError("The join token has already been used.", reason="token_used")
            if token["expires_at_ms"] <= now_ms():
                raise RegistryError("The join token has expired.", reason="token_expired")
            if token["member_id"] != member_id:
                raise RegistryError(
                    f"The join token is for {token['member_id']}, not {member_id}.",
                    reason="bad_token",
                )
            self._conn.execute(
                "UPDATE join_tokens SET used_at_ms = ? WHERE token_sha256 = ?", (now_ms(), digest)
            )
            return self._enroll(member_id, csr_pem, signing_public_key)

    def enroll_offline(
        self, *, member_id: str, csr_pem: bytes, signing_public_key: bytes, replace: bool = False
    ) -> EnrollResult:
        """Enrol from a request file the hub admin has checked out of band.

        Approving the same request again returns the certificate already issued for it.
        A different request for a member whose node is enrolled is refused unless
        replace: its new certificate would lock the enrolled node out."""
        again: bytes | None = None
        with self._tx():
            rows = self._rows(
                "SELECT cert_pem FROM nodes WHERE member_id = ? AND cert_pem != ''", (member_id,)
            )
            if rows:
                cert = str(rows[0]["cert_pem"]).encode()
                current = self._rows(
                    "SELECT 1 FROM signing_keys WHERE member_id = ? AND key_id = ?"
                    " AND valid_until_ms = 0",
                    (member_id, key_id_for(signing_public_key)),
                )
                if not (current and pki.certificate_matches_csr(cert, csr_pem)) and not replace:
                    raise RegistryError(
                        f"{member_id} already has an enrolled node and this request is not the "
                        "one it was enrolled with; approving it would lock that node out "
                        "(use --replace if the node is gone).",
                        reason="already_enrolled",
                    )
                if not replace:
                    # The very request approved before: the same answer, nothing issued.
                    self._require_enrollable(member_id)
                    again = cert
            if again is None:
                return self._enroll(member_id, csr_pem, signing_public_key)
        return EnrollResult(member_id, again, self._ca_cert, self.current_directory())

    def _require_enrollable(self, member_id: str) -> None:
        row = self._require_member(member_id)
        if row["status"] != "active":
            raise RegistryError(
                f"Member {member_id} is {row['status']} and cannot enrol.",
                reason=str(row["status"]),
            )

    def _enroll(self, member_id: str, csr_pem: bytes, signing_public_key: bytes) -> EnrollResult:
        self._require_enrollable(member_id)
        cert_pem = pki.issue_certificate(
            ca_key_pem=self._ca_key,
            ca_cert_pem=self._ca_cert,
            csr_pem=csr_pem,
            common_name=member_id,
            dns_name=pki.node_server_name(member_id),
        )
        now = now_ms()
        old = self._rows("SELECT endpoint FROM nodes WHERE member_id = ?", (member_id,))
        self._conn.execute(
            "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?)",
            (
                member_id,
                old[0]["endpoint"] if old else "",
                cert_pem.decode(),
                pki.fingerprint(cert_pem),
                now,
            ),
        )
        key_id = key_id_for(signing_public_key)
        if not self._rows("SELECT 1 FROM signing_keys WHERE key_id = ?", (key_id,)):
            # Rotation: earlier keys stay listed, closed at now, so old signatures still verify.
            self._conn.execute(
                "UPDATE signing_keys SET valid_until_ms = ?"
                " WHERE member_id = ? AND valid_until_ms = 0",
                (now, member_id),
            )
            self._conn.execute(
                "INSERT INTO signing_keys VALUES (?, ?, ?, ?, 0)",
                (key_id, member_id, signing_public_key, now),
            )
        directory = self._publish()
        return EnrollResult(
            member_id, cert_pem, self._ca_cert, sign_directory(directory, self._signer())
        )

    def update_endpoint(self, member_id: str, endpoint: str) -> Envelope:
        """Publish member_id's node endpoint; an unchanged one publishes nothing.

        Returns the latest signed directory either way."""
        check_endpoint(endpoint)
        with self._tx():
            rows = self._rows("SELECT endpoint FROM nodes WHERE member_id = ?", (member_id,))
            if not rows:
                raise RegistryError(f"Member {member_id} has no enrolled node.")
            if rows[0]["endpoint"] != endpoint:
                self._conn.execute(
                    "UPDATE nodes SET endpoint = ? WHERE member_id = ?", (endpoint, member_id)
                )
                self._publish()
        return self.current_directory()

    def node_fingerprint(self, member_id: str) -> str | None:
        rows = self._rows("SELECT tls_cert_sha256 FROM nodes WHERE member_id = ?", (member_id,))
        return str(rows[0]["tls_cert_sha256"]) if rows else None

    # -- directory ------------------------------------------------------------

    def current_serial(self) -> int:
        rows = self._rows("SELECT MAX(serial) AS s FROM directories")
        return int(rows[0]["s"] or 0)

    def current_directory(self, *, renew_after_ms: int | None = None) -> Envelope:
        """The latest signed directory; re-issued when older than renew_after_ms."""
        rows = self._rows("SELECT * FROM directories ORDER BY serial DESC LIMIT 1")
        renew = renew_after_ms if renew_after_ms is not None else self._ttl_ms // 2
        stale = not rows or now_ms() - int(rows[0]["issued_at_ms"]) >= renew
        # Read-only (no private key): show the latest stored one rather than re-sign.
        if stale and (self._key is not None or not rows):
            with self._tx():
                self._publish()
            rows = self._rows("SELECT * FROM directories ORDER BY serial DESC LIMIT 1")
        msg = envelope_pb2.Envelope()
        msg.ParseFromString(rows[0]["envelope"])
        return Envelope.from_proto(msg)

    # -- data dictionary ------------------------------------------------------

    def signed_dictionary(self, version: str = "") -> Envelope:
        """The signed data dictionary of version (the latest if empty)."""
        return dictionary_store.signed(self._conn, version)

    def publish_dictionary(self, dictionary: DataDictionary) -> Directory:
        """Publish a new dictionary version and a directory that names it."""
        with self._tx():
            dictionary_store.publish(self._conn, dictionary, self._signer())
            return self._publish()

    def _publish(self) -> Directory:
        """Inside a transaction: sign and store the next directory serial."""
        now = now_ms()
        directory = self._build_directory(serial=self.current_serial() + 1, issued_at_ms=now)
        envelope = sign_directory(directory, self._signer())
        self._conn.execute(
            "INSERT INTO directories VALUES (?, ?, ?)",
            (directory.serial, now, envelope.to_proto().SerializeToString()),
        )
        return directory

    def _build_directory(self, *, serial: int, issued_at_ms: int) -> Directory:
        nodes = {r["member_id"]: r for r in self._rows("SELECT * FROM nodes")}
        keys: dict[str, list[SigningKeyInfo]] = {}
        for k in self._rows("SELECT * FROM signing_keys ORDER BY valid_from_ms"):
            keys.setdefault(k["member_id"], []).append(
                SigningKeyInfo(
                    k["key_id"], bytes(k["public_key"]), k["valid_from_ms"], k["valid_until_ms"]
                )
            )
        ncps: dict[str, list[Ncp]] = {}
        for member_id, ncp in self.ncps():
            ncps.setdefault(member_id, []).append(ncp)
        members = []
        for r in self._rows("SELECT * FROM members ORDER BY member_id"):
            mid = r["member_id"]
            node = nodes.get(mid)
            members.append(
                Member(
                    member_id=mid,
                    name=r["name"],
                    status=MemberStatus[str(r["status"]).upper()],
                    groups=tuple(json.loads(r["groups_json"])),
                    roles=tuple(json.loads(r["roles_json"])),
                    nodes=(NodeEntry(node["endpoint"], node["tls_cert_sha256"]),) if node else (),
                    signing_keys=tuple(keys.get(mid, ())),
                    ncps=tuple(ncps.get(mid, ())),
                )
            )
        return Directory(
            network=self._network,
            serial=serial,
            issued_at_ms=issued_at_ms,
            expires_at_ms=issued_at_ms + self._ttl_ms,
            members=tuple(members),
            dictionary_version=dictionary_store.latest_version(self._conn),
        )


def _ncp_from_row(r: dict[str, Any]) -> Ncp:
    return Ncp(
        ncp_id=r["ncp_id"],
        agency=r["agency"],
        role=r["role"],
        name=r["name"],
        email=r["email"],
        phone=r["phone"],
        languages=tuple(json.loads(r["languages_json"])),
        working_hours=r["working_hours"],
    )
