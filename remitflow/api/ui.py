"""The exceptions page: server-rendered HTML for finance operators (no JavaScript, no build).

A login form exchanges a token for a session cookie (:mod:`remitflow.api.auth`); the queue with
its filters, a case's lineage, and the resolve actions as plain HTML forms, each carrying the
session's CSRF token. Pages send a strict Content-Security-Policy (no scripts at all).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from remitflow.refdata import ReferenceData
from remitflow.resolutions import ResolutionError

from .auth import COOKIE, Session, same_secret
from .deps import Services, Stores
from .routes import view
from .views import (
    BadCursor,
    CaseView,
    ExceptionItem,
    QueueFilter,
    exception_item,
    exception_queue,
    page_after,
    payers_matching,
    today,
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
PAGE_SIZE = 50
SUGGESTIONS = 5


def when(value: str | datetime | None) -> str:
    """A timestamp for people: minutes, and the zone it was given in (UTC, or the ERP's)."""
    if value is None or value == "":
        return ""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except ValueError:
        return str(value)
    offset = moment.utcoffset()
    if offset is None:
        return str(value)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    zone = "UTC" if not minutes else f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return f"{moment.strftime('%Y-%m-%d %H:%M')} {zone}"


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
)
_env.filters["when"] = when
templates = Jinja2Templates(env=_env)
router = APIRouter(prefix="/ui", include_in_schema=False)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No valid session: the browser goes to the login form, and back here afterwards."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def login_redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/ui/login?{urlencode({'next': exc.next_url})}", status_code=303)


def _session(request: Request, stores: Services) -> Session:
    session = stores.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        where = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(where)
    request.state.operator = session.operator
    return session


def _checked(request: Request, stores: Services, csrf: str) -> Session:
    session = _session(request, stores)
    if not same_secret(csrf, session.csrf):
        raise HTTPException(status_code=403, detail="the form is stale: reload the page")
    return session


