"""Reasons: every factor's points for every lead, as JSON, summing exactly to the lead's score.

A reason list is ordered by |points| (largest first), so a UI that shows the first three shows the
top contributors; zero-point factors are left out since they change nothing. Building a million
JSON strings one by one in Python is slow, so the strings are assembled column-wise with Arrow.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def _number_text(values: np.ndarray, decimals: int) -> list[str]:
    """Whole points (decimals=0) or tenths (decimals=1) as JSON number text."""
    if decimals == 0:
        return [str(int(v)) for v in values]
    return [("-" if v < 0 else "") + f"{abs(int(v)) // 10}.{abs(int(v)) % 10}" for v in values]


def reasons_json(names, points: np.ndarray, decimals: int = 0,
                 name_codes: np.ndarray | None = None) -> pd.api.extensions.ExtensionArray:
    """JSON text per row: [{"factor": name, "points": p}, ...] ordered by |p|, zeros left out.

    `points` is an (n, k) integer matrix: whole points (decimals=0) or tenths (decimals=1).
    Factor j of row i is names[j], or names[name_codes[i, j]] when name_codes is given (so a reason
    can say the lead's value: "pricing page views: 2"). Each name and each number is formatted once;
    rows are assembled by Arrow from fragment ids.
    """
    points = np.asarray(points, dtype=np.int64)
    n, k = points.shape
    if n == 0:
        return pd.array([], dtype="string[pyarrow]")
    codes = (np.broadcast_to(np.arange(k), (n, k)) if name_codes is None
             else np.asarray(name_codes, dtype=np.int64))
    order = np.argsort(-np.abs(points), axis=1, kind="stable")
    ranked = np.take_along_axis(points, order, axis=1)
    ranked_names = np.take_along_axis(codes, order, axis=1)
    used = int((ranked != 0).sum(axis=1).max())
    lo, hi = int(points.min()), int(points.max())
    texts = _number_text(np.arange(lo, hi + 1), decimals)
    n_names = len(names)
    # Name fragments: ids 0..n_names-1 lead the list, n_names..2*n_names-1 follow a comma; the last is "".
    heads = [("" if lead else ", ") + '{"factor": ' + json.dumps(str(x)) + ', "points": '
             for lead in (True, False) for x in names] + [""]
    tails = [t + "}" for t in texts] + [""]
    head_dict = pa.array(heads, type=pa.large_string())
    tail_dict = pa.array(tails, type=pa.large_string())
    zero = ranked[:, :used] == 0
    head_ids = ranked_names[:, :used].copy()
    head_ids[:, 1:] += n_names
    head_ids[zero] = len(heads) - 1
    tail_ids = ranked[:, :used] - lo
    tail_ids[zero] = len(tails) - 1
    columns = [pa.repeat(pa.scalar("[", pa.large_string()), n)]
    for j in range(used):
        columns.append(pc.take(head_dict, pa.array(np.ascontiguousarray(head_ids[:, j]))))
        columns.append(pc.take(tail_dict, pa.array(np.ascontiguousarray(tail_ids[:, j]))))
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


def carry_plan(golden_ids, score, tier, model_version, previous: pd.DataFrame | None,
               unchanged_inputs=None) -> tuple[np.ndarray, np.ndarray]:
    """Which leads need fresh reasons, and which of the others' scores moved only with time.

    Returns (positions to explain, a mask of the carried leads whose score moved). A lead keeps the
    reasons stored for it (the warehouse's lead_reasons) when it was scored before by the same
    model_version and its inputs did not change (`unchanged_inputs`, a boolean per lead: no new touch,
    no change to its record): when its score moved all the same, only days passed, and the stored
    reasons plus the time since they were computed (reasons_now) explain it. Without
    `unchanged_inputs`, a lead keeps its reasons when its score and tier are the same (they explain
    that same rounded score). Decay moves a fifth of the scores every night; explaining them afresh
    would cost TreeSHAP for each, and rewriting their reasons a kilobyte each, and say no more.
    """
    from slowburn.arrowkeys import positions

    n = len(golden_ids)
    if previous is None or not len(previous) or not n:
        return np.arange(n), np.zeros(n, dtype=bool)
    row = positions(golden_ids, previous["golden_id"])
    at = np.maximum(row, 0)

    def prev(col, dtype=object):
        return pd.Series(previous[col]).to_numpy(dtype=dtype, na_value=np.nan if dtype is float else None)[at]

    known = (row >= 0) & (prev("model_version") == np.asarray(model_version, dtype=object))
    same = (prev("score", float) == np.asarray(score, dtype=float)) & (prev("tier") == np.asarray(tier, dtype=object))
    if unchanged_inputs is None:  # what changed is unknown: the same score and tier say the same thing
        keep, aged = known & same, np.zeros(n, dtype=bool)
    else:  # a lead with new activity or a changed record is explained afresh, even at the same score
        keep = known & np.asarray(unchanged_inputs, dtype=bool)
        aged = keep & ~same
    return np.flatnonzero(~keep), aged


TIME_FACTOR = "days passed since these reasons were computed"


_POINTS = re.compile(r'"points": (-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)')
_TIME_HEAD = '{"factor": ' + json.dumps(TIME_FACTOR)[:-1]


def aged_reasons(reasons, scores, since) -> list[str]:
    """Carried reasons with one factor for the time since they were computed, so they sum to the score.

    An earlier time factor is replaced (its date kept), not stacked: the factor is always the score
    now minus what the other factors explain. The reasons of every lead entering the sales queue are
    made current when it is routed (thousands a night), so the JSON is edited as text (the time factor is always the
    last one; a factor name's quotes are escaped, so '"points": ' only ever starts a number) instead
    of parsed and dumped again.
    """
    out = []
    for text, score, day in zip(reasons, scores, since):
        cut = text.find(_TIME_HEAD)
        if cut >= 0:
            label = json.loads(text[cut + len('{"factor": '):text.index(', "points": ', cut)])
            kept = text[:cut].rstrip(", ")
        else:
            label = f"{TIME_FACTOR} ({day})"
            kept = text[:text.rindex("]")].rstrip()
        points = round(float(score) - sum(float(p) for p in _POINTS.findall(kept)), 1)
        item = '{"factor": ' + json.dumps(label) + ', "points": ' + json.dumps(points) + "}"
        out.append(kept + (", " if kept != "[" else "") + item + "]")
    return out


def reasons_now(reasons, reasons_score, score, since) -> list[str]:
    """Stored reasons as they explain tonight's score: unchanged where the score is the one they were
    computed for (reasons_score), else with the time factor for the days since (aged_reasons).

    Stored reasons are never rewritten because days passed (that would rewrite a kilobyte for a fifth
    of the leads every night); whoever shows them to a person makes them current here.
    """
    texts = list(reasons)
    score = np.asarray(score, dtype=float)
    moved = np.flatnonzero(np.asarray(reasons_score, dtype=float) != score)
    if len(moved):
        since = np.asarray(since, dtype=object)
        for i, text in zip(moved, aged_reasons([texts[i] for i in moved], score[moved], since[moved])):
            texts[i] = text
    return texts
