"""`slowburn model train | backtest | explain LEAD`: the score step's model, outside Airflow.

Each reads or writes the same run folder and model registry as the nightly DAG, so the numbers
printed are the DAG's: `train` runs the score step itself, `backtest` prints the stored report of
the model that step used, and `explain` prints a lead's row of lead_scores with its reasons.
"""
from __future__ import annotations

import json

import pandas as pd


def train(ctx) -> str:
    """Run the score step (training a model when the retrain policy asks for it) and report it."""
    from slowburn.pipeline import run_step

    run_step(ctx, "score")
    return _scoring_text(ctx.read_json("scoring")) + "\n\n" + backtest(ctx)


def _scoring_text(info: dict) -> str:
    lines = [f"scorer: {info['scorer']} ({info['model_version']})",
             f"rules tier: {info.get('rules_model')} - {info.get('rules_model_reason')}",
             f"history: {info['history_closed_leads']:,} closed leads, {info['history_conversions']:,} won"]
    if info["scorer"] == "predictive":
        lines.append(f"model: {info['model_kind']}, calibration {info['calibration']}, fingerprint "
                     f"{info['fingerprint']}, {'trained now' if info['trained'] else 'reused'}: "
                     f"{info.get('retrain_reason')}")
    else:
        lines.append(f"predictive model not used: {info['fallback_reason']}")
    return "\n".join(lines)


def model_report(ctx) -> dict | None:
    """The report.json of the predictive model the run's score step used (None if rules scored)."""
    info = ctx.read_json("scoring")
    if info["scorer"] != "predictive":
        return None
    from slowburn.ripeness.predictive import _registry, model_folder

    for entry in reversed(_registry(ctx.models_dir)):
        if entry["version"] == info["model_version"]:
            return json.loads((model_folder(ctx.models_dir, entry) / "report.json").read_text(encoding="utf-8"))
    raise FileNotFoundError(f"model {info['model_version']} is not in {ctx.models_dir}/registry.json; "
                            f"run `slowburn model train` again")


def backtest(ctx) -> str:
    """The backtest table of the run's model: every model, the scorecard and the hand-set rules."""
    if not (ctx.run_dir / "scoring.json").exists():
        raise FileNotFoundError(f"{ctx.run_dir}/scoring.json is missing: run `slowburn model train` "
                                f"(or the score step) for this logical date first")
    report = model_report(ctx)
    if report is None:
        return "no backtest: " + ctx.read_json("scoring")["fallback_reason"]
    bt = report["backtest"]
    lines = [f"backtest of {report['version']}: train {bt['train']['n']:,} closed leads (to "
             f"{bt['train']['closed_to'][:10]}), test {bt['test']['n']:,} (from {bt['test']['closed_from'][:10]}, "
             f"{bt['test']['positives']:,} won)",
             f"{'model':<14}{'AUC':>7}{'lift@10%':>10}{'ECE':>8}{'Brier':>8}  calibration"]
    for name, m in bt["all_models"].items():
        mark = " <- chosen" if name == report["kind"] else ""
        lines.append(f"{name:<14}{m['auc']:>7.3f}{m['top_decile_lift']:>10.2f}{m['calibration_error']:>8.3f}"
                     f"{m['brier']:>8.3f}  {m.get('calibration', '')}{mark}")
    return "\n".join(lines)


def find_lead(ctx, lead: str) -> str:
    """The golden_id of LEAD: a golden id, a source key (source_system:source_id) or an email address."""
    scores = ctx.read("lead_scores")
    if (scores["golden_id"] == lead).any():
        return lead
    links = ctx.read("lead_links")
    if ":" in lead:
        system, _, source_id = lead.partition(":")
        hit = links[(links["source_system"] == system) & (links["source_id"] == source_id)]
        if len(hit):
            return str(hit["golden_id"].iloc[0])
    golden = ctx.read("golden_leads")
    hit = golden[golden["email_canonical"].str.lower() == lead.strip().lower()]
    if len(hit):
        return str(hit["golden_id"].iloc[0])
    raise FileNotFoundError(f"no lead {lead!r} in run {ctx.run_id}: give a golden id, a source key "
                            f"(source_system:source_id) or an email address")


def explain(ctx, lead: str) -> str:
    """A lead's score, tier and the points every reason adds, as the score step wrote them."""
    from slowburn.pipeline import current_reasons

    scores = ctx.read("lead_scores")
    row = scores[scores["golden_id"] == find_lead(ctx, lead)].iloc[0]
    reasons = json.loads(current_reasons(ctx, pd.Series([row["golden_id"]]), [row["score"]])[0])
    prob = "" if pd.isna(row["probability"]) else f", probability {row['probability']:.1%}"
    lines = [f"lead {row['golden_id']}: score {row['score']} ({row['tier']}{prob}) by {row['scorer']} model "
             f"{row['model_version']}", "reasons (points add up to the score):"]
    for r in reasons:
        lines.append(f"  {r['points']:+7.1f}  {r['factor']}")
    lines.append(f"  {sum(r['points'] for r in reasons):7.1f}  = score")
    if row["scorer"] == "predictive":
        lines.append(f"rules tier score: {row['rules_score']} (fit {row['fit']}, engagement {row['engagement']})")
    return "\n".join(lines)
