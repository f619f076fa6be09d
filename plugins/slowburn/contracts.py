"""Canonical columns, dtypes and enums: the one definition of every table slowburn reads or writes.

Every step calls :func:`check` on its input so that a source mapped wrongly fails with
an error that names the column and the fix, instead of a KeyError three steps later.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Kinds are deliberately few: what a column means to the pipeline, not how a vendor stores it.
STRING = "string"
DATETIME = "datetime"
BOOL = "bool"
INT = "int"
FLOAT = "float"

PANDAS_DTYPES = {
    STRING: "string",
    DATETIME: "datetime64[ns, UTC]",
    BOOL: "boolean",
    INT: "Int64",
    FLOAT: "Float64",
}

LEAD_STATUSES = ("new", "working", "nurturing", "qualified", "unqualified", "converted", "closed")
OPEN_STATUSES = ("new", "working", "nurturing", "qualified")
LEAD_STAGES = ("inquiry", "mql", "sql", "opportunity", "customer", "disqualified")
LEAD_SOURCES = ("form_fill", "target_page", "email", "event", "purchased_list", "rep_created", "other")
TOUCH_TYPES = (
    "form_fill", "page_view", "pricing_page_view", "email_open", "email_click", "email_bounce",
    "unsubscribe", "call", "rep_email", "meeting", "demo_request", "event_attended",
)
REP_TOUCH_TYPES = ("call", "rep_email", "meeting")
CHANNELS = ("web", "email", "phone", "event", "in_person", "other")
OUTCOMES = ("won", "lost")
ATTRIBUTE_TYPES = ("number", "category", "boolean")
TIERS = ("hot", "warm", "cool", "cold")


class ContractError(ValueError):
    """Input does not match a contract. The message names the table, the column and the fix."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    required: bool = True  # must be present as a column; values may still be null
    enum: tuple[str, ...] | None = None
    doc: str = ""


@dataclass(frozen=True)
class Contract:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def empty(self) -> pd.DataFrame:
        return pd.DataFrame({c.name: pd.Series(dtype=PANDAS_DTYPES[c.kind]) for c in self.columns})


LEADS = Contract(
    "leads",
    (
        Column("source_system", STRING, doc="which system the row came from, e.g. salesforce"),
        Column("source_id", STRING, doc="the row's id in its source system"),
        Column("first_name", STRING),
        Column("last_name", STRING),
        Column("email", STRING),
        Column("phone", STRING),
        Column("company", STRING),
        Column("title", STRING),
        Column("website", STRING),
        Column("street", STRING),
        Column("city", STRING),
        Column("state", STRING),
        Column("postcode", STRING),
        Column("country", STRING),
        Column("owner_id", STRING),
        Column("status", STRING, enum=LEAD_STATUSES),
        Column("stage", STRING, enum=LEAD_STAGES),
        Column("lead_source", STRING, enum=LEAD_SOURCES),
        Column("created_at", DATETIME),
        Column("updated_at", DATETIME),
        Column("last_activity_at", DATETIME),
        Column("email_opt_out", BOOL),
        Column("do_not_call", BOOL),
        Column("attributes", STRING, required=False,
               doc="custom vendor fields as a JSON object {name: number | text | true/false}; "
                   "mapped with `attributes:` in the sources file"),
    ),
    key=("source_system", "source_id"),
)

TOUCHES = Contract(
    "touches",
    (
        Column("source_system", STRING),
        Column("lead_source_id", STRING),
        Column("touch_type", STRING, enum=TOUCH_TYPES),
        Column("channel", STRING, enum=CHANNELS),
        Column("campaign", STRING),
        Column("occurred_at", DATETIME),
        Column("actor", STRING, doc="owner_id for rep touches, 'marketing' or the tool otherwise"),
        Column("value", FLOAT, required=False, doc="a number the touch carries, e.g. seconds on the page"),
    ),
)

OWNERS = Contract(
    "owners",
    (
        Column("owner_id", STRING),
        Column("name", STRING),
        Column("email", STRING),
        Column("active", BOOL),
        Column("deactivated_at", DATETIME),
        Column("team", STRING),
        Column("territory", STRING),
        Column("daily_capacity", INT),
    ),
    key=("owner_id",),
)

