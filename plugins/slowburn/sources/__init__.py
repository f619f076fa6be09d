"""Sources: read a vendor table or file, keep it incremental, and map it onto a contract.

Everything here works without Airflow; the hooks in slowburn.airflow only build these from Connections.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from slowburn.contracts import ContractError
from slowburn.sources.config import SourceConfig, load_sources, parse_sources
from slowburn.sources.files import MALFORMED, read_file, resolve_paths
from slowburn.sources.sql import read_sql_source

log = logging.getLogger(__name__)

__all__ = ["Extracted", "extract_source", "apply_mapping", "load_sources", "parse_sources", "SourceConfig",
           "MALFORMED"]


@dataclass
class Extracted:
    """One source's rows for one run, mapped to contract column names but still as text."""
    source: SourceConfig
    rows: pd.DataFrame
    high_watermark: str | None


def _read_raw(cfg: SourceConfig, since: str | None) -> pd.DataFrame:
    if cfg.kind == "sql":
        return read_sql_source(cfg.url, table=cfg.table, query=cfg.query, watermark=cfg.watermark,
                               since=since, chunk_rows=cfg.chunk_rows)
    frames = []
    for path in resolve_paths(cfg.path):
        df = read_file(path, cfg.encoding)
        log.info("source %s: read %d rows from %s", cfg.name, len(df), path.name)
        frames.append(df)
    raw = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if cfg.watermark and since is not None:
        if cfg.watermark not in raw.columns:
            raise ContractError(f"source {cfg.name!r}: watermark column {cfg.watermark!r} is not in the file; "
                                f"columns present: {list(raw.columns)}")
        stamp = _as_utc(raw[cfg.watermark])
        # Rows whose watermark cannot be read are kept: validation quarantines them with a reason.
        raw = raw[stamp.isna() | (stamp > pd.Timestamp(since))].reset_index(drop=True)
    return raw


def _as_utc(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize("UTC")
    return pd.to_datetime(values.astype("string"), errors="coerce", utc=True, format="mixed")


def _high_watermark(cfg: SourceConfig, raw: pd.DataFrame) -> str | None:
    if not cfg.watermark or raw.empty or cfg.watermark not in raw.columns:
        return None
    col = raw[cfg.watermark]
    if cfg.kind == "sql" and not pd.api.types.is_datetime64_any_dtype(col):
        # Compared in the source database as it stores it (often ISO text), so keep its own form.
        top = col.dropna().astype(str).max()
        return None if pd.isna(top) else top
    top = _as_utc(col).max()
    return None if pd.isna(top) else top.isoformat()


def apply_mapping(raw: pd.DataFrame, cfg: SourceConfig) -> pd.DataFrame:
    """Rename vendor columns to contract columns; everything stays text (coercion is normalise's job)."""
    contract = cfg.contract
    if raw.columns.empty and raw.empty:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in contract.names + ["row_number"]})
    missing = {k: v for k, v in cfg.columns.items() if v not in raw.columns}
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
                text = col.dt.strftime("%Y-%m-%dT%H:%M:%S%z").astype("string")
            else:
                text = col.astype("string")
            if name in cfg.values:
                text = text.replace(cfg.values[name])
            out[name] = text
        elif name in cfg.constants:
            out[name] = pd.Series(str(cfg.constants[name]), index=raw.index, dtype="string")
        else:
            out[name] = pd.Series(pd.NA, index=raw.index, dtype="string")
    if MALFORMED in raw.columns:
        out[MALFORMED] = raw[MALFORMED].astype("string")
    out["row_number"] = range(1, len(raw) + 1)
    return out


def extract_source(cfg: SourceConfig, since: str | None = None) -> Extracted:
    raw = _read_raw(cfg, since)
    hwm = _high_watermark(cfg, raw)
    rows = apply_mapping(raw, cfg)
    rows["row_hash"] = (pd.util.hash_pandas_object(raw.astype("string"), index=False).map("{:016x}".format)
                        .astype("string").values if len(raw) else pd.Series(dtype="string"))
    log.info("source %s: %d %s rows landed (watermark since %s, now %s)", cfg.name, len(rows), cfg.entity,
             since, hwm)
    return Extracted(cfg, rows, hwm)
