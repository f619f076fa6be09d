"""Deduplication: source rows -> one golden record per person, with lineage for every row.

The pipeline's matcher is :func:`dedupe_leads` (slowburn.dedupe.engine): a deterministic pre-pass
and a Splink model (linkage.py), clustering with a chaining guard and stable golden ids
(clustering.py), survivorship rules from include/config/dedupe.yaml (survivorship.py) and lead_links
lineage (lineage.py). Matching features live in features.py. Given the previous golden state, only the
records tonight touched are survived again (engine.affected_records); the result says which golden
records and links changed, so a load can write just those.

:func:`cluster_exact` is the first, exact-only matcher, kept as the baseline the benchmark compares
against: it links rows that share a canonical email, or a phone number and a surname. Links are
transitive (connected components), so A~B by email and B~C by phone put A, B, C together.
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from slowburn.dedupe.survivorship import GOLDEN_COLUMNS, survive_rules

log = logging.getLogger(__name__)

# (rule name, key columns): a row matches another when all key columns are equal and non-null.
EXACT_KEYS = (
    ("exact_email", ("email_canonical",)),
    ("exact_phone_surname", ("phone_e164", "last_name_norm")),
)

LINK_COLUMNS = ["run_id", "row_key", "source_system", "source_id", "golden_id", "match_probability", "match_rule"]


def _group_edges(df: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges from each row to the first row sharing its key; also the per-row group size."""
    keyed = df[list(cols)].notna().all(axis=1).to_numpy()
    codes = np.full(len(df), -1, dtype=np.int64)
    if keyed.any():
        codes[keyed] = df.loc[keyed, list(cols)].groupby(list(cols), sort=False).ngroup().to_numpy()
    sizes = np.zeros(len(df), dtype=np.int64)
    if not keyed.any():
        return np.empty(0, np.int64), np.empty(0, np.int64), sizes
    rows = np.flatnonzero(keyed)
    c = codes[rows]
    counts = np.bincount(c)
    sizes[rows] = counts[c]
    _, first = np.unique(c, return_index=True)
    return rows, rows[first][c], sizes


def cluster_exact(leads: pd.DataFrame) -> pd.DataFrame:
    """lead_links for `leads` (normalised, valid rows), row for row: every row gets exactly one golden_id.

    `leads` may span runs (today's rows plus the current state of earlier ones); run_id and row_key
    together say which landing each link belongs to.
    """
    n = len(leads)
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in LINK_COLUMNS}).astype(
            {"match_probability": "float64"})
    src, dst, rule = [], [], np.full(n, "singleton", dtype=object)
    for name, cols in reversed(EXACT_KEYS):  # first rule wins the label
        a, b, sizes = _group_edges(leads, cols)
        src.append(a)
        dst.append(b)
        rule[sizes > 1] = name
    src, dst = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    member = (leads["source_system"].astype(str) + ":" + leads["source_id"].astype(str)).to_numpy()
    # A cluster's id hashes its smallest member key, so the same people give the same id every run.
    smallest = pd.Series(member).groupby(component).transform("min").to_numpy()
    uniq, inverse = np.unique(smallest, return_inverse=True)
    ids = np.array(["g-" + hashlib.sha1(k.encode()).hexdigest()[:16] for k in uniq], dtype=object)[inverse]
    links = pd.DataFrame({
        "run_id": leads["run_id"].to_numpy() if "run_id" in leads else None,
        "row_key": leads["row_key"].to_numpy(),
        "source_system": leads["source_system"].to_numpy(),
        "source_id": leads["source_id"].to_numpy(),
        "golden_id": ids,
        "match_probability": 1.0,
        "match_rule": rule,
    })
    log.info("dedupe: %d rows -> %d golden leads (%d rows merged)", n, len(uniq), n - len(uniq))
    return links.astype({c: "string" for c in LINK_COLUMNS if c != "match_probability"})


def survive(leads: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """One golden row per golden_id under the default survivorship rules (see survivorship.py).

    The most recent non-null value per field, with safe exceptions: created_at is the earliest (the
    lead is as old as its first sighting), updated_at and last_activity_at the latest, and an opt-out
    or do-not-call on any source row wins: honouring it is a legal duty, not a preference.
    """
    if len(links) != len(leads):
        raise ValueError("links must be aligned row for row with leads (use cluster_exact's output)")
    return survive_rules(leads.reset_index(drop=True), links["golden_id"].to_numpy(), provenance=False)[GOLDEN_COLUMNS]


from slowburn.dedupe.engine import DedupeResult, dedupe_leads  # noqa: E402

__all__ = ["cluster_exact", "survive", "survive_rules", "dedupe_leads", "DedupeResult", "GOLDEN_COLUMNS",
           "LINK_COLUMNS", "EXACT_KEYS"]
