"""camt.053 → canonical bank transactions: facts of the samples, versions, safety, damage."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal

import pytest

import sources.camt053 as camt053
from remitflow.events import BankTransaction, event_from_json, event_to_json
from remitflow.records import DeadLetter, ParseIssue
from remitflow.refdata import BankAccount, Entity, ReferenceData
from sources.base import ParseContext, Parsed
from tests.conftest import sample_bytes

AC04 = "camt053__statement_ac04.xml"
US_ACH = "synthetic__camt053_us_ach_hcclaimpmt.xml"


def run(data: bytes, ctx: ParseContext | None = None) -> list[Parsed]:
    return list(camt053.parse_bytes(data, ctx or ParseContext(file="stmt.xml")))


def txns(items: list[Parsed]) -> list[BankTransaction]:
    return [i for i in items if isinstance(i, BankTransaction)]


def dead(items: list[Parsed]) -> list[DeadLetter]:
    return [i for i in items if isinstance(i, DeadLetter)]


def issues(items: list[Parsed]) -> list[ParseIssue]:
    return [i for i in items if isinstance(i, ParseIssue)]


def without_offsets(events: list[BankTransaction]) -> list[dict[str, object]]:
    dumps = [e.model_dump(mode="json") for e in events]
    for d in dumps:
        d["source"]["offset"] = None
    return dumps


def us_ach_with(ustrd: str) -> bytes:
    original = "<Ustrd>TRN*1*7170066655*1935665544\\</Ustrd>"
    data = sample_bytes(US_ACH).decode()
    assert original in data
    return data.replace(original, ustrd).encode()


# --- the real sample (camt.053.001.14, EUR/IBAN, returns) ------------------------------------


def test_ac04_statement_entries() -> None:
    data = sample_bytes(AC04)
    items = run(data)
    assert not dead(items)
    first, second, third = txns(items)
    assert {t.account for t in (first, second, third)} == {"GB29NWBK60161331926819"}
    assert [t.currency for t in (first, second, third)] == ["EUR"] * 3
    assert [str(t.amount) for t in (first, second, third)] == ["1500.00", "980.50", "42.00"]
    assert [t.direction for t in (first, second, third)] == ["credit", "credit", "debit"]
    assert [t.customer_reference for t in (first, second, third)] == ["E2E-0001", "E2E-0002", None]
    assert [t.as_of_date for t in (first, second, third)] == [date(2026, 6, 15)] * 3
    assert first.value_date == date(2026, 6, 15)
    assert second.value_date is None
    assert first.company_name == "Globex SA"
    # AC04 / AC06 returns carry RtrInf: returned money, never payer cash.
    assert first.category == second.category == "return"
    assert not first.is_payer_cash and not second.is_payer_cash
    # No bank transaction code at all: misc credit / misc debit.
    assert [t.type_code for t in (first, second, third)] == ["399", "399", "699"]
    assert not third.is_payer_cash
    assert [t.source.record for t in (first, second, third)] == [
        "STMT-0001/1",
        "STMT-0001/2",
        "STMT-0001/3",
    ]
    for t in (first, second, third):
        assert t.source.system == "camt053" and t.source.file == "stmt.xml"
        assert t.source.offset is not None
        assert data[t.source.offset :].startswith(b"<Ntry>")
        assert t.occurred_at.tzinfo is not None
        assert event_from_json(event_to_json(t)) == t  # model_construct built valid types
    assert len({t.event_id for t in (first, second, third)}) == 3


def test_ac04_entry_without_booking_date_is_flagged_and_dated_from_statement() -> None:
    items = run(sample_bytes(AC04))
    (issue,) = issues(items)
    third = txns(items)[2]
    assert issue.code == "missing_segment"
    assert issue.event_id == third.event_id
    assert third.as_of_date == date(2026, 6, 15)  # Stmt/CreDtTm


# --- the US sample (camt.053.001.02, Othr/Id, BAI code in Prtry) ----------------------------


def test_us_ach_claim_payment() -> None:
    refdata = ReferenceData(
        entities=[
            Entity(
                id="H1",
                name="General Hospital",
                accounts=[BankAccount(number="123456789", gl_cash="1000-CASH")],
            )
        ]
    )
    (t,) = run(sample_bytes(US_ACH), ParseContext(file="us.xml", refdata=refdata))
    assert isinstance(t, BankTransaction)
    assert t.account == "000123456789"
    assert t.entity == "H1"
    assert t.currency == "USD"
    assert t.type_code == "165"
    assert t.direction == "credit"
    assert t.amount == Decimal("945.00") and str(t.amount) == "945.00"
    assert t.trace_number == "7170066655"
    assert t.payer_id == "1935665544"
    assert t.category == "claim_payment"
    assert t.is_payer_cash
    assert t.entry_description == "HCCLAIMPMT"
    assert t.company_name == "RUSHMORE LIFE"  # from RltdPties/Dbtr/Nm: the text names nobody
    assert t.customer_reference is None  # EndToEndId NOTPROVIDED
    assert t.as_of_date == t.value_date == date(2025, 3, 17)
    assert t.source.record == "SYNTH-STMT-1/1"


def test_trn_split_across_ustrd_elements_and_lines() -> None:
    data = us_ach_with("<Ustrd>PAYMENT TRN*1*71700\n</Ustrd><Ustrd>66655*19356\n65544\\</Ustrd>")
    (t,) = txns(run(data))
    assert t.trace_number == "7170066655"
    assert t.payer_id == "1935665544"
    assert t.category == "claim_payment"


def test_same_statement_under_another_name_keeps_its_ids() -> None:
    a = txns(run(sample_bytes(US_ACH), ParseContext(file="a.xml")))
    b = txns(run(sample_bytes(US_ACH), ParseContext(file="resent-b.xml")))
    assert [t.event_id for t in a] == [t.event_id for t in b]


# --- versions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "replacement",
    [
        'xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"',
        'xmlns:c="urn:iso:std:iso:20022:tech:xsd:camt.053.001.04"',  # default ns dropped
        "",  # no namespace at all
    ],
)
def test_namespace_version_does_not_change_events(replacement: str) -> None:
    original = sample_bytes(AC04)
    declared = b'xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.14"'
    assert declared in original
    rewritten = original.replace(declared, replacement.encode())
    assert without_offsets(txns(run(rewritten))) == without_offsets(txns(run(original)))


def test_prefixed_namespace_is_read_like_default_one() -> None:
    data = sample_bytes(US_ACH).decode()
    ns = 'xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"'
    prefixed = data.replace(ns, ns.replace("xmlns=", "xmlns:d=")).replace("<", "<d:")
    prefixed = prefixed.replace("<d:/", "</d:").replace("<d:?xml", "<?xml")
    assert without_offsets(txns(run(prefixed.encode()))) == without_offsets(
        txns(run(data.encode()))
    )


# --- safety ---------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE Document [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<Document><BkToCstmrStmt><Stmt><Id>S</Id><Acct><Id><IBAN>X</IBAN></Id></Acct>
<Ntry><Amt>1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2025-01-02</Dt></BookgDt>
<AddtlNtryInf>&lol9;</AddtlNtryInf></Ntry></Stmt></BkToCstmrStmt></Document>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Document><BkToCstmrStmt><Stmt><Id>S</Id><Acct><Id><IBAN>X</IBAN></Id></Acct>
<Ntry><Amt>1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2025-01-02</Dt></BookgDt>
<AddtlNtryInf>&xxe;</AddtlNtryInf></Ntry></Stmt></BkToCstmrStmt></Document>"""


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["laughs", "xxe"])
def test_entity_tricks_are_refused_as_one_dead_letter(doc: bytes) -> None:
    items = run(doc)
    assert len(items) == 1
    (letter,) = dead(items)
    assert letter.stage == "parse"
    assert "refused by defusedxml" in letter.reason
    assert letter.original() == doc  # nothing expanded, nothing fetched
    assert letter.source.system == "camt053"


