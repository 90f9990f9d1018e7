"""Identity and document checks end to end over real nodes: outcomes, exclusions,
references, no plaintext anywhere, nothing kept of a no hit, and every bad input."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from rcf.node.federation.protocol import Authorized
from rcf.node.identity.checks import IDENTITY_EVALUATE, MAX_CHECK_PERSONS, split
from rcf.node.identity.keys import PersonRecord, Role, person_keys
from rcf.node.identity.requester import (
    CheckInputError,
    ResponderResult,
    Subject,
    prepare,
    run_check,
)
from rcf.node.identity.responder import read_hits
from rcf.node.ops.assembly import read_only
from rcf.protos.v1 import identity_pb2
from rcf.trust import oprf
from tests.identity_net import capture_wire, header, identity_network, send
from tests.network import Network, reason_of

HIT = identity_pb2.IDENTITY_OUTCOME_HIT
POSSIBLE = identity_pb2.IDENTITY_OUTCOME_POSSIBLE_HIT
NO_HIT = identity_pb2.IDENTITY_OUTCOME_NO_HIT


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = identity_network(tmp_path_factory.mktemp("identity"))
    try:
        yield network
    finally:
        network.close()


def check(net: Network, subjects: list[Subject], *, to: tuple[str, ...] = ("TH", "ID"),
          dataset: str = "persons", asker: str = "AU") -> dict[str, ResponderResult]:  # fmt: skip
    results = run_check(
        net.nodes[asker].peers, prepare(subjects, dataset), list(to), purpose="border-control"
    )
    return {r.responder: r for r in results}


def one(net: Network, subject: Subject, responder: str = "TH") -> ResponderResult:
    result = check(net, [subject], to=(responder,))[responder]
    assert not result.error, result.error
    return result


# -- what matches and what does not ------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Mohammed Khan", "Muhammad KHAN", "Mohamad Khan", "KHAN, Mohamed"]
)
def test_name_variants_hit_across_nodes(net: Network, name: str) -> None:
    results = check(net, [Subject(name, "1985-03-14", "AFG")])
    assert results["TH"].outcomes == [HIT]
    assert results["ID"].outcomes == [HIT]


def test_mohammed_is_not_mahmoud(net: Network) -> None:
    results = check(net, [Subject("Mahmoud Khan", "1985-03-14", "IRN")])
    assert results["TH"].outcomes == [NO_HIT]
    assert results["ID"].outcomes == [NO_HIT]


@pytest.mark.parametrize("name", ["Aung San Suu Kyi", "Suu Kyi Aung San", "AungSanSuuKyi"])
def test_any_token_order(net: Network, name: str) -> None:
    assert one(net, Subject(name, "1945-06-19", "MMR")).outcomes == [HIT]


def test_burmese_script_finds_the_latin_record(net: Network) -> None:
    assert one(net, Subject("ကျော်မင်း", "1990-05-12", "MMR")).outcomes == [HIT]


def test_partial_date_gives_only_a_possible_hit(net: Network) -> None:
    # TH knows only the birth year of Omar Hassan.
    result = one(net, Subject("HASSAN, Omar", "1990-05-12", "SYR"))
    assert result.outcomes == [POSSIBLE]
    assert result.references == [""]  # a reference only for a hit
    assert result.contact is not None and result.contact.agency.startswith("Royal Thai")


def test_hit_answers_a_reference_and_the_ncp(net: Network) -> None:
    result = one(net, Subject("Mohammed Khan", "1985-03-14", "AFG"))
    assert result.outcomes == [HIT]
    assert len(result.references[0]) == 32
    assert result.contact is not None and result.contact.phone == "+66 2 287 3101"
    notices = read_hits(net.nodes["TH"].state)
    assert any(
        n.record_id == "TH-P-1" and n.reference == result.references[0] and n.requester == "AU"
        for n in notices
    )


def test_hit_only_policy_gives_no_reference(net: Network) -> None:
    result = one(net, Subject("Mohammed Khan", "1985-03-14", "AFG"), "ID")
    assert result.outcomes == [HIT]
    assert result.references == [""]  # ID's rule says hit_only
    assert result.contact is not None  # whom to call comes all the same (if ID lists an NCP)


def test_policy_exclusions_answer_no_hit(net: Network) -> None:
    # A trafficking victim is never a hit; nor is a Thai national at the Thai node.
    assert one(net, Subject("RAHMAN, Nur", "1999-01-02", "BGD")).outcomes == [NO_HIT]
    assert one(net, Subject("SUWANARAT, Vichai", "1968-10-23", "THA")).outcomes == [NO_HIT]


def test_document_check_and_person_document(net: Network) -> None:
    docs = check(net, [Subject(documents=(("IDN", "C1234567"),))], to=("TH",), dataset="documents")
    assert docs["TH"].outcomes == [HIT]
    other = check(net, [Subject(documents=(("IDN", "C7654321"),))], to=("TH",),
                  dataset="documents")  # fmt: skip
    assert other["TH"].outcomes == [NO_HIT]
    # A person check with the passport only (another name): the document key hits.
    person = one(net, Subject("Someone Else", "1970-01-01", "AFG", (("AFG", "P1234567"),)))
    assert person.outcomes == [HIT]


def test_batch_keeps_order_and_spans_chunks(net: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    subjects = [Subject(f"Person Number{'x' * (i % 5)} Test", "1980-01-01", "AFG")
                for i in range(40)]  # fmt: skip
    subjects[7] = Subject("Mohammed Khan", "1985-03-14", "AFG")
    subjects[33] = Subject("HASSAN, Omar", "1990-05-12", "SYR")
    # Small chunks, so that one check spans several round trips.
    monkeypatch.setattr("rcf.node.identity.requester.MAX_CHUNK_PERSONS", 6)
    prepared = prepare(subjects, "persons")
    assert len(prepared.chunks) == 7
    (result,) = run_check(net.nodes["AU"].peers, prepared, ["TH"], purpose="border-control")
    expected = [NO_HIT] * 40
    expected[7], expected[33] = HIT, POSSIBLE
    assert result.outcomes == expected
    assert len(net.nodes["TH"].identity.checks) == 0  # forgotten after its last chunk


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "rule"),
    [
        (Subject("", "1985-03-14"), "empty_name"),
        (Subject("   ", "1985-03-14"), "empty_name"),
        (Subject("R2-D2", "1985-03-14"), "name_has_digits"),
        (Subject("Ali \U0001f600", "1985-03-14"), "name_bad_characters"),
        (Subject("..., --", "1985-03-14"), "name_empty"),
        (Subject("x" * 300, "1985-03-14"), "name_too_long"),
        (Subject("Mohammed Khan", "1985-02-30"), "bad_date"),
        (Subject("Mohammed Khan", "3024-01-01"), "date_out_of_range"),
        (Subject("Mohammed Khan", ""), "missing_date_of_birth"),
        (Subject("Mohammed Khan", "1985-03-14", "A1"), "bad_state_code"),
    ],
)
def test_bad_subjects_are_refused_without_their_value(subject: Subject, rule: str) -> None:
    with pytest.raises(CheckInputError) as err:
        prepare([subject], "persons")
    assert err.value.reason == rule
    for value in (subject.name, subject.date_of_birth, subject.nationality):
        if value.strip():
            assert value not in str(err.value)


def test_document_check_needs_a_valid_number() -> None:
    with pytest.raises(CheckInputError):
        prepare([Subject(documents=(("IDN", "C12#4567"),))], "documents")
    with pytest.raises(CheckInputError):
        prepare([Subject("Somebody", "1980")], "documents")


def test_manifest_over_the_protocol_cap_is_refused_before_any_work() -> None:
    subjects = [Subject("A Person", "1980")] * (MAX_CHECK_PERSONS + 1)
    with pytest.raises(CheckInputError) as err:
        prepare(subjects, "persons")
    assert err.value.reason == "batch_too_large"


def _evaluate_request(client_member: str, responder: str, client: object, **fields: object
                      ) -> identity_pb2.IdentityEvaluateRequest:  # fmt: skip
    request = identity_pb2.IdentityEvaluateRequest(
        header=header(client, responder),  # type: ignore[arg-type]
        check_id=str(uuid.uuid4()),
        dataset="persons",
        total_persons=1,
        chunk=0,
        key_counts=[1],
        blinded_elements=oprf.blind(b"some key").blinded_element,
    )
    for k, v in fields.items():
        if k == "key_counts":
            del request.key_counts[:]
            request.key_counts.extend(v)  # type: ignore[arg-type]
        else:
            setattr(request, k, v)
    return request


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"total_persons": MAX_CHECK_PERSONS + 1}, "batch_too_large"),
        ({"total_persons": 51, "key_counts": [1]}, "not_permitted"),  # policy max_batch 50
        ({"blinded_elements": bytes(32)}, "invalid_element"),  # the identity
        ({"blinded_elements": b"\xff" * 32}, "invalid_element"),  # not an element
        ({"blinded_elements": oprf.blind(b"k").blinded_element[:31] + b"\x80"}, "invalid_element"),
        ({"blinded_elements": b"\x01" * 31}, "invalid_field"),
        ({"key_counts": [65]}, "invalid_field"),
        ({"check_id": "not-a-uuid"}, "invalid_field"),
        ({"dataset": "irregular_movements"}, "invalid_field"),
        ({"chunk": 1}, "unknown_check"),
    ],
)
def test_round1_refusals(net: Network, fields: dict[str, object], reason: str) -> None:
    client = net.client("NZ")
    try:
        with pytest.raises(grpc.RpcError) as err:
            send(client, net, "TH", _evaluate_request("NZ", "TH", client, **fields),
                 "IdentityEvaluate")  # fmt: skip
        assert reason_of(err.value) == reason
    finally:
        client.close()


def _round1(net: Network, asker: str, responder: str, inputs: list[bytes]
            ) -> tuple[str, list[bytes]]:  # fmt: skip
    """A real round 1 through asker's PeerClient; returns the check id and the tokens."""
    blinds = [oprf.blind(x) for x in inputs]
    check_id = str(uuid.uuid4())

    def fill(r: identity_pb2.IdentityEvaluateRequest) -> None:
        r.check_id, r.dataset, r.total_persons, r.chunk = check_id, "persons", 1, 0
        r.key_counts.append(len(inputs))
        r.blinded_elements = b"".join(b.blinded_element for b in blinds)

    answer = net.nodes[asker].peers.call(
        IDENTITY_EVALUATE, responder=responder, purpose="border-control", fill=fill, timeout_s=10
    )
    evaluated = split(answer.response.evaluated_elements, 32)
    tokens = oprf.finalize_batch(inputs, blinds, evaluated)
    return check_id, tokens


