"""The JSON API (bearer tokens): cases, lookups, the exception queue, resolutions."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from remitflow.resolutions import ResolutionError, Resolved
from state.case_index import opened_on

from .deps import Operator, Services, Stores, api_operator
from .views import (
    MAX_LIMIT,
    BadCursor,
    CaseList,
    CaseView,
    ConfirmPair,
    ExceptionPage,
    NonPayerCash,
    QueueFilter,
    ResolutionResult,
    case_view,
    exception_queue,
    page_after,
    payers_matching,
    today,
)

router = APIRouter(dependencies=[Depends(api_operator)])

CaseId = Annotated[str, Query(max_length=100)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
Cursor = Annotated[str | None, Query(max_length=300, description="next_cursor of a page")]
AsOf = Annotated[date | None, Query(description="count ages to this date (default: today)")]


def view(stores: Services, case: dict[str, Any], as_of: date | None = None) -> CaseView:
    key = case.get("idempotency_key")
    ledger = stores.ledger.status(key) if key else None
    return case_view(case, ledger, as_of or today())


@router.get("/cases/{case_id}", response_model_exclude_none=True, tags=["cases"])
def get_case(case_id: str, stores: Stores, as_of: AsOf = None) -> CaseView:
    """A case with its lineage: each item's source, the rule and outcome, the operator's
    resolution, the journal's key and ledger status, and the ERP's confirmations."""
    case = stores.cases.get(case_id) if len(case_id) <= 100 else None
    if case is None:
        raise HTTPException(status_code=404, detail=f"no case {case_id}")
    return view(stores, case, as_of)


@router.get("/cases", response_model_exclude_none=True, tags=["cases"])
def find_cases(
    stores: Stores,
    trace: Annotated[str | None, Query(max_length=100, description="EFT trace / check no.")] = None,
    bank_reference: Annotated[str | None, Query(max_length=100)] = None,
    payer: Annotated[
        str | None, Query(max_length=100, description="TRN03 id, or a reference-data payer id")
    ] = None,
    start: Annotated[date | None, Query(alias="from", description="payer: from this date")] = None,
    end: Annotated[date | None, Query(alias="to", description="payer: to this date")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    as_of: AsOf = None,
) -> CaseList:
    """Cases by trace number, by bank reference, or by payer (within dates, inclusive: a
    case's date is its earliest deposit's value date, else its remittance's). Give one of
    ``trace``, ``bank_reference``, ``payer``."""
    if sum(x is not None for x in (trace, bank_reference, payer)) != 1:
        raise HTTPException(
            status_code=422, detail="give exactly one of trace, bank_reference, payer"
        )
    if (start or end) and payer is None:
        raise HTTPException(status_code=422, detail="from/to go with payer")
    try:
        if payer is not None:
            ids = _payer_cases(stores, payer, start, end)
            chosen, next_cursor = page_after(ids, lambda dc: dc, cursor, limit)
            found = stores.cases.get_many([cid for _, cid in chosen])
            cases = [c for c in found if c is not None]
        else:
            hits = (
                stores.cases.by_trace(trace)
                if trace is not None
                else stores.cases.by_bank_reference(str(bank_reference))
            )
            rows = sorted(((opened_on(c), c["case_id"], c) for c in hits), key=_order)
            picked, next_cursor = page_after(rows, lambda r: (r[0], r[1]), cursor, limit)
            cases = [c for _, _, c in picked]
    except BadCursor as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return CaseList(items=[view(stores, c, as_of) for c in cases], next_cursor=next_cursor)


def _order(row: tuple[date | None, str, Any]) -> tuple[date, str]:
    return (row[0] or date.max, row[1])


def _payer_cases(
    stores: Services, payer: str, start: date | None, end: date | None
) -> list[tuple[date | None, str]]:
    seen: dict[str, date | None] = {}
    for pid in sorted(payers_matching(payer, stores.config.refdata())):
        for day, cid in stores.cases.by_payer(pid, start, end):
            if cid not in seen or (day is not None and (seen[cid] or date.max) > day):
                seen[cid] = day
    return sorted(((d, c) for c, d in seen.items()), key=lambda dc: (dc[0] or date.max, dc[1]))


@router.get("/exceptions", tags=["exceptions"])
def exceptions(
    stores: Stores,
    entity: Annotated[str | None, Query(max_length=100)] = None,
    payer: Annotated[
        str | None, Query(max_length=100, description="TRN03 id, or a reference-data payer id")
    ] = None,
    reason: Annotated[
        str | None,
        Query(
            max_length=100,
            description="no_counterpart, end_of_input, ambiguous, late_counterpart, fee, "
            "amount_mismatch, remit_unbalanced, posting_rejected, journal_failed, ...",
        ),
    ] = None,
    min_age: Annotated[int | None, Query(ge=0, le=10_000, description="business days")] = None,
    as_of: AsOf = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ExceptionPage:
    """The exception queue, oldest first: unmatched items, variances, journals the sink could
    not post, and ERP confirmations that did not close a case cleanly."""
    day = as_of or today()
    wanted = QueueFilter(
        entity=entity or None,
        payers=payers_matching(payer, stores.config.refdata()) if payer else None,
        reason=reason or None,
        min_age=min_age,
        as_of=day,
    )
    queue = exception_queue(stores.cases.exceptions(), wanted)
    try:
        items, next_cursor = page_after(queue, lambda i: (i.opened_on, i.case_id), cursor, limit)
    except BadCursor as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return ExceptionPage(items=items, total=len(queue), as_of=day, next_cursor=next_cursor)


@router.post(
    "/resolutions/confirm-pair",
    status_code=201,
    response_model_exclude_none=True,
    tags=["resolutions"],
    responses={200: {"description": "resolved before: nothing written"}, 409: {}, 404: {}},
)
def confirm_pair(
    body: ConfirmPair, operator: Operator, stores: Stores, response: Response
) -> ResolutionResult:
    """Confirm a pair: the remittance and the deposit are matched (rule ``operator_confirmed``;
    a ``variance`` when the amounts differ) and the balanced journal goes through the ERP
    idempotency ledger, once however often this is sent."""
    try:
        done = stores.resolver.confirm_pair(
            body.remittance_case_id, body.deposit_case_id, operator=operator, reason=body.reason
        )
    except ResolutionError as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    return _result(stores, done, response)


@router.post(
    "/resolutions/non-payer-cash",
    status_code=201,
    response_model_exclude_none=True,
    tags=["resolutions"],
    responses={200: {"description": "resolved before: nothing written"}, 409: {}, 404: {}},
)
def non_payer_cash(
    body: NonPayerCash, operator: Operator, stores: Stores, response: Response
) -> ResolutionResult:
    """Mark a deposit as cash that is not a payer's payment (outcome ``not_payer_cash``, rule
    ``operator_non_payer_cash``); nothing is posted."""
    try:
        done = stores.resolver.non_payer_cash(body.case_id, operator=operator, reason=body.reason)
    except ResolutionError as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    return _result(stores, done, response)


def _result(stores: Services, done: Resolved, response: Response) -> ResolutionResult:
    if done.already:
        response.status_code = 200
    case = stores.cases.get(done.case_id)
    return ResolutionResult(
        action=done.action,
        case_id=done.case_id,
        outcome=done.outcome,
        resolves=list(done.resolves),
        idempotency_key=done.idempotency_key,
        already_resolved=done.already,
        case=view(stores, case) if case is not None else None,
    )