# --- damage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        (b'<Amt Ccy="EUR">980.50</Amt>', b'<Amt Ccy="EUR">9,80.50</Amt>', "Amt"),
        (b'<Amt Ccy="EUR">980.50</Amt>', b"", "Amt is missing"),
        (
            b"<NtryRef>NTRY-0002</NtryRef>\n        <Amt",
            b"<NtryRef>NTRY-0002</NtryRef><ValDt><Dt>2026-02-30</Dt></ValDt><Amt",
            "ValDt",
        ),
        (
            b"<BookgDt><Dt>2026-06-15</Dt></BookgDt>",
            b"<BookgDt><Dt>15/06/2026</Dt></BookgDt>",
            "BookgDt",
        ),
    ],
    ids=["bad-amount", "no-amount", "bad-value-date", "bad-booking-date"],
)
def test_malformed_entry_is_dead_lettered_and_the_rest_parsed(
    old: bytes, new: bytes, why: str
) -> None:
    original = sample_bytes(AC04)
    # The second entry is the one damaged (its own markers, to be sure of that).
    start = original.index(b"<NtryRef>NTRY-0002")
    assert original.count(old, start) >= 1
    data = original[:start] + original[start:].replace(old, new, 1)
    items = run(data)
    (letter,) = dead(items)
    assert letter.source.record == "STMT-0001/2"
    assert why in letter.reason
    payload = letter.original()
    assert payload.startswith(b"<Ntry>") and payload.endswith(b"</Ntry>")
    assert b"NTRY-0002" in payload and b"NTRY-0001" not in payload and b"NTRY-0003" not in payload
    assert letter.source.offset is not None
    assert data[letter.source.offset :].startswith(payload)
    assert "980" not in letter.reason and "2026-02-30" not in letter.reason  # no values
    assert [t.customer_reference for t in txns(items)] == ["E2E-0001", None]


