"""A small identity-check network for tests: AU asks, TH and ID answer, NZ is another
requester; hand-made persons and documents at TH and ID, policies, NCPs, and capture of
every federation message on the wire."""

from __future__ import annotations

import csv
import secrets
import textwrap
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from rcf.node.data.dictionary import load_dictionary
from rcf.node.data.importer import import_file
from rcf.node.data.store import DataStore
from rcf.protos.v1 import envelope_pb2, identity_pb2
from rcf.trust.clock import now_ms
from rcf.trust.directory import Ncp
from rcf.trust.dsse import sign_envelope
from rcf.trust.tls import secure_channel
from tests.network import Network, RawClient

PERSON_COLUMNS = (
    "record_id", "name_original", "name_latin", "aliases", "date_of_birth", "sex",
    "nationality", "document_numbers", "category", "local_reference", "recorded_on",
)  # fmt: skip
DOCUMENT_COLUMNS = (
    "record_id", "issuing_state", "document_type", "document_number", "status", "date_reported"
)  # fmt: skip

TH_PERSONS = [
    ("TH-P-1", "", "KHAN, Mohammed", "", "1985-03-14", "M", "AFG", "AFG:P1234567",
     "irregular_migrant"),
    ("TH-P-2", "", "Aung San Suu Kyi", "", "1945-06-19", "F", "MMR", "", "refugee"),
    ("TH-P-3", "", "Kyaw Min", "", "1990-05-12", "M", "MMR", "", "asylum_seeker"),
    ("TH-P-4", "", "RAHMAN, Nur", "", "1999-01-02", "F", "BGD", "", "trafficking_victim"),
    ("TH-P-5", "", "SUWANARAT, Vichai", "", "1968-10-23", "M", "THA", "", "deportee"),
    ("TH-P-6", "", "HASSAN, Omar", "", "1990", "M", "SYR", "", "irregular_migrant"),
]  # fmt: skip
ID_PERSONS = [
    ("ID-P-1", "", "KHAN, Muhammad", "", "1985-03-14", "M", "AFG", "", "deportee"),
]
TH_DOCUMENTS = [("TH-D-1", "IDN", "passport", "C1234567", "stolen", "2024-02-01")]

POLICY = """
[policy]
member = "{member}"

[[rule]]
id = "ping"
requesters = ["*"]
query = "Ping"

[[rule]]
id = "persons"
requesters = ["AU", "NZ"]
query = "IdentityCheck"
datasets = ["persons"]
purposes = ["border-control", "investigation"]
detail = "{detail}"
max_batch = 50
rate_limit = {{ count = 100000, per = "day" }}
exclude_categories = ["trafficking_victim"]
exclude_own_nationals = true

[[rule]]
id = "documents"
requesters = ["AU", "NZ"]
query = "IdentityCheck"
datasets = ["documents"]
detail = "{detail}"
max_batch = 50
"""


def write_csv(path: Path, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for row in rows:
            full = list(row)
            if columns is PERSON_COLUMNS:
                full += [f"LOCAL/{row[0]}", "2024-01-15"]
            w.writerow(full)
    return path


def import_rows(net: Network, member: str, dataset: str, rows: Sequence[tuple[str, ...]]) -> None:
    layout = net.layout(member)
    columns = PERSON_COLUMNS if dataset == "persons" else DOCUMENT_COLUMNS
    path = write_csv(net.root / f"{member}-{dataset}.csv", columns, rows)
    store = DataStore(layout.data_db, dictionary=load_dictionary(layout))
    try:
        assert import_file(store, path, dataset=dataset).committed
    finally:
        store.close()
    path.unlink()


@dataclass
class Wire:
    """Every federation request and response, serialised as it went on the wire."""

    messages: list[bytes] = field(default_factory=list)

    def text(self) -> bytes:
        return b"\n".join(self.messages)


class _Capture(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.wire.messages.append(request.SerializeToString())
        outcome = continuation(details, request)
        with suppress(grpc.RpcError):
            self.wire.messages.append(outcome.result().SerializeToString())
        return outcome

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        self.wire.messages.append(request.SerializeToString())
        return continuation(details, request)


@contextmanager
def capture_wire(monkeypatch: pytest.MonkeyPatch) -> Iterator[Wire]:
    """Wrap every channel a PeerClient opens from now on with a capturing interceptor."""
    wire = Wire()
    real = secure_channel

    def wrapped(**kwargs: Any) -> grpc.Channel:
        return grpc.intercept_channel(real(**kwargs), _Capture(wire))

    monkeypatch.setattr("rcf.node.federation.peers.secure_channel", wrapped)
    yield wire


def identity_network(root: Path, *, detail: str = "hit_with_reference", **config: Any) -> Network:
    net = Network(root)
    net.start_hub()
    for member in ("AU", "TH", "ID", "NZ"):
        net.enroll(member, groups=("steering-group",), **config)
    net.registry.add_ncp(
        "TH",
        Ncp(ncp_id="TH-ncp", agency="Royal Thai Police, Immigration Bureau", role="duty desk",
            name="TH national contact point", phone="+66 2 287 3101", languages=("th", "en")),
    )  # fmt: skip
    import_rows(net, "TH", "persons", TH_PERSONS)
    import_rows(net, "TH", "documents", TH_DOCUMENTS)
    import_rows(net, "ID", "persons", ID_PERSONS)
    for member in ("AU", "TH", "ID", "NZ"):
        net.start_node(member)
    net.refresh_all()
    for member in ("TH", "ID"):
        # TH answers references on a hit, ID says hit or no hit only.
        rule_detail = detail if member == "TH" else "hit_only"
        text = textwrap.dedent(POLICY.format(member=member, detail=rule_detail))
        net.nodes[member].policy.apply(text, f"{member}.toml")
    return net


# -- hand-made requests ------------------------------------------------------------------


def header(client: RawClient, responder: str, purpose: str = "border-control") -> Any:
    now = now_ms()
    return envelope_pb2.RequestHeader(
        query_id=str(uuid.uuid4()), requester=client.member_id, responder=responder,
        purpose=purpose, issued_at_ms=now, expires_at_ms=now + 60_000,
        nonce=secrets.token_bytes(16),
    )  # fmt: skip


def send(client: RawClient, net: Network, responder: str, request: Any, name: str) -> Any:
    """Sign request as client and send it to responder's IdentityEvaluate/Lookup; parse the
    answer (raises grpc.RpcError on a refusal)."""
    envelope = sign_envelope(
        payload_type=f"rcf.v1.{type(request).__name__}",
        payload=request.SerializeToString(),
        signers=[client.key],
    ).to_proto()
    raw = client.raw(net.nodes[responder], f"/rcf.v1.Federation/{name}",
                     envelope.SerializeToString())  # fmt: skip
    reply = envelope_pb2.Envelope.FromString(raw)
    cls = (
        identity_pb2.IdentityEvaluateResponse
        if name == "IdentityEvaluate"
        else identity_pb2.IdentityLookupResponse
    )
    return cls.FromString(reply.payload)
