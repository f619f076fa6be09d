"""Features of a golden lead, as of a moment: now for scoring, a point before its close for training.

Everything is computed on integer codes with numpy so that a million leads and several million
touches take seconds. A per-lead cutoff (a Series of timestamps by golden_id) keeps every touch at
or after that moment out of its features: a model trained on what happened after the outcome
learns the outcome, not the lead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from slowburn.arrowkeys import joined, positions, strings
from slowburn.contracts import REP_TOUCH_TYPES, TOUCH_TYPES
from slowburn.ripeness.config import SOURCE_RANK, RipenessConfig

NS_PER_DAY = 86_400 * 10**9
NAT = np.iinfo(np.int64).min
_TYPE_INDEX = {t: i for i, t in enumerate(TOUCH_TYPES)}
_REP_CODES = np.array([_TYPE_INDEX[t] for t in REP_TOUCH_TYPES])
_IS_REP = np.isin(np.arange(len(TOUCH_TYPES)), _REP_CODES)

TOUCH_FEATURE_COLUMNS = [
    "touches", "rep_touches", "engagement", "last_touch_at", "last_rep_touch_at", "first_rep_touch_at",
    "last_marketing_touch_at", "bounced", "unsubscribed", "demo_requested", "pricing_viewed",
    "demo_recent", "pricing_recent", "interest", "touch_value", *[f"n_{t}" for t in TOUCH_TYPES],
]


def _ns(values) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds, NaT as int64 min."""
    s = pd.Series(values)
    if str(s.dtype) != "datetime64[ns, UTC]":
        s = pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")
    return s.to_numpy(dtype="datetime64[ns]").view("int64")


@dataclass
class LinkedTouches:
    """Touches keyed to golden leads by position: compact integer codes instead of strings.

    gcode is the position in `golden_ids`, tcode the index in TOUCH_TYPES, occurred int64 ns UTC,
    ccode the index in `campaigns` (-1: none), value the touch's number (0 when it has none).
    Touches of unknown leads or types are dropped.
    """
    golden_ids: pd.Index
    gcode: np.ndarray
    tcode: np.ndarray
    occurred: np.ndarray
    ccode: np.ndarray
    campaigns: np.ndarray
    value: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.gcode)


def link_touches(touches: pd.DataFrame, links: pd.DataFrame, golden_ids=None) -> LinkedTouches:
    """Touches with the position of the golden lead their source lead belongs to (Arrow hash joins)."""
    if golden_ids is None:
        golden_ids = links["golden_id"].drop_duplicates()
    golden_ids = pd.Index(golden_ids, name="golden_id")
    link_keys = joined(links["source_system"], links["source_id"])
    link_golden = positions(links["golden_id"], pd.Series(golden_ids))
    row = positions(joined(touches["source_system"], touches["lead_source_id"]), link_keys)
    gcode = (np.where(row >= 0, link_golden[np.maximum(row, 0)], -1) if len(link_golden)
             else np.full(len(row), -1, dtype=np.int64))
    tcode = positions(touches["touch_type"], pa.array(TOUCH_TYPES))
    occurred = _ns(touches["occurred_at"])
    if "campaign" in touches:
        enc = pc.dictionary_encode(strings(touches["campaign"]))
        ccode = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        campaigns = np.asarray(enc.dictionary.to_pylist(), dtype=object)
    else:
        ccode, campaigns = np.full(len(gcode), -1, dtype=np.int64), np.array([], dtype=object)
    value = (pd.to_numeric(touches["value"], errors="coerce").astype(float).fillna(0.0).to_numpy()
             if "value" in touches else np.zeros(len(gcode)))
    keep = (gcode >= 0) & (tcode >= 0) & (occurred != NAT)
    return LinkedTouches(golden_ids, gcode[keep], tcode[keep], occurred[keep], ccode[keep], campaigns, value[keep])


def _from_ns(values: np.ndarray, index) -> pd.Series:
    return pd.Series(values.view("datetime64[ns]"), index=index).dt.tz_localize("UTC")


