"""Who paid: the routing payer key of a remittance or a deposit.

Both sides must land on the same key for the cascade to see them together. The payer id is
authoritative when there is one (TRN03 on the ERA, TRN03 of the CCD+ addenda or the company id
in bank text), resolved through the payer master and otherwise used as written (normalised), so
two sides with the same id meet even when the reference data does not know the payer. Without
an id, the company name in the bank text is compared with every payer name and alias using
rapidfuzz (the maintained C++ implementation of these scores; hand-written fuzzy matching would
be slower and worse). A tie between two payers, or no score above the threshold, is ``?``:
never guess who paid.
"""

from __future__ import annotations

from rapidfuzz import fuzz, process, utils

from remitflow.events import BankTransaction, Remittance
from remitflow.refdata import ReferenceData, payer_id_key

UNKNOWN = "?"
NACHA_NAME_LENGTH = 16  # the CCD batch header's company name field


def _nacha_score(query: str, choice: str, **kwargs: object) -> float:
    """Similarity that forgives NACHA's 16-character truncation of company names, but not a
    shared word or the first words alone ("MEDICARE" is not "PGBA MEDICARE", "BLUE CROSS" is
    not one payer: partial ratios would say they are)."""
    score = fuzz.ratio(query, choice)
    if len(choice) > len(query) >= NACHA_NAME_LENGTH - 1:  # 16, or 15 before a cut blank
        score = max(score, fuzz.ratio(query, choice[: len(query)]))
    return score


class PayerRecognizer:
    def __init__(self, refdata: ReferenceData, score_cutoff: float = 88.0) -> None:
        self._refdata = refdata
        self._cutoff = score_cutoff
        self._choices: list[str] = []
        self._owners: list[str] = []
        for payer_id, names in refdata.payer_names().items():
            for name in names:
                self._choices.append(utils.default_process(name))
                self._owners.append(payer_id)
        self._by_name: dict[str, str] = {}

    def _by_id(self, raw: str | None) -> str | None:
        if not raw or not raw.strip():
            return None
        payer = self._refdata.payer_for_id(raw)
        return payer.id if payer is not None else "id:" + payer_id_key(raw)

    def by_name(self, name: str | None) -> str:
        if not name or not self._choices:
            return UNKNOWN
        cached = self._by_name.get(name)
        if cached is not None:
            return cached
        found = process.extract(
            utils.default_process(name),
            self._choices,
            scorer=_nacha_score,
            processor=None,
            limit=4,
            score_cutoff=self._cutoff,
        )
        result = UNKNOWN
        if found:
            best = found[0][1]
            owners = {self._owners[idx] for _, score, idx in found if score == best}
            if len(owners) == 1:
                result = owners.pop()
        if len(self._by_name) < 100_000:  # bank text names repeat; bound the cache all the same
            self._by_name[name] = result
        return result

    def for_remittance(self, ev: Remittance) -> str:
        return self._by_id(ev.payer_id) or self.by_name(ev.payer_name)

    def for_deposit(self, ev: BankTransaction) -> str:
        return (
            self._by_id(ev.payer_id) or self._by_id(ev.company_id) or self.by_name(ev.company_name)
        )
