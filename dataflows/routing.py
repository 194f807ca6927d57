"""Correlation keys: which items must share state for the cascade to see them together.

- ``pay|<entity>|<payer>``: ACH remittances and payer-cash deposits of one payer at one entity.
  Keying by payer rather than by trace lets a deposit without addenda (no trace) still meet the
  ERAs it may belong to (rule 5), while trace rules look up the trace inside the key.
- ``chk|<entity>``: CHK remittances and lockbox/check deposits of one entity: a lockbox
  deposit names no payer, only the check number.
- ``npc|<entity>``: bank lines that are not payer cash; they need only duplicate detection.

Both sides resolve the entity through reference data (payee NPI/TIN, bank account) and the
payer through :class:`matchers.payer_recognition.PayerRecognizer`.
"""

from __future__ import annotations

from matchers.base import MatchSettings
from matchers.payer_recognition import PayerRecognizer
from matchers.trace import CHECK_CATEGORIES
from remitflow.events import PAYER_CASH_CATEGORIES, BankTransaction, Remittance
from remitflow.identity import normalize_trace
from state.items import OpenItem, bank_item, remittance_item


class Router:
    def __init__(
        self, recognizer: PayerRecognizer, settings: MatchSettings, currency: str = "USD"
    ) -> None:
        self.recognizer = recognizer
        self.late_after = settings.late_after_business_days
        self.currency = currency  # the ledger's: ERAs are in it, other cash cannot match them

    def route(self, event: Remittance | BankTransaction) -> tuple[str, OpenItem]:
        entity = event.entity or "?"
        if isinstance(event, Remittance):
            if event.method == "CHK":
                key = f"chk|{entity}"
                payer = self.recognizer.for_remittance(event)
            else:
                payer = self.recognizer.for_remittance(event)
                key = f"pay|{entity}|{payer}"
            return key, remittance_item(event, payer, self.late_after)
        not_cash = _not_payer_cash(event, self.currency)
        if not_cash is not None:
            item = bank_item(event, "?", self.late_after, trace=None, trace_key=None)
            item.category = not_cash
            return f"npc|{entity}", item
        if event.category in CHECK_CATEGORIES:
            check = (event.customer_reference or "").strip() or None
            return f"chk|{entity}", bank_item(
                event,
                "?",
                self.late_after,
                trace=check,
                trace_key=normalize_trace(check) if check else None,
            )
        payer = self.recognizer.for_deposit(event)
        return f"pay|{entity}|{payer}", bank_item(
            event,
            payer,
            self.late_after,
            trace=event.trace_number,
            trace_key=event.trace_normalized,
        )


def _not_payer_cash(event: BankTransaction, currency: str) -> str | None:
    """Why a bank line cannot be a payer's payment (its audit rule), or None when it can be."""
    if not event.is_payer_cash:  # money out, sweeps, fees: a debit is never payer cash
        return "debit" if event.category in PAYER_CASH_CATEGORIES else event.category
    if event.amount <= 0:
        return "return"  # a credit of zero or less is a correction, never cash received
    if event.currency is not None and event.currency != currency:
        return "foreign_currency"
    return None