def _group_min(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    big = np.iinfo(np.int64).max
    out = np.full(n, big, dtype=np.int64)
    if len(codes):
        np.minimum.at(out, codes, values)
    out[out == big] = NAT
    return out


def interest_of(campaign: pd.Series, cfg: RipenessConfig) -> pd.Series:
    """The interest of a campaign or content name: the first configured pattern that matches."""
    text = campaign.astype("string")
    uniq = pd.Series(text.dropna().unique(), dtype="string")
    mapping = {}
    patterns = [(i.interest, re.compile(i.pattern, re.IGNORECASE)) for i in cfg.routing.interests]
    for name in uniq:
        mapping[name] = next((label for label, rx in patterns if rx.search(name)), "general")
    return text.map(mapping).astype("string")


@dataclass
class TouchFacts:
    """What each group's touches add up to, kept so that groups add up again: counts, last moment and
    first rep moment per type, summed value, engagement decayed to `ref`, and the latest named
    marketing touch. Per source lead they are carried night to night (ripeness.rollup); per golden
    lead they become the features (features_of). Moments are int64 ns UTC, NAT when none."""
    counts: np.ndarray  # (n, len(TOUCH_TYPES)) int64
    last: np.ndarray  # (n, len(TOUCH_TYPES)) int64 ns
    first_rep: np.ndarray
    value: np.ndarray
    engagement: np.ndarray  # at ref
    ref: np.ndarray
    named_at: np.ndarray
    campaign: np.ndarray  # object: the latest named marketing touch's campaign, None when none

    def __len__(self) -> int:
        return len(self.value)

    def take(self, rows: np.ndarray) -> "TouchFacts":
        return TouchFacts(*(getattr(self, f)[rows] for f in _FACT_FIELDS))


_FACT_FIELDS = ("counts", "last", "first_rep", "value", "engagement", "ref", "named_at", "campaign")


def _latest_named(codes: np.ndarray, at: np.ndarray, campaign: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the moment and campaign of its latest named touch (rows with at != NAT); on a tie in
    time the greatest campaign name, so the answer never depends on the order rows arrive in."""
    named_at = np.full(n, NAT, dtype=np.int64)
    out = np.full(n, None, dtype=object)
    hit = (at != NAT) & (codes >= 0)
    if hit.any():
        np.maximum.at(named_at, codes[hit], at[hit])
        hit &= at == named_at[np.maximum(codes, 0)]  # only each group's latest can win: sort those alone
        c_codes, c_at, c_name = codes[hit], at[hit], campaign[hit]
        rank, _ = pd.factorize(pd.Series(c_name, dtype="string"), sort=True)
        order = np.lexsort((rank, c_at, c_codes))
        c_codes = c_codes[order]
        last = np.r_[c_codes[1:] != c_codes[:-1], True]
        named_at[c_codes[last]] = c_at[order][last]
        out[c_codes[last]] = c_name[order][last]
    return named_at, out


def _decay(cfg: RipenessConfig, days: np.ndarray) -> np.ndarray:
    return np.power(0.5, days / cfg.engagement.half_life_days)


def touch_facts(codes: np.ndarray, n: int, occurred: np.ndarray, types: np.ndarray, campaign: np.ndarray,
                value: np.ndarray, ref: np.ndarray, cfg: RipenessConfig) -> TouchFacts:
    """Facts of n groups from touch rows (group code, moment, type index, campaign or None, value);
    engagement is decayed to each group's `ref`."""
    eng = cfg.engagement
    weights = np.zeros(len(TOUCH_TYPES))
    for name, pts in eng.touch_points.items():
        weights[_TYPE_INDEX[name]] = pts
    k = len(TOUCH_TYPES)
    counts = np.bincount(codes * k + types, minlength=n * k).reshape(n, k)
    last = np.full((n, k), NAT, dtype=np.int64)
    if len(codes):
        np.maximum.at(last, (codes, types), occurred)
    is_rep = _IS_REP[types]
    age_days = np.maximum(ref[codes] - occurred, 0) / NS_PER_DAY
    engagement = np.bincount(codes, weights=weights[types] * _decay(cfg, age_days), minlength=n)
    named = ~is_rep & pd.notna(campaign)
    named_at, latest = _latest_named(codes, np.where(named, occurred, NAT), campaign, n)
    return TouchFacts(counts.astype(np.int64), last, _group_min(codes[is_rep], occurred[is_rep], n),
                      np.bincount(codes, weights=value, minlength=n), engagement, np.asarray(ref, dtype=np.int64),
                      named_at, latest)


def merge_facts(facts: TouchFacts, group: np.ndarray, n: int, ref: np.ndarray, cfg: RipenessConfig) -> TouchFacts:
    """The facts of n coarser groups (a source lead's into its golden lead's, or two nights' into one):
    counts and values add, moments take their max (first: min), engagement is decayed to `ref` and
    added. Rows with group < 0 are left out."""
    keep = group >= 0
    if not keep.all():
        facts, group = facts.take(np.flatnonzero(keep)), group[keep]
    k = len(TOUCH_TYPES)
    counts = np.zeros((n, k), dtype=np.int64)
    last = np.full((n, k), NAT, dtype=np.int64)
    first_rep = np.full(n, NAT, dtype=np.int64)
    if len(group):  # rows sorted by group, then one reduceat per kind of fact (ufunc.at is 10x slower)
        order = np.argsort(group, kind="stable")
        sorted_group = group[order]
        starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
        at = sorted_group[starts]
        counts[at] = np.add.reduceat(facts.counts[order], starts, axis=0)
        last[at] = np.maximum.reduceat(facts.last[order], starts, axis=0)
        big = np.iinfo(np.int64).max  # NAT is int64's least value: it would win every min
        first = np.minimum.reduceat(np.where(facts.first_rep == NAT, big, facts.first_rep)[order], starts)
        first_rep[at] = np.where(first == big, NAT, first)
    age_days = (ref[group] - facts.ref) / NS_PER_DAY
    engagement = np.bincount(group, weights=facts.engagement * _decay(cfg, age_days), minlength=n)
    named_at, latest = _latest_named(group, facts.named_at, facts.campaign, n)
    return TouchFacts(counts, last, first_rep, np.bincount(group, weights=facts.value, minlength=n), engagement,
                      np.asarray(ref, dtype=np.int64), named_at, latest)


def features_of(facts: TouchFacts, index: pd.Index, cfg: RipenessConfig) -> pd.DataFrame:
    """touch_features' columns from golden leads' facts (their `ref` is each lead's cutoff)."""
    counts, last = facts.counts, facts.last
    n = len(index)
    out = pd.DataFrame(index=index)
    out["touches"] = counts.sum(axis=1)
    out["rep_touches"] = counts[:, _REP_CODES].sum(axis=1)
    out["engagement"] = facts.engagement
    out["touch_value"] = facts.value  # e.g. seconds on pages, summed
    out["last_touch_at"] = _from_ns(last.max(axis=1) if n else last[:, 0], index)
    out["last_rep_touch_at"] = _from_ns(last[:, _IS_REP].max(axis=1) if n else last[:, 0], index)
    out["first_rep_touch_at"] = _from_ns(facts.first_rep, index)
    out["last_marketing_touch_at"] = _from_ns(last[:, ~_IS_REP].max(axis=1) if n else last[:, 0], index)
    for col, kind in (("bounced", "email_bounce"), ("unsubscribed", "unsubscribe"),
                      ("demo_requested", "demo_request"), ("pricing_viewed", "pricing_page_view")):
        out[col] = counts[:, _TYPE_INDEX[kind]] > 0
    lookback = int(cfg.engagement.buying_stage.lookback_days * NS_PER_DAY)
    for col, kind in (("demo_recent", "demo_request"), ("pricing_recent", "pricing_page_view")):
        at = last[:, _TYPE_INDEX[kind]]
        out[col] = (at != NAT) & (facts.ref - at <= lookback)
    # Interest: the campaign or content of the latest marketing touch that names one.
    interest = np.full(n, "general", dtype=object)
    named = facts.named_at != NAT
    if named.any():
        interest[named] = interest_of(pd.Series(facts.campaign[named], dtype="string"), cfg).to_numpy(dtype=object)
    out["interest"] = pd.Series(interest, index=index, dtype="string")
    for i, t in enumerate(TOUCH_TYPES):
        out[f"n_{t}"] = counts[:, i]
    out["cutoff_at"] = _from_ns(facts.ref, index)
    return out


def touch_features(linked: LinkedTouches, golden_ids, cutoff, cfg: RipenessConfig) -> pd.DataFrame:
    """Per golden lead (indexed like golden_ids): counts, decayed engagement and the key moments.

    `linked` comes from link_touches. `cutoff` is one Timestamp (score as of now: touches at or
    before it count) or a Series by golden_id (train as of a moment before the close: only touches
    strictly before it count). Leads without touches get zero counts and NaT moments.
    """
    index = pd.Index(golden_ids, name="golden_id")
    n = len(index)
    if index.equals(linked.golden_ids):
        codes = linked.gcode
    else:  # another set of leads (e.g. the closed ones): map positions between the two indexes
        where = np.full(len(linked.golden_ids), -1, dtype=np.int64)
        pos = linked.golden_ids.get_indexer(index)
        where[pos[pos >= 0]] = np.flatnonzero(pos >= 0)
        codes = where[linked.gcode] if len(where) else linked.gcode
    occurred, types, ccode = linked.occurred, linked.tcode, linked.ccode
    value = linked.value if linked.value is not None else np.zeros(len(occurred))
    keep = codes >= 0
    if isinstance(cutoff, pd.Series):
        cut_by_lead = _ns(cutoff.reindex(index))
        cut = cut_by_lead[np.where(keep, codes, 0)] if n else np.full(len(codes), NAT, dtype=np.int64)
        keep &= (cut != NAT) & (occurred < cut)
    else:
        cut_by_lead = np.full(n, pd.Timestamp(cutoff).value, dtype=np.int64)
        keep &= occurred <= cut_by_lead[0] if n else np.zeros(len(codes), dtype=bool)
    if not keep.all():
        codes, occurred, types, ccode, value = codes[keep], occurred[keep], types[keep], ccode[keep], value[keep]
    campaigns = np.append(np.asarray(linked.campaigns, dtype=object), None)  # -1: none
    return features_of(touch_facts(codes, n, occurred, types, campaigns[ccode], value, cut_by_lead, cfg), index, cfg)


def _email_domain(email: pd.Series) -> pd.Series:
    """The part after '@', vectorised in Arrow (a Python split per address is slow at a million)."""
    arr = pa.array(email.astype("string").to_numpy(dtype=object, na_value=None), type=pa.large_string())
    domain = pc.struct_field(pc.extract_regex(arr, r"@(?P<d>[^@]+)$"), [0])
    return pd.Series(pd.arrays.ArrowStringArray(pc.cast(domain, pa.large_string())), index=email.index)


# The golden-record columns scoring reads (lead_attributes, and score_leads' last_activity_at): the
# provenance and member lists are most of a golden record's bytes and say nothing about ripeness.
SCORED_GOLDEN_COLUMNS = ("golden_id", "lead_source", "title", "email_canonical", "country_code", "company", "stage",
                         "email_opt_out", "created_at", "attributes", "last_activity_at")


def lead_attributes(golden: pd.DataFrame, cfg: RipenessConfig) -> pd.DataFrame:
    """Who the lead is, by golden_id: source, seniority, email domain kind, country, company, stage."""
    from slowburn.normalize import FREE_MAIL_DOMAINS

    g = golden.set_index("golden_id")
    out = pd.DataFrame(index=g.index)
    out["lead_source"] = g["lead_source"].astype("string").fillna("other")
    title = g["title"].astype("string").str.lower() if "title" in g else pd.Series(pd.NA, index=g.index)
    codes, uniq = pd.factorize(title, use_na_sentinel=True)
    level_of, points_of = [], []
    for t in uniq:
        hit = next((s for s in cfg.fit.title_seniority if re.search(s.pattern, str(t))), None)
        level_of.append(hit.level if hit else "none")
        points_of.append(hit.points if hit else 0.0)
    levels = np.array(level_of + ["none"], dtype=object)
    pts = np.array(points_of + [0.0])
    out["seniority"] = pd.Series(levels[codes], index=g.index, dtype="string")
    out["seniority_points"] = pts[codes]
    # For the predictive model: the seniority level, or the title's own text when no level matches
    # (e.g. "student", "unemployed"); the model learns which of those convert.
    own = np.array([" ".join(str(t).split()) for t in uniq] + ["none"], dtype=object)
    out["title_class"] = pd.Series(np.where(levels[codes] == "none", own[codes], levels[codes]), index=g.index,
                                   dtype="string")
    domain = _email_domain(g["email_canonical"] if "email_canonical" in g else pd.Series(pd.NA, index=g.index))
    out["email_domain"] = domain
    out["corporate_email"] = (domain.notna() & ~domain.isin(FREE_MAIL_DOMAINS)).to_numpy(dtype=bool)
    out["competitor"] = domain.isin(cfg.negative.competitor_domains).fillna(False).to_numpy(dtype=bool)
    out["target_account"] = domain.isin(cfg.fit.target_accounts.domains).fillna(False).to_numpy(dtype=bool)
    out["country_code"] = g["country_code"].astype("string") if "country_code" in g else pd.NA
    company = g["company"].astype("string") if "company" in g else pd.Series(pd.NA, index=g.index, dtype="string")
    out["company_known"] = company.str.strip().fillna("").str.len().to_numpy() > 0
    out["stage"] = g["stage"].astype("string") if "stage" in g else pd.Series(pd.NA, index=g.index, dtype="string")
    out["email_opt_out"] = g["email_opt_out"].fillna(False).astype(bool) if "email_opt_out" in g else False
    out["created_at"] = pd.to_datetime(g["created_at"], utc=True) if "created_at" in g else pd.NaT
    rank = {s: len(SOURCE_RANK) - i for i, s in enumerate(SOURCE_RANK)}  # form_fill 5 .. purchased_list 1
    out["source_rank"] = out["lead_source"].map(rank).astype(float).fillna(0.0).to_numpy()
    if "attributes" in g:
        custom = custom_attributes(g["attributes"])
        for name in custom.columns:
            out[ATTRIBUTE_PREFIX + name] = custom[name].to_numpy()
    return out


ATTRIBUTE_PREFIX = "attr_"


def custom_attributes(text: pd.Series) -> pd.DataFrame:
    """The `attributes` JSON of each lead as columns: numbers as float, true/false and text as categories.

    An attribute is numeric when every value it has is a number; true/false become "yes"/"no"; any
    other mix is read as text. Leads without a value get NaN / None.
    """
    import json

    present = text.notna().to_numpy()
    if not present.any():
        return pd.DataFrame(index=text.index)
    parsed = [json.loads(t) for t in text[present]]
    frame = pd.DataFrame.from_records(parsed)
    out = pd.DataFrame(index=text.index)
    for name in sorted(frame.columns):
        col = frame[name]
        values = col.dropna()
        if len(values) and values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all():
            full = np.full(len(text), np.nan)
            full[present] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        else:
            words = col.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                            else ("yes" if v else "no") if isinstance(v, bool) else " ".join(str(v).lower().split()))
            full = np.full(len(text), None, dtype=object)
            full[present] = words.to_numpy(dtype=object)
        out[name] = full
    return out
