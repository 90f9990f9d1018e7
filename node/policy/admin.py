"""The live policy of a node and the admin's operations on it.

``PolicyGate`` holds the compiled active policy as one immutable object; the
pipeline asks it about every request, and ``swap`` replaces the object in a
single assignment, so a request sees the whole old policy or the whole new one,
never a mixture. ``PolicyAdmin`` validates, signs, stores, audits and then swaps.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import structlog

from rcf.node.audit.chain import AuditLog, local_event
from rcf.node.data.dictionary import load_dictionary
from rcf.node.ops.config import NodeLayout
from rcf.node.ops.state import StateDB
from rcf.node.policy.engine import decide
from rcf.node.policy.loader import Issue, PolicyError, load_policy
from rcf.node.policy.model import Decision, Policy, QueryDescription
from rcf.node.policy.store import (
    PAYLOAD_KIND,
    PAYLOAD_TYPE,
    PolicyStore,
    StoredVersion,
    UsageStore,
    signed_metadata,
)
from rcf.node.policy.validate import Context, check_policy
from rcf.trust.clock import now_ms
from rcf.trust.dictionary import DataDictionary
from rcf.trust.directory import Directory, Member
from rcf.trust.dsse import verify_envelope
from rcf.trust.errors import ConfigError, RequestRejected, VerificationError
from rcf.trust.keys import SigningKey

log = structlog.get_logger("rcf.policy")

SEED_FILENAME = "node.toml [allow]"
# The query id of the audit record a policy version's application writes (see _record).
_POLICY_QUERY = re.compile(r"^policy-[A-Z0-9-]+-v([0-9]+)$")


class PolicyGate:
    """Decides every request with the active policy, and charges its limits."""

    def __init__(self, policy: Policy, usage: UsageStore | None) -> None:
        self._policy = policy
        self._usage = usage

    @property
    def policy(self) -> Policy:
        return self._policy

    def swap(self, policy: Policy) -> None:
        # One reference assignment: atomic for every reader thread.
        self._policy = policy

    def decide(
        self, requester: Member, query: QueryDescription, *, at_ms: int | None = None
    ) -> Decision:
        """The decision without charging anything (a dry run)."""
        usage = self._usage.used if self._usage is not None else None
        return decide(self._policy, requester, query, now_ms=at_ms or now_ms(), usage=usage)

    def check(self, requester: Member, query: QueryDescription) -> Decision:
        """Decide and charge; raise RequestRejected (public reason only) to refuse."""
        decision = self.decide(requester, query)
        if not decision.allowed and decision.charges and self._usage is not None:
            self._usage.charge(requester.member_id, decision.charges, force=True)
        if decision.allowed and decision.charges and self._usage is not None:
            overdraw = self._usage.charge(requester.member_id, decision.charges)
            if overdraw is not None:
                code = "budget_exhausted" if overdraw.charge.kind == "budget" else "rate_limited"
                decision = replace(decision, allowed=False, reason=code, charges=())
        if not decision.allowed:
            log.info(
                "policy_refused",
                requester=requester.member_id,
                query_type=query.query_type,
                reason=decision.reason,
                rule=decision.rule_id,
                policy_version=decision.policy_version,
            )
            error = refusal(decision.reason)
            if self._policy.discloses_reasons_to(requester):
                error.reason = decision.reason
            raise error
        return decision


LIMIT_CODES = ("budget_exhausted", "rate_limited")


def refusal(code: str) -> RequestRejected:
    """The error a refused requester sees: ``not_permitted`` or ``limit_reached`` and a
    fixed sentence. Which rule, purpose or dimension failed would let a requester map
    the policy one probe at a time, so the detailed code stays in this node's audit
    record (``audit_reason``) and in ``rcf policy explain``."""
    if code in LIMIT_CODES:
        return RequestRejected(
            "Refused: a limit this node's sharing policy sets for you is reached.",
            reason="limit_reached",
            status="RESOURCE_EXHAUSTED",
            audit_reason=code,
        )
    return RequestRejected(
        "Refused: this node's sharing policy does not permit this query.",
        reason="not_permitted",
        audit_reason=code,
    )


def seed_source(allow: Mapping[str, tuple[str, ...] | list[str]], member_id: str) -> str:
    """A first policy from node.toml's [allow] table (query type → requesters)."""
    lines = [
        "# Seeded from node.toml [allow] when this node first started.",
        "# Edit a copy and use 'rcf policy apply'; [allow] has no effect any more.",
        "[policy]",
        f"member = {json.dumps(member_id)}",
    ]
    for query_type, requesters in sorted(allow.items()):
        if query_type != "Ping" or not requesters:
            continue  # only Ping needs no datasets; data queries need a written policy
        lines += [
            "",
            "[[rule]]",
            'id = "ping"',
            f"requesters = {json.dumps(list(requesters))}",
            'query = "Ping"',
        ]
    return "\n".join(lines) + "\n"


