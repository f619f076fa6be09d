"""Pairwise linkage: a deterministic pre-pass, then a Splink 5 model on DuckDB.

* The pre-pass links rows that share a canonical email, or a phone number and a surname, with
  probability 1.0 (configurable rules). It needs no training, so it is also the whole linkage when
  the data is too small for Splink to estimate anything.
* The Splink model (Fellegi-Sunter) is built with Splink's creators (SettingsCreator,
  comparison_library, block_on) from the columns that carry data (`plan`): first name (exact,
  nickname, Jaro-Winkler), surname (term-frequency adjusted), email, phone, country, and either one
  organisation comparison (company, website, street, postcode, city: a lead carries its employer's
  address) or, without company and website, separate street, city and postcode comparisons (the
  address is the person's own). Blocking rules whose columns are empty, or that would compare more
  than max_pairs_per_rule pairs, are left out. Nothing beyond names to compare: deterministic only.
  u is estimated by random sampling, m by expectation maximisation on a few blocking rules, the
  prior from the first prior rule set that finds pairs (else an assumed duplicate share, so a file
  without duplicates does not give a zero prior). The trained model is a JSON document saved with
  every run.
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

MODEL_VERSION = "leads-v2"  # bump when the comparisons below change: saved models are then retrained
EDGE_COLUMNS = ["a", "b", "probability", "match_weight", "rule"]


# ---------------------------------------------------------------------------------------- deterministic
def deterministic_edges(feats: pd.DataFrame, new: np.ndarray, rules: list[dict],
                        codes: dict | None = None) -> pd.DataFrame:
    """Edges (a, b) between rows equal and non-null on all columns of a rule; at least one side is new.

    Each new row is linked to one anchor per key (the key's first existing row, else its first
    new row): a star per key is enough for clustering, and it keeps the edge count linear.
    """
    frames = []
    for rule in rules:
        cols = [c for c in rule["columns"] if c in feats.columns]
        if len(cols) != len(rule["columns"]):
            continue
        key = rule_key(feats, cols, codes)
        keyed = key >= 0
        if not keyed.any():
            continue
        rows = np.flatnonzero(keyed)
        group = key[keyed]
        is_new = new[rows]
        # Anchor: existing rows sort first, then by position.
        order = np.lexsort((rows, is_new, group))
        c_sorted = group[order]
        first = np.r_[True, c_sorted[1:] != c_sorted[:-1]]
        anchor_of_code = np.empty(group.max() + 1, dtype=np.int64)
        anchor_of_code[c_sorted[first]] = rows[order][first]
        anchors = anchor_of_code[group]
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
# Each comparison is built with Splink's own creators from its options in dedupe.yaml (`comparisons:`),
# and only when its key column carries data: a file without email simply has no email comparison.
def _fuzzy_levels(col: str, opts: dict) -> list:
    import splink.comparison_level_library as cll
    levels = [cll.JaroWinklerLevel(col, float(t)) for t in opts.get("jaro_winkler") or []]
    levels += [cll.DamerauLevenshteinLevel(col, int(d)) for d in opts.get("damerau_levenshtein") or []]
    return levels


def _text_comparison(name: str, col: str, opts: dict, extra: list | None = None):
    """Null, exact (term-frequency adjusted if asked), any extra levels, fuzzy levels, else."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    exact = cll.ExactMatchLevel(col, term_frequency_adjustments=bool(opts.get("term_frequency")))
    return cl.CustomComparison([cll.NullLevel(col), exact, *(extra or []), *_fuzzy_levels(col, opts),
                                cll.ElseLevel()], output_column_name=name)


def _first_name(opts: dict):
    import splink.comparison_level_library as cll
    extra = []
    if opts.get("nicknames", True):
        extra.append(cll.CustomLevel("list_contains(first_name_variants_l, first_name_norm_r) OR "
                                     "list_contains(first_name_variants_r, first_name_norm_l)", "nickname"))
    return _text_comparison("first_name", "first_name_norm", opts, extra)


def _email(opts: dict):
    import splink.comparison_level_library as cll
    return _text_comparison("email", "email_canonical", {**opts, "jaro_winkler": []}, [
        cll.ExactMatchLevel("email_local").configure(label_for_charts="same local part"),
        *_fuzzy_levels("email_local", opts)])


def _phone(opts: dict):
    import splink.comparison_level_library as cll
    return _text_comparison("phone", "phone_e164", opts, [
        cll.ExactMatchLevel("phone_tail").configure(label_for_charts="same last 7 digits")])


