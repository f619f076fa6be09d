"""The run summary: what each step did, whether the ledger balances, and where the results are."""
from __future__ import annotations

import html
import json

import pandas as pd

from slowburn.report.plots import png_base64 as _png  # shared with the weekly review
from slowburn.warehouse import redacted


def _plots(scores: pd.DataFrame, quarantine: pd.DataFrame) -> dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(scores["score"], bins=range(0, 105, 5), color="#c0504d")
    ax.set_xlabel("ripeness score")
    ax.set_ylabel("golden leads")
    ax.set_title("Score distribution")
    out["score_distribution"] = _png(fig)
    plt.close(fig)
    if len(quarantine):
        fig, ax = plt.subplots(figsize=(6, 3))
        counts = quarantine.groupby("rule")["row_key"].nunique().sort_values()
        ax.barh(counts.index, counts.values, color="#4f81bd")
        ax.set_xlabel("rows")
        ax.set_title("Quarantined rows by rule")
        out["quarantine_by_rule"] = _png(fig)
        plt.close(fig)
    return out


def write_run_summary(ctx) -> dict:
    """Write summary.json and summary.html into the run folder and return the headline counts."""
    from slowburn.pipeline import read_step_counts
    from slowburn.storage import shown

    wh = ctx.warehouse()
    ledger = wh.read_table("run_ledger", ctx.run_id)
    if ledger.empty:
        raise RuntimeError(f"run {ctx.run_id} has no ledger row: the load step did not commit")
    row = ledger.iloc[0].to_dict()
    steps = read_step_counts(ctx)
    validation = json.loads((ctx.run_dir / "validation.json").read_text(encoding="utf-8"))
    scores = ctx.read("lead_scores", columns=["score", "tier"])
    quarantine = ctx.read("quarantine")
    summary = {
        "run_id": ctx.run_id,
        "logical_date": str(ctx.logical_date),
        "warehouse": redacted(wh.url),
        "ledger": {k: (bool(v) if k == "invariant_ok" else v) for k, v in row.items() if k != "step_counts"},
        "steps": steps,
        "validation": validation,
        "tiers": scores["tier"].value_counts().to_dict(),
        "paths": {"run_dir": shown(ctx.run_dir), "data_docs": validation.get("data_docs"),
                  "summary_json": shown(ctx.run_dir / "summary.json"),
                  "summary_html": shown(ctx.run_dir / "summary.html")},
    }
    # write_text works on object storage too (a UPath): there the object is sent in one put on close.
    (ctx.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    plots = _plots(scores, quarantine)
    (ctx.run_dir / "summary.html").write_text(_html(summary, plots, quarantine), encoding="utf-8")
    return {"summary_html": summary["paths"]["summary_html"], "summary_json": summary["paths"]["summary_json"],
            "invariant_ok": bool(row["invariant_ok"])}


def _table(rows: list[tuple]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _html(summary: dict, plots: dict[str, str], quarantine: pd.DataFrame) -> str:
    ledger = summary["ledger"]
    ok = ledger["invariant_ok"]
    balance = (f"<p class='{'ok' if ok else 'bad'}'>landed {ledger['landed_leads']} = linked {ledger['linked_leads']}"
               f" + quarantined {ledger['quarantined_leads']}: {'balanced' if ok else 'NOT BALANCED'}</p>")
    step_rows = [(step, ", ".join(f"{k}={v}" for k, v in counts.items() if not isinstance(v, dict)))
                 for step, counts in summary["steps"].items()]
    sample = quarantine.head(50)
    q_rows = "".join(
        f"<tr><td>{html.escape(str(r.row_key))}</td><td>{html.escape(str(r.rule))}</td>"
        f"<td>{html.escape(str(r.reason))}</td></tr>" for r in sample.itertuples())
    images = "".join(f"<figure><img alt='{k}' src='data:image/png;base64,{v}'><figcaption>{k.replace('_', ' ')}"
                     f"</figcaption></figure>" for k, v in plots.items())
    docs = summary["paths"].get("data_docs")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>slowburn run {summary['run_id']}</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}}.ok{{color:#2a7}}.bad{{color:#c00;font-weight:bold}}
figure{{display:inline-block;margin:1rem}}</style></head><body>
<h1>slowburn nightly run {html.escape(summary['run_id'])}</h1>
<h2>Ledger</h2>{balance}
{_table([(k, v) for k, v in ledger.items()])}
<h2>Steps</h2>{_table(step_rows)}
<h2>Tiers</h2>{_table(list(summary['tiers'].items()))}
<h2>Plots</h2>{images}
<h2>Quarantine (first 50 of {len(quarantine)} entries)</h2>
<table><tr><th>row</th><th>rule</th><th>reason</th></tr>{q_rows}</table>
<p>Great Expectations Data Docs: {f"<a href='{html.escape(docs)}'>{html.escape(docs)}</a>" if docs else "not built"}</p>
</body></html>"""
