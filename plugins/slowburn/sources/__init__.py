"""Sources: read a vendor table or file, keep it incremental, and map it onto a contract.

Everything here works without Airflow; the hooks in slowburn.airflow only build these from Connections.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from slowburn.arrowkeys import strings
from slowburn.contracts import ContractError, iso_utc_text
from slowburn.sources.config import API_KINDS, SourceConfig, load_sources, parse_sources
from slowburn.sources.files import MALFORMED, read_file, resolve_paths
from slowburn.sources.sql import read_sql_source

log = logging.getLogger(__name__)

__all__ = ["Extracted", "extract_source", "apply_mapping", "load_sources", "parse_sources", "SourceConfig",
           "MALFORMED", "encode_watermark", "decode_watermark"]


@dataclass
class Extracted:
    """One source's rows for one run, mapped to contract column names but still as text."""
    source: SourceConfig
    rows: pd.DataFrame
    high_watermark: str | None  # encoded with encode_watermark(); pass it back as `since` next run
    deferred: int = 0  # rows changed after `until`: a later run lands them
    repairs: dict | None = None  # {column: cells} whose NUL bytes were removed


def _read_api(cfg: SourceConfig, bound) -> pd.DataFrame:
    """API sources read through their clients (incremental; deduped on id, or on the touch key for engagement)."""
    if cfg.kind == "hubspot":
        from slowburn.sources.hubspot import read_hubspot_source
        return read_hubspot_source(cfg, bound)
    if cfg.kind == "salesforce":
        from slowburn.sources.salesforce import read_salesforce_source
        return read_salesforce_source(cfg, bound)
    if cfg.kind == "mailchimp_activity":
        from slowburn.sources.engagement import read_mailchimp_activity_source
        return read_mailchimp_activity_source(cfg, bound)
    if cfg.kind == "hubspot_email_events":
        from slowburn.sources.engagement import read_hubspot_email_events_source
        return read_hubspot_email_events_source(cfg, bound)
    from slowburn.sources.mailchimp import read_mailchimp_source
    return read_mailchimp_source(cfg, bound)


def _read_raw(cfg: SourceConfig, since: str | None) -> pd.DataFrame:
    bound = decode_watermark(since)
    if cfg.kind in API_KINDS:
        return _read_api(cfg, bound)
    if cfg.kind == "sql":
        return read_sql_source(cfg.url, table=cfg.table, query=cfg.query, watermark=cfg.watermark,
                               since=bound, chunk_rows=cfg.chunk_rows, source=cfg.name)
    frames = []
    for path in resolve_paths(cfg.path, source=cfg.name):
        df = read_file(path, cfg.encoding)
        log.info("source %s: read %d rows from %s", cfg.name, len(df), path.name)
        frames.append(df)
    raw = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if cfg.watermark and bound is not None:
        if cfg.watermark not in raw.columns:
            raise ContractError(f"source {cfg.name!r}: watermark column {cfg.watermark!r} is not in the file; "
                                f"columns present: {list(raw.columns)}")
        if _is_number(bound):
            stamp = pd.to_numeric(raw[cfg.watermark], errors="coerce")
            newer = stamp > bound
        else:
            stamp = _as_utc(raw[cfg.watermark])
            newer = stamp > _since_as_utc(cfg, bound)
        # Rows whose watermark cannot be read are kept: validation quarantines them with a reason.
        raw = raw[(stamp.isna() | newer).to_numpy(dtype=bool, na_value=True)].reset_index(drop=True)
    return raw