OUTCOMES_CONTRACT = Contract(
    "outcomes",
    (
        Column("source_system", STRING),
        Column("source_id", STRING),
        Column("outcome", STRING, enum=OUTCOMES),
        Column("closed_at", DATETIME),
        Column("amount", FLOAT),
    ),
    key=("source_system", "source_id"),
)

INPUT_CONTRACTS = {c.name: c for c in (LEADS, TOUCHES, OWNERS, OUTCOMES_CONTRACT)}

# Columns the normalise step adds to leads; later steps require them.
NORMALISED_LEAD_COLUMNS = (
    Column("row_key", STRING, doc="landing id of the source row: '<source>:<row number>'"),
    Column("email_canonical", STRING),
    Column("email_tag", STRING),
    Column("phone_e164", STRING),
    Column("first_name_norm", STRING),
    Column("last_name_norm", STRING),
    Column("company_norm", STRING),
    Column("country_code", STRING),
)
NORMALISED_LEADS = Contract("normalised_leads", LEADS.columns + NORMALISED_LEAD_COLUMNS)


def check(df: pd.DataFrame, contract: Contract, *, step: str, kinds: bool = True) -> None:
    """Raise ContractError naming every missing or mistyped column, and how to fix it."""
    problems: list[str] = []
    missing = [c.name for c in contract.columns if c.required and c.name not in df.columns]
    if missing:
        problems.append(
            f"missing column(s) {missing}; map them in the source's `columns:` mapping "
            f"(or map to null) so that {contract.name} has every contract column"
        )
    if kinds:
        for c in contract.columns:
            if c.name not in df.columns:
                continue
            s = df[c.name]
            ok = {
                STRING: lambda s: pd.api.types.is_string_dtype(s) or s.isna().all(),
                DATETIME: lambda s: isinstance(s.dtype, pd.DatetimeTZDtype) or s.isna().all(),
                BOOL: lambda s: pd.api.types.is_bool_dtype(s) or s.isna().all(),
                INT: lambda s: pd.api.types.is_integer_dtype(s) or s.isna().all(),
                FLOAT: lambda s: pd.api.types.is_numeric_dtype(s) or s.isna().all(),
            }[c.kind](s)
            if not ok:
                problems.append(
                    f"column {c.name!r} has dtype {s.dtype}, expected {c.kind} "
                    f"({PANDAS_DTYPES[c.kind]}); coerce it with slowburn.contracts.coerce()"
                )
    if problems:
        raise ContractError(f"{step}: {contract.name} does not match its contract: " + "; ".join(problems))


def coerce(df: pd.DataFrame, contract: Contract) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cast columns to the contract's dtypes without dropping rows.

    Returns the cast frame and a frame of cell-level problems (row index, column, raw value)
    for values present in the input that could not be cast; those cells become null and the
    validate step quarantines their rows.
    """
    out = df.copy()
    problems = []
    for c in contract.columns:
        if c.name not in out.columns:
            continue
        raw = out[c.name]
        present = raw.notna() & (raw.astype("string").str.strip() != "")
        if c.kind == STRING:
            cast = raw.astype("string").str.strip()
            cast = cast.mask(cast == "")
        elif c.kind == DATETIME:
            cast = _to_datetime(raw)
        elif c.kind == BOOL:
            if pd.api.types.is_bool_dtype(raw):
                cast = raw.astype("boolean")
            else:
                text = raw.astype("string").str.strip().str.lower()
                cast = text.map(_BOOL_WORDS).astype("boolean")
        elif c.kind == INT:
            cast = _to_int64(raw)
        else:
            cast = pd.to_numeric(raw, errors="coerce").astype("Float64")
        bad = present & cast.isna()
        if bad.any():
            problems.append(pd.DataFrame({"index": raw.index[bad], "column": c.name,
                                          "value": raw[bad].astype("string").str.slice(0, 200)}))
        out[c.name] = cast
    problem_frame = (pd.concat(problems, ignore_index=True) if problems
                     else pd.DataFrame({"index": pd.Series(dtype="int64"), "column": pd.Series(dtype="string"),
                                        "value": pd.Series(dtype="string")}))
    return out, problem_frame


_BOOL_WORDS = {
    "true": True, "t": True, "yes": True, "y": True, "1": True, "1.0": True,
    "false": False, "f": False, "no": False, "n": False, "0": False, "0.0": False,
}


# Instants that fit the contract's datetime64[ns]; anything outside (e.g. the CRM sentinel 9999-12-31) is a problem.
_NS_MIN = pd.Timestamp.min.tz_localize("UTC").ceil("us")
_NS_MAX = pd.Timestamp.max.tz_localize("UTC").floor("us")
_INT64_MIN, _INT64_LIMIT = -(2 ** 63), 2 ** 63  # Int64 holds [-2**63, 2**63)


def _to_datetime(raw: pd.Series) -> pd.Series:
    """UTC datetime64[ns]: offsets converted, naive values read as UTC, unreadable or out-of-range values null."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        cast = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_any_dtype(raw):
        cast = raw.dt.tz_localize("UTC")
    else:
        text = raw.astype("string").str.strip()
        iso = _iso_datetimes(text)
        return iso if iso is not None else _mixed_datetimes(text)
    return _in_contract_range(cast)


