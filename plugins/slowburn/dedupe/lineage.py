"""Lineage: lead_links, one row per source row, saying which golden record it belongs to and why.

Columns: run_id and row_key (the landing of the source row), source_system, source_id, golden_id,
match_probability and match_rule (the strongest link that put the row in its record: a
deterministic rule with probability 1.0, `splink` with the model's probability, `singleton` for a
record of one row, or the rule it was linked by in an earlier run), match_model (the Splink model
fingerprint and training time, or `deterministic`), previous_golden_id (set when the row's golden
id changed this run: a merge of two existing records or a lead that moved) and review_reason (a
link the chaining guard refused, or a possible match below the merge threshold).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

LINK_COLUMNS = ["run_id", "row_key", "source_system", "source_id", "golden_id", "match_probability", "match_rule",
                "match_model", "previous_golden_id", "review_reason"]


def empty_links() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c == "match_probability" else "string")
                         for c in LINK_COLUMNS})


def best_edge_per_row(n: int, edges: pd.DataFrame) -> pd.DataFrame:
    """Per row, its strongest accepted link: deterministic rules first, then by probability."""
    if not len(edges):
        return pd.DataFrame({"probability": pd.Series(dtype="float64"), "rule": pd.Series(dtype="object")})
    both = pd.concat([edges[["a", "probability", "rule"]].rename(columns={"a": "row"}),
                      edges[["b", "probability", "rule"]].rename(columns={"b": "row"})], ignore_index=True)
    both["_det"] = (both["rule"] != "splink").astype(int)
    both = both.sort_values(["row", "_det", "probability"], ascending=[True, False, False], kind="stable")
    return both.drop_duplicates("row").set_index("row")[["probability", "rule"]]


def build_links(leads: pd.DataFrame, golden_id: np.ndarray, accepted: pd.DataFrame, new: np.ndarray,
                previous: pd.DataFrame, model_tag: str | None, reasons: pd.Series) -> pd.DataFrame:
    """lead_links for `leads` row for row.

    previous: the previous lead_links state aligned to `leads` (NaN rows where a row had none).
    reasons: per row review reason (or null).
    """
    n = len(leads)
    best = best_edge_per_row(n, accepted).reindex(range(n))
    prob = best["probability"].to_numpy(dtype="float64", na_value=np.nan)
    rule = best["rule"].astype("object").to_numpy()
    singleton = pd.isna(rule)
    prob = np.where(singleton, 1.0, prob)
    rule = np.where(singleton, "singleton", rule).astype(object)
    model = np.where(rule == "splink", model_tag or "splink", np.where(singleton, None, "deterministic")).astype(object)
    keep = ~np.asarray(new, bool) & previous["golden_id"].notna().to_numpy()
    if keep.any():
        # An earlier row keeps the link it was made by: rule, probability and model together (a
        # singleton's null model too, though tonight's rows may link to it).
        ruled = keep & (previous["match_rule"].notna().to_numpy() if "match_rule" in previous.columns else False)
        for col, arr in (("match_probability", prob), ("match_rule", rule), ("match_model", model)):
            if col in previous.columns:
                old = previous[col].to_numpy(dtype=object)
                has = (keep & pd.notna(old)) | (ruled if col == "match_model" else False)
                arr[has] = old[has]
    prob = prob.astype("float64")
    prev = previous["golden_id"].astype("string").to_numpy(dtype=object, na_value=None)
    gid = np.asarray(golden_id, dtype=object)
    moved = pd.notna(prev) & (prev != gid)
    def carried(col):  # a leads column as it is (no round trip through Python objects)
        return leads[col].astype("string").reset_index(drop=True)
    links = pd.DataFrame({
        "run_id": carried("run_id") if "run_id" in leads else None,
        "row_key": carried("row_key"),
        "source_system": carried("source_system"),
        "source_id": carried("source_id"),
        "golden_id": gid,
        "match_probability": prob,
        "match_rule": rule,
        "match_model": model,
        "previous_golden_id": np.where(moved, prev, None),
        "review_reason": reasons.to_numpy(dtype=object),
    })
    return links.astype({c: "string" for c in LINK_COLUMNS if c != "match_probability"})


def same_values(a, b) -> np.ndarray:
    """Per row, whether `a` and `b` (aligned Series or arrays) hold the same value; two nulls are the same.

    Arrow compute, so comparing a million links or golden rows with the previous state costs
    milliseconds, not a Python loop.
    """
    x, y = pa.array(a, from_pandas=True), pa.array(b, from_pandas=True)
    if x.type != y.type:
        y = y.cast(x.type)
    both_null = pc.and_(pc.is_null(x), pc.is_null(y))
    return pc.or_(both_null, pc.fill_null(pc.equal(x, y), False)).to_numpy(zero_copy_only=False).astype(bool)


def links_changed(links: pd.DataFrame, previous: pd.DataFrame, new: np.ndarray) -> np.ndarray:
    """Per row of `links`, whether it is new or differs from the row's previous link (`previous`
    aligned row for row, as build_links got it): the rows a load has to write."""
    changed = previous["golden_id"].isna().to_numpy().copy()
    for col in ("golden_id", "match_probability", "match_rule", "match_model", "previous_golden_id", "review_reason"):
        changed |= ~same_values(links[col], previous[col])
    rows = np.flatnonzero(np.asarray(new, bool) & ~changed)  # re-linked rows: their landing may have moved
    for col in ("run_id", "row_key"):  # (source_system and source_id are the alignment key itself)
        if len(rows):
            changed[rows] |= ~same_values(links[col].iloc[rows], previous[col].iloc[rows])
    return changed