def _since_as_utc(cfg: SourceConfig, since: str) -> pd.Timestamp:
    """`since` as a UTC instant; one without an offset ('2026-11-21') is read as UTC, like the data."""
    try:
        stamp = pd.Timestamp(since)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ContractError(f"source {cfg.name!r}: the watermark {since!r} is not a date and time ({exc}); "
                            f"fix or delete this source's row in source_watermarks") from None
    if pd.isna(stamp):
        raise ContractError(f"source {cfg.name!r}: the watermark {since!r} is not a date and time; "
                            f"fix or delete this source's row in source_watermarks")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _as_utc(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize("UTC")
    return pd.to_datetime(values.astype("string"), errors="coerce", utc=True, format="mixed")


def _high_watermark(cfg: SourceConfig, raw: pd.DataFrame) -> str | None:
    """The largest watermark value read, encoded by encode_watermark() so that its type survives."""
    if not cfg.watermark or raw.empty or cfg.watermark not in raw.columns:
        return None
    col = raw[cfg.watermark]
    if not pd.api.types.is_datetime64_any_dtype(col):
        number = _numeric_max(col)
        if number is not None:
            return encode_watermark(number)
        if cfg.kind == "sql":
            # Compared in the source database as it stores it (often ISO text), so keep its own form.
            values = col.dropna()
            return encode_watermark(values.astype(str).max()) if len(values) else None
    top = _as_utc(col).max()
    return None if pd.isna(top) else encode_watermark(top.isoformat())


def _numeric_max(col: pd.Series):
    """The max of a numeric column (int, float, or Decimal objects from a database); None otherwise."""
    if pd.api.types.is_bool_dtype(col):
        return None
    values = col.dropna()
    if pd.api.types.is_numeric_dtype(col):
        return values.max() if len(values) else None
    # Object columns: Decimal (NUMERIC) values from a database driver. The head check fails fast on text.
    if col.dtype == object and len(values) and all(_is_number(v) for v in values.head(100)) \
            and values.map(_is_number).all():
        return max(values)
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float, Decimal, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def encode_watermark(value) -> str | None:
    """Text for source_watermarks.high_watermark that keeps the value's type.

    Numbers are stored as JSON numbers ('10', '2.5') and read back as numbers, so that the next pull
    compares numerically (as text, '9' > '10'; and SQLite ranks every INTEGER below any TEXT).
    Everything else is stored as its own text ('2026-11-03 10:00:00'), unless that text would itself
    read back as JSON (a text column holding '10'): then it is stored as a JSON string ('"10"').
    decode_watermark() inverts this, and reads older plain-text values as text.
    """
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if _is_number(value):
        number = value.item() if isinstance(value, (np.integer, np.floating)) else value
        if isinstance(number, (float, Decimal)) and math.isfinite(number) and number == int(number):
            number = int(number)  # an integer column read as float because of nulls
        elif isinstance(number, Decimal):
            number = float(number)
        if not isinstance(number, float) or math.isfinite(number):
            return json.dumps(number)
    text = str(value)
    return text if decode_watermark(text) == text else json.dumps(text)


def decode_watermark(text: str | None):
    """The watermark stored by encode_watermark(): an int or float for numbers, else the text."""
    if text is None:
        return None
    if not isinstance(text, str):  # already decoded
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text  # plain text: a timestamp, or a value stored before watermarks were encoded
    if isinstance(value, bool) or value is None:
        return text
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, str):
        return value
    return text


def apply_mapping(raw: pd.DataFrame, cfg: SourceConfig) -> pd.DataFrame:
    """Rename vendor columns to contract columns; everything stays text (coercion is normalise's job)."""
    contract = cfg.contract
    if raw.columns.empty and raw.empty:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in contract.names + ["row_number"]})
    missing = {k: v for k, v in cfg.columns.items() if v not in raw.columns}
    missing.update({f"attributes.{k}": v["column"] for k, v in cfg.attributes.items() if v["column"] not in raw.columns})
    if missing:
        raise ContractError(
            f"source {cfg.name!r}: mapped column(s) not found: "
            + ", ".join(f"{k} <- {v!r}" for k, v in missing.items())
            + f"; columns present: {[c for c in raw.columns if c != MALFORMED]}. Fix `columns:` in the sources file."
        )
    out = pd.DataFrame(index=raw.index)
    for name in contract.names:
        if name in cfg.columns and cfg.columns[name] in raw.columns:
            col = raw[cfg.columns[name]]
            if pd.api.types.is_datetime64_any_dtype(col):
                text = iso_utc_text(col)
            else:
                text = col.astype("string")
            if name in cfg.values:
                text = _replaced(text, cfg.values[name])
            out[name] = text
        elif name in cfg.constants:
            out[name] = pd.Series(str(cfg.constants[name]), index=raw.index, dtype="string")
        else:
            out[name] = pd.Series(pd.NA, index=raw.index, dtype="string")
    if cfg.attributes:
        out["attributes"] = attributes_json(raw, cfg.attributes)
    if MALFORMED in raw.columns:
        out[MALFORMED] = raw[MALFORMED].astype("string")
    out["row_number"] = range(1, len(raw) + 1)
    return out


def _replaced(text: pd.Series, mapping: dict) -> pd.Series:
    """Series.replace(mapping) for text to text by one Arrow lookup: pandas' replace masks once per
    mapped value (2.3 s for the touch types of a 1M-lead night). A mapping to null is left to pandas,
    whose replace then returns objects."""
    if not mapping or not all(isinstance(v, str) for v in mapping.values()):
        return text.replace(mapping)
    values = strings(text)
    at = pc.index_in(values, value_set=strings(list(mapping)))
    out = pc.if_else(pc.is_valid(at), strings(list(mapping.values())).take(at), values)
    return pd.Series(pd.arrays.ArrowStringArray(out), index=text.index, dtype="string")