ORGANISATION_COLUMNS = ("company_norm", "website_domain", "street_norm", "postcode_norm", "city_norm")
EMPLOYER_COLUMNS = ("company_norm", "website_domain")
ADDRESS_COMPARISONS = ("street", "city", "postcode")


def _organisation(opts: dict, active: list[str]):
    """Employer and address as ONE comparison: a lead carries its employer's name, website and address,
    so counting them as independent evidence would score two colleagues as one person five times over.
    Levels go from the same company at the same address down to the same city; each level exists only
    when its columns carry data (a names-and-address file gets the address levels alone)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    has = {c: c in active for c in ORGANISATION_COLUMNS}

    def eq(c):
        return f"{c}_l = {c}_r"
    org = " OR ".join(eq(c) for c in ("company_norm", "website_domain") if has[c])
    place = " OR ".join(eq(c) for c in ("postcode_norm", "city_norm") if has[c])
    tf = bool(opts.get("term_frequency", True))
    street_jw = float(opts.get("street_jaro_winkler", 0.90))
    levels = [cll.CustomLevel(" AND ".join(f"({c}_l IS NULL OR {c}_r IS NULL)" for c in ORGANISATION_COLUMNS
                                           if has[c]), "null").configure(is_null_level=True)]

    def add(sql, label, tf_col=None):
        level = cll.CustomLevel(sql, label)
        if tf_col and tf and has[tf_col]:
            # These levels are not a plain exact match on tf_col, so Splink must not look for one.
            level.configure(tf_adjustment_column=tf_col, disable_tf_exact_match_detection=True)
        levels.append(level)
    if org and has["street_norm"]:
        add(f"({org}) AND {eq('street_norm')}", "same company, same street", "company_norm")
    if org and place:
        add(f"({org}) AND ({place})", "same company, same postcode or city", "company_norm")
    if org:
        add(org, "same company", "company_norm")
    if has["street_norm"] and place:
        add(f"{eq('street_norm')} AND ({place})", "same street and postcode or city")
    if has["company_norm"]:
        add(f"jaro_winkler_similarity(company_norm_l, company_norm_r) >= {float(opts.get('company_jaro_winkler', 0.9))}",
            "similar company")
    if has["street_norm"]:
        add(eq("street_norm"), "same street")
        if place:
            add(f"jaro_winkler_similarity(street_norm_l, street_norm_r) >= {street_jw} AND ({place})",
                "similar street, same postcode or city")
    if has["postcode_norm"]:
        add(eq("postcode_norm"), "same postcode")
        edits = int(opts.get("postcode_damerau_levenshtein", 1))
        if edits:
            add(f"damerau_levenshtein(postcode_norm_l, postcode_norm_r) <= {edits}", f"postcode within {edits} edit")
    if has["city_norm"]:
        add(eq("city_norm"), "same city", "city_norm")
    levels.append(cll.ElseLevel())
    return cl.CustomComparison(levels, output_column_name="organisation")


# comparison name -> (key columns: the comparison exists when any carries data, builder(options, active columns)).
COMPARISON_BUILDERS = {
    "first_name": (("first_name_norm",), lambda o, a: _first_name(o)),
    "last_name": (("last_name_norm",), lambda o, a: _text_comparison("last_name", "last_name_norm", o)),
    "email": (("email_canonical",), lambda o, a: _email(o)),
    "phone": (("phone_e164",), lambda o, a: _phone(o)),
    "organisation": (ORGANISATION_COLUMNS, _organisation),
    # Without company or website the address is the person's own: street, city and postcode are then
    # separate pieces of evidence (each with its own typos), as in a names-and-address export.
    "street": (("street_norm",), lambda o, a: _text_comparison("street", "street_norm", o)),
    "city": (("city_norm",), lambda o, a: _text_comparison("city", "city_norm", o)),
    "postcode": (("postcode_norm",), lambda o, a: _text_comparison("postcode", "postcode_norm", o)),
    "country": (("country_code",), lambda o, a: _text_comparison("country", "country_code", o)),
}
NAME_COMPARISONS = ("first_name", "last_name")


def active_columns(feats: pd.DataFrame) -> list[str]:
    """Matching columns with at least one value: a missing email or phone column drops its comparison."""
    return [c for c in FEATURE_COLUMNS if c in feats.columns and feats[c].notna().any()]


def rule_key(feats: pd.DataFrame, cols: list[str], codes: dict | None = None) -> np.ndarray:
    """Per row, a group number for its values on `cols` (-1 where any is null): rows a blocking rule
    on `cols` pairs have the same number.

    Integer codes per column (pd.factorize) rather than a groupby on text, kept in `codes` (by column,
    and by rule) so that each column and each rule is hashed once however many callers ask.
    """
    codes = {} if codes is None else codes
    rule = tuple(cols)
    if rule in codes:
        return codes[rule]
    for c in cols:
        if c not in codes:
            codes[c] = pd.factorize(feats[c])[0]
    keep = np.logical_and.reduce([codes[c] >= 0 for c in cols])
    out = np.full(len(feats), -1, dtype=np.int64)
    if keep.any():
        key = codes[cols[0]][keep].astype(np.int64)
        for c in cols[1:]:
            part = codes[c][keep].astype(np.int64)
            key = pd.factorize(key * (int(part.max()) + 1) + part)[0].astype(np.int64)  # stays below n: no overflow
        out[keep] = key
    codes[rule] = out
    return out


def rule_pairs(feats: pd.DataFrame, cols: list[str], codes: dict | None = None) -> int:
    """How many pairs a blocking rule compares: sum of n(n-1)/2 over groups equal and non-null on `cols`."""
    key = rule_key(feats, cols, codes)
    sizes = np.bincount(key[key >= 0]).astype(np.int64)
    return int((sizes * (sizes - 1) // 2).sum())


def blocking_neighbours(feats: pd.DataFrame, new: np.ndarray, rules: list[list[str]],
                        codes: dict | None = None) -> np.ndarray:
    """Existing rows that agree with a new row on every column of some blocking rule: the only
    existing rows predict_between can pair with tonight's, so the only ones it needs."""
    out = np.zeros(len(feats), bool)
    for r in rules:
        key = rule_key(feats, r, codes)
        hits = np.unique(key[new & (key >= 0)])
        out |= ~new & np.isin(key, hits)
    return out


