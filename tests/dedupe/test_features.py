"""Normalisers and matching features against tricky cases."""
from __future__ import annotations

import pandas as pd

from slowburn.dedupe.features import features, name_variants, profile, variants_table
from slowburn.normalize import company_key, country_code, email_parts, name_key, phone_e164


def s(*values):
    return pd.Series(list(values), dtype="string")


def test_email_canonical_gmail_dots_googlemail_tags_and_case():
    got = email_parts(s("B.Smith+webinar@Gmail.com", "bsmith@googlemail.com", "j.doe+x@acme.com", "  JOE@ACME.COM ",
                        "bob@@acme", None))
    assert got["email_canonical"].tolist()[:4] == ["bsmith@gmail.com", "bsmith@gmail.com", "j.doe@acme.com",
                                                   "joe@acme.com"]  # dots only fold at gmail
    assert got["email_tag"].tolist()[:3] == ["webinar", pd.NA, "x"]
    assert got["email_canonical"].isna().tolist()[4:] == [True, True]


def test_phone_e164_uses_the_default_region_per_row():
    got = phone_e164(s("(415) 555-0100", "+1 415 555 0100", "020 7946 0018", "0171 2345678", "555-0100", "n/a"),
                     s("US", "DE", "GB", "DE", "US", "US"))
    assert got.tolist()[:4] == ["+14155550100", "+14155550100", "+442079460018", "+491712345678"]
    assert got.isna().tolist()[4:] == [True, True]  # a local-only number is not a dialable one


def test_company_basenames_with_cleanco():
    got = company_key(s("ACME, Inc.", "Acme Incorporated", "acme inc", "Müller GmbH & Co. KG", "Globex Corp."))
    assert got.tolist() == ["acme", "acme", "acme", "muller", "globex"]


def test_names_accents_and_countries():
    assert name_key(s("José-Luis ", "JOSE LUIS", "Ó Briain")).tolist() == ["joseluis", "joseluis", "obriain"]
    assert country_code(s("USA", "United Kingdom", "Deutschland", "fr", "Other", "")).tolist()[:4] == \
        ["US", "GB", "DE", "FR"]
    assert country_code(s("Other")).isna().all()


def test_nickname_variants_are_one_hop():
    assert "william" in name_variants("bill") and "bill" in name_variants("william")
    assert "robert" in name_variants("bob")
    assert "william" not in name_variants("robert")  # Bill links both, but that is two hops
    table = variants_table(s("bill", "bill", None, "ann"))
    assert sorted(table["first_name_norm"]) == ["ann", "bill"]


def test_features_without_email_or_phone_columns():
    leads = pd.DataFrame({"source_system": ["a", "a"], "source_id": ["1", "2"], "first_name": ["Bill", "William"],
                          "last_name": ["Smith", "Smith"], "company": ["ACME, Inc.", "Acme"],
                          "postcode": ["941 07", None], "city": ["San Francisco", None]})
    f = features(leads)
    assert f["email_canonical"].isna().all() and f["phone_e164"].isna().all()
    assert f["company_norm"].tolist() == ["acme", "acme"]
    assert f["first_name_norm"].tolist() == ["bill", "william"]
    assert f["postcode_norm"].tolist()[0] == "94107"
    prof = profile(f)
    assert prof["columns"]["email_canonical"]["null_rate"] == 1.0
    assert prof["columns"]["company_norm"]["distinct_ratio"] == 0.5


def test_website_domain_and_email_local_part():
    from slowburn.dedupe.features import website_domain
    got = website_domain(s("https://www.Acme.com/about", " WWW2.foo.co.uk:8080/x ", "acme", None, "ftp://x.y?q",
                           "Http://Ümlaut.de#top"))
    assert got.tolist() == ["acme.com", "foo.co.uk", pd.NA, pd.NA, "x.y", "ümlaut.de"]
    f = features(pd.DataFrame({"email": ["b.smith+x@acme.com", "nobody", None]}, index=[7, 8, 9]))
    assert f["email_local"].tolist() == ["b.smith", pd.NA, pd.NA]


def test_street_city_and_postcode_keys_per_distinct_value_equal_the_per_value_functions():
    """Street keys go through Arrow for ASCII streets and unidecode for the rest; city and postcode
    keys are computed per distinct value and spread back: each must equal its value-by-value form."""
    from slowburn.dedupe.features import _street_key_one, per_distinct, postcode_key, street_key
    streets = pd.Series(["12, Main Street", "North  north STREET", "Hauptstraße 5", "Ünter-den-Linden 3", " - ", "",
                         None, "12, Main Street", "Av. Road\tsuite 4", "ROAD"], dtype="string")
    keys = [None if pd.isna(k) else k for k in street_key(streets)]
    assert keys == [None if pd.isna(v) else _street_key_one(v) for v in streets]
    assert keys[:2] == ["12 main st", "n n st"] and keys[4] is None
    cities = pd.Series(["São Paulo", "sao paulo", None, "Köln", "", "São Paulo"], dtype="string")
    pd.testing.assert_series_equal(per_distinct(cities, name_key), name_key(cities), check_names=False)
    codes = pd.Series(["sw1a 1aa", "SW1A-1AA", " - ", None, "10115"], dtype="string")
    pd.testing.assert_series_equal(per_distinct(codes, postcode_key), postcode_key(codes), check_names=False)
