"""Where run folders and models live: a local folder (the default) or any fsspec URL, e.g. s3://bucket/prefix.

A local location stays a pathlib.Path, so local runs read, write and rename files exactly as before.
Any other location is a universal_pathlib UPath (Airflow's ObjectStoragePath is one too), which has the
same path API; what differs is only how Parquet is read (through the path's fsspec filesystem) and how a
file is replaced atomically (slowburn.atomic: one put of a finished local file; an S3 PUT is atomic).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

LOCAL_PROTOCOLS = ("", "file", "local")


def location(where, storage_options: dict | None = None):
    """`where` as a path: a pathlib.Path for a local folder or file:// URL, else a UPath.

    A UPath (or Airflow ObjectStoragePath) that is already built keeps its filesystem and options;
    a URL string gets `storage_options` (e.g. endpoint_url) for its fsspec filesystem.
    """
    if isinstance(where, Path):
        return where
    protocol = getattr(where, "protocol", None)
    if protocol is not None:  # a UPath or an ObjectStoragePath
        return Path(where.path) if protocol in LOCAL_PROTOCOLS else where
    from fsspec.utils import get_protocol

    text = os.fspath(where)
    if "://" not in text or get_protocol(text) in LOCAL_PROTOCOLS:
        return Path(text.split("://", 1)[1] if "://" in text else text)
    from upath import UPath
    return UPath(text, **(storage_options or {}))


def options_from_env(variable: str = "SLOWBURN_ARTIFACTS_OPTIONS") -> dict:
    """fsspec storage options as a JSON object in an environment variable (e.g. {"endpoint_url": ...})."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return {}
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"${variable} is not a JSON object of fsspec storage options ({exc})") from None
    if not isinstance(options, dict):
        raise ValueError(f"${variable} must be a JSON object, e.g. {{\"endpoint_url\": \"http://host:9000\"}}")
    return options


def is_local(path) -> bool:
    return isinstance(path, Path)


def shown(path) -> str:
    """The path as people should see it: absolute for a local file, the URL otherwise."""
    return str(path.resolve()) if is_local(path) else str(path)


def _source(path):
    """(what pyarrow opens, filesystem): the local path as is, a remote one as its fsspec path + filesystem."""
    return (path, None) if is_local(path) else (path.path, path.fs)


def read_parquet(path, columns: list[str] | None = None):
    import pandas as pd
    where, fs = _source(path)
    return pd.read_parquet(where, columns=columns) if fs is None else \
        pd.read_parquet(where, columns=columns, filesystem=fs)


def read_parquet_where_in(path, columns: list[str], column: str, values):
    """The rows whose `column` is among `values`, as a pyarrow Table of `columns`, filtered batch by
    batch: a large column (lead_reasons' reasons, a kilobyte of JSON a lead) is never held whole."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from slowburn.arrowkeys import strings

    wanted = strings(values)
    where, fs = _source(path)
    file = pq.ParquetFile(where, filesystem=fs)
    batches = file.iter_batches(batch_size=65_536, columns=list(dict.fromkeys([*columns, column])))
    parts = [b.filter(pc.is_in(b.column(column).cast(pa.large_string()), value_set=wanted)).select(columns)
             for b in batches]
    if not parts:
        return file.schema_arrow.empty_table().select(columns)
    return pa.Table.from_batches(parts)


def parquet_schema(path):
    import pyarrow.parquet as pq
    where, fs = _source(path)
    return pq.read_schema(where, filesystem=fs)


def parquet_rows(path) -> int:
    """Row count from the Parquet footer (no data read)."""
    import pyarrow.parquet as pq
    where, fs = _source(path)
    return pq.ParquetFile(where, filesystem=fs).metadata.num_rows


def create_exclusive(path, data: bytes) -> None:
    """Create the file with `data`, or raise FileExistsError if it is there already.

    Local files: open(..., "xb"). Object stores: fsspec's create mode, which s3fs sends as a conditional
    PUT (If-None-Match: *), atomic on AWS S3 and on servers that honour it; other fsspec filesystems
    check then write, which is not atomic (see the README: the warehouse run lock serialises runs).
    """
    if is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as fh:
            fh.write(data)
        return
    path.fs.pipe_file(path.path, data, mode="create")


def upload_tree(local: Path, target) -> int:
    """Copy a local folder's files under `target` (each file one atomic put); returns the files copied."""
    from slowburn import atomic

    copied = 0
    for file in sorted(p for p in Path(local).rglob("*") if p.is_file()):
        atomic.write_bytes(target.joinpath(*file.relative_to(local).parts), file.read_bytes())
        copied += 1
    return copied
