"""File drops: CSV and Parquet exports, read as text so that nothing is coerced before it lands."""
from __future__ import annotations

import csv
import glob
import io
import itertools
import logging
from pathlib import Path

import pandas as pd

from slowburn.contracts import ContractError

log = logging.getLogger(__name__)

MALFORMED = "__malformed_line__"  # column holding the raw text of a line the CSV parser could not split


def resolve_paths(pattern: str, source: str | None = None) -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(pattern))
    if not paths:
        where = f"source {source!r}: " if source else ""
        raise ContractError(f"{where}no file matches {pattern!r}; check the source's `path`")
    return paths


def read_file(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read one CSV or Parquet file with every value as a string (or null).

    CSV lines that do not split into the header's columns are kept, not dropped: they come back
    as rows whose only value is the raw line in the MALFORMED column, so validation quarantines them.
    """
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        # Nullable dtypes: an int64 column with nulls stays Int64 ('101'), not float64 ('101.0').
        try:
            return pd.read_parquet(path, dtype_backend="numpy_nullable")
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise ContractError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())}); it is "
                                "truncated or not Parquet: re-export it") from None
    if suffix not in (".csv", ".txt", ".tsv"):
        raise ContractError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")
    if path.stat().st_size == 0:
        raise ContractError(f"{path}: the file is empty (0 bytes); expected a CSV with a header row")
    # utf-8-sig strips a byte-order mark that Excel writes; plain utf-8 would glue it to the first header.
    codec = "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding
    try:
        text = path.read_bytes().decode(codec)
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ContractError(
            f"{path}: line {line} is not valid {encoding} (byte {exc.object[exc.start:exc.start + 1]!r} "
            f"at offset {exc.start}); set `encoding:` on this source (for example latin-1 or cp1252)"
        ) from None
    sep = "\t" if suffix == ".tsv" else ","
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype="string", keep_default_na=False,
                            na_values=[""], on_bad_lines="error")
    except pd.errors.EmptyDataError:
        raise ContractError(f"{path}: no header row; expected a CSV with a header row") from None
    except pd.errors.ParserError as exc:
        log.warning("%s: %s; keeping malformed lines for quarantine", path, exc)
        return _read_csv_keeping_bad_lines(text, sep)
    if _has_line_breaks(frame):
        # A quoted value spans lines: legitimate (an address), or a stray quote that swallowed the
        # records after it, which pandas accepts silently. The careful reader tells them apart.
        return _read_csv_keeping_bad_lines(text, sep)
    return frame


def _has_line_breaks(frame: pd.DataFrame) -> bool:
    return any(frame[c].str.contains(r"[\r\n]", regex=True).any() for c in frame.columns)


def _read_csv_keeping_bad_lines(text: str, sep: str) -> pd.DataFrame:
    """Every record of the file: those that split into the header's columns, and malformed lines.

    A record that spans several physical lines is one record (kept, or quarantined whole when
    ragged) unless one of its later lines would be a whole record on its own: then it is a stray
    quote that swallowed the records after it, so only its first line is malformed and reading
    starts again on the next line. An unterminated quote costs one line, not the rest of the file.
    """
    # Split lines the way the csv module reads them (\n, \r\n or \r, terminators kept), so that the
    # reader's line_num says which lines of the file each record came from.
    lines = io.StringIO(text, newline="").readlines()
    header, first = None, 0
    for first, line in enumerate(lines):
        row = next(csv.reader([line], delimiter=sep), [])
        if row:  # pandas also skips blank lines before the header
            header = row
            break
    width = len(header)
    good, good_at, bad_at, bad_text = [], [], [], []
    pos = first + 1
    while pos < len(lines):
        reader = csv.reader(itertools.islice(lines, pos, None), delimiter=sep)
        start = pos
        restart = None
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                bad_at.append(start)  # quarantine the line the reader choked on, go on after it
                bad_text.append(_without_terminator(lines[start]))
                restart = start + 1
                break
            end = pos + reader.line_num
            if end - start > 1 and _swallows_records(lines[start + 1:end], sep, width):
                bad_at.append(start)
                bad_text.append(_without_terminator(lines[start]))
                restart = start + 1
                break
            if len(row) == width:
                good.append(row)
                good_at.append(start)
            elif row:
                bad_at.append(start)
                # The line exactly as written (quotes and all), without its final line terminator.
                bad_text.append(_without_terminator("".join(lines[start:end])))
            start = end
        if restart is None:
            break
        pos = restart
    frame = pd.DataFrame(good, columns=header, dtype="string").replace("", pd.NA)
    frame.index = good_at
    bad = pd.DataFrame({MALFORMED: pd.array(bad_text, dtype="string")}, index=bad_at)
    return pd.concat([frame, bad]).sort_index().reset_index(drop=True)


def _swallows_records(continuation: list[str], sep: str, width: int) -> bool:
    """Whether a line inside a multi-line quoted value is, on its own, a whole record of the file."""
    for line in continuation:
        row = next(csv.reader([line], delimiter=sep), [])
        if len(row) == width and '"' not in line.split(sep, 1)[0]:
            return True
    return False


def _without_terminator(line: str) -> str:
    for end in ("\r\n", "\n", "\r"):
        if line.endswith(end):
            return line[: -len(end)]
    return line