def _varies(values: pd.Series) -> bool:
    """At least two different non-null values (cheaper than nunique on a million strings)."""
    present = values.dropna()
    return bool(len(present)) and bool((present != present.iloc[0]).any())


def plan(feats: pd.DataFrame, cfg: DedupeConfig, codes: dict | None = None) -> dict:
    """Which comparisons and blocking rules the data supports, and why any configured one is left out.

    codes: filled with the per-column codes it computes (see rule_key), for later reuse."""
    active = active_columns(feats)
    # A column with one value everywhere tells no one apart: leave it out of comparisons and blocking.
    present = active
    active = [c for c in present if c == "email_free" or _varies(feats[c])]
    comps, skipped = [], {}
    employer = any(c in active for c in EMPLOYER_COLUMNS)
    for name, opts in (cfg.raw.get("comparisons") or {}).items():
        keys = [c for c in COMPARISON_BUILDERS[name][0] if c in active]
        if opts is False:
            skipped[name] = "disabled in config"
        elif not keys:
            skipped[name] = f"no column of {list(COMPARISON_BUILDERS[name][0])} holds two different values"
        elif name == "organisation" and not employer:
            skipped[name] = "no company or website: the address is compared as street, city and postcode"
        elif name in ADDRESS_COMPARISONS and employer:
            skipped[name] = "the address is part of the organisation comparison (leads carry their employer's)"
        else:
            comps.append(name)
    limit = int(cfg.raw.get("max_pairs_per_rule") or 0)
    rules, dropped = [], {}
    codes = {} if codes is None else codes
    candidates = list(cfg.raw["blocking_rules"]) + ([] if employer else list(cfg.raw.get("address_blocking_rules") or []))
    for r in candidates:
        if not all(c in active for c in r):
            continue
        pairs = rule_pairs(feats, r, codes) if limit else 0
        if limit and pairs > limit:
            dropped["+".join(r)] = f"{pairs:,} pairs > max_pairs_per_rule={limit:,}"
            log.info("dedupe: blocking rule %s left out: it would compare %d pairs (max_pairs_per_rule=%d)",
                     r, pairs, limit)
            continue
        rules.append(list(r))
    # present_columns are loaded for Splink: a comparison's secondary levels (the last seven digits of
    # a phone, an email's local part) may read a column that holds one value only.
    return {"active_columns": active, "present_columns": present, "comparisons": comps, "skipped_comparisons": skipped,
            "blocking_rules": rules, "dropped_blocking_rules": dropped}


