"""Clustering pairwise links into golden ids, with a chaining guard and stable ids across runs.

1. Connected components over the accepted pairs, with every existing golden record (rows linked
   in earlier runs and unchanged since) held together as one unit.
2. Chaining guard: a component that holds corporate (non-free-mail) emails at two or more
   different domains is rebuilt greedily, strongest link first (deterministic, then by match
   weight), refusing any link that would put two different companies' corporate emails in one
   record. The refused links go to review; nothing is merged on them.
3. Golden ids: a component that contains existing golden records keeps the oldest one's id (the
   record whose earliest member was created first; ties go to the smaller id) and records the
   merge of the others; otherwise it reuses the id its rows had before (a changed lead keeps its
   id), otherwise it mints `g-` + sha1 of its smallest member key, as the exact matcher did.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

log = logging.getLogger(__name__)


def mint_id(key: str, salt: str = "") -> str:
    return "g-" + hashlib.sha1((key + salt).encode()).hexdigest()[:16]


@dataclass
class Clusters:
    labels: np.ndarray              # component label per row
    accepted: pd.DataFrame          # edges used (a, b, probability, match_weight, rule)
    refused: pd.DataFrame           # edges refused by the chaining guard, with a reason
    split_components: int


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _kept_edges(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Star edges holding rows with the same (non-negative) group code together."""
    rows = np.flatnonzero(group >= 0)
    if not len(rows):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    codes = group[rows]
    _, first = np.unique(codes, return_index=True)
    anchor = np.full(codes.max() + 1, -1, dtype=np.int64)
    anchor[codes[first]] = rows[first]
    a = anchor[codes]
    keep = a != rows
    return a[keep], rows[keep]


