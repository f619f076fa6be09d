"""dedupe_leads: features -> linkage -> clustering -> golden ids -> survivorship -> lineage."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from slowburn.arrowkeys import is_in, positions, strings
from slowburn.dedupe.clustering import assign_golden_ids, cluster
from slowburn.dedupe.config import DedupeConfig, load_config
from slowburn.dedupe.features import features
from slowburn.dedupe.lineage import LINK_COLUMNS, build_links, empty_links, links_changed, same_values
from slowburn.dedupe.linkage import link
from slowburn.dedupe.survivorship import GOLDEN_COLUMNS, golden_frame, member_keys, survive_rules

log = logging.getLogger(__name__)


def _rss_mb() -> float:
    try:
        import psutil
        return psutil.Process().memory_info().rss / 2**20
    except Exception:  # psutil missing: memory is just not reported
        return float("nan")


class _Stages:
    """Seconds (wall and CPU: a shared machine stretches wall time) and resident memory after each
    stage, for the run report and the logs."""

    def __init__(self):
        self.t, self.cpu = time.perf_counter(), time.process_time()
        self.stages: dict = {}

    def __call__(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.stages[name] = {"seconds": round(now - self.t, 2), "cpu_seconds": round(cpu - self.cpu, 2),
                             "rss_mb": round(_rss_mb())}
        log.info("dedupe: %s done in %.1f s (cpu %.1f s, rss %.0f MB)", name, now - self.t, cpu - self.cpu,
                 self.stages[name]["rss_mb"])
        self.t, self.cpu = now, cpu

GOLDEN_EXTRA_COLUMNS = ["provenance", "members", "merged_from", "review_reason"]


@dataclass
class DedupeResult:
    links: pd.DataFrame
    golden: pd.DataFrame
    merges: pd.DataFrame          # survivor, absorbed, rows_moved: existing golden records merged this run
    review: pd.DataFrame          # pairs for a person to look at (row keys, probability, reason)
    report: dict = field(default_factory=dict)
    model: dict | None = None
    # What the night changed, so a load can write only that (links and golden stay complete).
    # changed_golden_ids: records that are new or whose row differs from previous_golden's (all of them
    # without previous_golden); removed_golden_ids: previous records no row belongs to any more (merged
    # away or emptied); changed_links: per row of `links`, new or different from its previous link.
    changed_golden_ids: set = field(default_factory=set)
    removed_golden_ids: set = field(default_factory=set)
    changed_links: np.ndarray | None = None


def _align_previous(leads: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """The previous lead_links row of each lead (by source_system + source_id), aligned row for row."""
    cols = ["golden_id", "run_id", "row_key", "match_probability", "match_rule", "match_model", "previous_golden_id",
            "review_reason"]
    if previous is None or not len(previous):
        return pd.DataFrame({c: pd.Series(pd.NA, index=range(len(leads)), dtype="object") for c in cols})
    prev = previous.copy()
    for c in cols:
        if c not in prev.columns:
            prev[c] = pd.NA
    prev = prev.drop_duplicates(["source_system", "source_id"], keep="last")
    key = leads[["source_system", "source_id"]].astype("string").reset_index(drop=True)
    prev[["source_system", "source_id"]] = prev[["source_system", "source_id"]].astype("string")
    return key.merge(prev[["source_system", "source_id"] + cols], how="left",
                     on=["source_system", "source_id"])[cols].reset_index(drop=True)


def affected_records(gid: np.ndarray, codes: np.ndarray, golden_ids: pd.Index, new: np.ndarray, prev_gid: pd.Series,
                     previous: pd.DataFrame | None, previous_ids: pd.Index | None) -> tuple[np.ndarray, np.ndarray]:
    """Per golden id (gid per row, its code in golden_ids): whether its record must be survived again,
    and its row in `previous` (-1 if none).

    Affected: a record holding a row that is new or changed tonight, or that gained a row from
    another record (a merge) or lost one (a merge, a move, a row gone), or that previous lacks.
    Everything else holds exactly the rows it held last night, unchanged, and is carried.
    """
    n_golden = len(golden_ids)
    if previous is None:
        return np.ones(n_golden, bool), np.full(n_golden, -1, dtype=np.int64)
    found = positions(golden_ids, previous_ids)
    before = prev_gid.to_numpy(dtype=object, na_value=None)
    moved = np.asarray(new, bool) | (before != gid)
    affected = np.zeros(n_golden, bool)
    affected[codes[moved]] = True
    left = pd.unique(before[moved & pd.notna(before)])      # records a row moved out of
    if len(left):
        affected |= is_in(golden_ids, left)
    counts = np.bincount(codes, minlength=n_golden)
    had = previous["source_count"].to_numpy()[np.maximum(found, 0)]
    affected |= (found < 0) | (counts != had)               # e.g. a row no longer among the leads
    return affected, found


def _with_carried(survived: pd.DataFrame, previous: pd.DataFrame | None, previous_ids: pd.Index | None,
                  carried: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Tonight's golden table: the re-survived records and previous' `carried` rows, sorted by
    golden_id as survive_rules sorts; also each row's row in previous (-1: none) and whether it was
    re-survived. One Arrow take builds it: the carried bulk is never copied twice."""
    if previous is None:
        return survived, np.full(len(survived), -1, dtype=np.int64), np.ones(len(survived), bool)
    if not len(carried):
        return survived, positions(survived["golden_id"], previous_ids), np.ones(len(survived), bool)
    order = _merged_order(previous["golden_id"], carried, survived["golden_id"])
    found = np.concatenate([carried, positions(survived["golden_id"], previous_ids)])[order]
    fresh = np.r_[np.zeros(len(carried), bool), np.ones(len(survived), bool)][order]
    where = np.r_[carried, len(previous) + np.arange(len(survived))][order]
    # In Arrow: the frames' columns are Arrow-backed, so the concatenation copies nothing and one
    # take per column builds the result (a pandas take of the same costs several times more).
    first = pa.Table.from_pandas(previous[survived.columns], preserve_index=False)
    second = pa.Table.from_pandas(survived, preserve_index=False).cast(first.schema)
    both = pa.concat_tables([first, second]).take(pa.array(where))
    out = both.to_pandas(types_mapper={pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}.get)
    return out.astype(survived.dtypes.to_dict()), found, fresh


