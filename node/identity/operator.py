"""The operator API for identity checks: the CLI hands its own node the subjects in clear
over 127.0.0.1 (operator token); the node blinds, asks, finalises and streams back
progress and outcomes. Nothing here logs or audits a subject."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import grpc

from rcf.node.federation.directory_cache import DirectoryCache
from rcf.node.federation.peers import PeerClient
from rcf.node.identity.requester import (
    FilterCache,
    ResponderResult,
    Subject,
    prepare,
    run_check,
)
from rcf.node.identity.token_store import BuildResult
from rcf.node.ops.operator import authenticate
from rcf.protos.v1 import identity_pb2, identity_pb2_grpc
from rcf.trust.errors import ConfigError, RcfError
from rcf.trust.serving import internal_error, log, refusals_as_status
from rcf.trust.status import abort_with

DEFAULT_TIMEOUT_MS = 60_000
MAX_RESPONDERS = 64


def _subjects(request: identity_pb2.IdentityCheckRequest) -> list[Subject]:
    return [
        Subject(
            name=s.name,
            date_of_birth=s.date_of_birth,
            nationality=s.nationality,
            documents=tuple((d.issuing_state, d.number) for d in s.documents),
        )
        for s in request.subjects
    ]


def _update(result: ResponderResult, total: int) -> identity_pb2.IdentityCheckUpdate:
    update = identity_pb2.IdentityCheckUpdate(
        responder=result.responder,
        persons_done=len(result.outcomes),
        persons_total=total,
        done=True,
        error=result.error,
        error_reason=result.error_reason,
        check_id=result.check_id,
        outcomes=result.outcomes,
        references=result.references,
        seconds=result.seconds,
    )
    if result.contact is not None:
        update.contact.CopyFrom(result.contact)
    return update


class IdentityOperatorServicer(identity_pb2_grpc.IdentityOperatorServicer):
    def __init__(
        self,
        *,
        token: str,
        member_id: str,
        peers: PeerClient,
        directory: DirectoryCache,
        rotate: Callable[[], BuildResult],
    ) -> None:
        self._token = token
        self._member_id = member_id
        self._peers = peers
        self._directory = directory
        self._rotate = rotate
        self._filters = FilterCache()  # peers' filters, refreshed by version at each check

    def _responders(self, request: identity_pb2.IdentityCheckRequest) -> list[str]:
        directory = self._directory.current()
        if request.regional:
            chosen = [
                m.member_id
                for m in directory.members
                if m.member_id != self._member_id and m.active and any(n.endpoint for n in m.nodes)
            ]
        else:
            chosen = list(dict.fromkeys(r.strip().upper() for r in request.responders if r.strip()))
        if not chosen:
            raise ConfigError("Name the members to ask (--to TH,ID) or --regional.")
        if len(chosen) > MAX_RESPONDERS:
            raise ConfigError(f"At most {MAX_RESPONDERS} members per check.")
        if self._member_id in chosen:
            raise ConfigError("A node does not check against itself; name other members.")
        return chosen

    def Check(
        self, request: identity_pb2.IdentityCheckRequest, context: grpc.ServicerContext
    ) -> Iterator[identity_pb2.IdentityCheckUpdate]:
        try:
            authenticate(context, self._token.encode())
            responders = self._responders(request)
            prepared = prepare(_subjects(request), request.dataset or "persons")
        except RcfError as exc:
            abort_with(context, exc)
        updates: queue.Queue[identity_pb2.IdentityCheckUpdate | None] = queue.Queue()
        total = prepared.persons

        def progress(responder: str, done: int, _total: int) -> None:
            updates.put(
                identity_pb2.IdentityCheckUpdate(
                    responder=responder, persons_done=done, persons_total=total
                )
            )

        def work() -> None:
            try:
                run_check(
                    self._peers,
                    prepared,
                    responders,
                    purpose=request.purpose or "border-control",
                    timeout_s=(request.timeout_ms or DEFAULT_TIMEOUT_MS) / 1000,
                    progress=progress,
                    on_result=lambda r: updates.put(_update(r, total)),
                    filters=self._filters,
                )
            except Exception as exc:  # a bug: the stream ends with INTERNAL
                log.exception("identity_check_failed", error=type(exc).__name__)
            finally:
                updates.put(None)

        worker = threading.Thread(target=work, name="identity-check", daemon=True)
        worker.start()
        finished = 0
        while True:
            item = updates.get()
            if item is None:
                break
            finished += item.done
            yield item
        if finished < len(responders):
            abort_with(context, internal_error())

    @refusals_as_status
    def RotateOprfKey(
        self, request: identity_pb2.RotateOprfKeyRequest, context: grpc.ServicerContext
    ) -> identity_pb2.IndexBuildResponse:
        authenticate(context, self._token.encode())
        return build_response(self._rotate())


def build_response(result: BuildResult) -> identity_pb2.IndexBuildResponse:
    return identity_pb2.IndexBuildResponse(
        key_id=result.key_id,
        persons=result.persons,
        documents=result.documents,
        tokens=result.tokens,
        skipped=result.skipped,
        seconds=result.seconds,
    )