def _lookup(client: object, responder: str, check_id: str, tokens: list[bytes]
            ) -> identity_pb2.IdentityLookupRequest:  # fmt: skip
    return identity_pb2.IdentityLookupRequest(
        header=header(client, responder),  # type: ignore[arg-type]
        check_id=check_id, dataset="persons", chunk=0, key_counts=[len(tokens)],
        tokens=b"".join(tokens),
    )  # fmt: skip


def _khan_keys() -> list[bytes]:
    record = PersonRecord("q", ("Mohammed Khan",), "1985-03-14", "AFG")
    return [k.data for k in person_keys(record, role=Role.QUERY)]


def test_round2_for_unknown_check_and_replay_from_another_requester(net: Network) -> None:
    check_id, tokens = _round1(net, "AU", "TH", _khan_keys())
    nz = net.client("NZ")
    au = net.client("AU")
    try:
        # NZ replays AU's tokens under AU's check id: for NZ there is no such check.
        with pytest.raises(grpc.RpcError) as err:
            send(nz, net, "TH", _lookup(nz, "TH", check_id, tokens), "IdentityLookup")
        assert reason_of(err.value) == "unknown_check"
        with pytest.raises(grpc.RpcError) as err:
            send(au, net, "TH", _lookup(au, "TH", str(uuid.uuid4()), tokens), "IdentityLookup")
        assert reason_of(err.value) == "unknown_check"
        # Counts must be round 1's.
        with pytest.raises(grpc.RpcError) as err:
            send(au, net, "TH", _lookup(au, "TH", check_id, tokens[:-1]), "IdentityLookup")
        assert reason_of(err.value) == "key_counts_mismatch"
        # AU's own lookup works once, then the check is gone.
        answer = send(au, net, "TH", _lookup(au, "TH", check_id, tokens), "IdentityLookup")
        assert list(answer.outcomes) == [HIT]
        with pytest.raises(grpc.RpcError) as err:
            send(au, net, "TH", _lookup(au, "TH", check_id, tokens), "IdentityLookup")
        assert reason_of(err.value) == "unknown_check"
    finally:
        nz.close()
        au.close()


