"""slowburn.normalize: email, phone, country, company and name keys, and normalise_leads on landed rows."""
from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slowburn.contracts import LEADS, NORMALISED_LEADS, ContractError, check
from slowburn.normalize import (company_key, country_code, display_name, email_parts, name_key, normalise_leads,
                                phone_e164)


def S(*values) -> pd.Series:
    return pd.Series(list(values), dtype="string")


def _as_list(series: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in series.tolist()]


# ------------------------------------------------------------------------------------------------ email

# Addresses built from characters the patterns care about: every kind of Unicode space, @, +, dots.
_EMAIL_TEXT = st.lists(st.one_of(st.none(), st.text(
    alphabet=st.sampled_from(list("ab.+@-_xZ") + [" ", "\t", "\n", "\x0b", "\x1c", "\x85", "\xa0", "\u2003", "\u3000",
                                                  "\u200b", "\u00e9", "\u0130"]), max_size=14)), max_size=20)


@settings(max_examples=300, deadline=None)
@given(_EMAIL_TEXT)
def test_email_parts_split_as_pythons_regex_does(values):
    """The Arrow (RE2) split gives what pandas' str.extract with Python's re gave, Unicode spaces too."""
    clean = S(*values).str.strip().str.lower()
    expected = clean.str.extract(r"^(?P<local>[^@\s]+)@(?P<domain>[^@\s]+\.[^@\s]+)$").astype("string")
    tag = expected["local"].str.extract(r"\+(.+)$")[0].astype("string")
    parts = email_parts(S(*values))
    gmail = expected["domain"].isin(["gmail.com", "googlemail.com"])
    pd.testing.assert_series_equal(parts["email_domain"], expected["domain"].mask(gmail, "gmail.com"),
                                   check_names=False)
    pd.testing.assert_series_equal(parts["email_tag"], tag, check_names=False)
    assert parts["email_canonical"].isna().equals(expected["local"].isna())


def test_email_parts_gmail_dots_googlemail_tags_and_case():
    parts = email_parts(S("B.Smith+webinar@Gmail.com", " bsmith@googlemail.com ", "b.s.m.i.t.h@GMAIL.COM",
                          "John.Doe+a+b@Example.com", "first.last@company.co.uk"))
    assert _as_list(parts["email"]) == ["b.smith+webinar@gmail.com", "bsmith@googlemail.com", "b.s.m.i.t.h@gmail.com",
                                        "john.doe+a+b@example.com", "first.last@company.co.uk"]
    assert _as_list(parts["email_canonical"]) == ["bsmith@gmail.com", "bsmith@gmail.com", "bsmith@gmail.com",
                                                  "john.doe@example.com", "first.last@company.co.uk"]
    # dots matter outside gmail; the tag is kept apart, everything after the first '+'
    assert _as_list(parts["email_tag"]) == ["webinar", None, None, "a+b", None]
    assert _as_list(parts["email_domain"]) == ["gmail.com", "gmail.com", "gmail.com", "example.com",
                                               "company.co.uk"]


@pytest.mark.parametrize("raw", ["bob@@acme", "no-at-sign", "a@localhost", "x y@z.com", "@acme.com", "bob@", "",
                                 None])
def test_email_parts_invalid_addresses_have_no_canonical(raw):
    parts = email_parts(S("ok@x.com", raw))  # alongside a valid address, see the xfail below
    assert parts["email_canonical"].iloc[0] == "ok@x.com"
    assert pd.isna(parts["email_canonical"].iloc[1])
    assert pd.isna(parts["email_tag"].iloc[1])
    assert pd.isna(parts["email_domain"].iloc[1])


@pytest.mark.parametrize("values", [[None, None], ["bob@@acme"]], ids=["all-null", "all-invalid"])
def test_email_parts_with_no_valid_address(values):
    parts = email_parts(pd.Series(values, dtype="string"))
    assert parts["email_canonical"].isna().all()
    assert parts["email_tag"].isna().all()


