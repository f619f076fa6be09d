#!/usr/bin/env python
"""Benchmark ripeness scoring: slowburn's models against plain scikit-learn baselines, and speed at scale.

1. Quality, on two lead sets in one run: the default sample (default 100k leads) and an
   attribute-driven sample (slowburn.ripeness.synthetic, --attr-leads) whose conversions depend on
   custom fields mapped under `attributes:`. Each is generated (cached) and run through the pipeline
   up to dedupe; every closed golden lead becomes a backtest row with features as of a moment of its
   open life before the close. Train on the older closed leads, test on the newer ones: AUC,
   top-decile lift and calibration error (ECE, 10 equal-count bins) for the hand-set rules, the
   fitted scorecard, every predictive model with the calibration the backtest chose, slowburn's
   chosen model, and two plain baselines fitted on the same split and the same raw columns (the
   golden lead's columns and custom attributes, touch counts per type and summed touch values before
   the snapshot): scikit-learn LogisticRegression (one-hot + scaled) and HistGradientBoosting.
   Gate: the chosen model within 0.01 AUC of the best baseline or ahead, top-decile lift at least the
   best baseline's, and the scorecard's AUC above 0.65.
2. Capacity simulation over the last --sim-days days: every day sales can make N calls. The queue
   holds the open leads created in the last --fresh-days days that nobody has called yet; each
   strategy calls its top N: by rules score, by predictive probability (both computed as of that
   day from the touches before it, models trained only on leads closed before the window), or the
   newest first. Reported: the share of the buyers created in the window (golden leads that were
   later won) that were called before they closed.
3. Speed (--scale-leads, default 1M): the pipeline runs up to dedupe in subprocesses (cached), then
   the score and route steps run as `slowburn step` twice: cold (trains and backtests the model) and
   warm (reuses the stored model, as on the nights after). Target: score + route <= 60 s.
4. A night that costs what changed (--incremental N, on its own): score_leads in-process on the N-lead
   sample, night 1 in full (cold: trains; then warm, every lead explained), then night 2 a day later
   with ~1% of the leads touched, 0.1% newly closed and 0.1% new, given night 1's scores as
   `previous` (read back from a SQLite lead_scores table, timed): only leads whose score, tier or
   model changed are explained. --incremental-kind lightgbm (default) forces the model whose reasons
   cost most, as chosen at 1M. Reports the median of --repeats runs.

Usage: python bench/bench_score.py [--leads 100000] [--scale-leads 1000000 | --scale-leads 0]
       python bench/bench_score.py --incremental 200000 [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOGICAL_DATE = "2026-11-23"
PREP_STEPS = ("extract", "normalise", "validate", "dedupe")
TARGET_SECONDS = 60.0


def _env() -> dict:
    env = dict(os.environ)
    for var in ("SLOWBURN_WAREHOUSE_URL", "SLOWBURN_HOME", "SLOWBURN_SOURCES"):
        env.pop(var, None)
    env["GX_ANALYTICS_ENABLED"] = "false"
    env.setdefault("SLOWBURN_INCLUDE_DIR", str(REPO / "include"))
    return env


def _slowburn() -> list[str]:
    return [sys.executable, "-m", "slowburn.cli"]


def prepare(work: Path, n: int, seed: int, now: str, kind: str = "sample") -> tuple[Path, Path]:
    """Sources and a home whose run folder has gone through dedupe (both cached).

    kind "sample" is `slowburn sample`; "attributes" the attribute-driven set of slowburn.ripeness.synthetic.
    """
    tag = "" if kind == "sample" else "attr-"
    sample, home = work / f"{tag}sample-{n}", work / f"{tag}home-{n}"
    manifest = sample / "bench-manifest.json"
    wanted = {"n_leads": n, "seed": seed, "now": now, "kind": kind}
    fresh = not (manifest.exists() and json.loads(manifest.read_text()) == wanted)
    if fresh:
        print(f"generating {n:,} {kind} leads into {sample} ...", flush=True)
        if kind == "sample":
            subprocess.run(_slowburn() + ["sample", "--out", str(sample), "--leads", str(n), "--seed", str(seed),
                                          "--now", now], check=True, env=_env(), stdout=subprocess.DEVNULL)
        else:
            from slowburn.ripeness.synthetic import write_attribute_sample
            write_attribute_sample(sample, n, seed, now)
        manifest.write_text(json.dumps(wanted))
    run_dir = home / "runs" / (LOGICAL_DATE + "T000000") / "attempt-1"
    if fresh or not (run_dir / "golden_leads.parquet").exists():
        if home.exists():
            import shutil
            shutil.rmtree(home)
        for step in PREP_STEPS:
            print(f"  step {step} ({n:,} leads) ...", flush=True)
            subprocess.run(_slowburn() + ["step", step, "--sources", str(sample / "sources.yaml"), "--home", str(home),
                                          "--logical-date", LOGICAL_DATE], check=True, env=_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return sample, home


# ---------------------------------------------------------------------------------------------- baselines
def raw_columns(golden, attrs, ts_index, feats):
    """What a plain baseline is given: the golden lead's own columns, its custom attributes, and touch
    counts per type and summed touch values before the snapshot. No slowburn feature engineering."""
    import pandas as pd

    from slowburn.contracts import TOUCH_TYPES
    from slowburn.ripeness.features import ATTRIBUTE_PREFIX

    g = golden.set_index("golden_id").reindex(ts_index)
    frame = pd.DataFrame(index=ts_index)
    for col in ("lead_source", "title", "country_code", "email_domain"):
        if col == "email_domain":
            frame[col] = attrs["email_domain"].reindex(ts_index).astype("string")
        else:
            frame[col] = g[col].astype("string").str.lower()
    for col in attrs.columns:
        if col.startswith(ATTRIBUTE_PREFIX):
            frame[col] = attrs[col].reindex(ts_index)
    for t in TOUCH_TYPES:
        frame[f"n_{t}"] = feats[f"n_{t}"].reindex(ts_index).to_numpy(dtype=float)
    frame["touch_value"] = feats["touch_value"].reindex(ts_index).to_numpy(dtype=float)
    return frame


def baselines(frame, y, train, test) -> dict:
    """Plain scikit-learn LogisticRegression and HistGradientBoosting on the raw columns, same split."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    from slowburn.ripeness import predictive as P

    cats = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    nums = [c for c in frame.columns if c not in cats]
    X = frame.copy()
    for c in cats:
        X[c] = X[c].astype("object").where(X[c].notna(), "missing").astype(str)
    lr = make_pipeline(ColumnTransformer([
        ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20), cats),
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums)]),
        LogisticRegression(max_iter=3000))
    hgb = make_pipeline(ColumnTransformer([
        ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, min_frequency=20), cats),
        ("num", "passthrough", nums)]),
        HistGradientBoostingClassifier(categorical_features=list(range(len(cats))), random_state=0))
    out = {}
    for name, model in (("baseline: sklearn LogisticRegression", lr),
                        ("baseline: sklearn HistGradientBoosting", hgb)):
        model.fit(X.iloc[train], y[train])
        p = model.predict_proba(X.iloc[test])[:, 1]
        out[name] = P.metrics(y[test], p)
    return out