# ISO-8601 as sources send it, in years Arrow's ns timestamps hold (other years, e.g. the CRM
# sentinel 9999-12-31, take the mixed-format path, which nulls what does not fit).
_ISO_DATE = r"(1[7-9]|2[01])\d\d-\d\d-\d\d"
_ISO_TIME = r"[T ]\d\d:\d\d(:\d\d(\.\d{1,9})?)?"
_ISO_ZONED = rf"^{_ISO_DATE}{_ISO_TIME}(Z|[+-]\d\d(:?\d\d)?)$"
_ISO_NAIVE = f"^{_ISO_DATE}({_ISO_TIME})?$"


def _iso_datetimes(text: pd.Series) -> pd.Series | None:
    """ISO-8601 values parsed by Arrow (about 10x faster than pandas' mixed-format parse, which reads
    each value on its own: 7 s of a 1M-lead normalise), the few others by `_mixed_datetimes`.
    None when no value is ISO-8601, or when Arrow refuses one (say 2026-02-30): then pandas reads all."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from slowburn.arrowkeys import strings

    values = strings(text)
    zoned = pc.match_substring_regex(values, _ISO_ZONED).fill_null(False)
    naive = pc.match_substring_regex(values, _ISO_NAIVE).fill_null(False)
    if not (pc.any(zoned).as_py() or pc.any(naive).as_py()):
        return None
    try:
        at_zoned = values.filter(zoned).cast(pa.timestamp("ns", "UTC")).to_numpy(zero_copy_only=False)
        at_naive = values.filter(naive).cast(pa.timestamp("ns")).to_numpy(zero_copy_only=False)  # read as UTC
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    zoned, naive = zoned.to_numpy(zero_copy_only=False), naive.to_numpy(zero_copy_only=False)
    stamps = np.full(len(text), np.datetime64("NaT", "ns"))
    stamps[zoned] = at_zoned.astype("datetime64[ns]")
    stamps[naive] = at_naive.astype("datetime64[ns]")
    cast = pd.Series(stamps, index=text.index).dt.tz_localize("UTC")
    rest = text.notna().to_numpy() & ~zoned & ~naive
    if rest.any():
        cast.iloc[np.flatnonzero(rest)] = _mixed_datetimes(text[rest]).to_numpy()
    return cast


def _mixed_datetimes(text: pd.Series) -> pd.Series:
    """Text in any format pandas reads, as UTC datetime64[ns]; unreadable or out-of-range values null."""
    try:
        cast = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError, TypeError):
        # Rare: the vectorised parser gave up on the column; parse each distinct value alone.
        lookup = {v: _parse_one_datetime(v) for v in text.dropna().unique()}
        cast = pd.to_datetime(text.map(lookup).astype("object"), utc=True)
    return _in_contract_range(cast)


def _in_contract_range(cast: pd.Series) -> pd.Series:
    target = PANDAS_DTYPES[DATETIME]
    try:
        return cast.astype(target)
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        return cast.where((cast >= _NS_MIN) & (cast <= _NS_MAX)).astype(target)


def _parse_one_datetime(value: str):
    try:
        stamp = pd.to_datetime(pd.Series([value], dtype="string"), errors="coerce", utc=True,
                               format="mixed").iloc[0]
    except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError, TypeError):
        return pd.NaT
    if pd.isna(stamp) or not (_NS_MIN <= stamp <= _NS_MAX):
        return pd.NaT
    return stamp


def _to_int64(raw: pd.Series) -> pd.Series:
    """Int64, rounding fractional values; text that is not a number or does not fit in int64 becomes null."""
    num = pd.to_numeric(raw, errors="coerce")
    if pd.api.types.is_integer_dtype(num) and not pd.api.types.is_unsigned_integer_dtype(num):
        return num.astype("Int64")
    if pd.api.types.is_unsigned_integer_dtype(num):
        num = num.where(num < _INT64_LIMIT)
    num = num.astype("Float64")
    # Comparisons leave NaN, +-inf and values beyond int64 out (a plain cast would wrap them to -2**63).
    fits = ((num >= _INT64_MIN) & (num < _INT64_LIMIT)).fillna(False).astype(bool)
    return num.where(fits).round().astype("Int64")


def coerce_attributes(text: pd.Series, types: dict[str, str]) -> tuple[pd.Series, pd.DataFrame]:
    """Type the values of an `attributes` column (JSON objects of text, as landed) by their declared types.

    `types` maps attribute name -> number | category | boolean (the sources file's `attributes:`).
    Returns JSON text with numbers, text and true/false, and the cells that could not be read
    (index, column 'attributes.<name>' or 'attributes', raw value): those rows are quarantined.
    Attributes without a declared type stay text.
    """
    import json

    out = pd.Series(pd.NA, index=text.index, dtype="string")
    bad_index, bad_column, bad_value = [], [], []
    present = text.notna()
    for idx, raw in text[present].items():
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            bad_index.append(idx), bad_column.append("attributes"), bad_value.append(str(raw)[:200])
            continue
        typed, ok = {}, True
        for name, value in obj.items():
            value = _attribute_value(value, types.get(name, "category"))
            if value is _UNREADABLE:
                ok = False
                bad_index.append(idx), bad_column.append(f"attributes.{name}"), bad_value.append(str(obj[name])[:200])
            elif value is not None:
                typed[name] = value
        if ok and typed:
            out[idx] = json.dumps(typed, sort_keys=True, separators=(",", ":"))
    problems = pd.DataFrame({"index": pd.Series(bad_index, dtype="int64"),
                             "column": pd.Series(bad_column, dtype="string"),
                             "value": pd.Series(bad_value, dtype="string")})
    return out, problems


_UNREADABLE = object()


def _attribute_value(value, kind: str):
    """One attribute value as its declared kind: None when blank, _UNREADABLE when it cannot be read."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if kind == "number":
        if isinstance(value, bool):
            return _UNREADABLE
        try:
            number = float(value.strip()) if isinstance(value, str) else float(value)
        except ValueError:
            return _UNREADABLE
        return number if np.isfinite(number) else _UNREADABLE
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        word = _BOOL_WORDS.get(str(value).strip().lower())
        return _UNREADABLE if word is None else word
    return value.strip() if isinstance(value, str) else (str(value).lower() if isinstance(value, bool) else str(value))


def arrow_iso_text(stamps):
    """An Arrow timestamp array as ISO-8601 text: Arrow's cast (~6x faster than its strftime: 3.6 s
    for the 3.9M touches of a 1M-lead night) with its space between date and time made a 'T'.
    A UTC-zoned array's text ends in 'Z'."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.replace_substring(stamps.cast(pa.string()), " ", "T", max_replacements=1)


def iso_utc_text(values: pd.Series) -> pd.Series:
    """Timestamps as ISO-8601 text, vectorised by Arrow (Series.dt.strftime formats row by row).

    Aware values are converted to UTC and carry '+00:00'; naive ones stay naive, as the source sent
    them. Fractions of a second appear only when some value has them (then always six digits).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    aware = isinstance(values.dtype, pd.DatetimeTZDtype)
    if aware:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    stamps = values.to_numpy(dtype="datetime64[us]")
    missing = np.isnat(stamps)
    fractional = bool((stamps[~missing].astype("int64") % 1_000_000).any())
    stamps = stamps if fractional else stamps.astype("datetime64[s]")
    text = arrow_iso_text(pa.array(stamps, mask=missing))
    if aware:
        text = pc.binary_join_element_wise(text, pa.scalar("+00:00"), "")
    return pd.Series(pd.arrays.ArrowStringArray(text.cast(pa.large_string())), index=values.index, dtype="string")
