"""The asking node's side of identity checks: keys, blinding, both rounds, outcomes.

The subjects (names, dates, document numbers) never leave this module in clear:
they become match keys, each key is blinded once (``trust.oprf.blind``) and the
same blinded element goes to every responder (a fresh random blind per key,
so responders see unrelated random elements); each responder's evaluations are
finalised with the blind's inverse into tokens, which are matched here against
the responder's filter (``node.identity.filter``). Only the tokens found in the
filter go back, in round 2, for the hit level, reference and NCP: a no hit
sends nothing but blinded elements.

Round 1 is cut into chunks of whole persons, at most ``MAX_CHUNK_KEYS`` keys and
``MAX_CHUNK_PERSONS`` persons each, all under one check id per responder; round 2
is cut the same way. Responders are asked in parallel.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rcf.node.federation.peers import PeerClient
from rcf.node.identity.checks import (
    DATASETS,
    IDENTITY_EVALUATE,
    IDENTITY_FILTER,
    IDENTITY_LOOKUP,
    MAX_CHECK_PERSONS,
    MAX_CHUNK_KEYS,
    MAX_CHUNK_PERSONS,
    MAX_KEYS_PER_PERSON,
    split,
)
from rcf.node.identity.errors import InvalidIdentifier
from rcf.node.identity.filter import MAX_FILTER_VALUES, VALUE_BYTES, Filter, is_sorted_unique
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


class FilterCache:
    """The filters this node fetched, by (responder, dataset), each kept until it changes.

    In memory: a restart fetches them again (one round trip per responder, then
    "unchanged" answers by version).
    """

    def __init__(self) -> None:
        self._filters: dict[tuple[str, str], Filter] = {}
        self._lock = threading.Lock()

    def get(self, responder: str, dataset: str) -> Filter | None:
        with self._lock:
            return self._filters.get((responder, dataset))

    def put(self, held: Filter) -> None:
        with self._lock:
            self._filters[(held.responder, held.dataset)] = held


def fetch_filter(
    peers: PeerClient,
    responder: str,
    dataset: str,
    *,
    purpose: str,
    timeout_s: float,
    cache: FilterCache,
) -> Filter:
    """responder's current filter for dataset: the cached one if still current, else fetched."""
    held = cache.get(responder, dataset)
    version = held.version if held is not None else ""
    pages: list[bytes] = []
    page = 0
    count = 0
    key_id = ""
    while True:

        def fill(r: identity_pb2.IdentityFilterRequest, page: int = page, v: str = version) -> None:
            r.dataset = dataset
            r.version = v
            r.page = page

        answer = peers.call(
            IDENTITY_FILTER, responder=responder, purpose=purpose, fill=fill, timeout_s=timeout_s
        ).response
        if answer.dataset != dataset or answer.page != page:
            raise PeerError(f"{responder}'s filter does not fit the request.", reason="bad_answer")
        if page == 0 and answer.unchanged and held is not None and answer.version == held.version:
            return held
        if (
            answer.value_bytes != VALUE_BYTES
            or answer.count > MAX_FILTER_VALUES
            or not 1 <= answer.pages <= 1 << 20
            or answer.page >= answer.pages
            or (page > 0 and (answer.version != version or answer.count != count))
            or not is_sorted_unique(answer.values)
        ):
            raise PeerError(f"{responder}'s filter is malformed.", reason="bad_answer")
        if page == 0:
            version, count, key_id, total = (
                answer.version, int(answer.count), answer.oprf_key_id, answer.pages
            )  # fmt: skip
        pages.append(answer.values)
        page += 1
        if page == total:
            break
    values = b"".join(pages)
    if len(values) != count * VALUE_BYTES or not is_sorted_unique(values):
        raise PeerError(f"{responder}'s filter is malformed.", reason="bad_answer")
    fetched = Filter(responder, dataset, version, key_id, values)
    cache.put(fetched)
    return fetched