def attributes_json(raw: pd.DataFrame, attributes: dict[str, dict[str, str]]) -> pd.Series:
    """The mapped vendor columns of each row as one JSON object of text (blank values left out).

    Values stay text, like every landed column; normalise types them by the declared types.
    """
    parts = []
    for name, spec in attributes.items():
        col = raw[spec["column"]]
        text = iso_utc_text(col) if pd.api.types.is_datetime64_any_dtype(col) else col.astype("string")
        text = text.str.strip().mask(lambda t: t == "")
        literal = {v: json.dumps(name) + ":" + json.dumps(v) for v in text.dropna().unique()}
        parts.append(text.map(literal).astype("object").where(text.notna(), None).tolist())
    joined = ["{" + ",".join(p for p in row if p is not None) + "}" for row in zip(*parts)]
    result = pd.Series(joined, index=raw.index, dtype="string")
    return result.mask(result == "{}")


def extract_source(cfg: SourceConfig, since: str | None = None, until: pd.Timestamp | None = None) -> Extracted:
    """One source's rows changed after `since` and (when the watermark is a time) no later than `until`."""
    raw = _read_raw(cfg, since)
    raw, deferred = _bounded(cfg, raw, until)
    raw, repairs = _without_nul_bytes(cfg, raw)
    hwm = _high_watermark(cfg, raw)
    rows = apply_mapping(raw, cfg)
    rows["row_hash"] = _row_hashes(raw)
    log.info("source %s: %d %s rows landed (watermark since %s, now %s%s)", cfg.name, len(rows), cfg.entity,
             since, hwm, f"; {deferred} changed after {until} left for a later run" if deferred else "")
    return Extracted(cfg, rows, hwm, deferred, repairs or None)


def _bounded(cfg: SourceConfig, raw: pd.DataFrame, until: pd.Timestamp | None) -> tuple[pd.DataFrame, int]:
    """Rows whose watermark is after `until` are left out: re-running an old date never pulls later data.

    Only a time watermark can be bounded by the data interval; sources without one (whole-file
    snapshots) and numeric watermarks land what they hold. Rows whose watermark cannot be read are
    kept, so validation quarantines them with a reason.
    """
    if until is None or not cfg.watermark or cfg.watermark not in raw.columns or raw.empty:
        return raw, 0
    col = raw[cfg.watermark]
    if _numeric_max(col) is not None and not pd.api.types.is_datetime64_any_dtype(col):
        return raw, 0
    later = (_as_utc(col) > pd.Timestamp(until)).to_numpy(dtype=bool, na_value=False)
    if not later.any():
        return raw, 0
    return raw[~later].reset_index(drop=True), int(later.sum())


def _without_nul_bytes(cfg: SourceConfig, raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Text values with NUL bytes removed: PostgreSQL cannot store them, and no real value holds one.

    Each repaired column and its cell count are returned (the extract step records them) and logged
    with the first row numbers, so the repair is visible rather than silent.
    """
    repairs = {}
    for name in raw.columns:
        col = raw[name]
        if not (pd.api.types.is_string_dtype(col) or col.dtype == object):
            continue
        text = col.astype("string")
        has_nul = text.str.contains("\x00", regex=False).fillna(False).to_numpy(dtype=bool)
        if has_nul.any():
            raw = raw.copy() if not repairs else raw
            raw[name] = text.str.replace("\x00", "", regex=False)
            repairs[name] = int(has_nul.sum())
            log.warning("source %s: removed NUL bytes from %d value(s) of column %r (rows %s)", cfg.name,
                        repairs[name], name, [int(i) + 1 for i in has_nul.nonzero()[0][:10]])
    return raw, repairs


def _row_hashes(raw: pd.DataFrame):
    """A content hash per row: of its vendor columns, or of the raw text of a malformed line.

    A malformed line elsewhere in the file must not change the hash of an unchanged row, so the
    MALFORMED column is never hashed together with the vendor columns.
    """
    if not len(raw):
        return pd.Series(dtype="string")
    vendor = [c for c in raw.columns if c != MALFORMED]
    hashes = (pd.util.hash_pandas_object(raw[vendor], index=False) if vendor
              else pd.Series(np.zeros(len(raw), dtype="uint64"), index=raw.index))
    if MALFORMED in raw.columns:
        bad = raw[MALFORMED].notna().to_numpy(dtype=bool)
        if bad.any():
            hashes[bad] = pd.util.hash_pandas_object(raw.loc[bad, [MALFORMED]].astype("string"),
                                                     index=False).to_numpy()
    return hex_digits(hashes.to_numpy(dtype=np.uint64))


def hex_digits(hashes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """Each 64-bit hash as 16 lower-case hex digits ('{:016x}'), by array arithmetic: formatting the
    values one by one took seconds a night at millions of rows."""
    import pyarrow as pa

    octets = np.ascontiguousarray(hashes, dtype=">u8").view(np.uint8).reshape(-1, 8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    text = np.empty((len(octets), 16), dtype=np.uint8)
    text[:, 0::2] = digits[octets >> 4]
    text[:, 1::2] = digits[octets & 15]
    return pd.array(pd.arrays.ArrowStringArray(pa.array(text.view("S16").ravel()).cast(pa.large_string())),
                    dtype="string")
