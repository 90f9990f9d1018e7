"""The responder as an adversary: it keeps every byte it receives during no-hit checks
and, holding its own OPRF key, evaluates every candidate of a small guess space that
contains the true identifiers. Nothing it received may match any candidate (issue 18).

The same detector, run on the round 2 message the earlier protocol sent (the asker's
finalised tokens), finds the person: the test would catch that protocol.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest

from rcf.node.identity.checks import split
from rcf.node.identity.filter import filter_value
from rcf.node.identity.requester import Subject, prepare, run_check, subject_keys
from rcf.protos.v1 import envelope_pb2, identity_pb2
from rcf.trust import oprf
from tests.identity_net import capture_wire, identity_network
from tests.network import Network

NO_HIT = identity_pb2.IDENTITY_OUTCOME_NO_HIT
NAME, DOB, NATIONALITY = "Kareem Abdelaziz Mahmoud", "1977-07-07", "IRQ"
ISSUER, NUMBER = "IRQ", "A7654321"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = identity_network(tmp_path_factory.mktemp("dishonest"))
    try:
        yield network
    finally:
        network.close()


def _guesses() -> Iterator[tuple[str, list[bytes]]]:
    """(dataset, OPRF inputs) of every candidate: all dates of birth in 1977 with the known
    name and nationality, and every number of the document's series A7654000..A7654999."""
    day = datetime.date(1977, 1, 1)
    while day.year == 1977:
        yield "persons", subject_keys(Subject(NAME, day.isoformat(), NATIONALITY), "persons")
        day += datetime.timedelta(days=1)
    for n in range(1000):
        number = f"A7654{n:03d}"
        yield "documents", subject_keys(Subject(documents=((ISSUER, number),)), "documents")


def _values(key: oprf.OprfKey) -> set[bytes]:
    """Everything the responder can derive from a guess: token, tag, filter value."""
    found: set[bytes] = set()
    for _, inputs in _guesses():
        for x in inputs:
            token = oprf.evaluate(key, x)
            found |= {token, token[:16], filter_value(token)}
    return found


def _matches(received: list[bytes], values: set[bytes]) -> set[bytes]:
    sizes = {len(v) for v in values}
    hits: set[bytes] = set()
    for data in received:
        for size in sizes:
            # Every window: a value hidden anywhere in a message is found.
            hits |= {data[i : i + size] for i in range(len(data) - size + 1)} & values
    return hits


def test_a_dishonest_responder_learns_nothing_from_no_hit_checks(
    net: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    persons = [Subject(NAME, DOB, NATIONALITY)]
    documents = [Subject(documents=((ISSUER, NUMBER),))]
    asker = net.nodes["AU"].peers
    asker.close()  # channels opened from now on are captured
    with capture_wire(monkeypatch) as wire:
        for dataset, subjects in (("persons", persons), ("documents", documents)):
            (result,) = run_check(asker, prepare(subjects, dataset), ["TH"],
                                  purpose="border-control")  # fmt: skip
            assert not result.error and result.outcomes == [NO_HIT]
    # What TH received: every request envelope addressed to it (the answers are its own).
    received = []
    for raw in wire.messages:
        envelope = envelope_pb2.Envelope.FromString(raw)
        if envelope.payload_type.endswith("Request"):
            received.append(raw)
            assert envelope.payload_type != "rcf.v1.IdentityLookupRequest"  # no round 2
    assert len(received) == 4  # a filter fetch and a round 1 per dataset
    values = _values(net.nodes["TH"].identity.key)
    assert len(values) > 3 * 1365  # every date of 1977 and every number in the series
    assert _matches(received, values) == set()


def test_the_detector_finds_the_person_in_the_earlier_round_2(net: Network) -> None:
    """Round 2 as it used to be: the asker's finalised tokens, sent for every person."""
    key = net.nodes["TH"].identity.key
    prepared = prepare([Subject(NAME, DOB, NATIONALITY)], "persons")
    evaluated = [oprf.blind_evaluate(key, e) for e in split(prepared.blinded, 32)]
    tokens = [
        oprf.finalize_with_inverse(x, inverse, e)
        for x, inverse, e in zip(prepared.inputs, prepared.inverses, evaluated, strict=True)
    ]
    old_round2 = identity_pb2.IdentityLookupRequest(
        check_id="00000000-0000-4000-8000-000000000000", dataset="persons",
        key_counts=prepared.counts, tokens=b"".join(tokens),
    ).SerializeToString()  # fmt: skip
    found = _matches([old_round2], _values(key))
    assert found and set(tokens) <= found  # every token is a candidate's: DOB recovered


def test_the_guess_space_holds_the_truth() -> None:
    truth = subject_keys(Subject(NAME, DOB, NATIONALITY), "persons")
    document = subject_keys(Subject(documents=((ISSUER, NUMBER),)), "documents")
    candidates = [inputs for _, inputs in _guesses()]
    assert truth in candidates and document in candidates