def test_entry_without_direction_is_dead_lettered() -> None:
    data = us_ach_with("<Ustrd>x</Ustrd>").replace(b"<CdtDbtInd>CRDT</CdtDbtInd>", b"")
    (letter,) = run(data)
    assert isinstance(letter, DeadLetter)
    assert "CdtDbtInd" in letter.reason


def test_statement_without_account_dead_letters_its_entries() -> None:
    data = sample_bytes(US_ACH).replace(b"<Id>000123456789</Id>", b"")
    (letter,) = run(data)
    assert isinstance(letter, DeadLetter)
    assert "account" in letter.reason


@pytest.mark.parametrize(
    "doc",
    [b"", b"not xml at all", b"\x00\xff\xfe garbage", b"<Document><BkToCstmrStmt><Stmt>"],
    ids=["empty", "text", "binary", "truncated-header"],
)
def test_not_xml_is_one_dead_letter_for_the_file(doc: bytes) -> None:
    items = run(doc)
    assert len(items) == 1
    (letter,) = dead(items)
    assert letter.original() == doc
    assert letter.source.offset == 0


def test_xml_that_is_not_camt053_is_one_dead_letter() -> None:
    doc = (
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">'
        b"<BkToCstmrDbtCdtNtfctn><Ntfctn><Ntry><Amt>1</Amt></Ntry></Ntfctn>"
        b"</BkToCstmrDbtCdtNtfctn></Document>"
    )
    (letter,) = run(doc)
    assert isinstance(letter, DeadLetter)
    assert "not a camt.053" in letter.reason
    assert letter.original() == doc


def test_truncated_file_keeps_complete_entries_and_dead_letters_the_rest() -> None:
    original = sample_bytes(AC04)
    cut = original.index(b"<NtryRef>NTRY-0003") + 5
    items = run(original[:cut])
    assert [t.customer_reference for t in txns(items)] == ["E2E-0001", "E2E-0002"]
    (letter,) = dead(items)
    assert "not well-formed" in letter.reason
    assert letter.source.offset is not None
    assert original[letter.source.offset : cut] == letter.original()


def test_chunk_boundaries_do_not_change_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    data = sample_bytes(AC04)
    whole = run(data)
    monkeypatch.setattr(camt053, "CHUNK_SIZE", 7)
    chunked = list(camt053.parse(io.BytesIO(data), ParseContext(file="stmt.xml")))
    assert [i.model_dump(exclude={"emitted_at"}) for i in chunked] == [
        i.model_dump(exclude={"emitted_at"}) for i in whole
    ]


# --- codes, direction, transaction details ---------------------------------------------------