def test_malformed_round2_is_refused(net: Network) -> None:
    check_id, tokens = _round1(net, "AU", "TH", _khan_keys())
    au = net.client("AU")
    try:
        bad = _lookup(au, "TH", check_id, tokens)
        bad.tokens = bad.tokens[:-1]
        with pytest.raises(grpc.RpcError) as err:
            send(au, net, "TH", bad, "IdentityLookup")
        assert reason_of(err.value) == "invalid_field"
    finally:
        au.close()


def test_round2_after_expiry_is_refused(tmp_path: Path) -> None:
    net = identity_network(tmp_path, identity_check_ttl_s=0.3)
    try:
        check_id, tokens = _round1(net, "AU", "TH", _khan_keys())
        time.sleep(0.5)
        au = net.client("AU")
        with pytest.raises(grpc.RpcError) as err:
            send(au, net, "TH", _lookup(au, "TH", check_id, tokens), "IdentityLookup")
        assert reason_of(err.value) == "unknown_check"
        au.close()
        assert len(net.nodes["TH"].identity.checks) == 0
    finally:
        net.close()


def test_requester_refuses_identity_elements_from_a_responder(tmp_path: Path) -> None:
    net = identity_network(tmp_path)
    try:

        def evil(a: Authorized[identity_pb2.IdentityEvaluateRequest]
                 ) -> identity_pb2.IdentityEvaluateResponse:  # fmt: skip
            n = len(a.request.blinded_elements) // 32
            return identity_pb2.IdentityEvaluateResponse(
                check_id=a.request.check_id, chunk=a.request.chunk, evaluated_elements=bytes(32 * n)
            )

        from dataclasses import replace

        from rcf.node.federation.binding import NodeServices, Served
        from rcf.node.federation.registry import QUERY_TYPES
        from rcf.node.identity.registration import QUERY_TYPE as IDENTITY

        def bind_evil(services: NodeServices) -> Served[Any]:
            served = IDENTITY.bind(services)
            return replace(served, specs=tuple(
                replace(s, answer=evil) if s.name == "IdentityEvaluate" else s
                for s in served.specs
            ))  # fmt: skip

        types = tuple(replace(t, bind=bind_evil) if t is IDENTITY else t for t in QUERY_TYPES)
        net.stop_node("TH")
        net.start_node("TH", query_types=types)
        net.refresh_all()
        result = one_failed(net)
        assert result.error_reason == "bad_answer"
    finally:
        net.close()


