"""Atomic file writes: a reader sees the old file or the whole new one, never half of either.

Each write goes to a temp file with a unique name in the same folder (two writers never share it,
and os.replace within one file system is atomic), is flushed to disk, then renamed over the target.
A crash leaves at most a stray `.<name>.<pid>.<random>.tmp` that nothing reads.
On object storage (a non-local slowburn.storage location) the temp file is local and the finished
file is sent in one put: an object store replaces an object whole (an S3 PUT, or a multipart upload
on completion, is atomic), so readers see the same all-or-nothing.
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from slowburn import storage


@contextmanager
def replacing(path) -> Iterator[Path]:
    """Yield a local temp path to write; on success it atomically becomes `path`, on error it is removed."""
    path = storage.location(path)
    if not storage.is_local(path):
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            path.fs.put_file(str(tmp), path.path)
        finally:
            tmp.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path, data: bytes):
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return storage.location(path)


def write_text(path, text: str):
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return storage.location(path)


def write_json(path, data):
    return write_text(path, json.dumps(data, indent=2, default=str))


def write_parquet(path, frame, metadata: dict[str, str] | None = None):
    """A DataFrame as Parquet (no index), with extra key/value pairs in the file's schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{k.encode(): str(v).encode() for k, v in metadata.items()}})
    with replacing(path) as tmp:
        pq.write_table(table, tmp)
    return storage.location(path)