def settings_for(the_plan: dict, cfg: DedupeConfig) -> dict:
    """A Splink settings dict made with SettingsCreator, comparisons and block_on from the plan."""
    from splink import SettingsCreator, block_on
    creator = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        probability_two_random_records_match=1e-5,
        comparisons=[COMPARISON_BUILDERS[name][1](dict(cfg.raw["comparisons"][name] or {}), the_plan["active_columns"])
                     for name in the_plan["comparisons"]],
        blocking_rules_to_generate_predictions=[block_on(*r) for r in the_plan["blocking_rules"]],
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )
    return creator.create_settings_dict("duckdb")


def tf_columns(settings: dict) -> list[str]:
    """Input columns the model adjusts by term frequency (predict_within/between need their tables)."""
    return sorted({lvl["tf_adjustment_column"] for comp in settings["comparisons"]
                   for lvl in comp["comparison_levels"] if lvl.get("tf_adjustment_column")})


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
    """Saved models under <artifacts>/models/dedupe/: model.json (Splink) and training.json (profile, when, why).

    `folder` is a slowburn.storage location: a local Path or an object-store UPath.
    """
    folder: Path

    @property
    def model_path(self):
        return self.folder / "model.json"

    @property
    def meta_path(self):
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
        from slowburn import atomic
        for path, data in ((self.model_path, model), (self.meta_path, meta)):
            atomic.write_json(path, data)


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


def _load_inputs(con, feats: pd.DataFrame, active: list[str], new: np.ndarray, split: bool = False) -> list[str]:
    """DuckDB tables leads_all / leads_new / leads_existing, with the nickname variants joined in.

    `feats` may be a subset of the rows (unique_id keeps each row's position); `new` is row for row."""
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
    if split or not new.all():
        con.register("new_ids", pa.table({"unique_id": pa.array(feats["unique_id"].to_numpy()[new].astype(np.int64))}))
        con.execute("CREATE TABLE leads_new AS SELECT * FROM leads_all SEMI JOIN new_ids USING (unique_id)")
        con.execute("CREATE TABLE leads_existing AS SELECT * FROM leads_all ANTI JOIN new_ids USING (unique_id)")
        con.unregister("new_ids")
        tables += ["leads_new", "leads_existing"]
    return tables


def prior_plan(feats: pd.DataFrame, cfg: DedupeConfig, active: list[str]) -> dict:
    """How the prior is estimated: the first configured rule set (columns present) that finds any pair.

    A file without duplicates finds none: then the prior assumes fallback_duplicate_share of the
    rows are duplicates, instead of a zero prior (whose log is undefined).
    """
    tr = cfg.raw["training"]
    codes: dict = {}
    for entry in tr.get("prior_rules") or []:
        rules = [list(r) for r in entry["rules"] if all(c in active for c in r)]
        if rules and any(rule_pairs(feats, r, codes) for r in rules):
            return {"rules": rules, "recall": float(entry["recall"])}
    prior = fallback_prior(len(feats), cfg)
    return {"rules": [], "prior": prior, "reason": f"no prior rule finds a pair: assuming "
            f"{cfg.raw['training']['fallback_duplicate_share']:.0%} duplicate rows (prior {prior:.3g})"}


def fallback_prior(n: int, cfg: DedupeConfig) -> float:
    """Pairs expected to match when fallback_duplicate_share of n rows are duplicates, over all pairs."""
    share = float(cfg.raw["training"].get("fallback_duplicate_share", 0.01))
    return min(max(2 * share / max(n - 1, 1), 1e-12), 0.5)


def _train(linker, cfg: DedupeConfig, the_plan: dict, prior: dict) -> dict:
    from splink import block_on
    tr = cfg.raw["training"]
    started = time.perf_counter()
    out = {"prior": {k: v for k, v in prior.items()}}
    if prior["rules"]:
        try:
            linker.training.estimate_probability_two_random_records_match(
                [block_on(*r) for r in prior["rules"]], recall=prior["recall"])
        except ValueError as exc:  # more agreeing pairs than the recall allows: keep the fallback prior
            out["prior"]["error"] = str(exc)
            log.warning("dedupe: prior estimate failed (%s); using the configured fallback", exc)
    linker.training.estimate_u_using_random_sampling(max_pairs=float(tr["u_max_pairs"]), seed=int(tr["seed"]))
    sessions = []
    active = the_plan["active_columns"]
    for cols in tr["em_blocking_rules"]:
        if len(sessions) >= int(tr.get("em_max_sessions") or len(tr["em_blocking_rules"])):
            break
        if not all(c in active for c in cols):
            continue
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(*cols), estimate_without_term_frequencies=True, max_pairs=float(tr["em_max_pairs"]))
            sessions.append(cols)
        except Exception as exc:  # EM can fail on a block with no variation; the others still train
            log.warning("dedupe: EM on %s skipped: %s", cols, exc)
    out.update({"em_blocking_rules": sessions, "training_seconds": round(time.perf_counter() - started, 2)})
    return out


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