def _sorted(ids: pa.Array) -> bool:
    return len(ids) < 2 or pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py()


def _merged_order(previous_ids: pd.Series, carried: np.ndarray, survived_ids: pd.Series) -> np.ndarray:
    """The order that sorts previous_ids[carried] followed by survived_ids (distinct ids).

    Both are already sorted when previous is a golden table this function built (sorted by
    golden_id) and survived comes from survive_rules: then the survived ids are merged in by binary
    search, instead of sorting a million strings again. Otherwise a plain sort."""
    kept, new = strings(previous_ids).take(pa.array(carried)), strings(survived_ids)
    if not (_sorted(kept) and _sorted(new)):
        return pc.sort_indices(pa.chunked_array([kept, new])).to_numpy()
    slot = np.searchsorted(kept.to_numpy(zero_copy_only=False), new.to_numpy(zero_copy_only=False))
    at_new = slot + np.arange(len(new))               # each survived id's place in the merged order
    is_new = np.zeros(len(kept) + len(new), bool)
    is_new[at_new] = True
    order = np.empty(len(is_new), dtype=np.int64)
    order[~is_new] = np.arange(len(kept))
    order[is_new] = len(kept) + np.arange(len(new))
    return order


def golden_changes(golden: pd.DataFrame, previous: pd.DataFrame | None, found: np.ndarray, survived: np.ndarray,
                   prev_gid: pd.Series) -> tuple[set, set]:
    """(changed, removed) golden ids: records new or different from `previous` (found: each golden
    row's row in previous or -1; only re-survived rows can differ beyond the per-run annotations),
    and previous records with no row left."""
    ids = golden["golden_id"].to_numpy(dtype=object)  # (iterating an Arrow-backed Series is slow)
    if previous is None:
        left = pd.unique(prev_gid.dropna().to_numpy(dtype=object))
        return set(ids), set(left[~is_in(left, ids)])
    has = found >= 0
    changed = ~has
    at = np.maximum(found, 0)
    for col in ("merged_from", "review_reason"):  # this run's annotations, on every record
        # Only where either side holds a value (a few records): two nulls are the same.
        held = golden[col].notna().to_numpy() | previous[col].notna().to_numpy()[at]
        rows = np.flatnonzero(has & held)
        if len(rows):
            changed[rows] |= ~same_values(golden[col].iloc[rows], previous[col].iloc[at[rows]])
    rows = np.flatnonzero(survived & has & ~changed)
    for col in golden.columns:
        if len(rows):
            changed[rows] |= ~same_values(golden[col].iloc[rows], previous[col].iloc[found[rows]])
    gone = np.ones(len(previous), bool)
    gone[found[has]] = False
    return set(ids[changed]), set(previous["golden_id"].to_numpy(dtype=object)[gone])