STATEMENT = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>M</MsgId><CreDtTm>2025-03-18T06:00:00</CreDtTm></GrpHdr>
<Stmt><Id>S1</Id><CreDtTm>2025-03-18T06:00:00-05:00</CreDtTm>
<Acct><Id><Othr><Id>987654321</Id></Othr></Id><Ccy>USD</Ccy></Acct>
{entries}
</Stmt></BkToCstmrStmt></Document>"""


def entry(body: str, amount: str = "100.00", indicator: str = "CRDT") -> str:
    return (
        f'<Ntry><Amt Ccy="USD">{amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>'
        f"<BookgDt><DtTm>2025-03-17T23:10:00-05:00</DtTm></BookgDt>{body}</Ntry>"
    )


def code(domain: str, family: str, sub: str) -> str:
    return (
        f"<BkTxCd><Domn><Cd>{domain}</Cd><Fmly><Cd>{family}</Cd>"
        f"<SubFmlyCd>{sub}</SubFmlyCd></Fmly></Domn></BkTxCd>"
    )


def statement(*entries: str) -> bytes:
    return STATEMENT.format(entries="\n".join(entries)).encode()


@pytest.mark.parametrize(
    ("body", "indicator", "type_code", "category"),
    [
        (code("PMNT", "RCDT", "ESCT"), "CRDT", "195", "wire"),
        (code("PMNT", "RCDT", "DMCT"), "CRDT", "195", "wire"),
        (code("PMNT", "RCDT", "ACDT"), "CRDT", "142", "ach_credit"),
        (code("PMNT", "ICDT", "ESCT"), "DBIT", "495", "debit"),
        (code("PMNT", "ICHQ", "CCHQ"), "DBIT", "475", "debit"),
        (code("PMNT", "LBOX", "LBDP"), "CRDT", "115", "lockbox"),
        (code("CAMT", "ACCB", "ZABA"), "DBIT", "575", "zba"),
        (code("PMNT", "RCDT", "RRTN"), "DBIT", "557", "return"),
        (code("XXXX", "YYYY", "ZZZZ"), "CRDT", "399", "other_credit"),
        ("<BkTxCd><Prtry><Cd>475</Cd></Prtry></BkTxCd>", "DBIT", "475", "debit"),
        ("<BkTxCd><Prtry><Cd>NTRF+166</Cd></Prtry></BkTxCd>", "CRDT", "399", "other_credit"),
    ],
)
def test_type_code_and_category(body: str, indicator: str, type_code: str, category: str) -> None:
    (t,) = txns(run(statement(entry(body, indicator=indicator))))
    assert (t.type_code, t.category) == (type_code, category)
    assert t.direction == ("credit" if indicator == "CRDT" else "debit")


def test_credit_debit_indicator_beats_the_code_range() -> None:
    # A bank labelling a credit with a debit code (475): the indicator is authoritative.
    body = "<BkTxCd><Prtry><Cd>475</Cd></Prtry></BkTxCd>"
    (t,) = txns(run(statement(entry(body, indicator="CRDT"))))
    assert t.direction == "credit"
    assert t.category == "other_credit"


def test_reversal_indicator_makes_a_return() -> None:
    body = "<RvslInd>true</RvslInd>" + code("PMNT", "RCDT", "ACDT")
    (t,) = txns(run(statement(entry(body, indicator="DBIT"))))
    assert t.category == "return" and t.direction == "debit"


def test_datetime_booking_date_and_references() -> None:
    body = (
        "<AcctSvcrRef>BANKREF1</AcctSvcrRef><NtryDtls><TxDtls><Refs><InstrId>INS-9</InstrId>"
        "<EndToEndId>NOTPROVIDED</EndToEndId></Refs>"
        "<RltdPties><Dbtr><Pty><Nm>AETNA  LIFE</Nm></Pty></Dbtr></RltdPties></TxDtls></NtryDtls>"
    )
    (t,) = txns(run(statement(entry(body))))
    assert t.as_of_date == date(2025, 3, 17)  # the bank's local date, not shifted to UTC
    assert t.bank_reference == "BANKREF1"
    assert t.customer_reference == "INS-9"
    assert t.company_name == "AETNA LIFE"  # Dbtr/Pty/Nm, .08 and later


def test_several_transaction_details_become_one_event_each() -> None:
    txs = "".join(
        f"<TxDtls><Refs><EndToEndId>E{i}</EndToEndId></Refs>"
        f'<Amt Ccy="USD">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
        f"<RmtInf><Ustrd>TRN*1*TR{i}*1512345678\\</Ustrd></RmtInf></TxDtls>"
        for i, amount in ((1, "60.00"), (2, "40.00"))
    )
    body = "<AcctSvcrRef>BATCH7</AcctSvcrRef>" + code("PMNT", "RCDT", "ACDT")
    items = run(statement(entry(body + f"<NtryDtls>{txs}</NtryDtls>")))
    first, second = txns(items)
    assert not issues(items)
    assert [t.amount for t in (first, second)] == [Decimal("60.00"), Decimal("40.00")]
    assert [t.trace_number for t in (first, second)] == ["TR1", "TR2"]
    assert [t.customer_reference for t in (first, second)] == ["E1", "E2"]
    assert [t.source.record for t in (first, second)] == ["S1/1/1", "S1/1/2"]
    assert first.bank_reference == second.bank_reference == "BATCH7"
    assert first.event_id != second.event_id
    assert first.category == "claim_payment"


def test_transaction_details_that_do_not_add_up_are_flagged() -> None:
    txs = "".join(f'<TxDtls><Amt Ccy="USD">{a}</Amt></TxDtls>' for a in ("60.00", "30.00"))
    items = run(statement(entry(f"<NtryDtls>{txs}</NtryDtls>")))
    assert len(txns(items)) == 2
    (issue,) = issues(items)
    assert issue.code == "control_total_mismatch"
    assert issue.difference == Decimal("10.00")


def test_details_without_own_amounts_stay_one_event() -> None:
    txs = "<TxDtls><RmtInf><Ustrd>TRN*1*A1*1512345678\\</Ustrd></RmtInf></TxDtls><TxDtls/>"
    (t,) = txns(run(statement(entry(f"<NtryDtls>{txs}</NtryDtls>"))))
    assert t.amount == Decimal("100.00")
    assert t.trace_number == "A1"


def test_identical_unreferenced_entries_get_distinct_stable_ids() -> None:
    doc = statement(entry(""), entry(""))
    first, second = txns(run(doc))
    assert first.event_id != second.event_id
    assert [t.event_id for t in txns(run(doc))] == [first.event_id, second.event_id]