def test_email_parts_keeps_index():
    parts = email_parts(pd.Series(["a@x.com", "b@y.com"], index=[7, 3], dtype="string"))
    assert list(parts.index) == [7, 3]
    assert parts.loc[3, "email_canonical"] == "b@y.com"


# ------------------------------------------------------------------------------------------------ phone

@pytest.mark.parametrize("raw", ["(415) 555-0100", "415.555.0100", "+1 415 555 0100", "4155550100",
                                 "1-415-555-0100", " 415-555-0100 "])
def test_phone_us_formats(raw):
    assert phone_e164(S(raw), "US").tolist() == ["+14155550100"]


def test_phone_uk_with_region_gb():
    got = phone_e164(S("020 7946 0018", "07700 900123", "+44 20 7946 0018"), "GB")
    assert got.tolist() == ["+442079460018", "+447700900123", "+442079460018"]


def test_phone_region_per_row_and_null_region_defaults_to_us():
    got = phone_e164(S("020 7946 0018", "(415) 555-0100", "020 7946 0018"), S("GB", None, "gb"))
    assert got.tolist() == ["+442079460018", "+14155550100", "+442079460018"]


def test_phone_uk_national_number_with_us_region_is_null():
    assert pd.isna(phone_e164(S("020 7946 0018"), "US").iloc[0])


@pytest.mark.parametrize("raw", ["garbage", "12", "call me", "", "   ", None])
def test_phone_garbage_is_null(raw):
    got = phone_e164(S(raw), "US")
    assert pd.isna(got.iloc[0])
    assert str(got.dtype) == "string"


def test_phone_keeps_index_and_length():
    got = phone_e164(pd.Series(["4155550100", None, "garbage"], index=[9, 8, 7], dtype="string"), "US")
    assert list(got.index) == [9, 8, 7]
    assert _as_list(got) == ["+14155550100", None, None]


def test_phone_local_only_number_without_area_code_is_null():
    assert pd.isna(phone_e164(S("555-0100"), "US").iloc[0])


# ---------------------------------------------------------------------------------------------- country

@pytest.mark.parametrize("raw,code", [
    ("USA", "US"), ("U.S.A.", "US"), ("usa ", "US"), ("United States", "US"), ("US", "US"),
    ("United Kingdom", "GB"), ("UK", "GB"), ("England", "GB"), ("GBR", "GB"),
    ("Deutschland", "DE"), ("de", "DE"), ("Germany", "DE"), ("fr", "FR"), ("Holland", "NL"),
])
def test_country_code_known(raw, code):
    assert country_code(S(raw)).tolist() == [code]


@pytest.mark.parametrize("raw", ["Narnia", "XYZ", "unknown", None])
def test_country_code_unknown_is_null(raw):
    assert pd.isna(country_code(S(raw)).iloc[0])


@pytest.mark.parametrize("raw", ["", " ", "-", "Other", "none", "ZZ", "0"])
def test_country_code_placeholders_are_null(raw):
    assert pd.isna(country_code(S(raw)).iloc[0])


# ---------------------------------------------------------------------------------------------- company

def test_company_key_drops_legal_suffix_case_and_punctuation():
    got = company_key(S("ACME, Inc.", "Acme Inc", "acme", "Acme Ltd.", "ACME LLC", "Société Générale S.A.",
                        "Acme Holdings Inc", None, "  "))
    assert _as_list(got) == ["acme", "acme", "acme", "acme", "acme", "societe generale", "acme holdings", None,
                             None]


# ------------------------------------------------------------------------------------------------ names

def test_name_key_folds_accents_case_and_punctuation():
    got = name_key(S("José-Luis ", "jose luis", "Zoë", "Müller", "O'Brien", "Łukasz", "123", None))
    assert _as_list(got) == ["joseluis", "joseluis", "zoe", "muller", "obrien", "lukasz", None, None]


