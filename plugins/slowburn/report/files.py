"""Files people open: CSVs that a spreadsheet cannot turn into formulas, written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

# OWASP CSV injection: a cell starting with one of these is a formula to Excel, LibreOffice and Sheets.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that would start a formula get a leading single quote ("'=HYPERLINK(...)").

    Only text columns: numbers (a negative score trend) stay numbers.
    """
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype) \
                or isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
            continue
        text = s.astype("string")
        risky = text.str.startswith(FORMULA_START).fillna(False).to_numpy(dtype=bool)
        if risky.any():
            out[col] = text.mask(risky, "'" + text)
    return out


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a CSV safe to open in a spreadsheet; a crash mid-write leaves the previous file whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    neutralise_formulas(frame).to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomic text write (same rule as write_csv)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