def cluster(n: int, edges: pd.DataFrame, corporate_domain: pd.Series | np.ndarray,
            kept_group: np.ndarray | None = None, guard: bool = True) -> Clusters:
    """Cluster n rows given accepted pair edges.

    corporate_domain: per row, the email domain when the email is corporate (not free mail), else null.
    kept_group: per row, a code >= 0 for rows that must stay together (an existing golden record), else -1.
    """
    kept_group = np.full(n, -1, dtype=np.int64) if kept_group is None else np.asarray(kept_group, dtype=np.int64)
    ka, kb = _kept_edges(kept_group)
    ea, eb = edges["a"].to_numpy(np.int64), edges["b"].to_numpy(np.int64)
    labels = _components(n, np.concatenate([ka, ea]), np.concatenate([kb, eb]))
    empty = edges.iloc[0:0].assign(reason=pd.Series(dtype="object"))
    if not guard or not len(edges):
        return Clusters(labels, edges, empty, 0)
    dom = (corporate_domain.astype("string").reset_index(drop=True) if isinstance(corporate_domain, pd.Series)
           else pd.Series(np.asarray(corporate_domain, dtype=object)).astype("string"))
    # Distinct corporate domains per component, on integer codes (no million Python strings).
    dcode = pd.factorize(dom)[0].astype(np.int64)
    has = dcode >= 0
    width = int(dcode.max()) + 1 if has.any() else 1
    pairs = np.unique(labels[has].astype(np.int64) * width + dcode[has])
    bad = np.flatnonzero(np.bincount(pairs // width, minlength=int(labels.max()) + 1 if n else 0) > 1)
    if not len(bad):
        return Clusters(labels, edges, empty, 0)
    in_bad = np.isin(labels, bad)
    edge_bad = in_bad[ea]
    ok_edges = edges[~edge_bad]
    todo = edges[edge_bad]
    # Greedy constrained union inside each conflicting component.
    parent = np.arange(n, dtype=np.int64)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    domains: dict[int, frozenset] = {}
    rows_bad = np.flatnonzero(in_bad)
    for r, d in zip(rows_bad, dom.iloc[rows_bad].to_numpy(dtype=object, na_value=None)):
        domains[r] = frozenset([d]) if d is not None else frozenset()

    def union(x: int, y: int) -> None:
        rx, ry = find(x), find(y)
        if rx == ry:
            return
        parent[ry] = rx
        domains[rx] = domains[rx] | domains.pop(ry)

    # Existing golden records stay whole, whatever they hold.
    kmask = in_bad[ka]
    for x, y in zip(ka[kmask], kb[kmask]):
        union(int(x), int(y))
    order = todo.assign(_det=(todo["rule"] != "splink").astype(int)).sort_values(
        ["_det", "probability", "match_weight", "a", "b"], ascending=[False, False, False, True, True], kind="stable")
    accepted_idx, refused_idx, reasons = [], [], []
    for idx, x, y in zip(order.index, order["a"].to_numpy(), order["b"].to_numpy()):
        rx, ry = find(int(x)), find(int(y))
        if rx == ry:
            accepted_idx.append(idx)
            continue
        dx, dy = domains[rx], domains[ry]
        if dx and dy and not (dx <= dy or dy <= dx):
            refused_idx.append(idx)
            reasons.append("chaining guard: would join corporate emails at "
                           + " and ".join(sorted(dx | dy)[:4]))
            continue
        union(int(x), int(y))
        accepted_idx.append(idx)
    roots = np.array([find(int(r)) for r in rows_bad], dtype=np.int64)
    new_labels = labels.copy()
    new_labels[rows_bad] = labels.max() + 1 + roots  # fresh labels, distinct from all others
    accepted = pd.concat([ok_edges, todo.loc[accepted_idx]])
    refused = todo.loc[refused_idx].assign(reason=reasons)
    log.info("dedupe: chaining guard split %d cluster(s), refusing %d link(s)", len(bad), len(refused))
    return Clusters(new_labels, accepted, refused, int(len(bad)))


def assign_golden_ids(labels: np.ndarray, member_key: pd.Series, previous_id: pd.Series, existing: np.ndarray,
                      created_at: pd.Series, salt: str = "",
                      previous_codes: tuple[np.ndarray, pd.Index] | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Golden id per row, and the merges of existing golden records (survivor, absorbed, rows moved).

    previous_id: the golden id each row had in the previous lead_links state (null if none).
    existing: rows linked before and unchanged since; their golden record is kept.

    A component of existing rows of one record only (no new row reached it: the bulk of a night)
    keeps that id without further work, so the cost follows tonight's rows, not the state.
    previous_codes: pd.factorize(previous_id), when the caller already has it.
    """
    n = len(labels)
    labels = np.asarray(labels, dtype=np.int64)
    existing = np.asarray(existing, bool)
    prev = previous_id.astype("string").reset_index(drop=True)
    pcode, puniq = pd.factorize(prev) if previous_codes is None else previous_codes
    comps = int(labels.max()) + 1 if n else 0
    opened = np.zeros(comps, bool)
    opened[labels[~existing | (pcode < 0)]] = True
    lo = np.full(comps, np.iinfo(np.int64).max)
    hi = np.full(comps, -1, dtype=np.int64)
    np.minimum.at(lo, labels, pcode)
    np.maximum.at(hi, labels, pcode)
    quiet = ~opened[labels] & (lo == hi)[labels]
    gid = np.full(n, None, dtype=object)
    gid[quiet] = prev[quiet].to_numpy(dtype=object)
    reserved = np.zeros(len(puniq) + 1, bool)  # ids held by existing records; the last slot is code -1 (none)
    reserved[pcode[quiet]] = True
    rest = np.flatnonzero(~quiet)
    merges = pd.DataFrame(columns=["survivor", "absorbed", "rows_moved"])
    if len(rest):
        gid[rest], merges = _assign_open(labels[rest], member_key.iloc[rest], prev.iloc[rest], pcode[rest],
                                         existing[rest], pd.Series(created_at).iloc[rest], pd.Index(puniq),
                                         reserved, salt)
    return gid, merges


def _assign_open(labels, member_key, prev, pcode, existing, created_at, puniq: pd.Index, in_use: np.ndarray,
                 salt: str) -> tuple[np.ndarray, pd.DataFrame]:
    """assign_golden_ids for the components tonight's rows reached; in_use flags (per code in puniq)
    the ids other records hold, and is updated in place as ids are taken."""
    n = len(labels)
    df = pd.DataFrame({"c": labels, "key": member_key.astype(str).to_numpy(),
                       "prev": prev.to_numpy(dtype=object, na_value=None), "pcode": pcode, "existing": existing,
                       "created": pd.to_datetime(created_at, utc=True).array})  # not to_numpy: that boxes each
    gid = pd.Series(pd.NA, index=range(n), dtype="object")
    # 1. Components holding existing golden records keep the oldest one.
    ex = df[df["existing"] & (df["pcode"] >= 0)]
    merges = pd.DataFrame(columns=["survivor", "absorbed", "rows_moved"])
    if len(ex):
        per = ex.groupby(["c", "prev"], sort=False).agg(first_seen=("created", "min"), rows=("key", "size")).reset_index()
        per["first_seen"] = per["first_seen"].fillna(pd.Timestamp.max.tz_localize("UTC"))
        per = per.sort_values(["c", "first_seen", "prev"], kind="stable")
        survivor = per.drop_duplicates("c").set_index("c")["prev"]
        gid = df["c"].map(survivor).astype("object")
        absorbed = per[per["prev"].to_numpy() != per["c"].map(survivor).to_numpy()]
        if len(absorbed):
            merges = pd.DataFrame({"survivor": absorbed["c"].map(survivor).to_numpy(),
                                   "absorbed": absorbed["prev"].to_numpy(), "rows_moved": absorbed["rows"].to_numpy()})
        in_use[ex["pcode"].to_numpy()] = True
    # 2. Otherwise the id the component's rows had before, if no one else holds it.
    open_ = gid.isna().to_numpy()
    pc_ = df["pcode"].to_numpy()
    hints = df[open_ & (pc_ >= 0) & ~in_use[pc_]]
    if len(hints):
        per = hints.groupby(["c", "prev"], sort=False)["created"].min().reset_index()
        per = per.sort_values(["prev", "created", "c"], kind="stable").drop_duplicates("prev")  # one taker per id
        per = per.sort_values(["c", "created", "prev"], kind="stable").drop_duplicates("c")
        take = df["c"].map(per.set_index("c")["prev"])
        gid = gid.where(gid.notna(), take)
        in_use[puniq.get_indexer(per["prev"])] = True
    # 3. Otherwise mint from the smallest member key.
    open_ = gid.isna().to_numpy()
    if open_.any():
        smallest = df.loc[open_].groupby("c")["key"].min()
        minted, taken = {}, set()

        def held(g: str) -> bool:  # the id still names another record (e.g. a lead that moved away)
            if g in taken:
                return True
            code = puniq.get_indexer([g])[0] if len(puniq) else -1
            return code >= 0 and bool(in_use[code])
        first = [mint_id(key) for key in smallest.to_numpy()]
        clash = puniq.get_indexer(first) if len(puniq) else np.full(len(first), -1)
        for (c, key), g, code in zip(smallest.items(), first, clash):
            k = 0
            if g in taken or (code >= 0 and in_use[code]):
                while held(g):
                    k += 1
                    g = mint_id(key, f"|{salt}|{k}")
            taken.add(g)
            minted[c] = g
        gid = gid.where(gid.notna(), df["c"].map(minted))
    return gid.to_numpy(dtype=object), merges
