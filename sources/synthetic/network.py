"""The synthetic provider network: hospitals, their banks and accounts, and the payers.

Everything is derived from ``(hospitals, payers, seed)`` through ``random.Random`` instances
seeded with strings (string seeds hash with SHA-512, so they do not depend on
``PYTHONHASHSEED``). Each hospital has its own stream, so hospital ``H003`` keeps its name,
NPIs, TIN and account numbers whether the network has 4 hospitals or 40; payers come from
another stream.

Identifiers are fake but valid: NPIs carry a correct Luhn check digit over the ``80840`` prefix,
routing numbers a correct ABA checksum, EINs a real campus prefix, so validators and parsers
that check them accept the files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from remitflow.refdata import BankAccount, Entity, GLMapping, Payer, ReferenceData

NACHA_COMPANY_NAME_LENGTH = 16  # NACHA batch header field 3: Company Name, 16 characters

# IRS campus prefixes that are in use (a few are skipped on purpose: 00, 07-09, 17-19, ...).
_EIN_PREFIXES = (
    *range(10, 17),
    *range(20, 28),
    *range(30, 40),
    *range(41, 49),
    *range(50, 69),
    *range(71, 78),
    *range(80, 89),
    *range(90, 96),
    98,
    99,
)


def luhn_check_digit(payload: str) -> int:
    """The Luhn digit that makes ``payload + digit`` valid."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # positions that get doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def npi_is_valid(npi: str) -> bool:
    """NPI check (CMS): Luhn over ``80840`` + the first nine digits."""
    return (
        len(npi) == 10
        and npi.isdigit()
        and npi[0] in "12"
        and luhn_check_digit("80840" + npi[:9]) == int(npi[9])
    )


def aba_is_valid(routing: str) -> bool:
    """ABA routing number checksum: 3·(d1+d4+d7) + 7·(d2+d5+d8) + (d3+d6+d9) ≡ 0 (mod 10)."""
    if len(routing) != 9 or not routing.isdigit():
        return False
    d = [int(c) for c in routing]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


def _npi(rng: random.Random) -> str:
    base = rng.choice("12") + "".join(rng.choice("0123456789") for _ in range(8))
    return base + str(luhn_check_digit("80840" + base))


def _ein(rng: random.Random) -> str:
    return f"{rng.choice(_EIN_PREFIXES):02d}{rng.randrange(10**7):07d}"


def _routing(rng: random.Random) -> str:
    # Federal Reserve district 01-12 (banks) or 21-32 (thrifts), then a checksum digit.
    prefix = rng.choice([*range(1, 13), *range(21, 33)])
    body = f"{prefix:02d}{rng.randrange(10**6):06d}"
    d = [int(c) for c in body]
    partial = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5]
    return body + str((10 - partial % 10) % 10)


def _account_number(rng: random.Random) -> str:
    length = rng.choice((9, 10, 10, 12))
    return str(rng.randrange(1, 10)) + "".join(rng.choice("0123456789") for _ in range(length - 1))


# --- banks ----------------------------------------------------------------------------------

_BANKS = (
    ("FCNB", "FIRST CAROLINA NATIONAL BANK"),
    ("PTB", "PIEDMONT TRUST BANK"),
    ("HCB", "HARBOR CITY BANK N.A."),
    ("GLCB", "GREAT LAKES COMMERCE BANK"),
    ("SSB", "SUMMIT STATE BANK"),
    ("PMB", "PACIFIC MERIDIAN BANK"),
)


@dataclass(frozen=True, slots=True)
class Bank:
    code: str
    name: str
    routing: str
    customer_id: str  # how the bank names the health system in its BAI2 01/02 records
    reference_style: int  # how it numbers its bank references (see bai2 file planning)
    crlf: bool  # writes CRLF line ends


@dataclass(frozen=True, slots=True)
class Account:
    number: str
    bank: Bank
    purpose: str  # "operating" (ACH receipts) or "lockbox" (check deposits)

    @property
    def gl_cash(self) -> str:
        return f"1010-CASH-{self.bank.code}-{self.number[-4:]}"


# --- hospitals ------------------------------------------------------------------------------