def test_display_name_title_cases_one_case_names_and_keeps_mixed_case():
    got = display_name(S("SMITH", "smith", "McDonald", "  mary   ann  ", "JEAN-LUC", "van der Berg", "ÉMILE", None))
    assert _as_list(got) == ["Smith", "Smith", "McDonald", "Mary Ann", "Jean-Luc", "van der Berg", "Émile", None]


# ------------------------------------------------------------------------------------------- normalise_leads

def _landed(rows: list[dict], index=None) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for name in LEADS.names:
        if name not in df.columns:
            df[name] = None
    df = df.astype("string")
    if index is not None:
        df.index = index
    return df


@pytest.fixture
def landed() -> pd.DataFrame:
    return _landed([
        dict(row_key="crm:1", source_name="crm", source_system="salesforce", source_id="L1", first_name="BILL",
             last_name="smith", email="B.Smith+webinar@GMAIL.com", phone="(415) 555-0100", company="Acme, Inc.",
             country="USA", status="new", created_at="2026-11-01", updated_at="2026-11-20T10:00:00+02:00",
             email_opt_out="0"),
        dict(row_key="crm:2", source_name="crm", source_system="salesforce", source_id="L2", first_name="José",
             last_name="Núñez", email="jose@acme.es", phone="020 7946 0018", company="ACME", country="",
             status="working", created_at="31/02/2026", updated_at="2026-11-21", email_opt_out="yes"),
        dict(row_key="crm:3", source_name="crm", source_system="salesforce", source_id="L3", first_name="ann",
             last_name="Lee", email="bob@@acme", phone=" ", company="Globex", country="United Kingdom",
             status="new", created_at="2026-11-02", updated_at=None, email_opt_out="maybe"),
    ], index=[40, 41, 42])  # not 0..n: problems must be keyed by row_key, not position


def test_normalise_leads_types_every_contract_column(landed):
    typed, _ = normalise_leads(landed, {"crm": "GB"})
    assert list(typed.index) == [40, 41, 42]
    check(typed, NORMALISED_LEADS, step="test")
    assert str(typed["created_at"].dtype) == "datetime64[ns, UTC]"
    assert str(typed["email_opt_out"].dtype) == "boolean"
    assert typed["created_at"].tolist()[0] == pd.Timestamp("2026-11-01T00:00:00Z")
    assert pd.isna(typed["created_at"].tolist()[1])
    assert typed["updated_at"].tolist()[0] == pd.Timestamp("2026-11-20T08:00:00Z")
    assert _as_list(typed["email_opt_out"]) == [False, True, None]


def test_normalise_leads_canonical_columns(landed):
    typed, _ = normalise_leads(landed, {"crm": "GB"})
    assert _as_list(typed["email"]) == ["b.smith+webinar@gmail.com", "jose@acme.es", "bob@@acme"]
    assert _as_list(typed["email_canonical"]) == ["bsmith@gmail.com", "jose@acme.es", None]
    assert _as_list(typed["email_tag"]) == ["webinar", None, None]
    assert _as_list(typed["country_code"]) == ["US", None, "GB"]
    # row 2 has no country: its phone is read in the source's default region (GB)
    assert _as_list(typed["phone_e164"]) == ["+14155550100", "+442079460018", None]
    assert _as_list(typed["first_name"]) == ["Bill", "José", "Ann"]
    assert _as_list(typed["last_name"]) == ["Smith", "Núñez", "Lee"]
    assert _as_list(typed["first_name_norm"]) == ["bill", "jose", "ann"]
    assert _as_list(typed["last_name_norm"]) == ["smith", "nunez", "lee"]
    assert _as_list(typed["company_norm"]) == ["acme", "acme", "globex"]


def test_normalise_leads_default_region_falls_back_to_us(landed):
    typed, _ = normalise_leads(landed)
    assert pd.isna(typed["phone_e164"].tolist()[1])  # a UK national number is not a US number


def test_normalise_leads_problems_name_row_key_column_and_value(landed):
    _, problems = normalise_leads(landed, {"crm": "GB"})
    assert list(problems.columns) == ["row_key", "column", "value"]
    got = sorted(zip(problems["row_key"], problems["column"], problems["value"]))
    assert got == [("crm:2", "created_at", "31/02/2026"), ("crm:3", "email_opt_out", "maybe")]