def _page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _safe_next(value: str | None) -> str:
    """Only a page of this UI: never an open redirect."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/exceptions"


# -- login -------------------------------------------------------------------------------------


@router.get("/style.css")
def style() -> Response:
    return Response(
        (TEMPLATES / "style.css").read_bytes(),
        media_type="text/css",
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def home() -> Response:
    return RedirectResponse("/ui/exceptions", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, next_url: Annotated[str | None, Query(alias="next", max_length=500)] = None
) -> Response:
    return _page(request, "login.html", {"next": _safe_next(next_url), "error": None})


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    stores: Stores,
    token: Annotated[str, Form(max_length=500)],
    next_url: Annotated[str, Form(alias="next", max_length=500)] = "/ui/exceptions",
) -> Response:
    opened = stores.sessions.open(token)
    if opened is None:
        error = "That token is not valid."
        return _page(request, "login.html", {"next": _safe_next(next_url), "error": error}, 401)
    session_id, _ = opened
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=stores.sessions.ttl_s,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(
    request: Request, stores: Stores, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    _checked(request, stores, csrf)
    stores.sessions.close(request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


# -- the queue ---------------------------------------------------------------------------------


@router.get("/exceptions", response_class=HTMLResponse)
def queue(
    request: Request,
    stores: Stores,
    entity: Annotated[str, Query(max_length=100)] = "",
    payer: Annotated[str, Query(max_length=100)] = "",
    reason: Annotated[str, Query(max_length=100)] = "",
    min_age: Annotated[str, Query(max_length=6)] = "",
    as_of: Annotated[str, Query(max_length=10)] = "",
    cursor: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    session = _session(request, stores)
    refdata = stores.config.refdata()
    errors: list[str] = []
    day = _date(as_of, errors) or today()
    age = _whole(min_age, errors)
    everything = stores.cases.exceptions()
    wanted = QueueFilter(
        entity=entity or None,
        payers=payers_matching(payer, refdata) if payer else None,
        reason=reason or None,
        min_age=age,
        as_of=day,
    )
    rows = exception_queue(everything, wanted)
    try:
        shown, next_cursor = page_after(
            rows, lambda i: (i.opened_on, i.case_id), cursor or None, PAGE_SIZE
        )
    except BadCursor:
        shown, next_cursor = rows[:PAGE_SIZE], None
    all_rows = [exception_item(c, day) for c in everything]
    filters = {
        "entity": entity,
        "payer": payer,
        "reason": reason,
        "min_age": min_age,
        "as_of": as_of,
    }
    next_url = None
    if next_cursor:
        next_url = "/ui/exceptions?" + urlencode(
            {**{k: v for k, v in filters.items() if v}, "cursor": next_cursor}
        )
    return _page(
        request,
        "exceptions.html",
        {
            "session": session,
            "rows": shown,
            "total": len(rows),
            "as_of": day,
            "filters": filters,
            "entities": sorted({r.entity for r in all_rows if r.entity}),
            "reasons": sorted({r.reason for r in all_rows}),
            "payer_names": _payer_names(refdata),
            "next_url": next_url,
            "errors": errors,
        },
    )


def _date(value: str, errors: list[str]) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.append(f"“{value}” is not a date (YYYY-MM-DD): ages are counted to today.")
        return None


def _whole(value: str, errors: list[str]) -> int | None:
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return int(value)
    errors.append(f"“{value}” is not a number of business days: no minimum age applied.")
    return None


def _payer_names(refdata: ReferenceData | None) -> dict[str, str]:
    if refdata is None:
        return {}
    return {pid: p.name for p in refdata.payers for pid in p.payer_ids}


# -- a case ------------------------------------------------------------------------------------


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(
    request: Request,
    case_id: str,
    stores: Stores,
    done: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    session = _session(request, stores)
    return _case_page(request, stores, session, case_id, notice=_notice(done))


def _notice(done: str) -> str | None:
    return {
        "confirm_pair": "Pair confirmed: the case below was made and its journal posted once.",
        "non_payer_cash": "Deposit marked as non-payer cash.",
        "already": "This was resolved before; nothing was posted again.",
    }.get(done)


def _case_page(
    request: Request,
    stores: Services,
    session: Session,
    case_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    case = stores.cases.get(case_id) if len(case_id) <= 100 else None
    if case is None:
        return _page(
            request,
            "missing.html",
            {"session": session, "case_id": case_id},
            status_code=404,
        )
    shown = view(stores, case)
    side = _open_side(shown)
    return _page(
        request,
        "case.html",
        {
            "session": session,
            "case": shown,
            "side": side,
            "suggestions": _suggestions(stores, shown, side) if side else [],
            "payer_names": _payer_names(stores.config.refdata()),
            "notice": notice,
            "error": error,
        },
        status_code=status_code,
    )


def _open_side(case: CaseView) -> str | None:
    """``remittance`` or ``bank_transaction`` for an open unmatched item, else None."""
    if case.outcome != "unmatched" or case.status != "unmatched":
        return None
    if len(case.remittances) == 1 and not case.bank_transactions:
        return "remittance"
    if len(case.bank_transactions) == 1 and not case.remittances:
        return "bank_transaction"
    return None


def _suggestions(stores: Services, case: CaseView, side: str) -> list[ExceptionItem]:
    """Open unmatched items of the other kind at the same entity, likeliest first: the same
    amount, then the nearest amount."""
    other = "bank_transaction" if side == "remittance" else "remittance"
    mine = case.remittances[0] if side == "remittance" else case.bank_transactions[0]
    amount = Decimal(mine.amount)
    day = today()
    mates = [
        exception_item(c, day)
        for c in stores.cases.exceptions()
        if c["status"] == "unmatched" and c.get("outcome") == "unmatched"
    ]
    mates = [m for m in mates if m.kind == other and m.entity == case.entity]

    def rank(item: ExceptionItem) -> tuple[Decimal, str]:
        return (abs(Decimal(item.remitted or item.deposited or 0) - amount), item.case_id)

    return sorted(mates, key=rank)[:SUGGESTIONS]


@router.post("/cases/{case_id}/confirm-pair", response_class=HTMLResponse)
def confirm_pair(
    request: Request,
    case_id: str,
    stores: Stores,
    counterpart: Annotated[str, Form(max_length=100)],
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    session = _checked(request, stores, csrf)
    case = stores.cases.get(case_id) if len(case_id) <= 100 else None
    if case is None:
        return _case_page(request, stores, session, case_id)
    remittance, deposit = (
        (case_id, counterpart) if case.get("remittances") else (counterpart.strip(), case_id)
    )
    try:
        done = stores.resolver.confirm_pair(
            remittance, deposit, operator=session.operator, reason=reason
        )
    except ResolutionError as exc:
        return _case_page(request, stores, session, case_id, error=str(exc), status_code=exc.status)
    flag = "already" if done.already else "confirm_pair"
    return RedirectResponse(f"/ui/cases/{done.case_id}?done={flag}", status_code=303)


@router.post("/cases/{case_id}/non-payer-cash", response_class=HTMLResponse)
def non_payer_cash(
    request: Request,
    case_id: str,
    stores: Stores,
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    session = _checked(request, stores, csrf)
    try:
        done = stores.resolver.non_payer_cash(case_id, operator=session.operator, reason=reason)
    except ResolutionError as exc:
        return _case_page(request, stores, session, case_id, error=str(exc), status_code=exc.status)
    flag = "already" if done.already else "non_payer_cash"
    return RedirectResponse(f"/ui/cases/{done.case_id}?done={flag}", status_code=303)


# -- search ------------------------------------------------------------------------------------


@router.get("/search", response_class=HTMLResponse)
def search(
    request: Request, stores: Stores, q: Annotated[str, Query(max_length=100)] = ""
) -> Response:
    """A case id opens the case; anything else is looked up as a trace and a bank reference."""
    session = _session(request, stores)
    query = q.strip()
    if query.startswith("case-") and stores.cases.get(query) is not None:
        return RedirectResponse(f"/ui/cases/{query}", status_code=303)
    found: dict[str, Any] = {}
    if query:
        for case in (*stores.cases.by_trace(query), *stores.cases.by_bank_reference(query)):
            found.setdefault(case["case_id"], case)
    day = today()
    rows = [exception_item(c, day) for c in found.values()]
    return _page(
        request,
        "search.html",
        {
            "session": session,
            "query": query,
            "rows": sorted(rows, key=lambda r: (r.opened_on or date.max, r.case_id)),
            "payer_names": _payer_names(stores.config.refdata()),
        },
    )
