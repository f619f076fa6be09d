"""Names, email, phone (E.164), company and country in one canonical form.

Each normaliser works on a whole column and parses each distinct value once: real lead data
repeats companies, countries and domains, so 1M rows means far fewer than 1M parses.
"""
from __future__ import annotations

from functools import lru_cache

import pandas as pd
import phonenumbers
import pyarrow.compute as pc
import pycountry
from cleanco import basename as company_basename
from unidecode import unidecode

from slowburn.arrowkeys import strings
from slowburn.workers import map_in_processes, shared_pool

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
FREE_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "aol.com",
    "icloud.com", "me.com", "msn.com", "gmx.de", "gmx.net", "web.de", "yahoo.co.uk", "protonmail.com",
    "proton.me", "mail.com",
})


def _per_unique(values: pd.Series, fn) -> pd.Series:
    """Apply fn (a module-level function) to each distinct non-null value once and broadcast back."""
    uniques = list(values.dropna().unique())
    lookup = dict(zip(uniques, map_in_processes(fn, uniques)))
    return values.map(lookup).astype("string")


# Python's \s for text (str.isspace) in RE2, whose own \s is ASCII only: [^@\s] as pandas' str.extract read it.
_NOT_AT_OR_SPACE = r"[^@\t\n\x0b\f\r\x1c-\x1f\x{85}\p{Z}]"


def _extract(text: pd.Series, pattern: str) -> list[pd.Series]:
    """Series.str.extract by Arrow's RE2 (pandas runs Python's re value by value: 3.6 s of a 1M-lead
    normalise): one string Series per named group, null where the pattern does not match."""
    found = pc.extract_regex(strings(text), pattern)
    return [pd.Series(pd.arrays.ArrowStringArray(pc.if_else(found.is_valid(), found.field(i), None)), index=text.index,
                      dtype="string") for i in range(found.type.num_fields)]


def email_parts(email: pd.Series) -> pd.DataFrame:
    """Lowercased email, the canonical matching key and the +tag.

    Gmail ignores dots in the local part and googlemail.com is gmail.com; every provider we see
    ignores a +tag, which is kept apart because it says where the lead came from (b.smith+webinar).
    """
    clean = email.astype("string").str.strip().str.lower()
    part = f"{_NOT_AT_OR_SPACE}+"
    local, domain = _extract(clean, rf"^(?P<local>{part})@(?P<domain>{part}\.{part})$")
    base = local.str.replace(r"\+.*$", "", regex=True).astype("string")
    tag = _extract(local, r"\+(?P<tag>.+)$")[0]
    is_gmail = domain.isin(GMAIL_DOMAINS)
    base = base.mask(is_gmail, base.str.replace(".", "", regex=False))
    domain = domain.mask(is_gmail, "gmail.com")
    canonical = (base + "@" + domain).astype("string")
    return pd.DataFrame({"email": clean, "email_canonical": canonical, "email_tag": tag.astype("string"),
                         "email_domain": domain.astype("string")})


def phone_e164(phone: pd.Series, region: pd.Series | str) -> pd.Series:
    """E.164 phone numbers; numbers that do not parse to a possible, complete number become null."""
    if isinstance(region, str):
        region = pd.Series(region, index=phone.index, dtype="string")
    keyed = pd.DataFrame({"p": phone.astype("string").str.strip(), "r": region.fillna("US").astype("string")})
    present = keyed["p"].notna() & (keyed["p"] != "")
    out = pd.Series(pd.NA, index=phone.index, dtype="string")
    if not present.any():
        return out
    fast = _nanp_fast_path(keyed["p"], keyed["r"])
    out = out.mask(fast.notna(), fast)
    slow = present & fast.isna()
    if slow.any():
        pairs = keyed[slow].drop_duplicates()
        pairs = list(zip(pairs["p"], pairs["r"]))
        lookup = dict(zip(pairs, map_in_processes(_e164_of, pairs)))
        sub = keyed[slow]
        out[slow] = [lookup[(p, r)] for p, r in zip(sub["p"], sub["r"])]
    return out


NANP_REGIONS = ("US", "CA")


def _nanp_fast_path(raw: pd.Series, region: pd.Series) -> pd.Series:
    """E.164 for plainly formatted North American numbers without calling phonenumbers.

    phonenumbers costs ~100 us a number; most lead phones are '(415) 555-0100'-style NANP numbers
    whose E.164 form follows from their digits. Only inputs made of digits and separators, whose area
    code starts 2-9, take this path, and it must agree with phonenumbers (tests/test_normalize.py
    checks both on the same inputs); everything else goes to phonenumbers.
    """
    plain = raw.str.fullmatch(r"\+?[\d\s().\-]+").fillna(False)
    digits = raw.str.replace(r"\D", "", regex=True)
    plus = raw.str.startswith("+").fillna(False)
    nanp_region = region.str.upper().isin(NANP_REGIONS)
    area_ok = digits.str.slice(-10, -9).str.match(r"[2-9]").fillna(False)
    ten = (digits.str.len() == 10) & ~plus & nanp_region
    eleven = (digits.str.len() == 11) & digits.str.startswith("1").fillna(False) & (plus | nanp_region)
    ok = (plain & area_ok & (ten | eleven)).fillna(False)
    return ("+1" + digits.str.slice(-10)).where(ok)


@lru_cache(maxsize=512)
def _valid_region(region: str) -> str | None:
    region = (region or "").upper()
    return region if region in phonenumbers.SUPPORTED_REGIONS else None


def _e164_of(pair: tuple[str, str]):
    return _e164(*pair)


