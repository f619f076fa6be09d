"""Validation with Great Expectations core, in memory, and the quarantine it feeds.

GX decides which rows break which rule; we turn its unexpected-index lists into quarantine rows
with a reason a RevOps person can act on, and split the frame into valid rows and quarantined ones.
Every landed row ends up in exactly one of the two.
"""
from __future__ import annotations

import html
import logging
import re
import shutil
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slowburn.arrowkeys import is_in, positions
from slowburn.contracts import LEAD_SOURCES, LEAD_STAGES, LEAD_STATUSES, TOUCH_TYPES, CHANNELS
from slowburn.sources import MALFORMED

log = logging.getLogger(__name__)

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

QUARANTINE_COLUMNS = ["entity", "row_key", "source_system", "source_id", "rule", "column", "value", "reason"]


@dataclass(frozen=True)
class Rule:
    """One expectation and how to explain a failing row of it."""
    name: str
    expectation: str  # a class name in great_expectations.expectations
    column: str
    kwargs: dict
    reason: str  # formatted with {value}

    def build(self):
        import great_expectations.expectations as gxe
        return getattr(gxe, self.expectation)(column=self.column, meta={"rule": self.name}, **self.kwargs)


LEAD_RULES = (
    Rule("malformed_line", "ExpectColumnValuesToBeNull", MALFORMED, {},
         "the line could not be split into the header's columns: {value!r}; fix quoting or delimiters in the file"),
    Rule("missing_source_id", "ExpectColumnValuesToNotBeNull", "source_id", {},
         "the row has no source id; map `source_id` to the source's primary key"),
    Rule("duplicate_source_id", "ExpectColumnValuesToBeInSet", "superseded", {"value_set": [False]},
         "another row with the same source id and a newer updated_at landed in this run; the newer one was kept"),
    Rule("invalid_email", "ExpectColumnValuesToMatchRegex", "email", {"regex": EMAIL_PATTERN},
         "email {value!r} is not a valid address; correct it in the source or clear it"),
    Rule("no_contact_point", "ExpectColumnValuesToNotBeNull", "contact_key", {},
         "the lead has neither a valid email nor a valid phone number, so nobody can contact it; add one"),
    Rule("missing_created_at", "ExpectColumnValuesToNotBeNull", "created_at", {},
         "created_at is missing; map it to the source's creation timestamp"),
    Rule("unknown_status", "ExpectColumnValuesToBeInSet", "status", {"value_set": list(LEAD_STATUSES)},
         "status {value!r} is not one of " + ", ".join(LEAD_STATUSES) + "; add it to the source's `values: status:` map"),
    Rule("unknown_stage", "ExpectColumnValuesToBeInSet", "stage", {"value_set": list(LEAD_STAGES)},
         "stage {value!r} is not one of " + ", ".join(LEAD_STAGES) + "; add it to the source's `values: stage:` map"),
    Rule("unknown_lead_source", "ExpectColumnValuesToBeInSet", "lead_source", {"value_set": list(LEAD_SOURCES)},
         "lead_source {value!r} is not one of " + ", ".join(LEAD_SOURCES)
         + "; add it to the source's `values: lead_source:` map"),
)

TOUCH_RULES = (
    Rule("malformed_line", "ExpectColumnValuesToBeNull", MALFORMED, {},
         "the line could not be split into the header's columns: {value!r}; fix quoting or delimiters in the file"),
    Rule("missing_lead_id", "ExpectColumnValuesToNotBeNull", "lead_source_id", {},
         "the touch names no lead; map `lead_source_id`"),
    Rule("unknown_touch_type", "ExpectColumnValuesToBeInSet", "touch_type", {"value_set": list(TOUCH_TYPES)},
         "touch_type {value!r} is not one of " + ", ".join(TOUCH_TYPES) + "; add it to `values: touch_type:`"),
    Rule("unknown_channel", "ExpectColumnValuesToBeInSet", "channel", {"value_set": list(CHANNELS)},
         "channel {value!r} is not one of " + ", ".join(CHANNELS) + "; add it to `values: channel:`"),
    Rule("missing_occurred_at", "ExpectColumnValuesToNotBeNull", "occurred_at", {},
         "occurred_at is missing; map it to the event's timestamp"),
)

RULES = {"leads": LEAD_RULES, "touches": TOUCH_RULES}


@dataclass
class Validated:
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    docs_index: str | None
    statistics: dict


