"""The console's web application (Starlette): pages, login, roles, CSRF, headers.

Thin: every page asks NodeApi (the operator API) or a plain module and renders a
template. Security that holds on every request lives here: sessions from the cookie,
the role a page needs (403 otherwise, whatever the menu shows), the CSRF token on
every POST, no-store and a strict Content-Security-Policy on every response.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rcf.cli.aggregate_view import OUTCOME_LABELS, caveats, member_rows, pivot, to_csv
from rcf.console import alerts as alert_forms
from rcf.console import checks, statistics
from rcf.console.accounts import AccountStore, LoginFailed
from rcf.console.node_api import NodeApi, describe
from rcf.console.sessions import Session, Sessions
from rcf.trust.errors import ConfigError

log = structlog.get_logger("rcf.console")

COOKIE = "__Host-rcf-session"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
MAX_FORM_BYTES = 1 << 20

# page path -> roles that may open it; the menu is drawn from the same table.
PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "/": ("Dashboard", ("officer", "analyst", "policy-admin", "auditor", "operator")),
    "/checks": ("Checks", ("officer",)),
    "/alerts": ("Alerts", ("officer",)),
    "/alerts/raise": ("", ("officer",)),
    "/alerts/withdraw": ("", ("officer",)),
    "/alerts/feed": ("", ("officer",)),
    "/statistics": ("Statistics", ("analyst",)),
    "/policies": ("Policies", ("policy-admin",)),
    "/policies/rollback": ("", ("policy-admin",)),
    "/audit": ("Audit", ("auditor",)),
    "/audit/verify": ("", ("auditor",)),
    "/users": ("Users", ("operator",)),
}


@dataclass
class Console:
    """What the pages share: the node, the accounts and the sessions."""

    node: NodeApi
    accounts: AccountStore
    sessions: Sessions
    title: str = "rcf console"
    member_id: str = ""


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        h = response.headers
        h["Content-Security-Policy"] = CSP
        # Pages carry what officers typed and what members answered: never kept.
        h["Cache-Control"] = "no-store"
        h["Pragma"] = "no-cache"
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer"
        h["X-Frame-Options"] = "DENY"
        h["Strict-Transport-Security"] = "max-age=31536000"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        return response


def _templates() -> Environment:
    folder = Path(str(resources.files("rcf.console") / "templates"))
    env = Environment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = lambda ms: (
        dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        if ms else "-"
    )  # fmt: skip
    return env


def create_app(console: Console) -> Starlette:
    env = _templates()

    def session_of(request: Request) -> Session | None:
        return console.sessions.get(request.cookies.get(COOKIE, ""))

    def with_cookie(response: Response, session: Session) -> Response:
        response.set_cookie(
            COOKIE, session.sid, secure=True, httponly=True, samesite="strict", path="/",
            max_age=int(console.sessions.absolute),
        )  # fmt: skip
        return response

    def render(
        request: Request, name: str, session: Session, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        menu = [
            (path, label) for path, (label, roles) in PAGES.items()
            if label and session.user and set(roles) & set(session.roles)
        ]  # fmt: skip
        flash, session.flash = session.flash, []
        html = env.get_template(name).render(
            session=session, menu=menu, path=request.url.path, title=console.title,
            flash=flash, **ctx,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status)

    def forbidden(request: Request, session: Session) -> HTMLResponse:
        return render(request, "forbidden.html", session, status=403)

    async def form_of(request: Request, session: Session) -> FormData | None:
        """The posted form if its CSRF token is this session's; else None."""
        if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
            return None
        form = await request.form(max_files=1, max_fields=64)
        token = form.get("csrf")
        return form if isinstance(token, str) and session.csrf_ok(token) else None

    def page(path: str) -> Callable[..., Any]:
        """A page handler that runs only for a logged-in user whose role may open path."""
        roles = PAGES[path][1]

        def wrap(
            handler: Callable[[Request, Session], Awaitable[Response]],
        ) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                session = session_of(request)
                if session is None or not session.user:
                    if request.method == "GET":
                        return RedirectResponse("/login", status_code=303)
                    return PlainTextResponse("Log in first.", status_code=403)
                if not set(roles) & set(session.roles):
                    return forbidden(request, session)
                return await handler(request, session)

            return endpoint

        return wrap

    def str_field(form: FormData, key: str) -> str:
        value = form.get(key, "")
        return value if isinstance(value, str) else ""

    # -- login ------------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        session = session_of(request)
        if session is not None and session.user:
            return RedirectResponse("/", status_code=303)
        session = session or console.sessions.new()
        return with_cookie(render(request, "login.html", session), session)

    async def login_post(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return PlainTextResponse(
                "The login form expired; reload the page and try again.", status_code=403
            )
        form = await form_of(request, session)
        if form is None:
            return PlainTextResponse("The form was not sent from this console.", status_code=403)
        name = str_field(form, "username").strip().lower()
        try:
            account = await run_in_threadpool(
                console.accounts.authenticate, name, str_field(form, "password"),
                str_field(form, "code"),
            )  # fmt: skip
        except LoginFailed:
            log.warning("console_login_failed")
            return render(
                request, "login.html", session, status=401,
                error="Wrong name, password or code, or the account is locked.",
            )  # fmt: skip
        fresh = console.sessions.login(session, user=account.name, roles=account.roles)
        log.info("console_login", user=account.name)
        return with_cookie(RedirectResponse("/", status_code=303), fresh)

    async def logout(request: Request) -> Response:
        session = session_of(request)
        if session is not None:
            form = await form_of(request, session)
            if form is None:
                return PlainTextResponse("The form was not sent from this console.", 403)
            console.sessions.end(session.sid)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response

    # -- pages --------------------------------------------------------------------

    @page("/")
    async def dashboard(request: Request, session: Session) -> Response:
        error = ""
        status = None
        alerts: list[Any] = []
        try:
            status = await run_in_threadpool(console.node.status)
            if "officer" in session.roles:
                alerts = (await run_in_threadpool(console.node.alerts))[:10]
        except (grpc.RpcError, ConfigError) as exc:
            error = describe(exc) if isinstance(exc, grpc.RpcError) else str(exc)
        return render(request, "dashboard.html", session, status=200 if not error else 502,
                      node=status, alerts=alerts, error=error)  # fmt: skip

    @page("/checks")
    async def checks_page(request: Request, session: Session) -> Response:
        return render(request, "checks.html", session, purposes=checks.PURPOSES, kind="person")

    @page("/checks")
    async def checks_post(request: Request, session: Session) -> Response:
        form = await form_of(request, session)
        if form is None:
            return PlainTextResponse("The form was not sent from this console.", 403)
        kind = "document" if str_field(form, "kind") == "document" else "person"
        purpose = str_field(form, "purpose")
        try:
            if purpose not in checks.PURPOSES:
                raise ConfigError("Choose the purpose of the check.")
            regional = str_field(form, "scope") == "regional"
            members = checks.chosen_members(str_field(form, "members"), regional=regional)
            if kind == "person":
                subject = checks.person_subject(
                    str_field(form, "name"), str_field(form, "dob"),
                    str_field(form, "nationality"), str_field(form, "number"),
                    str_field(form, "issuer"),
                )  # fmt: skip
                dataset = "persons"
            else:
                subject = checks.document_subject(
                    str_field(form, "mrz"), str_field(form, "doc_number"),
                    str_field(form, "doc_issuer"),
                )  # fmt: skip
                dataset = "documents"
            finals = await run_in_threadpool(
                lambda: console.node.check(
                    dataset, [subject], responders=members, regional=regional, purpose=purpose
                )
            )
        except ConfigError as exc:
            return render(request, "checks.html", session, status=400, error=str(exc),
                          purposes=checks.PURPOSES, kind=kind)  # fmt: skip
        except grpc.RpcError as exc:
            return render(request, "checks.html", session, status=502, error=describe(exc),
                          purposes=checks.PURPOSES, kind=kind)  # fmt: skip
        rows = checks.results(finals)
        hits = sum(r.is_hit for r in rows)
        await run_in_threadpool(
            console.node.record, session.user, f"{kind}_check",
            f"members={len(rows)} hits={hits} purpose={purpose}",
            [f.check_id for f in finals if f.check_id],
        )  # fmt: skip
        return render(request, "checks.html", session, rows=rows, purposes=checks.PURPOSES,
                      kind=kind, hits=hits)  # fmt: skip

    async def member_id() -> str:
        if not console.member_id:
            console.member_id = (await run_in_threadpool(console.node.status)).member_id
        return console.member_id

    async def alerts_view(
        request: Request, session: Session, status: int = 200, **ctx: Any
    ) -> Response:
        try:
            own = await member_id()
            records = await run_in_threadpool(console.node.alerts)
        except (grpc.RpcError, ConfigError) as exc:
            error = describe(exc) if isinstance(exc, grpc.RpcError) else str(exc)
            return render(request, "alerts.html", session, status=502, error=error, rows=[],
                          categories=alert_forms.CATEGORIES,
                          severities=alert_forms.SEVERITIES)  # fmt: skip
        rows = [alert_forms.row(r, own_member=own) for r in records]
        return render(request, "alerts.html", session, status=status, rows=rows,
                      categories=alert_forms.CATEGORIES, severities=alert_forms.SEVERITIES,
                      **ctx)  # fmt: skip

    @page("/alerts")
    async def alerts_page(request: Request, session: Session) -> Response:
        return await alerts_view(request, session)

    @page("/alerts")
    async def alerts_raise(request: Request, session: Session) -> Response:
        form = await form_of(request, session)
        if form is None:
            return PlainTextResponse("The form was not sent from this console.", 403)
        fields = {k: str_field(form, k) for k in alert_forms.FIELDS}
        try:
            draft = alert_forms.draft_from(fields)
            rec = await run_in_threadpool(console.node.raise_alert, draft)
        except ConfigError as exc:
            return await alerts_view(request, session, status=400, error=str(exc), draft=fields)
        except grpc.RpcError as exc:
            return await alerts_view(request, session, status=400, error=describe(exc),
                                     draft=fields)  # fmt: skip
        await run_in_threadpool(
            console.node.record, session.user, "alert_raise", f"category={draft.category}",
            [rec.alert.alert_id],
        )  # fmt: skip
        session.flash.append("Alert raised and signed; members the policy allows receive it.")
        return RedirectResponse("/alerts", status_code=303)

    @page("/alerts")
    async def alerts_withdraw(request: Request, session: Session) -> Response:
        form = await form_of(request, session)
        if form is None:
            return PlainTextResponse("The form was not sent from this console.", 403)
        alert_id = str_field(form, "alert_id")
        try:
            await run_in_threadpool(console.node.withdraw_alert, alert_id)
        except grpc.RpcError as exc:
            return await alerts_view(request, session, status=400, error=describe(exc))
        await run_in_threadpool(console.node.record, session.user, "alert_withdraw", "",
                                [alert_id])  # fmt: skip
        session.flash.append("Alert withdrawn; the withdrawal reaches the same members.")
        return RedirectResponse("/alerts", status_code=303)

    @page("/alerts")
    async def alerts_feed(request: Request, session: Session) -> Response:
        """Server-sent events: one JSON row per alert the node raises or receives."""
        own = await member_id()

        async def events() -> AsyncIterator[str]:
            with console.node.watch() as call:
                stop = asyncio.Event()

                async def watch_disconnect() -> None:
                    while not await request.is_disconnected():
                        await asyncio.sleep(1)
                    stop.set()
                    call.cancel()  # unblocks the thread waiting for the next event

                watcher = asyncio.create_task(watch_disconnect())
                yield ": connected\n\n"
                try:
                    while not stop.is_set():
                        event = await run_in_threadpool(next, call, None)
                        if event is None:
                            return
                        if event.kind in ("raised", "received") and event.alert.alert.alert_id:
                            data = json.dumps(alert_forms.row(event.alert, own_member=own))
                            yield f"event: alert\ndata: {data}\n\n"
                except grpc.RpcError:
                    return
                finally:
                    watcher.cancel()

        return StreamingResponse(events(), media_type="text/event-stream")

    stats_fields = ("dataset", "by", "from", "to", "filters", "scope", "members", "purpose")

    @page("/statistics")
    async def statistics_page(request: Request, session: Session) -> Response:
        form = {"dataset": "irregular_movements", "by": "nationality", "scope": "regional",
                "purpose": "regional-analysis"}  # fmt: skip
        return render(request, "statistics.html", session, form=form)

    @page("/statistics")
    async def statistics_post(request: Request, session: Session) -> Response:
        posted = await form_of(request, session)
        if posted is None:
            return PlainTextResponse("The form was not sent from this console.", 403)
        form = {k: str_field(posted, k) for k in stats_fields}
        try:
            req = statistics.request_from(form)
            result = await run_in_threadpool(console.node.aggregate, req)
        except ConfigError as exc:
            return render(request, "statistics.html", session, status=400, form=form,
                          error=str(exc))  # fmt: skip
        except grpc.RpcError as exc:
            return render(request, "statistics.html", session, status=502, form=form,
                          error=describe(exc))  # fmt: skip
        answered = sum(m.outcome == "answered" for m in result.members)
        await run_in_threadpool(
            console.node.record, session.user, "aggregate_query",
            f"dataset={result.dataset} members={len(result.members)} answered={answered}",
            [m.query_id for m in result.members if m.query_id][:64],
        )  # fmt: skip
        if str_field(posted, "format") == "csv":
            return Response(
                to_csv(result), media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{result.dataset}.csv"'},
            )  # fmt: skip
        columns, rows, zeros = pivot(result)
        return render(
            request, "statistics.html", session, form=form, result=result, columns=columns,
            rows=rows, zeros=zeros, members=member_rows(result), caveats=caveats(result),
            chart=statistics.chart_data(result), labels=OUTCOME_LABELS, answered=answered,
        )  # fmt: skip

    @page("/policies")
    async def policies_page(request: Request, session: Session) -> Response:
        return render(request, "policies.html", session, source="")

    @page("/policies")
    async def policies_post(request: Request, session: Session) -> Response:
        form = await form_of(request, session)
        if form is None:
            return PlainTextResponse("The form was not sent from this console.", 403)
        # Browsers send a textarea's lines ending CRLF (HTML form encoding): store them as typed.
        source = str_field(form, "source").replace("\r\n", "\n")
        try:
            applied = await run_in_threadpool(console.node.apply_policy, source, "console.toml")
        except grpc.RpcError as exc:
            return render(request, "policies.html", session, status=400, source=source,
                          error=describe(exc))  # fmt: skip
        await run_in_threadpool(
            console.node.record, session.user, "policy_apply", f"version={applied.version}"
        )
        return render(request, "policies.html", session, source=source, applied=applied)

    @page("/policies/rollback")
    async def policies_rollback(request: Request, session: Session) -> Response:
        form = await form_of(request, session)
        if form is None:
            return PlainTextResponse("The form was not sent from this console.", 403)
        text = str_field(form, "version").strip()
        if not text.isdigit() or not 0 < int(text) < 1 << 32:
            return render(request, "policies.html", session, status=400, source="",
                          error="Give the number of the version to make active again.")  # fmt: skip
        try:
            applied = await run_in_threadpool(console.node.rollback_policy, int(text))
        except grpc.RpcError as exc:
            return render(request, "policies.html", session, status=400, source="",
                          error=describe(exc))  # fmt: skip
        await run_in_threadpool(
            console.node.record, session.user, "policy_rollback",
            f"to={int(text)} version={applied.version}",
        )  # fmt: skip
        return render(request, "policies.html", session, source="", rolled_back=int(text),
                      applied=applied)  # fmt: skip

    async def audit_view(request: Request, session: Session, *, verify: bool) -> Response:
        qtype = request.query_params.get("type", "").strip()[:64]
        member = request.query_params.get("member", "").strip().upper()[:16]
        try:
            log_reply = await run_in_threadpool(
                lambda: console.node.audit_log(query_type=qtype, member=member, verify=verify)
            )
        except grpc.RpcError as exc:
            return render(request, "audit.html", session, status=502, error=describe(exc),
                          entries=[], qtype=qtype, member=member)  # fmt: skip
        return render(request, "audit.html", session, entries=log_reply.entries, log=log_reply,
                      verify=verify, qtype=qtype, member=member)  # fmt: skip

    @page("/audit")
    async def audit_page(request: Request, session: Session) -> Response:
        return await audit_view(request, session, verify=False)

    @page("/audit/verify")
    async def audit_verify(request: Request, session: Session) -> Response:
        form = await form_of(request, session)
        if form is None:
            return PlainTextResponse("The form was not sent from this console.", 403)
        return await audit_view(request, session, verify=True)

    @page("/users")
    async def users_page(request: Request, session: Session) -> Response:
        return render(request, "users.html", session, accounts=console.accounts.list())

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("No such page.", status_code=404)

    static = StaticFiles(directory=str(resources.files("rcf.console") / "static"))
    return Starlette(
        routes=[
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login_post, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/", dashboard, methods=["GET"]),
            Route("/checks", checks_page, methods=["GET"]),
            Route("/checks", checks_post, methods=["POST"]),
            Route("/alerts", alerts_page, methods=["GET"]),
            Route("/alerts/raise", alerts_raise, methods=["POST"]),
            Route("/alerts/withdraw", alerts_withdraw, methods=["POST"]),
            Route("/alerts/feed", alerts_feed, methods=["GET"]),
            Route("/statistics", statistics_page, methods=["GET"]),
            Route("/statistics", statistics_post, methods=["POST"]),
            Route("/policies", policies_page, methods=["GET"]),
            Route("/policies", policies_post, methods=["POST"]),
            Route("/policies/rollback", policies_rollback, methods=["POST"]),
            Route("/audit", audit_page, methods=["GET"]),
            Route("/audit/verify", audit_verify, methods=["POST"]),
            Route("/users", users_page, methods=["GET"]),
            Mount("/static", app=static, name="static"),
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={404: not_found},
    )
