"""Matching features: the columns linkage compares, derived from normalised leads.

The normalise step (slowburn.normalize) already gives every lead its canonical email (lowercase,
gmail dots and googlemail folded, +tag stripped and kept apart in email_tag), its E.164 phone
(with the source's default region), ASCII name keys, a company basename (cleanco) and an ISO
country code. This module adds what only matching needs, reusing those functions instead of
re-implementing them:

* first-name nickname variants (Bill ~ William, Peggy ~ Margaret) from the `nicknames` package, for
  the name comparison. There is no single "canonical" blocking key: the nicknames data is a
  many-to-many relation (Bill is a nickname of Robert, Will, William and Willis), so any one key
  misses about half of the true nickname pairs; blocking relies on surname, email, phone and
  company instead, and the comparison accepts a nickname when either name is a variant of the other;
* the canonical local part of the email and whether the domain is free mail;
* the phone with shared lines (a switchboard used by several people) left out, its last digits, the website's domain, and street, city and postcode keys (street
  types abbreviated as postal services do, so "12 Main Street" ~ "12 main st.");
* a single `features()` that also works when columns are missing altogether (no email column,
  no phone column): they are null and their comparisons drop out of the model.
"""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from slowburn.arrowkeys import strings
from slowburn.normalize import FREE_MAIL_DOMAINS, company_key, country_code, email_parts, name_key, phone_e164

# Columns the linkage reads; `features()` guarantees every one exists (string dtype unless noted).
FEATURE_COLUMNS = (
    "first_name_norm", "last_name_norm", "email_canonical",
    "email_local", "email_domain", "email_free", "phone_e164", "phone_tail", "company_norm", "website_domain",
    "street_norm", "city_norm", "postcode_norm", "country_code",
)

# Street-type words as postal services abbreviate them, so "12 Main Street" ~ "12 main st.".
STREET_ABBREVIATIONS = {
    "street": "st", "road": "rd", "avenue": "ave", "av": "ave", "boulevard": "blvd", "drive": "dr", "lane": "ln",
    "court": "ct", "place": "pl", "square": "sq", "terrace": "ter", "parkway": "pkwy", "highway": "hwy",
    "circuit": "cct", "crescent": "cres", "close": "cl", "suite": "ste", "apartment": "apt", "unit": "unit",
    "north": "n", "south": "s", "east": "e", "west": "w", "strasse": "str", "straße": "str",
}


@lru_cache(maxsize=1)
def _namer():
    from nicknames import NickNamer
    return NickNamer()


@lru_cache(maxsize=200_000)
def name_variants(first_key: str) -> tuple[str, ...]:
    """The name itself, the names it is a nickname of, and its nicknames (ASCII lower keys), sorted.

    'bill' -> (..., 'bill', ..., 'william', ...). Two first names are a nickname match when either
    one is in the other's variants: a one-hop relation, so Bill~William and Bill~Robert, but not
    William~Robert through Bill.
    """
    nn = _namer()
    out = {first_key}
    for n in nn.canonicals_of(first_key) | nn.nicknames_of(first_key):
        k = "".join(ch for ch in n.lower() if ch.isalpha())
        if k:
            out.add(k)
    return tuple(sorted(out))


def _text(df: pd.DataFrame, col: str) -> pd.Series:
    if col in df.columns:
        return df[col].astype("string")
    return pd.Series(pd.NA, index=df.index, dtype="string")


def features(leads: pd.DataFrame) -> pd.DataFrame:
    """The matching frame: `unique_id` (position in `leads`) plus FEATURE_COLUMNS, row for row.

    Canonical columns the normalise step made are used as they are; when a column is missing (a CLI
    input file, an input without email or phone altogether) it is derived with slowburn.normalize's
    own functions, or is null. The first-name variants are a per-name lookup (`variants_table`), not
    a per-row column, so that a million rows do not carry a million Python lists.
    """
    df = leads
    out = pd.DataFrame(index=df.index)
    out["unique_id"] = np.arange(len(df), dtype=np.int64)
    for src, dst, fn in (("first_name", "first_name_norm", name_key), ("last_name", "last_name_norm", name_key),
                         ("company", "company_norm", company_key)):
        out[dst] = _text(df, dst) if dst in df.columns else fn(_text(df, src))
    if "email_canonical" in df.columns and "email_domain" in df.columns:
        email, domain = _text(df, "email_canonical"), _text(df, "email_domain")
    else:
        parts = email_parts(_text(df, "email"))
        email, domain = parts["email_canonical"], parts["email_domain"]
    out["email_canonical"] = email
    out["email_local"] = _series(pc.struct_field(pc.extract_regex(strings(email), r"^(?P<local>[^@]+)@"), [0])
                                 ).set_axis(email.index)
    out["email_domain"] = domain
    out["email_free"] = domain.isin(FREE_MAIL_DOMAINS).where(domain.notna()).astype("boolean")
    country = _text(df, "country_code") if "country_code" in df.columns else country_code(_text(df, "country"))
    if "phone_e164" in df.columns:
        phone = _text(df, "phone_e164")
    else:
        phone = phone_e164(_text(df, "phone"), country.fillna("US"))
    phone = phone.mask(shared_line(phone, out["first_name_norm"], out["last_name_norm"]))
    out["phone_e164"] = phone
    out["phone_tail"] = phone.str.slice(-7).astype("string")
    out["website_domain"] = website_domain(_text(df, "website"))
    out["street_norm"] = street_key(_text(df, "street"))
    out["city_norm"] = per_distinct(_text(df, "city"), name_key)
    out["postcode_norm"] = per_distinct(_text(df, "postcode"), postcode_key)
    out["country_code"] = country
    return out.reset_index(drop=True)