def mark_superseded(leads: pd.DataFrame) -> pd.Series:
    """True for every copy of a (source_system, source_id) except the most recently updated one."""
    keys = leads[["updated_at", "row_key", "source_system", "source_id"]]  # sorting every column cost seconds
    order = keys.sort_values(["updated_at", "row_key"], ascending=[False, False], na_position="last")
    dup = order.duplicated(["source_system", "source_id"], keep="first") & order["source_id"].notna()
    return dup.reindex(leads.index)


def gx_context(docs_dir: Path | None = None):
    """An ephemeral GX context, or a file context under docs_dir that keeps every run's Data Docs."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    if docs_dir is None:
        ctx = gx.get_context(mode="ephemeral")
    else:
        docs_dir.mkdir(parents=True, exist_ok=True)
        ctx = gx.get_context(mode="file", project_root_dir=str(docs_dir))
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _run_suite(ctx, entity: str, frame: pd.DataFrame, rules: tuple[Rule, ...], run_id: str):
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    source = ctx.data_sources.add_or_update_pandas("slowburn")
    names = [a.name for a in source.assets]
    asset = source.get_asset(entity) if entity in names else source.add_dataframe_asset(entity)
    batch = (asset.batch_definitions[0] if asset.batch_definitions
             else asset.add_batch_definition_whole_dataframe("nightly"))
    suite = ctx.suites.add_or_update(gx.ExpectationSuite(name=f"slowburn_{entity}",
                                                         expectations=[r.build() for r in rules]))
    definition = ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"slowburn_{entity}", data=batch, suite=suite))
    return definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["row_key"],
                       "return_unexpected_index_query": False},
        run_id=RunIdentifier(run_name=run_id),
    )


def validate(frame: pd.DataFrame, entity: str, *, run_id: str, docs_dir: Path | None = None,
             coercion_problems: pd.DataFrame | None = None, context=None) -> Validated:
    """Split `frame` into valid rows and quarantine rows (one per failed rule and row)."""
    rules = RULES[entity]
    # GX gets only the columns the rules read (and the ids): it copies and hashes the whole batch, and
    # a million leads' other columns cost it most of a GB.
    needed = ["row_key", "source_system", "source_id" if entity == "leads" else "lead_source_id",
              *(r.column for r in rules)]
    checked = frame[[c for c in dict.fromkeys(needed) if c in frame.columns]]
    if MALFORMED not in checked.columns:
        checked[MALFORMED] = pd.Series(pd.NA, index=checked.index, dtype="string")
    if entity == "leads":
        checked["superseded"] = mark_superseded(frame)
        checked["contact_key"] = frame["email_canonical"].fillna(frame["phone_e164"])
    ctx = context or gx_context(docs_dir)
    result = _run_suite(ctx, entity, checked, rules, run_id)
    by_name = {r.name: r for r in rules}
    failures = []
    for outcome in result.results:
        rule = by_name[outcome.expectation_config.meta["rule"]]
        hits = outcome.result.get("unexpected_index_list") or []
        if not hits:
            continue
        keys = [h["row_key"] for h in hits]
        values = [h.get(rule.column) for h in hits]
        failures.append(pd.DataFrame({"row_key": keys, "rule": rule.name, "column": rule.column,
                                      "value": [None if pd.isna(v) else str(v)[:200] for v in values],
                                      "reason": [rule.reason.format(value=v) for v in values]}))
    if coercion_problems is not None and len(coercion_problems):
        cp = coercion_problems
        failures.append(pd.DataFrame({
            "row_key": cp["row_key"].to_numpy(), "rule": "unparseable_" + cp["column"].astype(str),
            "column": cp["column"].to_numpy(), "value": cp["value"].to_numpy(),
            "reason": [f"{c} value {v!r} could not be read as {_kind_word(c)}; fix the value in the source"
                       for c, v in zip(cp["column"], cp["value"])],
        }))
    failed = (pd.concat(failures, ignore_index=True) if failures
              else pd.DataFrame(columns=["row_key", "rule", "column", "value", "reason"]))
    # Each failure's ids by an Arrow lookup of its row_key (a pandas join factorised all of a night's keys).
    at = positions(failed["row_key"], checked["row_key"])
    for name, column in (("source_system", "source_system"),
                         ("source_id", "source_id" if entity == "leads" else "lead_source_id")):
        failed[name] = checked[column].astype("string").iloc[np.maximum(at, 0)].where(at >= 0).to_numpy()
    failed.insert(0, "entity", entity)
    failed = failed[QUARANTINE_COLUMNS].astype("string")
    bad_keys = failed["row_key"].drop_duplicates()
    valid = frame[~is_in(frame["row_key"], bad_keys)].reset_index(drop=True)
    docs_index = build_data_docs(ctx) if docs_dir is not None and context is None else None
    stats = {"evaluated": len(frame), "valid": len(valid), "quarantined_rows": len(bad_keys),
             "quarantine_entries": len(failed),
             "by_rule": failed["rule"].value_counts().to_dict(), "gx_success": bool(result.success)}
    log.info("validate %s: %d rows, %d valid, %d quarantined (%s)", entity, len(frame), len(valid),
             len(bad_keys), stats["by_rule"])
    return Validated(valid, failed, docs_index, stats)


def build_data_docs(context) -> str | None:
    sites = context.build_data_docs()
    url = next(iter(sites.values()), None)
    if url:
        from urllib.parse import unquote, urlparse
        localise_data_docs(Path(unquote(urlparse(url).path)).parent)
    return url


DATA_DOCS_ASSETS = Path(__file__).parent / "data_docs_assets"
# CDN stylesheet -> local copy (under static/vendor/ of the site); CDN stylesheets not listed are dropped.
_LOCAL_STYLESHEETS = {
    "bootstrap.min.css": "css/bootstrap.min.css",
    "bootstrap-table.min.css": "css/bootstrap-table.min.css",
    "bootstrap-table-filter-control.css": "css/bootstrap-table-filter-control.min.css",
    "bootstrap-table-filter-control.min.css": "css/bootstrap-table-filter-control.min.css",
    "all.min.css": "fontawesome/css/all.min.css",
}
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_REMOTE_LINK = re.compile(r"<link\b[^>]*href=[\"'](https?:)?//[^\"']*[\"'][^>]*>", re.IGNORECASE)
_REMOTE_URL = re.compile(r"url\(\s*[\"']?(?:https?:)?//[^)]*\)", re.IGNORECASE)
_EVENT_HANDLER = re.compile(r"""(<[a-zA-Z][^>]*?)\s+on[a-zA-Z]+\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+)""")
_JS_URL = re.compile(r"""(href|src|action)\s*=\s*(["']?)\s*javascript:[^"'\s>]*""", re.IGNORECASE)
_REMOTE_IMG = re.compile(r"<img\b[^>]*src=[\"'](?:https?:)?//[^\"']*[\"'][^>]*>", re.IGNORECASE)
_ALT = re.compile(r"alt=[\"']([^\"']*)[\"']", re.IGNORECASE)


def localise_data_docs(site: Path) -> int:
    """Make the Data Docs site self-contained and script-free; returns the pages rewritten.

    GX pages load Bootstrap, Font Awesome and bootstrap-table from CDNs (empty pages offline) and run
    jQuery/Vega scripts. Served inside Airflow they must not run any script at all (a lead's value
    could carry one, and GX does not escape values), so every <script>, inline event handler and
    javascript: URL goes (the server's sandbox CSP is the first line; this is the second), CDN stylesheets point at the vendored copies in
    data_docs_assets/, and remote images (GX's tracking logo) become their alt text.
    """
    site = Path(site)
    vendor = site / "static" / "vendor"
    shutil.copytree(DATA_DOCS_ASSETS, vendor, dirs_exist_ok=True)
    rewritten = 0
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        prefix = "../" * (len(page.relative_to(site).parts) - 1)

        def link(match: re.Match) -> str:
            href = re.search(r"href=[\"']([^\"']*)[\"']", match.group(0)).group(1)
            local = _LOCAL_STYLESHEETS.get(href.rsplit("/", 1)[-1])
            return f'<link rel="stylesheet" href="{prefix}static/vendor/{local}">' if local else ""

        new = _SCRIPT.sub("", text)
        while _EVENT_HANDLER.search(new):  # inline handlers (onerror=...) are scripts too; a tag may hold several
            new = _EVENT_HANDLER.sub(r"\1", new)
        new = _JS_URL.sub(r"\1=\2#", new)
        new = _REMOTE_LINK.sub(link, new)
        new = _REMOTE_URL.sub("none", new)
        new = _REMOTE_IMG.sub(lambda m: html.escape(alt.group(1)) if (alt := _ALT.search(m.group(0))) else "", new)
        if new != text:
            tmp = page.with_suffix(".html.tmp")
            tmp.write_text(new, encoding="utf-8")
            os.replace(tmp, page)
            rewritten += 1
    return rewritten


def _kind_word(column: str) -> str:
    from slowburn.contracts import INPUT_CONTRACTS
    if column.startswith("attributes"):
        return "the type declared under `attributes:` in the sources file (or a JSON object)"
    for contract in INPUT_CONTRACTS.values():
        if column in contract.names:
            return {"datetime": "a date-time", "bool": "true/false", "int": "a whole number",
                    "float": "a number"}.get(contract.column(column).kind, "text")
    return "its type"
