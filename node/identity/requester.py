"""The asking node's side of identity checks: keys, blinding, both rounds, outcomes.

The subjects (names, dates, document numbers) never leave this module in clear:
they become match keys, each key is blinded once (``trust.oprf.blind``) and the
same blinded element goes to every responder (a fresh random blind per key,
so responders see unrelated random elements); each responder's evaluations are
finalised with the blind's inverse into tokens, and only tokens go back.

A check is cut into chunks of whole persons, at most ``MAX_CHUNK_KEYS`` keys and
``MAX_CHUNK_PERSONS`` persons each; each chunk is one round 1 and one round 2
call, all under one check id per responder. Responders are asked in parallel.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rcf.node.federation.peers import PeerClient
from rcf.node.identity.checks import (
    DATASETS,
    IDENTITY_EVALUATE,
    IDENTITY_LOOKUP,
    MAX_CHECK_PERSONS,
    MAX_CHUNK_KEYS,
    MAX_CHUNK_PERSONS,
    MAX_KEYS_PER_PERSON,
    split,
)
from rcf.node.identity.errors import InvalidIdentifier
from rcf.node.identity.keys import PersonRecord, Role, document_key, person_keys
from rcf.node.identity.normalize import normalize_name
from rcf.protos.v1 import identity_pb2
from rcf.trust.errors import PeerError, RcfError
from rcf.trust.oprf import (
    ELEMENT_BYTES,
    InvalidElement,
    blind,
    blind_inverse,
    finalize_with_inverse,
)

MAX_DOCUMENTS = 8


class CheckInputError(RcfError):
    """A subject cannot be checked: names the subject's position and the rule, never a value."""

    default_reason = "invalid_subject"
    default_status = "INVALID_ARGUMENT"


@dataclass(frozen=True)
class Subject:
    """One person or document to check, as the officer typed it."""

    name: str = ""
    date_of_birth: str = ""
    nationality: str = ""
    documents: tuple[tuple[str, str], ...] = ()  # (issuing state, number)

    def __repr__(self) -> str:
        return "Subject(…)"


def subject_keys(subject: Subject, dataset: str) -> list[bytes]:
    """The OPRF inputs of one subject (raise InvalidIdentifier on unusable input)."""
    if len(subject.documents) > MAX_DOCUMENTS:
        raise InvalidIdentifier(
            "documents", "too_many_documents", f"At most {MAX_DOCUMENTS} documents per person."
        )
    if dataset == "documents":
        if not subject.documents:
            raise InvalidIdentifier(
                "document_number", "missing_document", "A document check needs a number and issuer."
            )
        return list(dict.fromkeys(document_key(s, n).data for s, n in subject.documents))
    if not subject.name.strip():
        raise InvalidIdentifier("name", "empty_name", "A person check needs a name.")
    record = PersonRecord(
        "query",
        (subject.name,),
        subject.date_of_birth.strip() or None,
        subject.nationality.strip() or None,
        subject.documents,
    )
    normalize_name(subject.name)  # a bad name is an error here, not skipped as in records
    keys = person_keys(record, role=Role.QUERY)
    if not keys:
        raise InvalidIdentifier(
            "date_of_birth", "missing_date_of_birth",
            "A person check needs a date of birth (YYYY, YYYY-MM or YYYY-MM-DD) or a document.",
        )  # fmt: skip
    data = [k.data for k in keys]
    return data[:MAX_KEYS_PER_PERSON]


@dataclass
class PreparedCheck:
    """Blinded keys of every subject, ready to send to any number of responders."""

    dataset: str
    counts: list[int]
    inputs: list[bytes]
    blinded: bytes  # every blinded element, concatenated
    inverses: list[bytes]
    chunks: list[tuple[int, int, int, int]] = field(default_factory=list)  # persons, keys

    @property
    def persons(self) -> int:
        return len(self.counts)

    def __repr__(self) -> str:
        return f"PreparedCheck({self.dataset}, {self.persons} persons)"


def prepare(subjects: Sequence[Subject], dataset: str) -> PreparedCheck:
    """Keys and blinds for every subject; CheckInputError names the first bad one."""
    if dataset not in DATASETS:
        raise CheckInputError(f"Unknown dataset {dataset!r}; choose persons or documents.")
    if not subjects:
        raise CheckInputError("Nothing to check.")
    if len(subjects) > MAX_CHECK_PERSONS:
        raise CheckInputError(
            f"{len(subjects):,} persons are more than one check takes ({MAX_CHECK_PERSONS:,}); "
            "split the manifest.",
            reason="batch_too_large",
        )
    counts: list[int] = []
    inputs: list[bytes] = []
    for position, subject in enumerate(subjects, start=1):
        try:
            keys = subject_keys(subject, dataset)
        except InvalidIdentifier as exc:
            where = f"Person {position}: " if len(subjects) > 1 else ""
            raise CheckInputError(f"{where}{exc}", reason=exc.rule) from None
        counts.append(len(keys))
        inputs += keys
    blinds = [blind(x) for x in inputs]
    prepared = PreparedCheck(
        dataset=dataset,
        counts=counts,
        inputs=inputs,
        blinded=b"".join(b.blinded_element for b in blinds),
        inverses=[blind_inverse(b) for b in blinds],
    )
    person = key = 0
    while person < len(counts):
        p0, k0 = person, key
        while (
            person < len(counts)
            and person - p0 < MAX_CHUNK_PERSONS
            and key - k0 + counts[person] <= MAX_CHUNK_KEYS
        ):
            key += counts[person]
            person += 1
        prepared.chunks.append((p0, person, k0, key))
    return prepared


