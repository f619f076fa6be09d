"""Hypothesis strategies for contract-valid frames, derived from slowburn.contracts.

Every column's strategy follows from its Column definition (kind, enum), so a column added to or
removed from a contract is generated without touching this file. Values are contract-valid but
otherwise unkind: nulls anywhere, blank and whitespace text, unicode, digits where names go,
timestamps from 1970 to 2100, and a small pool of realistic names so that duplicates do occur.
"""
from __future__ import annotations

import pandas as pd
from hypothesis import strategies as st

from slowburn import contracts as C

NOW = pd.Timestamp("2026-11-23T00:00:00Z")

# Realistic values mixed with odd ones: duplicates must happen for linkage to be exercised.
_POOL = {
    "first_name": ["Ann", "Bill", "William", "José", "ZOË", "o'brien"],
    "last_name": ["Smith", "Lee", "Müller", "van der Berg", "Ng"],
    "email": ["ann@acme.com", "B.Smith+x@gmail.com", "bsmith@googlemail.com", "not-an-email", "a@b", "@@"],
    "phone": ["+1 415 555 0100", "(415) 555-0100", "020 7946 0018", "12", "+999", "call me"],
    "company": ["Acme Inc.", "ACME", "Globex GmbH", "Initech LLC"],
    "website": ["https://www.acme.com/about", "acme.com", "http://", "www."],
    "street": ["12 Main Street", "12 main st.", "Hauptstraße 5", "PO Box 1"],
    "city": ["Boston", "boston", "München", "St. Louis"],
    "state": ["MA", "Bavaria", "NSW"],
    "postcode": ["02110", "80331", "SW1A 1AA", "0"],
    "country": ["US", "USA", "United States", "DE", "Germany", "gb", "Atlantis"],
    "source_system": ["crm", "hubspot", "salesforce"],
    "owner_id": ["O1", "O2", "O9"],
    "name": ["Rita Rep", "Sam Rep"],
    "campaign": ["Webinar", "Newsletter"],
    "actor": ["marketing", "O1"],
    "lead_source_id": ["1", "2", "3"],
    "source_id": ["1", "2", "3", "4"],
}
_ODD_TEXT = st.sampled_from(["", " ", "\t", "NaN", "None", "null", "0", "-", "ß", "😀", "x" * 300, "Ünïcödé"])


def _text(name: str):
    pool = _POOL.get(name)
    options = [_ODD_TEXT, st.text(min_size=0, max_size=12)]
    if pool:
        options = [st.sampled_from(pool)] * 3 + options
    return st.one_of(*options)


def column_strategy(col: C.Column):
    """Values for one contract column (None = null), from its kind and enum."""
    if col.enum:
        values = st.sampled_from(col.enum)
    elif col.kind == C.STRING:
        values = _text(col.name)
    elif col.kind == C.DATETIME:
        values = st.datetimes(min_value=pd.Timestamp("1970-01-01").to_pydatetime(),
                              max_value=pd.Timestamp("2100-01-01").to_pydatetime()).map(
            lambda d: pd.Timestamp(d, tz="UTC"))
        values = st.one_of(values, st.sampled_from([NOW, NOW - pd.Timedelta(days=3), NOW - pd.Timedelta(days=400)]))
    elif col.kind == C.BOOL:
        values = st.booleans()
    elif col.kind == C.INT:
        values = st.integers(min_value=-5, max_value=10_000)
    elif col.kind == C.FLOAT:
        values = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9)
    else:  # a kind added to the contracts after this file: nulls are always contract-valid
        return st.none()
    return st.one_of(st.none(), values)


def frame(rows: list[dict], contract: C.Contract) -> pd.DataFrame:
    """Rows as a frame with the contract's dtypes (an empty list gives the contract's empty frame)."""
    if not rows:
        return contract.empty()
    df = pd.DataFrame(rows, columns=contract.names)
    return df.astype({c.name: C.PANDAS_DTYPES[c.kind] for c in contract.columns})


def frames(contract: C.Contract, min_rows: int = 0, max_rows: int = 8, overrides: dict | None = None):
    """Contract-valid frames of min_rows..max_rows rows; `overrides` maps a column to its own strategy."""
    overrides = overrides or {}
    row = st.fixed_dictionaries({c.name: overrides.get(c.name, column_strategy(c)) for c in contract.columns})
    return st.lists(row, min_size=min_rows, max_size=max_rows).map(lambda rows: frame(rows, contract))


def landed(leads: pd.DataFrame, source: str = "crm") -> pd.DataFrame:
    """Leads as the extract step lands them: every value as text, with row_key and source_name."""
    out = leads.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.DatetimeTZDtype):
            out[c] = C.iso_utc_text(out[c])
        else:
            out[c] = out[c].astype("string")
    out.insert(0, "row_key", pd.Series([f"{source}:{i + 1}" for i in range(len(out))], index=out.index,
                                       dtype="string"))
    out.insert(1, "source_name", pd.Series(source, index=out.index, dtype="string"))
    return out