def _register_tf(con, linker, db_api, feats: pd.DataFrame, col: str) -> None:
    """Splink's term-frequency table of `col` over ALL rows (its own SQL, so the same numbers), for a
    linker that was given only some of them."""
    from splink.internals.input_column import InputColumn
    from splink.internals.term_frequencies import term_frequencies_for_single_column_sql
    con.register("tf_input", pa.table({col: pa.array(feats[col].astype("string"), type=pa.string())}))
    column = InputColumn(col, column_info_settings=linker._settings_obj.column_info_settings,
                         sqlglot_dialect_str="duckdb")
    sql = term_frequencies_for_single_column_sql(column, "tf_input")
    con.execute(f"CREATE TABLE tf_all_{col} AS {sql}")
    con.unregister("tf_input")
    linker.table_management.register_term_frequency_lookup(
        db_api.register(f"tf_all_{col}", table_name=f"tf_all_{col}_sdf"), col)


def _splink(feats, new, cfg, settings, the_plan, model, mode, why, retrain, store, fp, prof, run_dir, report,
            codes=None, all_rows=False):
    """Train (or reuse) the Splink model on DuckDB and score tonight's candidate pairs.

    With a saved model and earlier rows, DuckDB gets tonight's rows and only the earlier rows that
    share a blocking key with one of them (predict_between can pair no other), plus term
    frequencies counted over all rows: the pairs and their scores are those of loading everything.
    """
    from splink import DuckDBAPI, Linker

    n = len(feats)
    subset = model is not None and not new.all() and not all_rows
    if subset:
        rows = np.flatnonzero(new | blocking_neighbours(feats, new, the_plan["blocking_rules"], codes))
        report["rows_loaded"] = int(len(rows))
    tmp = Path(tempfile.mkdtemp(prefix="splink-", dir=run_dir))
    con = _connect(cfg, tmp)
    try:
        db_api = DuckDBAPI(con)
        if subset:
            _load_inputs(con, feats.iloc[rows], the_plan["present_columns"], new[rows], split=True)
        else:
            _load_inputs(con, feats, the_plan["present_columns"], new)
        df_all = db_api.register("leads_all", table_name="leads_all_sdf")
        if model is None:
            prior = prior_plan(feats, cfg, the_plan["active_columns"])
            if not prior["rules"]:
                log.info("dedupe: %s", prior["reason"])
            settings = {**settings, "probability_two_random_records_match": prior.get("prior", 1e-5)}
            linker = Linker(df_all, settings, log_level=logging.WARNING)
            report["training"] = _train(linker, cfg, the_plan, prior)
            model = linker.misc.save_model_to_json()
            p = model.get("probability_two_random_records_match") or 0.0
            if not 0 < p <= 0.5:  # an estimate Splink cannot score with (0 or 1): use the fallback share
                model["probability_two_random_records_match"] = fallback_prior(n, cfg)
            untrained = fill_untrained(model)
            linker = Linker(df_all, model, log_level=logging.WARNING)
            mode = "splink_trained"
            report["training"]["reason"] = why or ("no saved model" if not retrain else "retrain requested")
            report["training"]["untrained_levels"] = untrained
            report["training"]["probability_two_random_records_match"] = model["probability_two_random_records_match"]
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
            for col in tf_columns(model):  # predict_within/between read term frequencies from registered tables
                if subset:
                    _register_tf(con, linker, db_api, feats, col)
                else:
                    linker.table_management.compute_tf_table(col)
            df_new = db_api.register("leads_new", table_name="leads_new_sdf")
            frames = [linker.inference.predict_within(df_new, threshold_match_probability=threshold,
                                                      warning_mode="never").as_pandas_dataframe()]
            if (~new[rows]).any() if subset else (~new).any():
                df_old = db_api.register("leads_existing", table_name="leads_existing_sdf")
                frames.append(linker.inference.predict_between(
                    df_new, df_old, threshold_match_probability=threshold, warning_mode="never").as_pandas_dataframe())
        report["predict_seconds"] = round(time.perf_counter() - t0, 2)
    finally:
        con.close()
        for p in sorted(tmp.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        tmp.rmdir()
    return frames, model, mode


def link(feats: pd.DataFrame, new: np.ndarray | None, cfg: DedupeConfig, *, model_dir: Path | None = None,
         run_dir: Path | None = None, retrain: bool = False, all_rows: bool = False) -> LinkResult:
    """Scored pairs among `new` rows and between new and existing rows of `feats` (all rows if new is None).

    all_rows: give DuckDB every row even when a saved model needs only tonight's and their blocking
    neighbours (the same pairs, more slowly: for checking that it is the same)."""
    n = len(feats)
    new = np.ones(n, dtype=bool) if new is None else np.asarray(new, dtype=bool)
    started = time.perf_counter()
    codes: dict = {}  # per-column codes (rule_key), shared by the pre-pass, the plan and the profile
    det = deterministic_edges(feats, new, cfg.raw["deterministic_rules"], codes)
    report: dict = {"rows": n, "new_rows": int(new.sum()), "deterministic_edges": len(det),
                    "thresholds": {"match_probability": cfg.match_probability,
                                   "review_probability": cfg.review_probability}}
    empty = det.iloc[0:0]
    if n < 2 or not new.any():
        return LinkResult(det, empty, "deterministic_only", None, {**report, "reason": "nothing to link"})

    the_plan = plan(feats, cfg, codes)
    report["plan"] = {k: the_plan[k] for k in ("comparisons", "skipped_comparisons", "blocking_rules",
                                               "dropped_blocking_rules")}
    reason = None
    if not set(the_plan["comparisons"]) - set(NAME_COMPARISONS):
        reason = "no comparable columns beyond names: deterministic linkage only"
    elif not the_plan["blocking_rules"]:
        reason = "no blocking rule has data (or every one compares too many pairs): deterministic linkage only"
    if reason:
        log.info("dedupe: %s (comparisons available: %s)", reason, the_plan["comparisons"] or "none")
        return LinkResult(det, empty, "deterministic_only", None, {**report, "reason": reason})
    settings = settings_for(the_plan, cfg)
    fp = fingerprint(settings)
    prof = profile(feats, codes)
    from slowburn import storage
    store = ModelStore(storage.location(model_dir)) if model_dir else None
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
            # Tonight's blocking rules: a rule may have lost its data or grown too big since training.
            model = {**saved_model,
                     "blocking_rules_to_generate_predictions": settings["blocking_rules_to_generate_predictions"]}
            mode = "splink_reused"
            report["model_trained_at"] = meta["trained_at"]
    if model is None and n < cfg.raw["training"]["min_rows"]:
        reason = (f"{n} rows is below training.min_rows={cfg.raw['training']['min_rows']} and there is no "
                  "usable saved model: Splink cannot estimate m and u, so only the deterministic pre-pass links")
        if why:
            reason += f" ({why})"
        log.info("dedupe: %s", reason)
        return LinkResult(det, empty, "deterministic_only", None, {**report, "reason": reason})

    try:
        frames, model, mode = _splink(feats, new, cfg, settings, the_plan, model, mode, why, retrain, store, fp,
                                      prof, run_dir, report, codes, all_rows)
    except Exception as exc:  # noqa: BLE001 - the deterministic links are still right; say why Splink did not run
        reason = f"Splink failed ({type(exc).__name__}: {exc}); deterministic linkage only"
        log.error("dedupe: %s", reason, exc_info=True)
        return LinkResult(det, empty, "deterministic_only", None, {**report, "reason": reason[:2000]})
    pairs = pd.concat(frames, ignore_index=True)
    scored = pd.DataFrame({"a": pairs["unique_id_l"].astype("int64").to_numpy(),
                           "b": pairs["unique_id_r"].astype("int64").to_numpy(),
                           "probability": pairs["match_probability"].astype("float64").to_numpy(),
                           "match_weight": pairs["match_weight"].astype("float64").to_numpy(),
                           "rule": "splink"})
    # DuckDB returns pairs in any order (threads): sorted, a row's review reason names the same pair every run.
    scored = scored.sort_values(["a", "b"], kind="stable", ignore_index=True)
    merge = scored["probability"] >= cfg.match_probability
    edges = pd.concat([det, scored[merge]], ignore_index=True)
    review = scored[~merge].reset_index(drop=True)
    report.update({"mode": mode, "model_fingerprint": fp, "splink_pairs_scored_above_review": len(scored),
                   "splink_edges": int(merge.sum()), "review_pairs": len(review),
                   "link_seconds": round(time.perf_counter() - started, 2)})
    return LinkResult(edges, review, mode, model, report)