def dedupe_leads(leads: pd.DataFrame, previous_links: pd.DataFrame | None = None, cfg: DedupeConfig | None = None,
                 *, previous_golden: pd.DataFrame | None = None, run_id: str | None = None,
                 model_dir: Path | None = None, run_dir: Path | None = None, retrain: bool = False,
                 full: bool = False) -> DedupeResult:
    """Link `leads` (normalised rows; may span runs) into golden records.

    previous_links: the lead_links state of the previous run. Rows it covers whose landing is
    unchanged (same run_id and row_key) and that did not land tonight (run_id != `run_id`) are
    existing: they keep their golden record and are only compared with tonight's rows. Everything
    else is new and linked. With `full=True` every row is re-linked (golden ids are still reused).

    previous_golden: the golden_leads state the previous run left (one row per golden_id). With it,
    survivorship runs only on the affected records (see `affected_records`); every other record is
    carried as it was. Without it (the first night) every record is survived.
    """
    started = time.perf_counter()
    cfg = cfg or load_config()
    leads = leads.reset_index(drop=True)
    n = len(leads)
    if n == 0:
        golden = pd.DataFrame({c: pd.Series(dtype="string") for c in GOLDEN_COLUMNS + GOLDEN_EXTRA_COLUMNS})
        before = previous_golden if previous_golden is not None else previous_links
        gone = set(before["golden_id"].dropna()) if before is not None and len(before) else set()
        return DedupeResult(empty_links(), golden, pd.DataFrame(columns=["survivor", "absorbed", "rows_moved"]),
                            pd.DataFrame(), {"rows": 0, "mode": "empty"}, removed_golden_ids=gone,
                            changed_links=np.zeros(0, bool))
    prev = _align_previous(leads, previous_links)
    # Compared in Arrow (two nulls are the same), not as a million Python strings.
    same_landing = same_values(prev["row_key"].astype("string"), leads["row_key"].astype("string"))
    if "run_id" in leads and "run_id" in prev:
        same_landing &= same_values(prev["run_id"].astype("string"), leads["run_id"].astype("string"))
    tonight = (leads["run_id"].astype("string") == run_id).fillna(False).to_numpy() if (
        run_id and "run_id" in leads) else np.zeros(n, bool)
    existing = prev["golden_id"].notna().to_numpy() & same_landing & ~tonight
    if full:
        existing[:] = False
    new = ~existing
    stage = _Stages()
    feats = features(leads)
    stage("features")
    t0 = time.perf_counter()
    result = link(feats, new, cfg, model_dir=model_dir, run_dir=run_dir, retrain=retrain)
    link_seconds = time.perf_counter() - t0
    stage("linkage")
    # Clustering: existing golden records stay whole; the chaining guard checks the rest.
    prev_gid = prev["golden_id"].astype("string")
    previous_codes = pd.factorize(prev_gid)   # one hashing of a million ids, for both uses below
    kept = np.where(existing, previous_codes[0], -1).astype(np.int64)
    corporate = feats["email_domain"].where(feats["email_free"].eq(False).fillna(False))
    clusters = cluster(n, result.edges, corporate, kept, guard=bool(cfg.raw.get("chaining_guard", True)))
    member_key = member_keys(leads)
    gid, merges = assign_golden_ids(clusters.labels, member_key, prev_gid,
                                    existing, leads["created_at"], salt=run_id or "", previous_codes=previous_codes)
    codes, golden_ids = pd.factorize(gid)
    del feats
    stage("clustering")
    # Review: links the guard refused, and possible matches below the merge threshold.
    reasons = pd.Series(pd.NA, index=range(n), dtype="object")
    review_frames = []
    for frame, why in ((clusters.refused, None), (result.review, "possible match below the merge threshold")):
        if not len(frame):
            continue
        r = frame.assign(reason=frame["reason"] if why is None else why)
        review_frames.append(r)
        for side in ("a", "b"):
            idx = r[side].to_numpy()
            other = member_key.iloc[r["b" if side == "a" else "a"].to_numpy()].to_numpy(dtype=object)
            text = [f"{w} (with {o}, p={p:.3f})" for w, o, p in zip(r["reason"], other, r["probability"])]
            fill = pd.Series(text, index=idx)
            fill = fill[~fill.index.duplicated()]
            reasons = reasons.where(reasons.notna(), fill.reindex(reasons.index))
    model_tag = None
    if result.model is not None:
        model_tag = f"splink:{result.report.get('model_fingerprint')}:{result.mode}"
    links = build_links(leads, gid, clusters.accepted, new, prev, model_tag, reasons)
    changed_links = links_changed(links, prev, new)
    stage("lineage")
    previous = None if previous_golden is None else golden_frame(previous_golden, ("merged_from", "review_reason"))
    previous_ids = None if previous is None else pd.Index(previous["golden_id"])
    golden_ids = pd.Index(golden_ids)
    affected, found = affected_records(gid, codes, golden_ids, new, prev_gid, previous, previous_ids)
    rows = affected[codes]
    golden = survive_rules(leads if rows.all() else leads[rows], gid[rows], cfg)
    golden, found, survived = _with_carried(golden, previous, previous_ids, found[~affected])
    stage("survivorship")
    merged_from = merges.groupby("survivor")["absorbed"].agg(lambda s: json.dumps(sorted(s))) if len(merges) else None
    golden["merged_from"] = (golden["golden_id"].map(merged_from) if merged_from is not None
                             else pd.Series(pd.NA, index=golden.index)).astype("string")
    review_by_gid = links.dropna(subset=["review_reason"]).drop_duplicates("golden_id").set_index("golden_id")["review_reason"]
    golden["review_reason"] = golden["golden_id"].map(review_by_gid).astype("string")
    changed, removed = golden_changes(golden, previous, found, survived, prev_gid)
    review = pd.DataFrame()
    if review_frames:
        rv = pd.concat(review_frames, ignore_index=True)

        def at(col: pd.Series, side: str) -> np.ndarray:  # only the review rows leave Arrow
            return col.iloc[rv[side].to_numpy()].to_numpy(dtype=object)
        review = pd.DataFrame({"row_key_a": at(leads["row_key"], "a"), "key_a": at(member_key, "a"),
                               "row_key_b": at(leads["row_key"], "b"), "key_b": at(member_key, "b"),
                               "golden_id_a": gid[rv["a"].to_numpy()], "golden_id_b": gid[rv["b"].to_numpy()],
                               "match_probability": rv["probability"].to_numpy(), "rule": rv["rule"].to_numpy(),
                               "reason": rv["reason"].to_numpy()}).astype({"match_probability": "float64"})
    report = {**result.report, "mode": result.mode, "existing_rows": int(existing.sum()), "linked_rows": int(new.sum()),
              "incremental": {"previous_golden": previous is not None, "golden_survived": int(affected.sum()),
                              "golden_carried": int(len(golden) - affected.sum()),
                              "golden_changed": len(changed), "golden_removed": len(removed),
                              "links_changed": int(changed_links.sum())},
              "golden_leads": int(len(golden)), "merged_rows": int(n - len(golden)),
              "chaining_guard_split_clusters": clusters.split_components,
              "chaining_guard_refused_links": int(len(clusters.refused)),
              "golden_records_merged": int(len(merges)), "review_pairs": int(len(review)),
              "by_rule": links.loc[new, "match_rule"].value_counts().to_dict(),
              "link_seconds": round(link_seconds, 2), "stages": stage.stages,
              "seconds": round(time.perf_counter() - started, 2)}
    log.info("dedupe: %d rows (%d new) -> %d golden leads in %.1f s [%s]", n, int(new.sum()), len(golden),
             report["seconds"], result.mode)
    return DedupeResult(links[LINK_COLUMNS], golden, merges, review, report, result.model,
                        changed_golden_ids=changed, removed_golden_ids=removed, changed_links=changed_links)