def check_responder(
    peers: PeerClient,
    prepared: PreparedCheck,
    responder: str,
    *,
    purpose: str,
    timeout_s: float,
    progress: Progress | None = None,
    filters: FilterCache | None = None,
) -> ResponderResult:
    """Run the whole check against one responder; errors become a failed result.

    Round 1 for every chunk, then a local match against the responder's filter,
    then round 2 only for the persons with a token in it: a no hit sends the
    responder no finalised token.
    """
    started = time.perf_counter()
    check_id = str(uuid.uuid4())
    cache = filters if filters is not None else FilterCache()
    n = prepared.persons
    outcomes: list[identity_pb2.IdentityOutcome.ValueType] = [NO_HIT] * n
    references: list[str] = [""] * n
    contact: identity_pb2.IdentityContact | None = None
    try:
        # A cached filter is checked against round 1's filter_version: no extra call.
        held = cache.get(responder, prepared.dataset)
        if held is None:
            held = fetch_filter(peers, responder, prepared.dataset, purpose=purpose,
                                timeout_s=timeout_s, cache=cache)  # fmt: skip
        current = ""
        tokens: list[bytes] = []
        key_id = ""
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

            answer = peers.call(
                IDENTITY_EVALUATE, responder=responder, purpose=purpose,
                fill=fill_evaluate, timeout_s=timeout_s,
            ).response  # fmt: skip
            if (
                answer.check_id != check_id
                or answer.chunk != index
                or len(answer.evaluated_elements) != len(elements)
                or (key_id and answer.oprf_key_id != key_id)
            ):
                raise PeerError(
                    f"{responder}'s round 1 answer does not fit the request.", reason="bad_answer"
                )
            key_id = answer.oprf_key_id
            current = answer.filter_version
            try:
                tokens += [
                    finalize_with_inverse(prepared.inputs[k], prepared.inverses[k], e)
                    for k, e in zip(
                        range(k0, k1), split(answer.evaluated_elements, ELEMENT_BYTES), strict=True
                    )
                ]
            except InvalidElement as exc:
                raise PeerError(
                    f"{responder} answered an invalid or identity element.", reason="bad_answer"
                ) from exc
            if progress is not None:
                progress(responder, p1, n)
        if held.key_id != key_id or held.version != current:
            # Changed since it was fetched (import, purge, rotation, policy): fetch it again.
            held = fetch_filter(peers, responder, prepared.dataset, purpose=purpose,
                                timeout_s=timeout_s, cache=cache)  # fmt: skip
            if held.key_id != key_id:
                raise PeerError(
                    f"{responder}'s OPRF key changed during the check; check again.",
                    reason="key_rotated",
                )
        in_filter = held.matches(tokens)
        wanted: list[tuple[int, list[bytes]]] = []
        position = 0
        for person, count in enumerate(prepared.counts):
            mine = [t for t, hit in zip(tokens[position : position + count],
                                        in_filter[position : position + count],
                                        strict=True) if hit]  # fmt: skip
            position += count
            if mine:
                wanted.append((person, mine))
        for part in _lookup_chunks(wanted):

            def fill_lookup(
                r: identity_pb2.IdentityLookupRequest,
                part: list[tuple[int, list[bytes]]] = part,
            ) -> None:
                r.check_id = check_id
                r.dataset = prepared.dataset
                r.persons.extend(p for p, _ in part)
                r.key_counts.extend(len(t) for _, t in part)
                r.tokens = b"".join(b"".join(t) for _, t in part)

            result = peers.call(
                IDENTITY_LOOKUP, responder=responder, purpose=purpose,
                fill=fill_lookup, timeout_s=timeout_s,
            ).response  # fmt: skip
            if (
                result.check_id != check_id
                or len(result.outcomes) != len(part)
                or len(result.references) != len(part)
                or any(o not in OUTCOMES for o in result.outcomes)
            ):
                raise PeerError(
                    f"{responder}'s round 2 answer does not fit the request.", reason="bad_answer"
                )
            for (person, _), outcome, reference in zip(
                part, result.outcomes, result.references, strict=True
            ):
                outcomes[person] = outcome
                references[person] = reference
            if result.HasField("contact"):
                contact = result.contact
    except RcfError as exc:
        return ResponderResult(
            responder, check_id, [], [], None, str(exc), exc.reason,
            time.perf_counter() - started,
        )  # fmt: skip
    return ResponderResult(
        responder, check_id, outcomes, references, contact, seconds=time.perf_counter() - started
    )


def _lookup_chunks(
    wanted: list[tuple[int, list[bytes]]],
) -> Iterator[list[tuple[int, list[bytes]]]]:
    """Round 2 requests within the chunk bounds (persons and keys per message)."""
    part: list[tuple[int, list[bytes]]] = []
    keys = 0
    for person, tokens in wanted:
        if part and (len(part) == MAX_CHUNK_PERSONS or keys + len(tokens) > MAX_CHUNK_KEYS):
            yield part
            part, keys = [], 0
        part.append((person, tokens))
        keys += len(tokens)
    if part:
        yield part


NO_HIT = identity_pb2.IDENTITY_OUTCOME_NO_HIT
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
    filters: FilterCache | None = None,
) -> list[ResponderResult]:
    """The check against every responder, in parallel; results in responders' order.

    ``filters`` keeps responders' filters between checks (a node holds one).
    """
    cache = filters if filters is not None else FilterCache()
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
                filters=cache,
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
