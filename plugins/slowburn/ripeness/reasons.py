"""Reasons: every factor's points for every lead, as JSON, summing exactly to the lead's score.

A reason list is ordered by |points| (largest first), so a UI that shows the first three shows the
top contributors; zero-point factors are left out since they change nothing. Building a million
JSON strings one by one in Python is slow, so the strings are assembled column-wise with Arrow.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def _number_text(values: np.ndarray, decimals: int) -> list[str]:
    """Whole points (decimals=0) or tenths (decimals=1) as JSON number text."""
    if decimals == 0:
        return [str(int(v)) for v in values]
    return [("-" if v < 0 else "") + f"{abs(int(v)) // 10}.{abs(int(v)) % 10}" for v in values]


def reasons_json(names, points: np.ndarray, decimals: int = 0) -> pd.api.extensions.ExtensionArray:
    """JSON text per row: [{"factor": name, "points": p}, ...] ordered by |p|, zeros left out.

    `points` is an (n, k) integer matrix: whole points (decimals=0) or tenths (decimals=1).
    Each (factor, points) fragment is formatted once; rows are assembled by Arrow from fragment ids.
    """
    points = np.asarray(points, dtype=np.int64)
    n, k = points.shape
    if n == 0:
        return pd.array([], dtype="string[pyarrow]")
    small = points.astype(np.int32)
    order = np.argsort(-np.abs(small), axis=1, kind="stable").astype(np.int32)
    ranked = np.take_along_axis(small, order, axis=1)
    used = int((ranked != 0).sum(axis=1).max())
    lo, hi = int(points.min()), int(points.max())
    values = np.arange(lo, hi + 1)
    texts = _number_text(values, decimals)
    width = len(values)
    quoted = [json.dumps(str(x)) for x in names]
    # Dictionary: id = (first ? 0 : 1) * k * width + factor * width + (value - lo); the last entry is "".
    frags = [("" if lead else ", ") + '{"factor": ' + q + ', "points": ' + t + "}"
             for lead in (True, False) for q in quoted for t in texts]
    frags.append("")
    dictionary = pa.array(frags, type=pa.large_string())
    empty = len(frags) - 1
    ids = order[:, :used] * width + (ranked[:, :used] - lo)
    ids[:, 1:] += k * width
    ids[ranked[:, :used] == 0] = empty
    ids = np.ascontiguousarray(ids.T)
    columns = [pa.repeat(pa.scalar("[", pa.large_string()), n)]
    for j in range(used):
        columns.append(pc.take(dictionary, pa.array(ids[j])))
    columns.append(pa.repeat(pa.scalar("]", pa.large_string()), n))
    joined = pc.binary_join_element_wise(*columns, pa.scalar("", pa.large_string()))
    return pd.arrays.ArrowStringArray(pc.cast(joined, pa.large_string()))


def integerize(real: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Integers per cell, close to `real`, whose row sums are exactly `target`.

    Each row of `real` should already sum to its target (up to float error). Cells are floored and
    the leftover units go to the cells with the largest remainders (largest-remainder rounding).
    """
    real = np.asarray(real, dtype=float)
    target = np.asarray(target, dtype=np.int64)
    n, k = real.shape
    if n == 0:
        return np.zeros((0, k), dtype=np.int64)
    base = np.floor(real).astype(np.int64)
    left = target - base.sum(axis=1)
    whole, part = np.divmod(left, k)  # whole is 0 unless the row was off by more than k units
    base += whole[:, None]
    order = np.argsort(-(real - np.floor(real)), axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(n)[:, None], order] = np.arange(k)[None, :]
    base += ranks < part[:, None]
    return base