@dataclass(frozen=True)
class ResponderResult:
    responder: str
    check_id: str
    outcomes: list[identity_pb2.IdentityOutcome.ValueType]
    references: list[str]
    contact: identity_pb2.IdentityContact | None
    error: str = ""
    error_reason: str = ""
    seconds: float = 0.0


Progress = Callable[[str, int, int], None]  # responder, persons done, persons total


def check_responder(
    peers: PeerClient,
    prepared: PreparedCheck,
    responder: str,
    *,
    purpose: str,
    timeout_s: float,
    progress: Progress | None = None,
) -> ResponderResult:
    """Run the whole check against one responder; errors become a failed result."""
    started = time.perf_counter()
    check_id = str(uuid.uuid4())
    outcomes: list[identity_pb2.IdentityOutcome.ValueType] = []
    references: list[str] = []
    contact: identity_pb2.IdentityContact | None = None
    try:
        for index, (p0, p1, k0, k1) in enumerate(prepared.chunks):
            counts = prepared.counts[p0:p1]
            elements = prepared.blinded[k0 * ELEMENT_BYTES : k1 * ELEMENT_BYTES]

            def fill_evaluate(
                r: identity_pb2.IdentityEvaluateRequest,
                index: int = index,
                counts: list[int] = counts,
                elements: bytes = elements,
            ) -> None:
                r.check_id = check_id
                r.dataset = prepared.dataset
                r.total_persons = prepared.persons
                r.chunk = index
                r.key_counts.extend(counts)
                r.blinded_elements = elements

            first = peers.call(
                IDENTITY_EVALUATE, responder=responder, purpose=purpose,
                fill=fill_evaluate, timeout_s=timeout_s,
            )  # fmt: skip
            answer = first.response
            if (
                answer.check_id != check_id
                or answer.chunk != index
                or len(answer.evaluated_elements) != len(elements)
            ):
                raise PeerError(
                    f"{responder}'s round 1 answer does not fit the request.", reason="bad_answer"
                )
            try:
                tokens = b"".join(
                    finalize_with_inverse(prepared.inputs[k], prepared.inverses[k], e)
                    for k, e in zip(
                        range(k0, k1), split(answer.evaluated_elements, ELEMENT_BYTES), strict=True
                    )
                )
            except InvalidElement as exc:
                raise PeerError(
                    f"{responder} answered an invalid or identity element.", reason="bad_answer"
                ) from exc

            def fill_lookup(
                r: identity_pb2.IdentityLookupRequest,
                index: int = index,
                counts: list[int] = counts,
                tokens: bytes = tokens,
            ) -> None:
                r.check_id = check_id
                r.dataset = prepared.dataset
                r.chunk = index
                r.key_counts.extend(counts)
                r.tokens = tokens

            second = peers.call(
                IDENTITY_LOOKUP, responder=responder, purpose=purpose,
                fill=fill_lookup, timeout_s=timeout_s,
            )  # fmt: skip
            result = second.response
            n = p1 - p0
            if (
                result.check_id != check_id
                or result.chunk != index
                or len(result.outcomes) != n
                or len(result.references) != n
                or any(o not in OUTCOMES for o in result.outcomes)
            ):
                raise PeerError(
                    f"{responder}'s round 2 answer does not fit the request.", reason="bad_answer"
                )
            outcomes += list(result.outcomes)
            references += list(result.references)
            if result.HasField("contact"):
                contact = result.contact
            if progress is not None:
                progress(responder, p1, prepared.persons)
    except RcfError as exc:
        return ResponderResult(
            responder, check_id, [], [], None, str(exc), exc.reason,
            time.perf_counter() - started,
        )  # fmt: skip
    return ResponderResult(
        responder, check_id, outcomes, references, contact, seconds=time.perf_counter() - started
    )


OUTCOMES = (
    identity_pb2.IDENTITY_OUTCOME_NO_HIT,
    identity_pb2.IDENTITY_OUTCOME_POSSIBLE_HIT,
    identity_pb2.IDENTITY_OUTCOME_HIT,
)


def run_check(
    peers: PeerClient,
    prepared: PreparedCheck,
    responders: Sequence[str],
    *,
    purpose: str,
    timeout_s: float = 60.0,
    progress: Progress | None = None,
    on_result: Callable[[ResponderResult], None] | None = None,
) -> list[ResponderResult]:
    """The check against every responder, in parallel; results in responders' order."""
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(responders)))) as pool:
        futures = [
            pool.submit(
                check_responder,
                peers,
                prepared,
                r,
                purpose=purpose,
                timeout_s=timeout_s,
                progress=progress,
            )
            for r in responders
        ]
        results = []
        for f in futures:
            result = f.result()
            if on_result is not None:
                on_result(result)
            results.append(result)
    return results
