"""Dedupe configuration: include/config/dedupe.yaml over the defaults below.

Every key is optional; the defaults are the documented behaviour. Precision comes first: a wrong
merge hides a person behind someone else's record (and their opt-out), a missed merge only leaves
a duplicate, so the default match threshold is high.
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

SURVIVORSHIP_RULES = ("most_recent", "source_priority", "most_complete", "union", "earliest", "latest", "any")

DEFAULTS: dict = {
    "thresholds": {
        # Splink pairs at or above this probability are merged.
        "match_probability": 0.99,
        # Pairs between this and match_probability are kept for review, never merged.
        "review_probability": 0.90,
    },
    # Deterministic pre-pass: rows equal (and non-null) on all columns of a rule link with probability 1.0.
    "deterministic_rules": [
        {"name": "exact_email", "columns": ["email_canonical"]},
        {"name": "exact_phone_surname", "columns": ["phone_e164", "last_name_norm"]},
    ],
    # Splink comparisons, each built only when its column carries data (slowburn.dedupe.linkage).
    # `false` drops one; thresholds are Splink's (Jaro-Winkler similarity, Damerau-Levenshtein edits);
    # term_frequency weighs an exact match on a rare value (Zaragoza) above a common one (Smith).
    "comparisons": {
        "first_name": {"nicknames": True, "jaro_winkler": [0.92, 0.80]},
        "last_name": {"jaro_winkler": [0.92, 0.80], "term_frequency": True},
        "email": {"jaro_winkler": [0.88]},
        "phone": {},
        # Company, website domain, street, postcode and city together (see linkage._organisation).
        "organisation": {"company_jaro_winkler": 0.90, "street_jaro_winkler": 0.90,
                         "postcode_damerau_levenshtein": 1, "term_frequency": True},
        # Used instead of organisation when there is no company or website (a person's own address).
        "street": {"jaro_winkler": [0.90, 0.80]},
        "city": {"jaro_winkler": [0.92], "term_frequency": True},
        "postcode": {"damerau_levenshtein": [1]},
        "country": {},
    },
    # Splink candidate pairs: a pair is compared when it agrees on every column of at least one rule.
    # Rules whose columns are all null are left out; so is a rule that would compare more than
    # max_pairs_per_rule pairs (a column with one value everywhere), with a log line saying so.
    "blocking_rules": [
        ["email_canonical"],
        ["phone_e164"],
        ["last_name_norm", "first_name_norm"],
        ["last_name_norm", "company_norm"],
        ["first_name_norm", "company_norm"],
        ["last_name_norm", "postcode_norm"],
        ["first_name_norm", "postcode_norm"],
        ["email_local", "last_name_norm"],
        ["phone_tail", "first_name_norm"],
    ],
    # Added when there is no company or website (the address is the person's own): with an employer,
    # the same street or postcode mostly pairs colleagues, at a quadratic cost.
    "address_blocking_rules": [
        ["street_norm", "postcode_norm"],
        ["last_name_norm", "city_norm"],
        ["city_norm", "postcode_norm"],
        ["street_norm", "city_norm"],
    ],
    "max_pairs_per_rule": 20_000_000,
    "training": {
        # Below this many rows (and without a saved model) Splink cannot estimate m and u: the
        # deterministic pre-pass alone links, and the result says so.
        "min_rows": 500,
        "u_max_pairs": 5_000_000,
        "em_max_pairs": 2_000_000,
        # One EM session per rule whose columns carry data (m of a rule's own columns comes from the others).
        "em_blocking_rules": [["email_canonical"], ["phone_e164"], ["last_name_norm", "first_name_norm"],
                              ["street_norm", "postcode_norm"]],
        # Sessions stop after this many: each costs seconds, and the first ones already train every comparison.
        "em_max_sessions": 3,
        "seed": 42,
        # Prior probability that two random leads match: the pairs the first rule set that finds any
        # (all its columns present) agrees on, divided by the set's expected recall.
        "prior_rules": [
            {"rules": [["email_canonical"], ["phone_e164", "last_name_norm"]], "recall": 0.8},
            {"rules": [["first_name_norm", "last_name_norm", "postcode_norm"],
                       ["first_name_norm", "last_name_norm", "street_norm"]], "recall": 0.5},
        ],
        # When no prior rule finds a pair (a file without duplicates): assume this share of rows are duplicates.
        "fallback_duplicate_share": 0.01,
    },
    "drift": {
        # A saved model is reused while every matching column's null rate moves by at most
        # null_rate_tolerance (absolute) and its distinct ratio by at most distinct_ratio_tolerance.
        "null_rate_tolerance": 0.05,
        "distinct_ratio_tolerance": 0.10,
        "max_model_age_days": 90,
    },
    "duckdb": {"memory_limit": "2GB", "threads": 2},
    # Chaining guard: a cluster holding two different corporate emails at different domains is split.
    "chaining_guard": True,
    "survivorship": {
        "source_priority": ["salesforce", "hubspot", "event_list"],
        "default": "most_recent",
        "fields": {
            "first_name": "most_recent", "last_name": "most_recent", "email": "most_recent",
            "email_canonical": "most_recent", "phone_e164": "most_recent", "company": "most_recent",
            "title": "most_recent", "website": "most_complete", "street": "most_recent", "city": "most_recent",
            "state": "most_recent", "postcode": "most_recent", "country_code": "most_recent",
            "owner_id": "most_recent", "status": "most_recent", "stage": "most_recent",
            "lead_source": "earliest", "created_at": "earliest", "updated_at": "latest",
            "last_activity_at": "latest", "email_opt_out": "any", "do_not_call": "any",
        },
    },
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass
class DedupeConfig:
    raw: dict = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    source: str = "defaults"

    def __post_init__(self):
        rules = self.raw["survivorship"]
        bad = {f: r for f, r in rules["fields"].items() if r not in SURVIVORSHIP_RULES}
        if rules["default"] not in SURVIVORSHIP_RULES:
            bad["default"] = rules["default"]
        if bad:
            raise ValueError(f"dedupe config ({self.source}): unknown survivorship rule(s) {bad}; "
                             f"rules are {', '.join(SURVIVORSHIP_RULES)}")
        from slowburn.dedupe.linkage import COMPARISON_BUILDERS
        unknown = set(self.raw.get("comparisons") or {}) - set(COMPARISON_BUILDERS)
        if unknown:
            raise ValueError(f"dedupe config ({self.source}): unknown comparison(s) {sorted(unknown)}; "
                             f"comparisons are {', '.join(COMPARISON_BUILDERS)}")
        t = self.raw["thresholds"]
        if not 0 < t["review_probability"] <= t["match_probability"] <= 1:
            raise ValueError(f"dedupe config ({self.source}): need 0 < review_probability <= match_probability <= 1")

    @property
    def match_probability(self) -> float:
        return float(self.raw["thresholds"]["match_probability"])

    @property
    def review_probability(self) -> float:
        return float(self.raw["thresholds"]["review_probability"])

    def with_overrides(self, **over) -> "DedupeConfig":
        return DedupeConfig(_merge(self.raw, over), source=self.source + " + overrides")


def default_config_path() -> Path | None:
    env = os.environ.get("SLOWBURN_DEDUPE_CONFIG")
    if env:
        return Path(env)
    try:
        from slowburn.warehouse import include_dir
        path = include_dir() / "config" / "dedupe.yaml"
    except FileNotFoundError:
        return None
    return path if path.exists() else None


def load_config(path: str | Path | None = None) -> DedupeConfig:
    """The config at `path`, else $SLOWBURN_DEDUPE_CONFIG, else include/config/dedupe.yaml, else defaults."""
    path = Path(path) if path else default_config_path()
    if path is None:
        return DedupeConfig()
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return DedupeConfig(_merge(DEFAULTS, data), source=str(path))