_PLACES = (
    "RIVERSIDE",
    "LAKEVIEW",
    "MAPLE VALLEY",
    "CEDAR RIDGE",
    "NORTHGATE",
    "SOUTHPOINT",
    "BAYSHORE",
    "PINE HILLS",
    "GRANITE FALLS",
    "WILLOW CREEK",
    "HIGHLAND PARK",
    "OAK HARBOR",
    "FAIRVIEW",
    "SILVER SPRINGS",
    "EASTON",
    "WESTBROOK",
    "CLEARWATER BAY",
    "STONEBRIDGE",
    "ASHFORD",
    "MEADOWBROOK",
)
_KINDS = (
    "GENERAL HOSPITAL",
    "REGIONAL MEDICAL CENTER",
    "COMMUNITY HOSPITAL",
    "MEMORIAL HOSPITAL",
    "CHILDRENS HOSPITAL",
    "MEDICAL CENTER",
)
_CAMPUSES = ("MAIN CAMPUS", "NORTH CAMPUS", "SURGERY CENTER", "OUTPATIENT PAVILION")


@dataclass(frozen=True, slots=True)
class Hospital:
    id: str
    name: str
    facility: str
    npis: tuple[str, ...]
    tin: str
    accounts: tuple[Account, ...]
    size: float  # relative claim volume (mean 1 over a large network)

    @property
    def operating_account(self) -> Account:
        return self.accounts[0]

    @property
    def lockbox_account(self) -> Account:
        return self.accounts[-1]

    @property
    def npi(self) -> str:
        return self.npis[0]


# --- payers ---------------------------------------------------------------------------------