# ---------------------------------------------------------------------------------------------- quality
def quality(home: Path, sim_days: int, fresh_days: int, capacities: list[int]) -> dict:
    import numpy as np
    import pandas as pd

    from slowburn.ripeness import load_config
    from slowburn.ripeness import predictive as P
    from slowburn.ripeness.features import lead_attributes, link_touches, touch_features
    from slowburn.ripeness.rules import RulesModel
    from slowburn.ripeness.scorecard import FittedScorecard

    run = home / "runs" / (LOGICAL_DATE + "T000000") / "attempt-1"
    golden = pd.read_parquet(run / "golden_leads.parquet")
    links = pd.read_parquet(run / "lead_links.parquet")
    touches = pd.read_parquet(run / "valid_touches.parquet")
    outcomes = pd.read_parquet(run / "outcomes.parquet")
    cfg = load_config()
    now = pd.Timestamp(LOGICAL_DATE, tz="UTC")
    attrs = lead_attributes(golden, cfg)
    linked = link_touches(touches, links, attrs.index)
    closed = P.closed_leads(outcomes, links)
    closed = closed[closed["closed_at"] <= now]
    started = time.perf_counter()
    ts = P.training_set(closed, attrs, linked, cfg)
    bt = P.backtest(ts, cfg)
    backtest_seconds = time.perf_counter() - started
    models = {k: {m: v for m, v in bt["models"][k].items()} for k in bt["models"]}
    chosen = bt["champion"]
    models[f"slowburn chosen ({chosen}, {models[chosen]['calibration']})"] = models[chosen]
    n = len(ts.y)
    cut = int(round(n * (1 - cfg.predictive.test_share)))
    snap = touch_features(linked, ts.X.index, P.snapshot_times(closed, attrs), cfg)
    models.update(baselines(raw_columns(golden, attrs, ts.X.index, snap), ts.y, slice(0, cut), slice(cut, n)))
    base_names = [k for k in models if k.startswith("baseline")]
    best = max(base_names, key=lambda k: models[k]["auc"])
    gate = {"chosen_auc": models[chosen]["auc"], "best_baseline": best, "best_baseline_auc": models[best]["auc"],
            "auc_ok": models[chosen]["auc"] >= models[best]["auc"] - 0.01,
            "lift_ok": models[chosen]["top_decile_lift"] >= models[best]["top_decile_lift"],
            "scorecard_auc": models["scorecard"]["auc"], "scorecard_ok": models["scorecard"]["auc"] > 0.65}

    # Capacity simulation.
    start = now - pd.Timedelta(days=sim_days)
    older = (ts.closed_at < start).to_numpy()
    trained = {}
    for kind in cfg.predictive.models:
        base, _ = P.fit_model(kind, ts.X[older], ts.y[older], ("none",))
        trained[kind] = base
    card = FittedScorecard.fit(ts.X[older], ts.y[older], cfg)
    rules = RulesModel(cfg)
    created = pd.to_datetime(attrs["created_at"], utc=True)
    closed_at = closed["closed_at"].reindex(attrs.index)
    won = closed["won"].reindex(attrs.index).fillna(False).astype(bool)
    buyers = won & (created >= start) & (created < now)
    strategies = ["newest first", "rules score", "scorecard"] + [f"{k} probability" for k in trained]
    reached = {c: {s: set() for s in strategies} for c in capacities}
    called = {c: {s: set() for s in strategies} for c in capacities}
    sim_started = time.perf_counter()
    for day in pd.date_range(start + pd.Timedelta(hours=8), now - pd.Timedelta(hours=1), freq="D"):
        if day.weekday() >= 5:
            continue
        pool_mask = (created <= day) & (created > day - pd.Timedelta(days=fresh_days)) & ~(closed_at <= day)
        pool = attrs.index[pool_mask.to_numpy()]
        if len(pool) == 0:
            continue
        cut_at = pd.Series(day, index=pool)
        feats = touch_features(linked, pool, cut_at, cfg)
        a = attrs.loc[pool]
        X = P.design(a, feats)
        rank = {"newest first": created.loc[pool].array.asi8,
                "rules score": rules.factor_points(a, feats, cut_at).sum(axis=1).to_numpy(),
                "scorecard": card.score(X, reasons=False)["score"].to_numpy()}
        for kind, model in trained.items():
            rank[f"{kind} probability"] = model.decision_function(X)
        is_buyer = buyers.loc[pool].to_numpy()
        for cap in capacities:
            for s in strategies:
                done = called[cap][s]
                avail = np.array([g not in done for g in pool])
                idx = np.flatnonzero(avail)
                top = idx[np.argsort(-rank[s][idx], kind="stable")[:cap]]
                done.update(pool[top])
                reached[cap][s].update(pool[top[is_buyer[top]]])
    n_buyers = int(buyers.sum())
    capacity = {str(cap): {s: round(len(reached[cap][s]) / max(n_buyers, 1), 4) for s in strategies}
                for cap in capacities}
    arrivals = int(((created >= start) & (created < now)).sum())
    return {"backtest": {"train": bt["train"], "test": bt["test"], "models": models, "champion": chosen,
                         "gate": gate, "seconds": round(backtest_seconds, 1)},
            "capacity": {"window_days": sim_days, "fresh_days": fresh_days, "buyers_in_window": n_buyers,
                         "leads_created_in_window": arrivals, "share_of_buyers_reached": capacity,
                         "seconds": round(time.perf_counter() - sim_started, 1)},
            "history": {"closed_leads": int(len(closed)), "conversions": int(closed["won"].sum())}}


