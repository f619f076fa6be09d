"""Pairwise linkage: a deterministic pre-pass, then a Splink 5 model on DuckDB.

* The pre-pass links rows that share a canonical email, or a phone number and a surname, with
  probability 1.0 (configurable rules). It needs no training, so it is also the whole linkage when
  the data is too small for Splink to estimate anything.
* The Splink model (Fellegi-Sunter) compares first name (exact, nickname, Jaro-Winkler), surname
  (exact, Jaro-Winkler), email (canonical, local part, similar local part), phone (E.164, last
  seven digits) and organisation (company basename with city/postcode). u is estimated by random
  sampling, m by expectation maximisation on a few blocking rules, the prior from the
  deterministic rules. The trained model is a JSON document saved with every run.
* A saved model is reused while the data has not drifted: each matching column's null rate and
  distinct ratio are compared with the snapshot taken when the model was trained.
* Incremental: only `new` rows (tonight's new and changed leads) are linked, among themselves
  (predict_within) and against the existing rows (predict_between); existing rows are never
  re-compared with each other.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from slowburn.dedupe.config import DedupeConfig
from slowburn.dedupe.features import FEATURE_COLUMNS, profile

log = logging.getLogger(__name__)

MODEL_VERSION = "leads-v1"  # bump when the comparisons below change: saved models are then retrained
EDGE_COLUMNS = ["a", "b", "probability", "match_weight", "rule"]


# ---------------------------------------------------------------------------------------- deterministic
def deterministic_edges(feats: pd.DataFrame, new: np.ndarray, rules: list[dict]) -> pd.DataFrame:
    """Edges (a, b) between rows equal and non-null on all columns of a rule; at least one side is new.

    Each new row is linked to one anchor per key (the key's first existing row, else its first
    new row): a star per key is enough for clustering, and it keeps the edge count linear.
    """
    frames = []
    for rule in rules:
        cols = [c for c in rule["columns"] if c in feats.columns]
        if len(cols) != len(rule["columns"]):
            continue
        keyed = feats[cols].notna().all(axis=1).to_numpy()
        if not keyed.any():
            continue
        rows = np.flatnonzero(keyed)
        codes = feats.loc[keyed, cols].groupby(cols, sort=False).ngroup().to_numpy()
        is_new = new[rows]
        # Anchor: existing rows sort first, then by position.
        order = np.lexsort((rows, is_new, codes))
        c_sorted = codes[order]
        first = np.r_[True, c_sorted[1:] != c_sorted[:-1]]
        anchor_of_code = np.empty(codes.max() + 1, dtype=np.int64)
        anchor_of_code[c_sorted[first]] = rows[order][first]
        anchors = anchor_of_code[codes]
        take = is_new & (anchors != rows)
        if take.any():
            frames.append(pd.DataFrame({"a": anchors[take], "b": rows[take], "probability": 1.0,
                                        "match_weight": np.inf, "rule": rule["name"]}))
    if not frames:
        return pd.DataFrame({"a": pd.Series(dtype="int64"), "b": pd.Series(dtype="int64"),
                             "probability": pd.Series(dtype="float64"), "match_weight": pd.Series(dtype="float64"),
                             "rule": pd.Series(dtype="object")})
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------- model spec
def _jw(col: str, t: float) -> str:
    return f"jaro_winkler_similarity({col}_l, {col}_r) >= {t}"


def _null(*cols: str) -> str:
    return " OR ".join(f"{c}_l IS NULL OR {c}_r IS NULL" for c in cols)


def _level(sql: str, label: str, null: bool = False) -> dict:
    out = {"sql_condition": sql, "label_for_charts": label}
    if null:
        out["is_null_level"] = True
    return out


COMPARISONS = {
    "first_name": ("first_name_norm", [
        _level(_null("first_name_norm"), "null", True),
        _level("first_name_norm_l = first_name_norm_r", "exact"),
        _level("list_contains(first_name_variants_l, first_name_norm_r) OR "
               "list_contains(first_name_variants_r, first_name_norm_l)", "nickname"),
        _level(_jw("first_name_norm", 0.92), "jaro_winkler >= 0.92"),
        _level(_jw("first_name_norm", 0.80), "jaro_winkler >= 0.80"),
        _level("ELSE", "else"),
    ]),
    "last_name": ("last_name_norm", [
        _level(_null("last_name_norm"), "null", True),
        _level("last_name_norm_l = last_name_norm_r", "exact"),
        _level(_jw("last_name_norm", 0.92), "jaro_winkler >= 0.92"),
        _level(_jw("last_name_norm", 0.80), "jaro_winkler >= 0.80"),
        _level("ELSE", "else"),
    ]),
    "email": ("email_canonical", [
        _level(_null("email_canonical"), "null", True),
        _level("email_canonical_l = email_canonical_r", "exact canonical"),
        _level("email_local_l = email_local_r", "same local part"),
        _level(_jw("email_local", 0.88), "local part jaro_winkler >= 0.88"),
        _level("ELSE", "else"),
    ]),
    "phone": ("phone_e164", [
        _level(_null("phone_e164"), "null", True),
        _level("phone_e164_l = phone_e164_r", "exact E.164"),
        _level("phone_tail_l = phone_tail_r", "same last 7 digits"),
        _level("ELSE", "else"),
    ]),
    # Company and address go together: leads carry their employer's address, so treating them as
    # independent evidence would count the same fact twice.
    "organisation": ("company_norm", [
        _level("(company_norm_l IS NULL OR company_norm_r IS NULL) AND "
               "(city_norm_l IS NULL OR city_norm_r IS NULL) AND (postcode_norm_l IS NULL OR postcode_norm_r IS NULL)",
               "null", True),
        _level("company_norm_l = company_norm_r AND (postcode_norm_l = postcode_norm_r OR city_norm_l = city_norm_r)",
               "same company and place"),
        _level("company_norm_l = company_norm_r", "same company"),
        _level(_jw("company_norm", 0.90), "company jaro_winkler >= 0.90"),
        _level("postcode_norm_l = postcode_norm_r OR city_norm_l = city_norm_r", "same place only"),
        _level("ELSE", "else"),
    ]),
}


def _rule_sql(cols: list[str]) -> str:
    return " AND ".join(f"l.{c} = r.{c}" for c in cols)


def active_columns(feats: pd.DataFrame) -> list[str]:
    """Matching columns with at least one value: a missing email or phone column drops its comparison."""
    return [c for c in FEATURE_COLUMNS if c in feats.columns and feats[c].notna().any()]


def settings_for(active: list[str], cfg: DedupeConfig) -> dict:
    comparisons = []
    for name, (key_col, levels) in COMPARISONS.items():
        if key_col not in active:
            continue
        comparisons.append({"output_column_name": name, "comparison_levels": levels})
    rules = [r for r in cfg.raw["blocking_rules"] if all(c in active for c in r)]
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "unique_id",
        "probability_two_random_records_match": 1e-5,
        "comparisons": comparisons,
        "blocking_rules_to_generate_predictions": [_rule_sql(r) for r in rules],
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": False,
        "additional_columns_to_retain": [],
    }


def fingerprint(settings: dict) -> str:
    spec = {"version": MODEL_VERSION, "comparisons": settings["comparisons"]}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------- drift
def drift(current: dict, trained: dict, cfg: DedupeConfig) -> dict:
    """Per-column change since training, and whether any exceeds its tolerance."""
    tol = cfg.raw["drift"]
    changes, drifted = {}, []
    for col, now in current["columns"].items():
        then = trained["columns"].get(col)
        if then is None:
            drifted.append(col)
            continue
        dn = abs(now["null_rate"] - then["null_rate"])
        dd = abs(now["distinct_ratio"] - then["distinct_ratio"])
        changes[col] = {"null_rate": round(dn, 4), "distinct_ratio": round(dd, 4)}
        if dn > tol["null_rate_tolerance"] or dd > tol["distinct_ratio_tolerance"]:
            drifted.append(col)
    return {"drifted_columns": drifted, "changes": changes, "drifted": bool(drifted)}


@dataclass
class ModelStore:
    """Saved models under <home>/models/dedupe/: model.json (Splink) and training.json (profile, when, why)."""
    folder: Path

    @property
    def model_path(self) -> Path:
        return self.folder / "model.json"

    @property
    def meta_path(self) -> Path:
        return self.folder / "training.json"

    def load(self) -> tuple[dict, dict] | None:
        if not (self.model_path.exists() and self.meta_path.exists()):
            return None
        try:
            return (json.loads(self.model_path.read_text(encoding="utf-8")),
                    json.loads(self.meta_path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            log.warning("dedupe: ignoring unreadable saved model in %s: %s", self.folder, exc)
            return None

    def save(self, model: dict, meta: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for path, data in ((self.model_path, model), (self.meta_path, meta)):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
            os.replace(tmp, path)


# ---------------------------------------------------------------------------------------- linkage
@dataclass
class LinkResult:
    edges: pd.DataFrame            # a, b (positions), probability, match_weight, rule: merged pairs
    review: pd.DataFrame           # same columns: review_probability <= p < match_probability
    mode: str                      # splink_trained | splink_reused | deterministic_only
    model: dict | None = None      # the Splink model used (settings JSON), if any
    report: dict = field(default_factory=dict)
    blocked_pairs: int | None = None


def _connect(cfg: DedupeConfig, tmp_dir: Path):
    import duckdb
    db = cfg.raw["duckdb"]
    con = duckdb.connect(config={"memory_limit": str(db["memory_limit"]), "threads": int(db["threads"]),
                                 "temp_directory": str(tmp_dir), "preserve_insertion_order": False})
    return con


def _arrow(feats: pd.DataFrame, cols: list[str]) -> pa.Table:
    keep = ["unique_id"] + [c for c in FEATURE_COLUMNS if c in cols]
    fields = [pa.field("unique_id", pa.int64())]
    for c in keep[1:]:
        fields.append(pa.field(c, pa.bool_() if c == "email_free" else pa.string()))
    return pa.Table.from_pandas(feats[keep], schema=pa.schema(fields), preserve_index=False)


def _load_inputs(con, feats: pd.DataFrame, active: list[str], new: np.ndarray) -> list[str]:
    """DuckDB tables leads_all / leads_new / leads_existing, with the nickname variants joined in."""
    from slowburn.dedupe.features import variants_table
    con.register("feats_arrow", _arrow(feats, active))
    has_first = "first_name_norm" in active
    if has_first:
        con.register("name_variants", pa.Table.from_pandas(variants_table(feats["first_name_norm"]),
                                                            preserve_index=False))
        select = ("SELECT f.*, v.first_name_variants FROM feats_arrow f "
                  "LEFT JOIN name_variants v ON f.first_name_norm = v.first_name_norm")
    else:
        select = "SELECT * FROM feats_arrow"
    con.execute(f"CREATE TABLE leads_all AS {select} ORDER BY unique_id")
    con.unregister("feats_arrow")
    if has_first:
        con.unregister("name_variants")
    tables = ["leads_all"]
    if not new.all():
        con.register("new_ids", pa.table({"unique_id": pa.array(np.flatnonzero(new).astype(np.int64))}))
        con.execute("CREATE TABLE leads_new AS SELECT * FROM leads_all SEMI JOIN new_ids USING (unique_id)")
        con.execute("CREATE TABLE leads_existing AS SELECT * FROM leads_all ANTI JOIN new_ids USING (unique_id)")
        con.unregister("new_ids")
        tables += ["leads_new", "leads_existing"]
    return tables


def _train(linker, cfg: DedupeConfig, active: list[str]) -> dict:
    tr = cfg.raw["training"]
    started = time.perf_counter()
    det = [_rule_sql(r["columns"]) for r in cfg.raw["deterministic_rules"] if all(c in active for c in r["columns"])]
    if det:
        linker.training.estimate_probability_two_random_records_match(det, recall=float(tr["deterministic_recall"]))
    linker.training.estimate_u_using_random_sampling(max_pairs=float(tr["u_max_pairs"]), seed=int(tr["seed"]))
    sessions = []
    for cols in tr["em_blocking_rules"]:
        if not all(c in active for c in cols):
            continue
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                _rule_sql(cols), estimate_without_term_frequencies=True, max_pairs=float(tr["em_max_pairs"]))
            sessions.append(cols)
        except Exception as exc:  # EM can fail on a block with no variation; the others still train
            log.warning("dedupe: EM on %s skipped: %s", cols, exc)
    return {"em_blocking_rules": sessions, "training_seconds": round(time.perf_counter() - started, 2)}


# m for a disagreement ("else") level that EM never saw among matches: rare, so strong evidence against.
UNTRAINED_ELSE_M = 1e-4


def fill_untrained(model: dict) -> list[str]:
    """Give levels that training could not estimate documented, conservative values (in place).

    EM only estimates m for levels it observes among likely matches, and random sampling only
    estimates u for levels it observes among random pairs. A level left without a value would make
    Splink's scores undefined, so: an untrained disagreement level ("else") gets m = 1e-4 (a
    disagreement is strong evidence against a match); any other untrained level becomes neutral
    (m = u, Bayes factor 1: no evidence either way); a level without u gets u = m (neutral too).
    Returns the levels filled, for the run report.
    """
    filled = []
    for comp in model.get("comparisons", []):
        for lvl in comp["comparison_levels"]:
            if lvl.get("is_null_level"):
                continue
            m, u = lvl.get("m_probability"), lvl.get("u_probability")
            if m is not None and u is not None:
                continue
            label = f"{comp['output_column_name']}: {lvl.get('label_for_charts')}"
            if lvl["sql_condition"].strip().upper() == "ELSE" and m is None:
                m = UNTRAINED_ELSE_M
            if u is None:
                u = m if m is not None else 1.0
            if m is None:
                m = u
            lvl["m_probability"], lvl["u_probability"] = m, u
            filled.append(label)
    return filled


def link(feats: pd.DataFrame, new: np.ndarray | None, cfg: DedupeConfig, *, model_dir: Path | None = None,
         run_dir: Path | None = None, retrain: bool = False) -> LinkResult:
    """Scored pairs among `new` rows and between new and existing rows of `feats` (all rows if new is None)."""
    n = len(feats)
    new = np.ones(n, dtype=bool) if new is None else np.asarray(new, dtype=bool)
    started = time.perf_counter()
    det = deterministic_edges(feats, new, cfg.raw["deterministic_rules"])
    report: dict = {"rows": n, "new_rows": int(new.sum()), "deterministic_edges": len(det),
                    "thresholds": {"match_probability": cfg.match_probability,
                                   "review_probability": cfg.review_probability}}
    empty = det.iloc[0:0]
    if n < 2 or not new.any():
        return LinkResult(det, empty, "deterministic_only", None, {**report, "reason": "nothing to link"})

    active = active_columns(feats)
    settings = settings_for(active, cfg)
    fp = fingerprint(settings)
    prof = profile(feats)
    store = ModelStore(Path(model_dir)) if model_dir else None
    saved = store.load() if store else None
    model, mode, why = None, None, None
    if saved and not retrain:
        saved_model, meta = saved
        d = drift(prof, meta["profile"], cfg)
        age = (pd.Timestamp.now(tz="UTC") - pd.Timestamp(meta["trained_at"])).days
        report["drift"] = d
        if meta.get("fingerprint") != fp:
            why = "saved model compares other columns (fingerprint changed)"
        elif d["drifted"] and n >= cfg.raw["training"]["min_rows"]:
            why = f"data drifted on {d['drifted_columns']}"
        elif age > cfg.raw["drift"]["max_model_age_days"] and n >= cfg.raw["training"]["min_rows"]:
            why = f"saved model is {age} days old"
        else:
            model, mode = saved_model, "splink_reused"
            report["model_trained_at"] = meta["trained_at"]
    if model is None and n < cfg.raw["training"]["min_rows"]:
        reason = (f"{n} rows is below training.min_rows={cfg.raw['training']['min_rows']} and there is no "
                  "usable saved model: Splink cannot estimate m and u, so only the deterministic pre-pass links")
        if why:
            reason += f" ({why})"
        log.info("dedupe: %s", reason)
        return LinkResult(det, empty, "deterministic_only", None, {**report, "reason": reason})

    from splink import DuckDBAPI, Linker

    tmp = Path(tempfile.mkdtemp(prefix="splink-", dir=run_dir))
    con = _connect(cfg, tmp)
    try:
        db_api = DuckDBAPI(con)
        _load_inputs(con, feats, active, new)
        df_all = db_api.register("leads_all", table_name="leads_all_sdf")
        if model is None:
            linker = Linker(df_all, settings, log_level=logging.WARNING)
            report["training"] = _train(linker, cfg, active)
            model = linker.misc.save_model_to_json()
            untrained = fill_untrained(model)
            linker = Linker(df_all, model, log_level=logging.WARNING)
            mode = "splink_trained"
            report["training"]["reason"] = why or ("no saved model" if not retrain else "retrain requested")
            report["training"]["untrained_levels"] = untrained
            if store:
                store.save(model, {"trained_at": pd.Timestamp.now(tz="UTC").isoformat(), "fingerprint": fp,
                                   "profile": prof, "rows": n, "untrained_levels": untrained})
        else:
            linker = Linker(df_all, model, log_level=logging.WARNING)
        threshold = cfg.review_probability
        t0 = time.perf_counter()
        if new.all():
            pred = linker.inference.predict(threshold_match_probability=threshold, warning_mode="never")
            frames = [pred.as_pandas_dataframe()]
        else:
            df_new = db_api.register("leads_new", table_name="leads_new_sdf")
            frames = [linker.inference.predict_within(df_new, threshold_match_probability=threshold,
                                                      warning_mode="never").as_pandas_dataframe()]
            if (~new).any():
                df_old = db_api.register("leads_existing", table_name="leads_existing_sdf")
                frames.append(linker.inference.predict_between(
                    df_new, df_old, threshold_match_probability=threshold, warning_mode="never").as_pandas_dataframe())
        report["predict_seconds"] = round(time.perf_counter() - t0, 2)
    finally:
        con.close()
        for p in sorted(tmp.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        tmp.rmdir()

    pairs = pd.concat(frames, ignore_index=True)
    scored = pd.DataFrame({"a": pairs["unique_id_l"].astype("int64").to_numpy(),
                           "b": pairs["unique_id_r"].astype("int64").to_numpy(),
                           "probability": pairs["match_probability"].astype("float64").to_numpy(),
                           "match_weight": pairs["match_weight"].astype("float64").to_numpy(),
                           "rule": "splink"})
    merge = scored["probability"] >= cfg.match_probability
    edges = pd.concat([det, scored[merge]], ignore_index=True)
    review = scored[~merge].reset_index(drop=True)
    report.update({"mode": mode, "model_fingerprint": fp, "splink_pairs_scored_above_review": len(scored),
                   "splink_edges": int(merge.sum()), "review_pairs": len(review),
                   "link_seconds": round(time.perf_counter() - started, 2)})
    return LinkResult(edges, review, mode, model, report)