# (key, name as the 835 N1*PR names it, aliases as bank text shows them, line of business)
_PAYER_TEMPLATES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("uhc", "UNITEDHEALTHCARE INSURANCE COMPANY", ("UNITEDHEALTHCARE", "UHC"), "commercial"),
    (
        "bcbs-nc",
        "BLUE CROSS AND BLUE SHIELD OF NORTH CAROLINA",
        ("BCBS OF NC", "BLUE CROSS NC"),
        "commercial",
    ),
    ("aetna", "AETNA LIFE INSURANCE COMPANY", ("AETNA", "AETNA LIFE INSUR"), "commercial"),
    (
        "cigna",
        "CIGNA HEALTH AND LIFE INSURANCE COMPANY",
        ("CIGNA", "CIGNA HLTH LIFE"),
        "commercial",
    ),
    ("humana", "HUMANA INSURANCE COMPANY", ("HUMANA INS CO",), "commercial"),
    (
        "anthem",
        "ANTHEM BLUE CROSS AND BLUE SHIELD",
        ("ANTHEM BCBS", "ANTHEM BLUE CROS"),
        "commercial",
    ),
    ("palmetto", "PALMETTO GBA MEDICARE PART A", ("PALMETTO GBA", "PGBA MEDICARE"), "medicare"),
    ("novitas", "NOVITAS SOLUTIONS INC", ("NOVITAS SOLUTION",), "medicare"),
    ("noridian", "NORIDIAN HEALTHCARE SOLUTIONS", ("NORIDIAN JE", "NORIDIAN HEALTHC"), "medicare"),
    ("wps", "WISCONSIN PHYSICIANS SERVICE INSURANCE", ("WPS GHA", "WISCONSIN PHYSIC"), "medicare"),
    ("nc-medicaid", "NORTH CAROLINA MEDICAID", ("NC MEDICAID", "NCDHHS MEDICAID"), "medicaid"),
    ("ny-medicaid", "NEW YORK STATE MEDICAID", ("NYSDOH", "EMEDNY"), "medicaid"),
    ("tmhp", "TEXAS MEDICAID AND HEALTHCARE PARTNERSHIP", ("TMHP", "TX MEDICAID"), "medicaid"),
    ("molina", "MOLINA HEALTHCARE", ("MOLINA HEALTHCAR",), "medicaid"),
    ("wellcare", "WELLCARE HEALTH PLANS", ("WELLCARE", "WELLCARE HEALTH"), "commercial"),
    ("kaiser", "KAISER FOUNDATION HEALTH PLAN", ("KAISER FDN HP", "KFHP"), "commercial"),
    ("oscar", "OSCAR HEALTH", (), "commercial"),
    ("umr", "UMR", (), "commercial"),
    ("geha", "GEHA", (), "commercial"),
    (
        "highmark",
        "HIGHMARK BLUE CROSS BLUE SHIELD",
        ("HIGHMARK BCBS", "HIGHMARK INC"),
        "commercial",
    ),
    (
        "horizon",
        "HORIZON BLUE CROSS BLUE SHIELD OF NEW JERSEY",
        ("HORIZON BCBSNJ", "HORIZON BLUE CRO", "HZN BCBS NJ"),
        "commercial",
    ),
    ("carefirst", "CAREFIRST BLUECROSS BLUESHIELD", ("CAREFIRST", "CAREFIRST BCBS"), "commercial"),
    ("tricare", "TRICARE EAST REGION", ("TRICARE EAST",), "commercial"),
    ("harvard", "HARVARD PILGRIM HEALTH CARE", ("HARVARD PILGRIM",), "commercial"),
    ("tufts", "TUFTS HEALTH PLAN", (), "commercial"),
    ("priority", "PRIORITY HEALTH", (), "commercial"),
    ("geisinger", "GEISINGER HEALTH PLAN", ("GEISINGER HP",), "commercial"),
    ("medi-cal", "CALIFORNIA MEDI-CAL", ("MEDI-CAL", "CA DHCS MEDI CAL"), "medicaid"),
)
# Extra payers for large networks: "<REGION> <PLAN KIND>", abbreviated in bank text.
_REGIONS = (
    "SUMMIT",
    "PIONEER",
    "CASCADE",
    "BLUE RIDGE",
    "HEARTLAND",
    "COASTAL",
    "PRAIRIE",
    "KEYSTONE",
    "EVERGREEN",
    "RED ROCK",
)
_PLAN_KINDS = (
    ("HEALTH PLAN", "HP"),
    ("MUTUAL INSURANCE COMPANY", "MUTUAL INS"),
    ("CARE NETWORK", "CARE NTWK"),
    ("COMMUNITY HEALTH CHOICE", "COMM HLTH CHOICE"),
)
_STATES = (
    ("PO BOX 30555", "SALT LAKE CITY", "UT", "84130"),
    ("PO BOX 740800", "ATLANTA", "GA", "30374"),
    ("PO BOX 981106", "EL PASO", "TX", "79998"),
    ("PO BOX 2291", "DURHAM", "NC", "27702"),
    ("PO BOX 14079", "LEXINGTON", "KY", "40512"),
    ("PO BOX 6008", "CAMDEN", "SC", "29020"),
    ("PO BOX 182223", "CHATTANOOGA", "TN", "37422"),
    ("PO BOX 1580", "ALBANY", "NY", "12201"),
)

# Claim filing indicators (CLP06) per line of business.
FILING_INDICATORS = {"commercial": ("12", "13"), "medicare": ("MA", "MB"), "medicaid": ("MC",)}


@dataclass(frozen=True, slots=True)
class PayerInfo:
    id: str
    name: str
    ein: str
    aliases: tuple[str, ...]
    line_of_business: str
    ach_type_code: str  # BAI2 type its ACH credits are reported under: 142, 165 or 169
    trace_style: str  # "ach15", "numeric", "alnum", "zero_padded"
    amount_style: str  # "fixed" ("945.00") or "minimal" ("945")
    dfi_routing: str
    dfi_account: str
    address: tuple[str, str, str, str]
    phone: str
    volume: float  # relative ERA volume (mean 1)
    company_id_in_text: bool  # bank shows "ID:<1EIN>" after the company name

    @property
    def trn03(self) -> str:
        """TRN03 / BPR10 / addenda payer id: "1" followed by the payer's EIN."""
        return "1" + self.ein

    @property
    def company_name(self) -> str:
        """NACHA company name (16 characters) the bank prints for this payer's ACH credits."""
        return self.aliases[0] if self.aliases else self.name[:NACHA_COMPANY_NAME_LENGTH]