def test_normalise_leads_without_problems():
    clean = _landed([dict(row_key="f:1", source_name="f", source_system="file", source_id="1", email="a@x.com",
                          created_at="2026-01-01")])
    typed, problems = normalise_leads(clean)
    assert len(typed) == 1 and len(problems) == 0
    assert list(problems.columns) == ["row_key", "column", "value"]


def test_normalise_leads_batch_without_emails():
    rows = _landed([dict(row_key="ev:1", source_name="ev", source_system="event", source_id="1",
                         phone="4155550100", created_at="2026-01-01")])
    typed, problems = normalise_leads(rows)
    assert pd.isna(typed["email_canonical"].iloc[0])
    assert typed["phone_e164"].tolist() == ["+14155550100"]
    assert len(problems) == 0


def test_normalise_leads_missing_contract_column_is_a_contract_error(landed):
    with pytest.raises(ContractError, match=r"missing column\(s\) \['company'\]"):
        normalise_leads(landed.drop(columns=["company"]))


def test_email_parts_of_an_empty_column():
    parts = email_parts(pd.Series([], dtype="string"))
    assert len(parts) == 0
    assert all(str(t) == "string" for t in parts.dtypes)


@pytest.mark.parametrize("raw", ["+1 555 0100", "5550100"])
def test_phone_local_only_numbers_in_any_spelling_are_null(raw):
    assert pd.isna(phone_e164(S(raw), "US").iloc[0])


def test_phone_fictional_555_numbers_with_area_code_still_normalise():
    # the sample data uses 555-01xx numbers; they are possible (not valid) and must keep normalising
    assert phone_e164(S("(212) 555-0199", "212.555.0123"), "US").tolist() == ["+12125550199", "+12125550123"]


@pytest.mark.parametrize("raw,code", [("Russia", "RU"), ("  united   states ", "US"), ("Czechia", "CZ"),
                                      ("Viet Nam", "VN"), ("Great Britain", "GB"), ("UAE", "AE")])
def test_country_code_exact_names_and_aliases(raw, code):
    assert country_code(S(raw)).tolist() == [code]


@pytest.mark.parametrize("raw", ["N/A", "n.a.", "?", "826", "000", "XX", "Unknown Country", "Europe"])
def test_country_code_no_guessing(raw):
    assert pd.isna(country_code(S(raw)).iloc[0])


def test_nanp_fast_path_agrees_with_phonenumbers():
    """The vectorised NANP shortcut must give exactly what phonenumbers gives, or defer to it."""
    import numpy as np
    import pandas as pd
    from slowburn.normalize import _e164, _nanp_fast_path

    rng = np.random.default_rng(4)
    nsn = [f"{rng.integers(0, 10)}{rng.integers(0, 10)}{rng.integers(0, 10)}{rng.integers(0, 10_000_000):07d}"
           for _ in range(300)]
    shapes = ["({a}) {b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "1{a}{b}{c}", "{a}{b}{c}", "+1-{a}-{b}-{c}",
              "+{a}{b}{c}", "{a}-{b}-{c} x12", "001 {a} {b} {c}", "+44 {a} {b} {c}"]
    raws, regions = [], []
    for i, n in enumerate(nsn):
        for shape in shapes:
            raws.append(shape.format(a=n[:3], b=n[3:6], c=n[6:]))
            regions.append(["US", "CA", "GB", "DE"][i % 4])
    raw, region = pd.Series(raws, dtype="string"), pd.Series(regions, dtype="string")
    fast = _nanp_fast_path(raw, region)
    taken = fast.notna()
    assert taken.sum() > 500
    slow = [_e164(r, g) for r, g in zip(raw[taken], region[taken])]
    mismatches = [(r, g, f, s) for r, g, f, s in zip(raw[taken], region[taken], fast[taken], slow) if f != s]
    assert mismatches == []