def one_failed(net: Network) -> ResponderResult:
    (result,) = run_check(
        net.nodes["AU"].peers,
        prepare([Subject("Mohammed Khan", "1985-03-14", "AFG")], "persons"),
        ["TH"],
        purpose="border-control",
    )
    assert result.error
    return result


# -- no plaintext anywhere; nothing kept of a no hit --------------------------------------------


NO_HIT_SUBJECT = Subject("Kareem Abdelaziz Mahmoud", "1977-07-07", "IRQ", (("IRQ", "A7654321"),))
HIT_SUBJECT = Subject("Mohamad Khan", "1985-03-14", "AFG", (("AFG", "P1234567"),))


def _needles(subject: Subject) -> list[bytes]:
    values = [subject.name, subject.date_of_birth, *(n for _, n in subject.documents)]
    values += [w for w in subject.name.replace(",", " ").split() if len(w) >= 4]
    values += [subject.date_of_birth.replace("-", ""), subject.date_of_birth[2:].replace("-", "")]
    return sorted({v.lower().encode() for v in values if v})


def _files(root: Path) -> Iterator[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            yield Path(folder) / name


def _occurrences(root: Path, needles: list[bytes], *, skip: Path | None = None
                 ) -> dict[tuple[str, bytes], int]:  # fmt: skip
    found: dict[tuple[str, bytes], int] = {}
    for path in _files(root):
        if skip is not None and path.is_relative_to(skip):
            continue
        try:
            data = path.read_bytes().lower()
        except OSError:
            continue
        for needle in needles:
            if needle in data:
                found[(str(path.relative_to(root)), needle)] = data.count(needle)
    return found


def test_no_plaintext_anywhere_and_nothing_kept_of_a_no_hit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    net = identity_network(tmp_path)
    try:
        secret = _needles(NO_HIT_SUBJECT)
        held = _needles(HIT_SUBJECT)
        before = _occurrences(tmp_path, held, skip=tmp_path / "AU")
        hits_before = len(read_hits(net.nodes["TH"].state))
        with capture_wire(monkeypatch) as wire:
            results = check(net, [NO_HIT_SUBJECT, HIT_SUBJECT])
            docs = check(net, [NO_HIT_SUBJECT], to=("TH",), dataset="documents")
        assert results["TH"].outcomes == [NO_HIT, HIT]
        assert results["ID"].outcomes == [NO_HIT, HIT]
        assert docs["TH"].outcomes == [NO_HIT]
        assert len(wire.messages) >= 12  # both rounds, both responders, requests and answers
        # Flush everything the nodes write, then look everywhere.
        for node in net.nodes.values():
            node.state.flush()
        logs = (capfd.readouterr().out + capfd.readouterr().err).lower().encode()
        audit = b""
        for member in ("AU", "TH", "ID", "NZ"):
            with read_only(net.layout(member)) as core:
                audit += repr(core.audit.records()).lower().encode()
        for needle in secret + held:
            assert needle not in wire.text().lower(), needle
            assert needle not in logs, needle
            assert needle not in audit, needle
        # The subject nobody holds is nowhere at all, the asking node's folder included.
        assert _occurrences(tmp_path, secret) == {}
        # The held subject: no file outside the asking node gained an occurrence.
        after = _occurrences(tmp_path, held, skip=tmp_path / "AU")
        assert {k: v for k, v in after.items() if v > before.get(k, 0)} == {}
        # Nothing of the no hit at the responder: no open check, no new notice but the
        # hit's, and no token or blinded element of the query in any of its files.
        th = net.nodes["TH"]
        assert len(th.identity.checks) == 0
        notices = read_hits(th.state)
        assert len(notices) == hits_before + 1 and notices[0].record_id == "TH-P-1"
        th_bytes = b"".join(p.read_bytes() for p in _files(tmp_path / "TH"))
        lookups = [m for m in wire.messages if b"rcf.v1.IdentityLookupRequest" in m]
        assert lookups
        for raw in lookups:
            from rcf.protos.v1 import envelope_pb2

            request = identity_pb2.IdentityLookupRequest.FromString(
                envelope_pb2.Envelope.FromString(raw).payload
            )
            if request.header.responder != "TH" or request.dataset != "persons":
                continue
            first = next(iter(request.key_counts))  # the no-hit subject's tokens come first
            for token in split(request.tokens, 64)[:first]:
                assert token[:16] not in th_bytes
    finally:
        net.close()