@dataclass(slots=True)
class Network:
    seed: int
    hospitals: list[Hospital]
    payers: list[PayerInfo]
    banks: list[Bank]
    health_system_id: str  # ISA08 receiver id / BAI2 customer id of the whole health system
    gl: GLMapping = field(default_factory=GLMapping)

    def bank_accounts(self) -> list[tuple[Hospital, Account]]:
        return [(h, a) for h in self.hospitals for a in h.accounts]

    def to_reference_data(self) -> ReferenceData:
        return ReferenceData(
            entities=[
                Entity(
                    id=h.id,
                    name=h.name,
                    npis=list(h.npis),
                    tins=[h.tin],
                    facility=h.facility,
                    accounts=[
                        BankAccount(number=a.number, routing=a.bank.routing, gl_cash=a.gl_cash)
                        for a in h.accounts
                    ],
                )
                for h in self.hospitals
            ],
            payers=[
                Payer(id=p.id, name=p.name, payer_ids=[p.trn03], aliases=list(p.aliases))
                for p in self.payers
            ],
            gl=self.gl,
        )

    def write_refdata_toml(self, path: Path) -> None:
        """Write :meth:`to_reference_data` as TOML that ``load_reference_data`` reads back."""
        path.write_text(refdata_to_toml(self.to_reference_data()), encoding="utf-8")


