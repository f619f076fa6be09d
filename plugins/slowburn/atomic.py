"""Atomic file writes: a reader sees the old file or the whole new one, never half of either.

Each write goes to a temp file with a unique name in the same folder (two writers never share it,
and os.replace within one file system is atomic), is flushed to disk, then renamed over the target.
A crash leaves at most a stray `.<name>.<pid>.<random>.tmp` that nothing reads.
"""
from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it atomically becomes `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=str))


def write_parquet(path: str | Path, frame, metadata: dict[str, str] | None = None) -> Path:
    """A DataFrame as Parquet (no index), with extra key/value pairs in the file's schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{k.encode(): str(v).encode() for k, v in metadata.items()}})
    with replacing(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)