def node_dictionary(layout: NodeLayout) -> DataDictionary:
    """The dictionary the node holds, or the v1 defaults the software ships."""
    return load_dictionary(layout)


@dataclass(frozen=True)
class Applied:
    version: StoredVersion
    warnings: tuple[Issue, ...]


class PolicyAdmin:
    """Apply, roll back and load a node's policy. Used by the node and, when the
    node is not running, by the CLI on the node's folder."""

    def __init__(
        self,
        *,
        layout: NodeLayout,
        member_id: str,
        signing_key: SigningKey | None,
        state: StateDB,
        audit: AuditLog,
        directory: Callable[[], Directory],
        gate: PolicyGate | None = None,
    ) -> None:
        self._layout = layout
        self.member_id = member_id
        self._key = signing_key
        self.store = PolicyStore(state)
        self.usage = UsageStore(state, audit=audit, member_id=member_id)
        self._audit = audit
        self._directory = directory
        self.gate = gate
        self._lock = threading.Lock()

    def _signer(self) -> SigningKey:
        if self._key is None:
            raise ConfigError(
                "Changing the policy needs the node: start it ('rcf node serve') or use the "
                "offline path."
            )
        return self._key

    def context(self) -> Context:
        return Context(
            directory=self._directory(),
            dictionary=node_dictionary(self._layout),
            member_id=self.member_id,
            today=None,
        )

    # -- loading ------------------------------------------------------------------

    def verify(self, stored: StoredVersion) -> None:
        """Check the node's signature on a stored version and that the source matches it."""
        own = {self._key.key_id: self._key.public_key} if self._key is not None else {}
        member = self._directory().member(self.member_id)
        for k in member.signing_keys if member else ():
            own.setdefault(k.key_id, k.public_key)

        def resolve(key_id: str) -> bytes:
            if key_id not in own:
                raise VerificationError(
                    f"Policy version {stored.version} is signed by {key_id}, not this node.",
                    reason="policy_bad_signature",
                )
            return own[key_id]

        verified = verify_envelope(
            envelope=stored.envelope, expected_type=PAYLOAD_TYPE, resolve_key=resolve
        )
        meta = json.loads(verified.payload)
        source_digest = hashlib.sha256(stored.source.encode()).hexdigest()
        if (
            meta.get("kind") != PAYLOAD_KIND
            or meta != signed_metadata(self.member_id, stored)
            or source_digest != stored.source_sha256
        ):
            raise VerificationError(
                f"Policy version {stored.version} in state.db does not match its signature; "
                "it was altered after it was applied.",
                reason="policy_bad_signature",
            )

    def compile(self, stored: StoredVersion) -> Policy:
        self.verify(stored)
        policy = load_policy(stored.source, f"policy version {stored.version}")
        return replace(policy, version=stored.version)

    def load_active(self, seed_allow: Mapping[str, tuple[str, ...]] | None = None) -> Policy:
        """The active policy; a node without one is seeded from node.toml [allow].

        The active version must be the one the audit chain last recorded as applied
        (see match_audit), so a deleted newest version is noticed, not silently skipped."""
        stored = self.store.active()
        self.match_audit(stored)
        if stored is None:
            source = seed_source(seed_allow or {}, self.member_id)
            seeded = self.store.append(
                member_id=self.member_id,
                key=self._signer(),
                source=source,
                source_sha256=hashlib.sha256(source.encode()).hexdigest(),
                filename=SEED_FILENAME,
                action="seed",
                only_if_empty=True,
            )
            if seeded is not None:
                self._record(seeded)
            stored = seeded or self.store.active()
            assert stored is not None
        return self.compile(stored)

    def match_audit(self, stored: StoredVersion | None) -> None:
        """Raise ConfigError unless stored (the newest version) is the one the audit log last
        recorded as applied.

        Versions newer than the last audited one are verified and their missing records
        written: state.db and the audit record are two commits, and a crash between them
        must not leave a node that never starts again."""
        last = self._audit.last_of_type("PolicyChange")
        match = _POLICY_QUERY.match(last.event.query_id) if last is not None else None
        audited = int(match.group(1)) if match else 0
        active = stored.version if stored is not None else 0
        if audited > active:
            raise ConfigError(
                f"The audit log records policy version {audited} as applied but state.db's "
                f"newest is {active or 'none'}, so a policy version was removed; restore "
                "state.db from a backup (the node does not start on an older policy).",
                reason="policy_rollback",
            )
        if last is not None and stored is not None and audited == active:
            if last.event.request_sha256 != stored.source_sha256:
                raise ConfigError(
                    f"Policy version {active} in state.db is not the one the audit log records "
                    "as applied; restore state.db from a backup.",
                    reason="policy_rollback",
                )
            return
        for version in range(audited + 1, active + 1):
            missing = self.store.get(version)
            if missing is None:
                raise ConfigError(
                    f"Policy version {version} is missing from state.db; restore it from a backup.",
                    reason="policy_rollback",
                )
            self.verify(missing)
            log.warning("policy_audit_record_restored", version=version)
            self._record(missing)

    def open_gate(self, seed_allow: Mapping[str, tuple[str, ...]] | None = None) -> PolicyGate:
        """The gate the pipeline decides with, holding the active policy; usage is first
        re-derived from the audit-bound charge journal (UsageStore.reconcile)."""
        if self._key is not None:
            raised = self.usage.reconcile()
            if raised:
                log.warning("policy_usage_restored_from_audit", rows=raised)
        self.gate = PolicyGate(self.load_active(seed_allow), self.usage)
        return self.gate

    # -- changing -----------------------------------------------------------------

    def apply(self, text: str, filename: str) -> Applied:
        """Validate text fully, store it as the next version, audit, then swap it in."""
        loaded = check_policy(text, filename, self.context())
        if loaded.policy is None:
            raise PolicyError(list(loaded.issues))
        with self._lock:
            stored = self._store(text, loaded.policy.source_sha256, filename, "apply", None)
        return Applied(stored, tuple(loaded.warnings))

    def rollback(self, version: int) -> Applied:
        """Make an earlier version active again, as a new version (history stays linear)."""
        old = self.store.get(version)
        if old is None:
            raise ConfigError(f"There is no policy version {version}; see 'rcf policy history'.")
        self.verify(old)
        loaded = check_policy(old.source, f"policy version {version}", self.context())
        if loaded.policy is None:
            raise PolicyError(list(loaded.issues))
        with self._lock:
            stored = self._store(old.source, old.source_sha256, old.filename, "rollback", version)
        return Applied(stored, tuple(loaded.warnings))

    def _store(
        self, text: str, digest: str, filename: str, action: str, based_on: int | None
    ) -> StoredVersion:
        stored = self.store.append(
            member_id=self.member_id,
            key=self._signer(),
            source=text,
            source_sha256=digest,
            filename=filename,
            action=action,
            based_on=based_on,
        )
        assert stored is not None
        self._record(stored)
        if self.gate is not None:
            self.gate.swap(self.compile(stored))
        log.info("policy_applied", version=stored.version, action=action, sha256=digest)
        return stored

    def _record(self, stored: StoredVersion) -> None:
        self._audit.append(
            local_event(
                self.member_id,
                action="PolicyChange",
                purpose="policy-admin",
                decision="applied",
                reason=stored.action
                + (f" of version {stored.based_on}" if stored.based_on else ""),
                subject_sha256=stored.source_sha256,
                query_id=f"policy-{self.member_id}-v{stored.version}",
            )
        )