def build_network(hospitals: int = 4, payers: int = 24, seed: int = 7) -> Network:
    if hospitals < 1 or payers < 1:
        raise ValueError("a network needs at least one hospital and one payer")
    bank_rng = random.Random(f"remitflow-banks:{seed}")
    n_banks = min(len(_BANKS), 1 + (hospitals + 2) // 3)
    banks = [
        Bank(
            code=code,
            name=name,
            routing=_routing(bank_rng),
            customer_id=f"HS{bank_rng.randrange(10**6):06d}",
            reference_style=i % 3,
            crlf=i == 1,
        )
        for i, (code, name) in enumerate(_BANKS[:n_banks])
    ]
    hospital_list = [_hospital(seed, i, banks) for i in range(hospitals)]
    payer_rng = random.Random(f"remitflow-payers:{seed}")
    payer_list = _payers(payer_rng, payers)
    return Network(
        seed=seed,
        hospitals=hospital_list,
        payers=payer_list,
        banks=banks,
        health_system_id=f"RFHS{seed % 10**6:06d}",
    )


def _hospital(seed: int, index: int, banks: list[Bank]) -> Hospital:
    # Its own stream: a hospital is the same whatever the size of the network around it (only
    # which of the network's banks holds its accounts depends on how many banks there are).
    rng = random.Random(f"remitflow-hospital:{seed}:{index}")
    place = _PLACES[index % len(_PLACES)]
    kind = rng.choice(_KINDS)
    name = f"{place} {kind}" if index < len(_PLACES) else f"{place} {kind} {index // len(_PLACES)}"
    npis = tuple(_npi(rng) for _ in range(rng.choice((1, 1, 2, 3))))
    tin = _ein(rng)
    size = round(rng.uniform(0.5, 1.5), 3)
    facility = f"{place} {rng.choice(_CAMPUSES)}"
    numbers = [_account_number(rng) for _ in range(2)]
    has_lockbox_account, lockbox_bank_draw = rng.random() < 0.5, rng.random()
    # Banks are spread round-robin so each has customers; a second account holds the lockbox,
    # at the same bank half of the time.
    primary = banks[index % len(banks)]
    accounts = [Account(numbers[0], primary, "operating")]
    if has_lockbox_account:
        other = primary if lockbox_bank_draw < 0.5 else banks[int(lockbox_bank_draw * len(banks))]
        accounts.append(Account(numbers[1], other, "lockbox"))
    return Hospital(
        id=f"H{index + 1:03d}",
        name=name,
        facility=facility,
        npis=npis,
        tin=tin,
        accounts=tuple(accounts),
        size=size,
    )


def _payers(rng: random.Random, n: int) -> list[PayerInfo]:
    templates = list(_PAYER_TEMPLATES)
    rng.shuffle(templates)
    chosen = templates[:n]
    extra = n - len(chosen)
    for i in range(extra):
        region = _REGIONS[i % len(_REGIONS)]
        kind, short = _PLAN_KINDS[(i // len(_REGIONS)) % len(_PLAN_KINDS)]
        round_ = i // (len(_REGIONS) * len(_PLAN_KINDS))
        suffix = f" {round_ + 1}" if round_ else ""
        name = f"{region} {kind}{suffix}"
        alias = f"{region} {short}{suffix}"[:NACHA_COMPANY_NAME_LENGTH]
        aliases: tuple[str, ...] = (alias,) if len(name) > NACHA_COMPANY_NAME_LENGTH else ()
        chosen.append((f"plan-{i + 1:03d}", name, aliases, "commercial"))
    eins: set[str] = set()
    result: list[PayerInfo] = []
    for key, name, known_aliases, lob in chosen:
        aliases = known_aliases
        if not aliases and len(name) > NACHA_COMPANY_NAME_LENGTH:
            # The bank can only print the first 16 characters: that truncation is an alias.
            aliases = (name[:NACHA_COMPANY_NAME_LENGTH].rstrip(),)
        ein = _ein(rng)
        while ein in eins:
            ein = _ein(rng)
        eins.add(ein)
        result.append(
            PayerInfo(
                id=key,
                name=name,
                ein=ein,
                aliases=aliases,
                line_of_business=lob,
                ach_type_code=rng.choice(("165", "165", "142", "169")),
                trace_style=rng.choice(("ach15", "numeric", "numeric", "alnum", "zero_padded")),
                amount_style=rng.choice(("fixed", "fixed", "minimal")),
                dfi_routing=_routing(rng),
                dfi_account=_account_number(rng),
                address=rng.choice(_STATES),
                phone=f"800555{rng.randrange(10**4):04d}",
                volume=round(rng.lognormvariate(0, 0.6), 3),
                company_id_in_text=rng.random() < 0.3,
            )
        )
    return result


# --- TOML -----------------------------------------------------------------------------------


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def refdata_to_toml(ref: ReferenceData) -> str:
    """Reference data as a TOML document (tables and arrays of tables, strings only)."""
    out = [
        "# remitflow reference data: legal entities (hospitals) with their NPIs, TINs and bank",
        "# accounts, payers with the ids and names they use, and the GL accounts of the cash.",
        "# Generated by `remitflow generate`; edit freely for a real deployment.",
        "",
    ]
    for e in ref.entities:
        out += ["[[entities]]", f"id = {_toml_str(e.id)}", f"name = {_toml_str(e.name)}"]
        if e.facility is not None:
            out.append(f"facility = {_toml_str(e.facility)}")
        out += [f"npis = {_toml_list(e.npis)}", f"tins = {_toml_list(e.tins)}", ""]
        for a in e.accounts:
            out += ["[[entities.accounts]]", f"number = {_toml_str(a.number)}"]
            if a.routing is not None:
                out.append(f"routing = {_toml_str(a.routing)}")
            out += [f"gl_cash = {_toml_str(a.gl_cash)}", f"currency = {_toml_str(a.currency)}", ""]
    for p in ref.payers:
        out += [
            "[[payers]]",
            f"id = {_toml_str(p.id)}",
            f"name = {_toml_str(p.name)}",
            f"payer_ids = {_toml_list(p.payer_ids)}",
            f"aliases = {_toml_list(p.aliases)}",
        ]
        if p.clearing_account is not None:
            out.append(f"clearing_account = {_toml_str(p.clearing_account)}")
        out.append("")
    gl = ref.gl
    out += [
        "[gl]",
        f"currency = {_toml_str(gl.currency)}",
        f"clearing_default = {_toml_str(gl.clearing_default)}",
        f"unapplied_cash = {_toml_str(gl.unapplied_cash)}",
        f"bank_fees = {_toml_str(gl.bank_fees)}",
        f"plb_default = {_toml_str(gl.plb_default)}",
        "",
        "[gl.plb]",
        *(f"{_toml_str(k)} = {_toml_str(v)}" for k, v in gl.plb.items()),
        "",
        "[gl.variances]",
        *(f"{_toml_str(k)} = {_toml_str(v)}" for k, v in gl.variances.items()),
        "",
    ]
    return "\n".join(out)
