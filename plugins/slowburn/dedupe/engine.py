"""dedupe_leads: features -> linkage -> clustering -> golden ids -> survivorship -> lineage."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from slowburn.dedupe.clustering import assign_golden_ids, cluster
from slowburn.dedupe.config import DedupeConfig, load_config
from slowburn.dedupe.features import features
from slowburn.dedupe.lineage import LINK_COLUMNS, build_links, empty_links
from slowburn.dedupe.linkage import link
from slowburn.dedupe.survivorship import GOLDEN_COLUMNS, member_keys, survive_rules

log = logging.getLogger(__name__)


def _rss_mb() -> float:
    try:
        import psutil
        return psutil.Process().memory_info().rss / 2**20
    except Exception:  # psutil missing: memory is just not reported
        return float("nan")


class _Stages:
    """Seconds and resident memory after each stage, for the run report and the logs."""

    def __init__(self):
        self.t = time.perf_counter()
        self.stages: dict = {}

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = {"seconds": round(now - self.t, 2), "rss_mb": round(_rss_mb())}
        log.info("dedupe: %s done in %.1f s (rss %.0f MB)", name, now - self.t, self.stages[name]["rss_mb"])
        self.t = now

GOLDEN_EXTRA_COLUMNS = ["provenance", "members", "merged_from", "review_reason"]


@dataclass
class DedupeResult:
    links: pd.DataFrame
    golden: pd.DataFrame
    merges: pd.DataFrame          # survivor, absorbed, rows_moved: existing golden records merged this run
    review: pd.DataFrame          # pairs for a person to look at (row keys, probability, reason)
    report: dict = field(default_factory=dict)
    model: dict | None = None


def _align_previous(leads: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """The previous lead_links row of each lead (by source_system + source_id), aligned row for row."""
    cols = ["golden_id", "run_id", "row_key", "match_probability", "match_rule", "match_model"]
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


def dedupe_leads(leads: pd.DataFrame, previous_links: pd.DataFrame | None = None, cfg: DedupeConfig | None = None,
                 *, run_id: str | None = None, model_dir: Path | None = None, run_dir: Path | None = None,
                 retrain: bool = False, full: bool = False) -> DedupeResult:
    """Link `leads` (normalised rows; may span runs) into golden records.

    previous_links: the lead_links state of the previous run. Rows it covers whose landing is
    unchanged (same run_id and row_key) and that did not land tonight (run_id != `run_id`) are
    existing: they keep their golden record and are only compared with tonight's rows. Everything
    else is new and linked. With `full=True` every row is re-linked (golden ids are still reused).
    """
    started = time.perf_counter()
    cfg = cfg or load_config()
    leads = leads.reset_index(drop=True)
    n = len(leads)
    if n == 0:
        golden = pd.DataFrame({c: pd.Series(dtype="string") for c in GOLDEN_COLUMNS + GOLDEN_EXTRA_COLUMNS})
        return DedupeResult(empty_links(), golden, pd.DataFrame(columns=["survivor", "absorbed", "rows_moved"]),
                            pd.DataFrame(), {"rows": 0, "mode": "empty"})
    prev = _align_previous(leads, previous_links)
    same_landing = (prev["row_key"].astype("string").to_numpy(dtype=object, na_value=None)
                    == leads["row_key"].astype("string").to_numpy(dtype=object, na_value=None))
    if "run_id" in leads and "run_id" in prev:
        same_landing &= (prev["run_id"].astype("string").to_numpy(dtype=object, na_value=None)
                         == leads["run_id"].astype("string").to_numpy(dtype=object, na_value=None))
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
    kept = np.full(n, -1, dtype=np.int64)
    if existing.any():
        kept[existing] = pd.factorize(prev_gid[existing])[0]
    corporate = feats["email_domain"].where(feats["email_free"].eq(False).fillna(False))
    clusters = cluster(n, result.edges, corporate, kept, guard=bool(cfg.raw.get("chaining_guard", True)))
    member_key = member_keys(leads)
    gid, merges = assign_golden_ids(clusters.labels, member_key, prev_gid,
                                    existing, leads["created_at"], salt=run_id or "")
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
            other = member_key.to_numpy()[r["b" if side == "a" else "a"].to_numpy()]
            text = [f"{w} (with {o}, p={p:.3f})" for w, o, p in zip(r["reason"], other, r["probability"])]
            fill = pd.Series(text, index=idx)
            fill = fill[~fill.index.duplicated()]
            reasons = reasons.where(reasons.notna(), fill.reindex(reasons.index))
    model_tag = None
    if result.model is not None:
        model_tag = f"splink:{result.report.get('model_fingerprint')}:{result.mode}"
    links = build_links(leads, gid, clusters.accepted, new, prev, model_tag, reasons)
    stage("lineage")
    golden = survive_rules(leads, gid, cfg)
    stage("survivorship")
    merged_from = merges.groupby("survivor")["absorbed"].agg(lambda s: json.dumps(sorted(s))) if len(merges) else None
    golden["merged_from"] = (golden["golden_id"].map(merged_from) if merged_from is not None
                             else pd.Series(pd.NA, index=golden.index)).astype("string")
    review_by_gid = links.dropna(subset=["review_reason"]).drop_duplicates("golden_id").set_index("golden_id")["review_reason"]
    golden["review_reason"] = golden["golden_id"].map(review_by_gid).astype("string")
    review = pd.DataFrame()
    if review_frames:
        rv = pd.concat(review_frames, ignore_index=True)
        review = pd.DataFrame({"row_key_a": leads["row_key"].to_numpy()[rv["a"].to_numpy()],
                               "key_a": member_key.to_numpy()[rv["a"].to_numpy()],
                               "row_key_b": leads["row_key"].to_numpy()[rv["b"].to_numpy()],
                               "key_b": member_key.to_numpy()[rv["b"].to_numpy()],
                               "golden_id_a": gid[rv["a"].to_numpy()], "golden_id_b": gid[rv["b"].to_numpy()],
                               "match_probability": rv["probability"].to_numpy(), "rule": rv["rule"].to_numpy(),
                               "reason": rv["reason"].to_numpy()}).astype({"match_probability": "float64"})
    report = {**result.report, "mode": result.mode, "existing_rows": int(existing.sum()), "linked_rows": int(new.sum()),
              "golden_leads": int(len(golden)), "merged_rows": int(n - len(golden)),
              "chaining_guard_split_clusters": clusters.split_components,
              "chaining_guard_refused_links": int(len(clusters.refused)),
              "golden_records_merged": int(len(merges)), "review_pairs": int(len(review)),
              "by_rule": links.loc[new, "match_rule"].value_counts().to_dict(),
              "link_seconds": round(link_seconds, 2), "stages": stage.stages,
              "seconds": round(time.perf_counter() - started, 2)}
    log.info("dedupe: %d rows (%d new) -> %d golden leads in %.1f s [%s]", n, int(new.sum()), len(golden),
             report["seconds"], result.mode)
    return DedupeResult(links[LINK_COLUMNS], golden, merges, review, report, result.model)