def _e164(raw: str, region: str):
    try:
        num = phonenumbers.parse(raw, _valid_region(region) or "US")
    except phonenumbers.NumberParseException:
        return pd.NA
    # IS_POSSIBLE_LOCAL_ONLY (e.g. a US number without its area code, '555-0100') is not a dialable
    # number: formatting it would invent '+15550100'. is_valid_number is deliberately not used, so that
    # numbers in ranges phonenumbers does not know yet (or fictional 555 numbers) still normalise.
    if phonenumbers.is_possible_number_with_reason(num) != phonenumbers.ValidationResult.IS_POSSIBLE:
        return pd.NA
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def name_key(name: pd.Series) -> pd.Series:
    """Lowercase ASCII letters only: 'José-Luis ' and 'jose luis' share a key."""
    return _per_unique(name.astype("string"), _name_key_of)


def _name_key_of(v: str) -> str | None:
    key = "".join(ch for ch in unidecode(v).lower() if ch.isalpha())
    return key or None


def display_name(name: pd.Series) -> pd.Series:
    """Title-case names that arrived in one case ('SMITH', 'smith'); keep mixed case as typed (McDonald)."""
    s = name.astype("string").str.strip().str.replace(r"\s+", " ", regex=True)
    one_case = (s == s.str.upper()) | (s == s.str.lower())
    return s.mask(one_case.fillna(False), s.str.title())


def company_key(company: pd.Series) -> pd.Series:
    """Company basename without legal suffix or punctuation: 'ACME, Inc.' -> 'acme'."""
    return _per_unique(company.astype("string"), _company_key_of)


def _company_key_of(v: str) -> str | None:
    base = company_basename(unidecode(v)) or v
    key = " ".join("".join(ch if ch.isalnum() else " " for ch in base.lower()).split())
    return key or None


_COUNTRY_ALIASES = {
    "usa": "US", "u.s.": "US", "u.s.a.": "US", "united states of america": "US", "america": "US",
    "uk": "GB", "u.k.": "GB", "england": "GB", "scotland": "GB", "wales": "GB", "great britain": "GB",
    "britain": "GB", "northern ireland": "GB",
    "deutschland": "DE", "holland": "NL", "the netherlands": "NL", "россия": "RU", "south korea": "KR",
    # Everyday English names that ISO spells differently (pycountry's lookup only knows the ISO names).
    "russia": "RU", "turkey": "TR", "macedonia": "MK", "swaziland": "SZ", "ivory coast": "CI",
    "cote d'ivoire": "CI", "cape verde": "CV", "burma": "MM", "vatican": "VA", "vatican city": "VA",
    "brunei": "BN", "palestine": "PS", "macau": "MO", "uae": "AE", "republic of ireland": "IE",
}


@lru_cache(maxsize=4096)
def _country(value: str):
    """Exact matches only: an alias, or an ISO alpha-2/alpha-3 code, name, official or common name.

    No fuzzy search: it turns placeholders ('', 'Other', '-', 'none', 'ZZ', '0') into real countries.
    Numeric ISO codes are not accepted either: a bare number in a country field is not a country.
    """
    v = " ".join(value.split())
    if not v or v.isdigit():
        return pd.NA
    alias = _COUNTRY_ALIASES.get(v.lower())
    if alias:
        return alias
    try:
        return pycountry.countries.lookup(v).alpha_2
    except LookupError:
        return pd.NA


def country_code(country: pd.Series) -> pd.Series:
    """ISO 3166-1 alpha-2 codes from names, codes and common aliases; unknown names become null."""
    return _per_unique(country.astype("string"), _country)


def normalise_leads(landed: pd.DataFrame, default_regions: dict[str, str] | None = None,
                    attribute_types: dict[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Typed, canonical leads plus the cells that could not be typed (for quarantine).

    `landed` holds contract columns as text plus `row_key` and `source_name`;
    `default_regions` maps source_name to the phone region used when a row has no country;
    `attribute_types` maps custom attribute names to number | category | boolean (the sources file's).
    """
    with shared_pool():  # phones, companies and names are parsed by one pool of workers
        return _normalise_leads(landed, default_regions, attribute_types)


def _normalise_leads(landed, default_regions, attribute_types):
    from slowburn.contracts import LEADS, coerce, coerce_attributes, check

    check(landed, LEADS, step="normalise", kinds=False)
    typed, problems = coerce(landed, LEADS)
    if "attributes" in typed:
        typed["attributes"], unreadable = coerce_attributes(typed["attributes"], attribute_types or {})
        problems = pd.concat([problems, unreadable], ignore_index=True) if len(unreadable) else problems
    problems["row_key"] = landed["row_key"].reindex(problems["index"]).to_numpy()
    emails = email_parts(typed["email"])
    typed["email"] = emails["email"]
    typed["email_canonical"] = emails["email_canonical"]
    typed["email_tag"] = emails["email_tag"]
    typed["email_domain"] = emails["email_domain"]
    typed["country_code"] = country_code(typed["country"])
    region = typed["source_name"].map(default_regions or {}).astype("string") if "source_name" in typed else None
    region = typed["country_code"].fillna(region if region is not None else "US")
    typed["phone_e164"] = phone_e164(typed["phone"], region)
    typed["first_name"] = display_name(typed["first_name"])
    typed["last_name"] = display_name(typed["last_name"])
    typed["first_name_norm"] = name_key(typed["first_name"])
    typed["last_name_norm"] = name_key(typed["last_name"])
    typed["company_norm"] = company_key(typed["company"])
    return typed, problems[["row_key", "column", "value"]]


def normalise_touches(landed: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from slowburn.contracts import TOUCHES, coerce, check

    check(landed, TOUCHES, step="normalise", kinds=False)
    typed, problems = coerce(landed, TOUCHES)
    problems["row_key"] = landed["row_key"].reindex(problems["index"]).to_numpy()
    return typed, problems[["row_key", "column", "value"]]
