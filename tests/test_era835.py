"""835 → canonical remittances: the known facts of every real sample, PHI, identity, damage."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from remitflow.events import Remittance, event_from_json, event_to_json
from remitflow.identity import PhiHasher
from remitflow.records import DeadLetter, ParseIssue
from sources.base import ParseContext, Parsed
from sources.x12 import parse_bytes
from tests.conftest import sample_bytes
from tests.test_x12_tokenizer import X12_SAMPLES


def run(data: bytes, ctx: ParseContext | None = None) -> list[Parsed]:
    return list(parse_bytes(data, ctx or ParseContext(file="t.835", phi=PhiHasher(b"k"))))


def remittances(items: list[Parsed]) -> list[Remittance]:
    return [i for i in items if isinstance(i, Remittance)]


def issues(items: list[Parsed], code: str | None = None) -> list[ParseIssue]:
    return [i for i in items if isinstance(i, ParseIssue) and (code is None or i.code == code)]


def dead(items: list[Parsed]) -> list[DeadLetter]:
    return [i for i in items if isinstance(i, DeadLetter)]


def only(name: str) -> tuple[Remittance, list[Parsed]]:
    items = run(sample_bytes(name))
    rems = remittances(items)
    assert len(rems) == 1
    return rems[0], items


def test_managed_care_facts() -> None:
    rem, items = only("LinuxForHealth-x12__managed-care.835")
    assert rem.trace_number == "7170066655"
    assert rem.payer_id == "1935665544"
    assert rem.amount == Decimal("945.00")
    assert (rem.handling_code, rem.method, rem.payment_format) == ("I", "ACH", "CCP")
    assert len(rem.claims) == 2
    assert rem.balanced and rem.balance_difference == 0
    assert all(c.balanced for c in rem.claims)
    assert [c.paid for c in rem.claims] == [Decimal("450.00"), Decimal("495.00")]
    assert rem.claims[1].service_lines == 1
    assert {(a.group, a.reason): a.amount for a in rem.claims[1].adjustments} == {
        ("CO", "A2"): Decimal("55.00"),
        ("PR", "1"): Decimal("600.00"),
        ("CO", "45"): Decimal("50.00"),
    }
    # BPR16 20002316 is not a date: reported, and event time falls back to DTM*405.
    (bad_date,) = issues(items, "invalid_date")
    assert "BPR16" in bad_date.message and bad_date.event_id == rem.event_id
    assert rem.effective_date is None
    assert rem.occurred_at.isoformat() == "2002-03-14T00:00:00+00:00"
    assert rem.payer_name == "RUSHMORE LIFE"
    assert (rem.payee_npi, rem.payee_tin) == ("5544667733", "777667755")
    assert rem.envelope.transaction_control_number == "112233"
    assert dead(items) == []


def test_medicare_part_a_facts() -> None:
    rem, items = only("LinuxForHealth-x12__medicare-part-a.835")
    assert (rem.trace_number, rem.payer_id) == ("12345", "1512345678")
    assert rem.amount == Decimal("150000.00")
    assert (rem.handling_code, rem.payment_format) == ("C", "CTX")
    assert rem.effective_date is not None and rem.effective_date.isoformat() == "2002-09-13"
    (plb,) = rem.provider_adjustments
    assert (plb.reason, plb.reference, plb.amount) == ("CV", "CP", Decimal("-1.27"))
    assert rem.balanced
    assert "999" in rem.payer_identifiers  # REF*2U in the payer loop
    assert issues(items) == []


def test_interest_sample_reports_balancing_differences() -> None:
    items = run(sample_bytes("affect-therapeutics-edi-835-parser__sample_835_with_interests.txt"))
    rems = {r.envelope.transaction_control_number: r for r in remittances(items)}
    assert set(rems) == {"1001", "1002"}
    r1001 = rems["1001"]
    assert r1001.trace_number == "081000607720039"  # a 15-digit ACH trace
    assert [(p.reason, p.amount) for p in r1001.provider_adjustments] == [("L6", Decimal("-10.3"))]
    assert not r1001.balanced and r1001.balance_difference == Decimal("-10.30")
    unbalanced = {i.event_id: i.difference for i in issues(items, "unbalanced_transaction")}
    assert unbalanced[r1001.event_id] == Decimal("-10.30")
    assert unbalanced[rems["1002"].event_id] == Decimal("5.00")
    # The malformed CAS and the stray line are dead letters; the remittances survive them.
    reasons = sorted(d.reason for d in dead(items))
    assert (
        reasons.count("CAS segment unreadable: CAS03 amount: not an amount in dollars and cents")
        == 2
    )
    assert "not an X12 segment" in reasons
    stray = next(d for d in dead(items) if d.reason == "not an X12 segment")
    assert stray.original() == b"resnCode>adjID>5***"


def test_zero_pay_is_non_payment() -> None:
    rem, _ = only("pyx12__835_mult_loops.txt")
    assert (rem.handling_code, rem.method) == ("H", "NON")
    assert rem.amount == 0
    assert not rem.expects_cash
    assert rem.claims[0].status == "4"
    assert rem.balanced


def test_check_payment_and_negative_cas() -> None:
    rem, _ = only("LinuxForHealth-x12__cob-contractural-adjustment.835")
    assert (rem.method, rem.trace_number, rem.amount) == ("CHK", "0063158ABC", Decimal("34.00"))
    assert rem.expects_cash
    (claim,) = rem.claims
    assert claim.status == "2"
    assert {(a.group, a.reason): a.amount for a in claim.adjustments}[("OA", "94")] == Decimal(
        "-9.00"
    )
    assert claim.balanced


def test_secondary_payment_claim_and_line_level_cas() -> None:
    rem, items = only("LinuxForHealth-x12__secondary-payment.835")
    assert [c.status for c in rem.claims] == ["2", "2"]
    assert rem.claims[1].service_lines == 2
    assert rem.balanced and issues(items) == []


def test_emedny_single_line_file_three_claims_with_a_denial() -> None:
    rem, items = only("edi-835-parser__emedny_sample.txt")
    assert len(rem.claims) == 3
    assert rem.claims[1].paid == 0
    assert rem.amount == sum(c.paid for c in rem.claims)
    assert rem.balanced and issues(items) == []


def test_united_legacy_trn04_and_payer_id() -> None:
    rem, _ = only("edi-835-parser__united_healthcare_legacy_sample.txt")
    assert rem.payer_supplemental_id == "000088888"
    assert "87726" in rem.payer_identifiers


def test_blue_cross_without_envelope() -> None:
    rem, items = only("edi-835-parser__blue_cross_nc_sample.txt")
    assert (rem.trace_number, rem.amount, rem.method) == ("02790758", Decimal("1922.86"), "CHK")
    assert rem.envelope.interchange_control_number is None
    assert rem.claims[0].balanced
    # Its third SVC has its amounts in the wrong elements: that segment is a dead letter.
    (svc,) = dead(items)
    assert svc.reason.startswith("SVC segment unreadable")


def test_tigershark_4010_pipe_separated_two_sets() -> None:
    items = run(sample_bytes("TigerShark__835-example-2.txt"))
    rems = remittances(items)
    assert [r.trace_number for r in rems] == ["1QG11111111", "1QG11111112"]
    assert rems[0].envelope.version == "004010X091A1"
    assert rems[0].payer_supplemental_id == "000011111"


def test_tigershark_dental_pipe_components() -> None:
    rem, _ = only("TigerShark__5010-835-example-1.txt")
    assert rem.claims[0].status == "25"
    assert rem.amount == Decimal("1790")


@pytest.mark.parametrize("name", X12_SAMPLES)
def test_every_sample_parses_and_round_trips(name: str) -> None:
    items = run(sample_bytes(name))
    rems = remittances(items)
    assert rems, name
    for rem in rems:
        again = event_from_json(event_to_json(rem))  # the validating boundary accepts it
        assert again == rem
        assert again.occurred_at.tzinfo is not None


PHI_VALUES = [
    b"BUDD",
    b"WILLIAM",
    b"33344555510",
    b"SETTLE",
    b"44455666610",
    b"5554555444",  # CLP01 patient control numbers
    b"8765432112",
]


def test_no_phi_leaves_the_parser() -> None:
    items = run(sample_bytes("LinuxForHealth-x12__managed-care.835"))
    dumped = b"\n".join(orjson.dumps(i.model_dump(mode="json")) for i in items)
    for value in PHI_VALUES:
        assert value not in dumped
    rem = remittances(items)[0]
    assert rem.claims[0].claim_ref == PhiHasher(b"k")("5554555444")
    other = remittances(
        run(sample_bytes("LinuxForHealth-x12__managed-care.835"), ParseContext(phi=PhiHasher(b"x")))
    )[0]
    assert other.claims[0].claim_ref != rem.claims[0].claim_ref


def test_dead_letter_reasons_never_quote_segment_values() -> None:
    data = sample_bytes("LinuxForHealth-x12__managed-care.835").replace(
        b"CLP*5554555444*1*800.00", b"CLP*5554555444*1*8O0.00"
    )
    (letter,) = dead(run(data))
    assert "5554555444" not in letter.reason and "8O0" not in letter.reason
    assert b"CLP*5554555444*1*8O0.00" in letter.original()


def test_identity_survives_resend_under_another_envelope_and_name() -> None:
    original = sample_bytes("LinuxForHealth-x12__managed-care.835")
    resent = (
        original.replace(b"000000907", b"000001234")
        .replace(b"*131031*1147*", b"*250101*0900*")
        .replace(b"ST*835*112233", b"ST*835*0042")
        .replace(b"SE*26*112233", b"SE*26*0042")
    )
    a = remittances(run(original, ParseContext(file="a.835")))[0]
    b = remittances(run(resent, ParseContext(file="other-name.txt")))[0]
    assert a.event_id == b.event_id
    assert a.source.file != b.source.file


def test_identity_is_independent_of_delimiters() -> None:
    star = sample_bytes("LinuxForHealth-x12__medicare-part-a.835")
    pipe = star.replace(b"*", b"|")
    assert remittances(run(star))[0].event_id == remittances(run(pipe))[0].event_id


def test_identity_changes_with_content() -> None:
    a = sample_bytes("LinuxForHealth-x12__managed-care.835")
    b = a.replace(b"TRN*1*7170066655", b"TRN*1*7170066656")
    assert remittances(run(a))[0].event_id != remittances(run(b))[0].event_id


def test_reversal_claims_keep_negated_amounts() -> None:
    data = (
        sample_bytes("LinuxForHealth-x12__managed-care.835")
        .replace(b"BPR*I*945.00", b"BPR*I*0.00")
        .replace(
            b"CLP*8765432112*1*1200.00*495.00*600.00", b"CLP*8765432112*22*-800.00*-450.00*-300.00"
        )
    )
    data = (
        data.replace(b"CAS*CO*A2*55.00~\n", b"CAS*CO*A2*-50.00~\n")
        .replace(b"SVC*HC:93555*1200.00*550.00", b"SVC*HC:93555*-800.00*-500.00")
        .replace(b"CAS*PR*1*600.00~\nCAS*CO*45*50.00", b"CAS*PR*1*-300.00")
    )
    rem = remittances(run(data))[0]
    reversal = rem.claims[1]
    assert reversal.is_reversal and reversal.paid == Decimal("-450.00")
    assert reversal.balanced
    assert rem.balanced and rem.amount == 0


def test_unbalanced_claim_and_service_are_reported_not_fixed() -> None:
    data = sample_bytes("LinuxForHealth-x12__managed-care.835").replace(
        b"CAS*CO*45*50.00", b"CAS*CO*45*40.00"
    )
    items = run(data)
    rem = remittances(items)[0]
    assert rem.claims[1].balance_difference == Decimal("10.00")
    assert [i.difference for i in issues(items, "unbalanced_claim")] == [Decimal("10.00")]
    assert [i.difference for i in issues(items, "unbalanced_service")] == [Decimal("10.00")]
    assert rem.claims[1].paid == Decimal("495.00")  # never "fixed"


def test_missing_trn_makes_the_set_a_dead_letter_and_the_next_set_survives() -> None:
    broken = sample_bytes("LinuxForHealth-x12__managed-care.835").replace(
        b"TRN*1*7170066655*1935665544~\n", b""
    )
    good = sample_bytes("LinuxForHealth-x12__medicare-part-a.835")
    items = run(broken + good)
    assert [r.trace_number for r in remittances(items)] == ["12345"]
    (letter,) = dead(items)
    assert "TRN" in letter.reason
    assert letter.original().startswith(b"ST*835*112233")
    assert letter.source.record == "ST 112233"


def test_truncated_file_dead_letters_the_open_set() -> None:
    data = sample_bytes("LinuxForHealth-x12__medicare-part-a.835")
    items = run(data[: data.index(b"PLB")])
    assert remittances(items) == []
    (letter,) = dead(items)
    assert "not closed by SE" in letter.reason


def test_other_transaction_sets_are_not_taken_for_835s() -> None:
    data = sample_bytes("LinuxForHealth-x12__managed-care.835").replace(b"ST*835*", b"ST*837*")
    items = run(data)
    assert remittances(items) == []
    assert "not an 835" in dead(items)[0].reason


def test_garbage_is_one_dead_letter() -> None:
    items = run(b"\x00\x01 this is not edi at all")
    assert len(items) == 1 and isinstance(items[0], DeadLetter)


def test_entity_resolved_from_reference_data() -> None:
    from remitflow.refdata import Entity, ReferenceData

    refdata = ReferenceData(entities=[Entity(id="ACME", name="Acme", npis=["5544667733"])])
    rem = remittances(
        run(sample_bytes("LinuxForHealth-x12__managed-care.835"), ParseContext(refdata=refdata))
    )[0]
    assert rem.entity == "ACME"