# ---------------------------------------------------------------------------------------------- speed
def speed(sample: Path, home: Path, n: int) -> dict:
    import shutil
    shutil.rmtree(home / "models", ignore_errors=True)
    for name in ("previous_sales_queue.parquet", "previous_nurture_queue.parquet", "previous_queues.json"):
        (home / "runs" / (LOGICAL_DATE + "T000000") / "attempt-1" / name).unlink(missing_ok=True)
    out = {}
    for label in ("cold (trains the model)", "warm (reuses the stored model)"):
        row = {}
        for step in ("score", "route"):
            started = time.perf_counter()
            subprocess.run(_slowburn() + ["step", step, "--sources", str(sample / "sources.yaml"), "--home", str(home),
                                          "--logical-date", LOGICAL_DATE], check=True, env=_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - started
            counts = json.loads((home / "runs" / (LOGICAL_DATE + "T000000") / "attempt-1" / "step_counts.json").read_text())
            row[step] = {"wall_s": round(wall, 1), "in_step_s": counts[step]["seconds"]}
            if step == "score":
                row["scorer"] = counts[step].get("model_version")
                row["scored"] = counts[step].get("scored")
                row["parts_s"] = json.loads((home / "runs" / (LOGICAL_DATE + "T000000") / "attempt-1" / "scoring.json"
                                             ).read_text()).get("seconds")
            else:
                row["sales_queue"] = counts[step].get("sales_queue")
                row["nurture_queue"] = counts[step].get("nurture_queue")
        row["score_plus_route_in_step_s"] = round(row["score"]["in_step_s"] + row["route"]["in_step_s"], 1)
        row["score_plus_route_wall_s"] = round(row["score"]["wall_s"] + row["route"]["wall_s"], 1)
        out[label] = row
    return {"leads": n, "runs": out, "target_s": TARGET_SECONDS}


# ---------------------------------------------------------------------------------------------- incremental
def night_two(golden, links, touches, outcomes, as_of, seed: int, changed: float = 0.01, closing: float = 0.001,
              new: float = 0.001):
    """Night 2's inputs: `changed` of the golden leads get a touch this morning, `closing` of the open
    ones close (won or lost), and `new` new golden leads arrive (copies of existing rows, new ids)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    first = links.drop_duplicates("golden_id").set_index("golden_id")[["source_system", "source_id"]]
    ids = golden["golden_id"].to_numpy(dtype=object)
    touched = rng.choice(ids, int(len(ids) * changed), replace=False)
    kinds = np.array(["email_open", "email_click", "page_view", "pricing_page_view", "form_fill", "demo_request"])
    src = first.reindex(touched)
    extra = pd.DataFrame({"source_system": src["source_system"].to_numpy(), "lead_source_id": src["source_id"].to_numpy(),
                          "touch_type": rng.choice(kinds, len(touched), p=[.35, .2, .25, .1, .06, .04]),
                          "occurred_at": as_of - pd.to_timedelta(rng.uniform(1, 20, len(touched)), unit="h")})
    extra = extra.reindex(columns=touches.columns)
    is_open = ~pd.Index(first["source_id"]).isin(outcomes["source_id"])
    open_ids = first.index[is_open]
    closing_ids = rng.choice(open_ids.to_numpy(dtype=object), int(len(ids) * closing), replace=False)
    src = first.loc[closing_ids]
    closes = pd.DataFrame({"source_system": src["source_system"].to_numpy(), "source_id": src["source_id"].to_numpy(),
                           "outcome": rng.choice(["won", "lost"], len(src), p=[.3, .7]),
                           "closed_at": as_of - pd.Timedelta(hours=3)}).reindex(columns=outcomes.columns)
    copies = golden.sample(int(len(ids) * new), random_state=seed).reset_index(drop=True)
    copies["golden_id"] = [f"bench-new-{i}" for i in range(len(copies))]
    copies["created_at"] = as_of - pd.Timedelta(hours=12)
    new_links = pd.DataFrame({"source_system": "bench", "source_id": copies["golden_id"],
                              "golden_id": copies["golden_id"]}).reindex(columns=links.columns)
    return (pd.concat([golden, copies], ignore_index=True), pd.concat([links, new_links], ignore_index=True),
            pd.concat([touches, extra], ignore_index=True), pd.concat([outcomes, closes], ignore_index=True),
            {"touched_leads": len(touched), "newly_closed": len(closes), "new_leads": len(copies),
             "ids": set(touched) | set(closing_ids) | set(copies["golden_id"])})


def _stored_previous(scores, work: Path, as_of):
    """Night 1's scores in a SQLite warehouse, and the pipeline's own read of them back (timed)."""
    import pandas as pd
    import sqlalchemy as sa

    from slowburn.warehouse import Warehouse

    db = work / "incremental-warehouse.db"
    db.unlink(missing_ok=True)
    wh = Warehouse(f"sqlite:///{db}")
    wh.ensure_schema()
    run1 = f"{as_of:%Y-%m-%dT%H%M%S}"
    cols = [c["name"] for c in sa.inspect(wh.engine).get_columns("run_ledger")]
    ledger = pd.DataFrame([{c: 0 for c in cols}]).assign(run_id=run1, logical_date=as_of.isoformat(), status="success")
    rows = scores[["golden_id", "score", "tier", "probability", "reasons", "model_version", "touches",
                   "rep_touches"]].assign(run_id=run1, scored_at=as_of.isoformat())
    rows["reasons"] = rows["reasons"].astype(object)
    with wh.engine.begin() as conn:
        wh._insert(conn, "run_ledger", ledger)
        wh._insert(conn, "lead_scores", rows)
    started = time.perf_counter()
    wh.read("SELECT golden_id, score, tier, probability, model_version FROM lead_scores")
    without = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    # what the score step reads when the previous run's folder is gone (pipeline._previous_scores)
    previous = wh.read_state("lead_scores", ["golden_id", "score", "tier", "probability", "reasons",
                                             "model_version", "scored_at"])
    return previous, {"with_reasons_s": round(time.perf_counter() - started, 2), "without_reasons_s": without}


def incremental(work: Path, n: int, seed: int, now: str, repeats: int, kind: str | None) -> dict:
    """Night 1 in full and night 2 with ~1% changed, through score_leads; median seconds of `repeats` runs."""
    import shutil
    import statistics

    import pandas as pd

    from slowburn.ripeness import load_config, score_leads

    _, home = prepare(work, n, seed, now)
    run = home / "runs" / (LOGICAL_DATE + "T000000") / "attempt-1"
    golden = pd.read_parquet(run / "golden_leads.parquet")
    links = pd.read_parquet(run / "lead_links.parquet")
    touches = pd.read_parquet(run / "valid_touches.parquet")
    outcomes = pd.read_parquet(run / "outcomes.parquet")
    cfg = load_config()
    if kind:
        cfg = cfg.model_copy(update={"predictive": cfg.predictive.model_copy(update={"models": (kind,)})})
    models = work / f"incremental-home-{n}"
    shutil.rmtree(models, ignore_errors=True)
    as_of = pd.Timestamp(LOGICAL_DATE, tz="UTC")

    def timed(label, *args, **kw):
        runs = []
        for i in range(repeats if label != "night 1 cold" else 1):
            started = time.perf_counter()
            scores, info = score_leads(*args, home=models, **kw)
            runs.append((time.perf_counter() - started, scores, info))
            print(f"  {label} run {i + 1}: {runs[-1][0]:.1f} s, explained {info['reasons_explained']:,}", flush=True)
        seconds = sorted(r[0] for r in runs)
        wall, scores, info = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        return scores, {"seconds": round(statistics.median(seconds), 2), "runs_s": [round(x, 2) for x in seconds],
                        "parts_s": info["seconds"], "scored": len(scores), "model_version": info["model_version"],
                        "trained": info["trained"], "retrain_reason": info.get("retrain_reason"),
                        "explained": info["reasons_explained"], "carried": info["reasons_carried"]}

    out = {"leads": n, "repeats": repeats, "forced_model": kind}
    print(f"incremental scoring at {n:,} leads ...", flush=True)
    _, out["night 1 cold"] = timed("night 1 cold", golden, links, touches, outcomes, cfg, as_of)
    night1, out["night 1 warm, full"] = timed("night 1 warm, full", golden, links, touches, outcomes, cfg, as_of)
    previous, out["previous_read_s"] = _stored_previous(night1, work, as_of)
    as_of2 = as_of + pd.Timedelta(days=1)
    g2, l2, t2, o2, out["night 2 changes"] = night_two(golden, links, touches, outcomes, as_of2, seed)
    changed = out["night 2 changes"].pop("ids")
    night2, out["night 2, previous given"] = timed("night 2, previous given", g2, l2, t2, o2, cfg, as_of2,
                                                   previous=previous)
    # Explained although nothing about the lead changed but the date: its score moved with time (decay).
    was = previous.set_index("golden_id").reindex(night2["golden_id"])
    moved = ((was["score"].to_numpy() != night2["score"].to_numpy()) | (was["tier"].to_numpy() != night2["tier"].to_numpy())
             | (was["model_version"].to_numpy() != night2["model_version"].to_numpy()))
    out["night 2 changes"]["explained_with_unchanged_inputs"] = int((moved & ~night2["golden_id"].isin(changed)).sum())
    _, out["night 2, full (for comparison)"] = timed("night 2, full (for comparison)", g2, l2, t2, o2, cfg, as_of2)
    return out


def incremental_markdown(result: dict) -> str:
    r = result["incremental"]
    c = r["night 2 changes"]
    lines = [f"# slowburn score step: a night that costs what changed ({r['leads']:,} leads, seed {result['seed']})",
             "", f"- {result['machine']}; started {result['started']}; the machine was shared with other work",
             f"- score_leads in-process; model forced to {r['forced_model'] or 'the backtest champion'}; "
             f"median of {r['repeats']} runs (cold: 1)",
             f"- night 2 is a day later: {c['touched_leads']:,} leads touched, {c['newly_closed']:,} newly closed, "
             f"{c['new_leads']:,} new; night 1's scores read back from SQLite lead_scores (pipeline._previous_scores) "
             f"in {r['previous_read_s']['with_reasons_s']} s, {r['previous_read_s']['without_reasons_s']} s without "
             "the reasons column (not included below)", "",
             "| night | scored | explained | carried | seconds (median) | runs | model |", "|---|---:|---:|---:|---:|---|---|"]
    for label in ("night 1 cold", "night 1 warm, full", "night 2, previous given", "night 2, full (for comparison)"):
        x = r[label]
        model = ("trained" if x["trained"] else "reused") + f" {x['model_version']}"
        lines.append(f"| {label} | {x['scored']:,} | {x['explained']:,} | {x['carried']:,} | {x['seconds']} | "
                     f"{x['runs_s']} | {model} |")
    lines += ["", "Parts (seconds):", ""]
    for label in ("night 1 warm, full", "night 2, previous given"):
        lines.append(f"- {label}: {json.dumps(r[label]['parts_s'])}")
    lines += ["", f"Night 2 model: {r['night 2, previous given']['retrain_reason']}",
              "", f"Of night 2's explained leads, {c['explained_with_unchanged_inputs']:,} changed nothing but the date: "
                  "their score or tier moved with time (decayed engagement, days idle)."]
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    lines = [f"# slowburn ripeness benchmark (seed {result['seed']})", "",
             f"- {result['machine']}; started {result['started']}; the machine was shared with other work", ""]
    for label, q in result["quality"].items():
        lines += _quality_markdown(label, q)
    return _speed_markdown(result, lines)


def _quality_markdown(label: str, q: dict) -> list[str]:
    bt = q["backtest"]
    g = bt["gate"]
    lines = [f"## {label}: train on older closed leads, test on newer", "",
             f"History: {q['history']['closed_leads']:,} closed golden leads, {q['history']['conversions']:,} won. "
             f"Train {bt['train']['n']:,} (closed {bt['train']['closed_from'][:10]} .. {bt['train']['closed_to'][:10]}), "
             f"test {bt['test']['n']:,} (closed {bt['test']['closed_from'][:10]} .. {bt['test']['closed_to'][:10]}, "
             f"{bt['test']['positives']:,} won). Features as of a point of each lead's open life before its close.", "",
             "| model | AUC | top-decile lift | calibration error (ECE) | Brier | calibration |",
             "|---|---:|---:|---:|---:|---|"]
    for name, m in bt["models"].items():
        lines.append(f"| {name} | {m['auc']:.3f} | {m['top_decile_lift']:.2f} | {m['calibration_error']:.3f} | "
                     f"{m['brier']:.3f} | {m.get('calibration', '')} |")
    verdict = "PASS" if g["auc_ok"] and g["lift_ok"] and g["scorecard_ok"] else "FAIL"
    lines += ["", f"Gate ({verdict}): chosen AUC {g['chosen_auc']:.3f} vs best baseline ({g['best_baseline']}) "
                  f"{g['best_baseline_auc']:.3f}: {'ok' if g['auc_ok'] else 'NOT within 0.01'}; top-decile lift "
                  f"{'ok' if g['lift_ok'] else 'BELOW the baseline'}; scorecard AUC {g['scorecard_auc']:.3f} "
                  f"{'> 0.65' if g['scorecard_ok'] else '<= 0.65'}."]
    c = q["capacity"]
    strategies = list(next(iter(c["share_of_buyers_reached"].values())))
    lines += ["", f"Capacity simulation: last {c['window_days']} days, {c['leads_created_in_window']:,} leads "
                  f"created, {c['buyers_in_window']:,} of them later won. Each working day sales calls N leads from "
                  f"the open leads created in the last {c['fresh_days']} days that nobody has called yet. Share of "
                  "the window's buyers called before they closed:", "",
              "| calls per day | " + " | ".join(strategies) + " |", "|---:|" + "---:|" * len(strategies)]
    for cap, row in c["share_of_buyers_reached"].items():
        lines.append(f"| {cap} | " + " | ".join(f"{100 * row[s]:.1f}%" for s in strategies) + " |")
    return lines + [""]


def _speed_markdown(result: dict, lines: list[str]) -> str:
    if result.get("speed"):
        sp = result["speed"]
        lines += ["", f"## Scoring and routing time at {sp['leads']:,} leads (target: score + route <= "
                      f"{sp['target_s']:.0f} s)", "",
                  "| run | scored | sales queue | score s (in-step / wall) | route s (in-step / wall) | "
                  "score + route in-step s | result |", "|---|---:|---:|---:|---:|---:|---|"]
        for label, r in sp["runs"].items():
            ok = "PASS" if r["score_plus_route_in_step_s"] <= sp["target_s"] else "FAIL"
            lines.append(f"| {label} | {r['scored']:,} | {r['sales_queue']:,} | {r['score']['in_step_s']} / "
                         f"{r['score']['wall_s']} | {r['route']['in_step_s']} / {r['route']['wall_s']} | "
                         f"{r['score_plus_route_in_step_s']} | {ok} |")
        lines += ["", "Score step parts (warm): " + json.dumps(sp["runs"][list(sp["runs"])[-1]]["parts_s"])]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--scale-leads", type=int, default=1_000_000, help="0 skips the timing run")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--attr-leads", type=int, default=30_000, help="size of the attribute-driven sample; 0 skips it")
    ap.add_argument("--now", default=LOGICAL_DATE)
    ap.add_argument("--work", default=str(REPO / ".slowburn" / "bench-score"))
    ap.add_argument("--sim-days", type=int, default=90)
    ap.add_argument("--fresh-days", type=int, default=30)
    ap.add_argument("--capacities", type=int, nargs="+", default=[10, 25, 50, 100])
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--incremental", type=int, default=0, metavar="N",
                    help="only measure night 1 (full) and night 2 (~1%% changed) at N leads")
    ap.add_argument("--incremental-kind", default="lightgbm", help="predictive model to force; '' lets the backtest pick")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.update({k: v for k, v in _env().items() if k in ("SLOWBURN_INCLUDE_DIR", "GX_ANALYTICS_ENABLED")})
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result = {"leads": args.leads, "seed": args.seed, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.node()}, nproc {os.cpu_count()}, python {platform.python_version()}"}
    if args.incremental:
        result["incremental"] = incremental(work, args.incremental, args.seed, args.now, args.repeats,
                                            args.incremental_kind or None)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"score-incremental-{args.incremental}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        md = incremental_markdown(result)
        (out / f"score-incremental-{args.incremental}.md").write_text(md)
        print(md)
        return 0
    result["quality"] = {}
    sample, home = prepare(work, args.leads, args.seed, args.now)
    print("backtest, baselines and capacity simulation (sample) ...", flush=True)
    result["quality"][f"Sample ({args.leads:,} leads)"] = quality(home, args.sim_days, args.fresh_days,
                                                                  args.capacities)
    if args.attr_leads:
        _, attr_home = prepare(work, args.attr_leads, args.seed, args.now, kind="attributes")
        print("backtest, baselines and capacity simulation (attribute-driven sample) ...", flush=True)
        result["quality"][f"Attribute-driven sample ({args.attr_leads:,} leads)"] = quality(
            attr_home, args.sim_days, args.fresh_days, args.capacities)
    if args.scale_leads:
        big_sample, big_home = prepare(work, args.scale_leads, args.seed, args.now)
        print(f"timing score + route at {args.scale_leads:,} leads ...", flush=True)
        result["speed"] = speed(big_sample, big_home, args.scale_leads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"score-{args.leads}" + (f"-{args.scale_leads}" if args.scale_leads else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = markdown(result)
    (out / f"{stem}.md").write_text(md)
    print(md)
    warm = [r for label, r in result.get("speed", {}).get("runs", {}).items() if label.startswith("warm")]
    ok = all(r["score_plus_route_in_step_s"] <= TARGET_SECONDS for r in warm)
    gates = [q["backtest"]["gate"] for q in result["quality"].values()]
    ok = ok and all(g["auc_ok"] and g["lift_ok"] and g["scorecard_ok"] for g in gates)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