def shared_line(phone: pd.Series, first: pd.Series, last: pd.Series) -> pd.Series:
    """Rows whose number is a shared line (a company switchboard): it appears with two or more
    different first names AND two or more different surnames. Such a number says where someone
    works, not who they are, so linkage ignores it (the organisation comparison has the workplace).
    One person's rows rarely differ in both names (a nickname and a surname typo at once)."""
    keyed = pd.DataFrame({"p": phone, "f": first, "l": last}).dropna(subset=["p"])
    if keyed.empty:
        return pd.Series(False, index=phone.index)
    per = keyed.groupby("p", sort=False).agg(f=("f", "nunique"), l=("l", "nunique"))
    shared = per.index[(per["f"] > 1) & (per["l"] > 1)]
    return phone.isin(shared).fillna(False).astype(bool)


def per_distinct(values: pd.Series, fn) -> pd.Series:
    """fn (a value-by-value Series function, such as slowburn.normalize.name_key) on the distinct
    values only, spread back to every row with an Arrow take: a million rows of a few thousand
    cities are not mapped through a Python dict."""
    coded = pc.dictionary_encode(strings(values))
    keys = fn(_series(coded.dictionary))
    return _series(pc.take(strings(keys), coded.indices)).set_axis(values.index)


def _series(values) -> pd.Series:
    """An Arrow string result as a pandas string Series (no copy)."""
    if not isinstance(values, pa.ChunkedArray):
        values = pa.chunked_array([values])
    return pd.Series(pd.arrays.ArrowStringArray(values.cast(pa.large_string())))


# Matching keys of every row, earlier rows included, are rebuilt every night: Arrow compute (RE2)
# keeps that at C speed instead of a Python call per distinct value (websites are mostly distinct).
def website_domain(website: pd.Series) -> pd.Series:
    """'https://www.Acme.com/about' -> 'acme.com'."""
    host = pc.utf8_lower(pc.utf8_trim_whitespace(strings(website)))
    host = pc.replace_substring_regex(host, r"^[a-z][a-z0-9+.-]*://", "")
    host = pc.replace_substring_regex(host, r"[/?#:].*$", "")
    host = pc.replace_substring_regex(host, r"^www\d?\.", "")
    return _series(pc.if_else(pc.match_substring(host, "."), host, None)).set_axis(website.index)


def _street_key_one(v: str) -> str | None:
    from unidecode import unidecode
    words = re.findall(r"[a-z0-9]+", unidecode(v).lower())
    return " ".join(STREET_ABBREVIATIONS.get(w, w) for w in words) or None


def postcode_key(postcode: pd.Series) -> pd.Series:
    """Uppercase letters and digits only: 'sw1a 1aa' -> 'SW1A1AA'."""
    post = postcode.str.upper().str.replace(r"[^0-9A-Z]", "", regex=True)
    return post.mask(post == "").astype("string")


def street_key(street: pd.Series) -> pd.Series:
    """Lowercase ASCII words and numbers, street types abbreviated: '12, Main Street' -> '12 main st'.

    Per distinct street; ASCII ones (nearly all) in Arrow, the rest transliterated by unidecode in Python."""
    coded = pc.dictionary_encode(strings(street))
    uniq = coded.dictionary
    spaced = pc.replace_substring_regex(pc.ascii_lower(uniq), r"[^a-z0-9]+", " ")
    words = pc.split_pattern(pc.utf8_trim(spaced, " "), " ")
    flat = pc.list_flatten(words)
    long_, short_ = (pa.array(list(x), type=flat.type) for x in (STREET_ABBREVIATIONS, STREET_ABBREVIATIONS.values()))
    found = pc.index_in(flat, value_set=long_)
    flat = pc.if_else(pc.is_null(found), flat, pc.take(short_, found))
    joined = pc.binary_join(pa.LargeListArray.from_arrays(words.offsets, flat) if pa.types.is_large_list(words.type)
                            else pa.ListArray.from_arrays(words.offsets, flat), pa.scalar(" ", flat.type))
    keys = pc.if_else(pc.equal(joined, ""), pa.nulls(len(joined), joined.type), joined).to_numpy(zero_copy_only=False)
    keys = keys.astype(object)
    other = np.flatnonzero(~pc.string_is_ascii(uniq).to_numpy(zero_copy_only=False))
    for i in other:
        keys[i] = _street_key_one(uniq[int(i)].as_py())
    out = pc.take(pa.array(keys, type=pa.large_string(), from_pandas=True), coded.indices)
    return _series(out).set_axis(street.index)


def variants_table(first_name_norm: pd.Series) -> pd.DataFrame:
    """One row per distinct first-name key with its nickname variants (a list), for the linkage join."""
    names = pd.Series(first_name_norm.dropna().unique(), dtype=object)
    return pd.DataFrame({"first_name_norm": names.astype(str),
                         "first_name_variants": [list(name_variants(k)) for k in names]})


def profile(feats: pd.DataFrame, codes: dict | None = None) -> dict:
    """Null rate and distinct ratio per matching column: the snapshot a trained model is checked against.

    From per-column codes (pd.factorize: -1 for null, 0..k-1 for k distinct values), shared through
    `codes` with linkage's blocking keys so that each column is hashed once."""
    codes = {} if codes is None else codes
    n = max(len(feats), 1)
    stats = {}
    for c in FEATURE_COLUMNS:
        if c not in codes:
            codes[c] = pd.factorize(feats[c])[0]
        code = codes[c]
        nonnull = int((code >= 0).sum())
        distinct = int(code.max()) + 1 if nonnull else 0
        stats[c] = {"null_rate": round(1 - nonnull / n, 4),
                    "distinct_ratio": round(distinct / max(nonnull, 1), 4)}
    return {"rows": int(len(feats)), "columns": stats}
