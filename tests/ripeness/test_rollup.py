"""Touch features from the carried rollup equal the features over the whole history, night after night.

Two references: a plain pandas groupby (the baseline the numpy features must match), and
touch_features over every touch so far (what the nightly rollup replaces).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from slowburn.contracts import REP_TOUCH_TYPES, TOUCH_TYPES
from slowburn.ripeness import load_config
from slowburn.ripeness.features import link_touches, touch_features
from slowburn.ripeness.rollup import TOUCH_KEY, TouchRollup

CFG = load_config(Path(__file__).resolve().parents[2] / "include" / "config" / "ripeness.yaml")
DAY0 = pd.Timestamp("2026-11-20T00:00:00Z")


def _touches(rng, n_leads: int, n: int, start: pd.Timestamp, days: float) -> pd.DataFrame:
    """Touches of n_leads source leads over `days` from start, some sharing a moment (ties), some of a
    type slowburn does not know, some without a campaign or a moment."""
    moments = start + pd.to_timedelta(rng.integers(0, int(days * 24), n), unit="h")
    frame = pd.DataFrame({
        "source_system": rng.choice(["crm", "forms"], n),
        "lead_source_id": pd.Series([f"L{i}" for i in rng.integers(0, n_leads, n)], dtype="string"),
        "touch_type": rng.choice([*TOUCH_TYPES, "fax"], n),
        "occurred_at": pd.Series(moments).where(rng.random(n) > 0.02),
        "campaign": pd.Series(rng.choice(["Spring webinar", "pricing guide", "security checklist", None], n),
                              dtype="string"),
        "value": np.where(rng.random(n) < 0.5, rng.uniform(0, 300, n), np.nan),
    })
    return frame.astype({"occurred_at": "datetime64[ns, UTC]"})


def _links(rng, n_leads: int) -> pd.DataFrame:
    """Source leads of both systems linked to fewer golden leads (merges), a few not linked at all."""
    rows = [(s, f"L{i}", f"g{rng.integers(0, max(n_leads // 2, 1))}") for s in ("crm", "forms") for i in range(n_leads)
            if rng.random() > 0.05]
    return pd.DataFrame(rows, columns=["source_system", "source_id", "golden_id"])


def _baseline(touches: pd.DataFrame, links: pd.DataFrame, golden_ids, as_of: pd.Timestamp) -> pd.DataFrame:
    """The features by plain pandas: join, filter, group."""
    t = touches.dropna(subset=["occurred_at"])
    t = t[t["touch_type"].isin(TOUCH_TYPES) & (t["occurred_at"] <= as_of)]
    t = t.merge(links.drop_duplicates(["source_system", "source_id"]),
                left_on=["source_system", "lead_source_id"], right_on=["source_system", "source_id"])
    eng = CFG.engagement
    age = (as_of - t["occurred_at"]).dt.total_seconds() / 86400
    t = t.assign(decayed=t["touch_type"].map(eng.touch_points).fillna(0) * 0.5 ** (age / eng.half_life_days),
                 rep=t["touch_type"].isin(REP_TOUCH_TYPES))
    g = t.groupby("golden_id")
    out = pd.DataFrame(index=pd.Index(golden_ids, name="golden_id"))
    out["touches"] = g.size()
    out["rep_touches"] = g["rep"].sum()
    out["engagement"] = g["decayed"].sum()
    out["touch_value"] = g["value"].sum()
    out["last_touch_at"] = g["occurred_at"].max()
    out["last_rep_touch_at"] = t[t["rep"]].groupby("golden_id")["occurred_at"].max()
    out["first_rep_touch_at"] = t[t["rep"]].groupby("golden_id")["occurred_at"].min()
    out["last_marketing_touch_at"] = t[~t["rep"]].groupby("golden_id")["occurred_at"].max()
    named = t[~t["rep"] & t["campaign"].notna()].sort_values(["occurred_at", "campaign"])
    out["campaign"] = named.groupby("golden_id")["campaign"].last()
    lookback = pd.Timedelta(days=eng.buying_stage.lookback_days)
    for col, kind in (("demo_recent", "demo_request"), ("pricing_recent", "pricing_page_view")):
        recent = t[(t["touch_type"] == kind) & (as_of - t["occurred_at"] <= lookback)]
        out[col] = out.index.isin(recent["golden_id"])
    for kind in TOUCH_TYPES:
        out[f"n_{kind}"] = t[t["touch_type"] == kind].groupby("golden_id").size()
    return out.fillna({c: 0 for c in out.columns if c.startswith(("n_", "touches", "rep_", "engagement", "touch_"))})


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal features (engagement to rounding: it is decayed in steps by the rollup)."""
    assert list(got.index) == list(want.index)
    for col in got.columns:
        if col == "engagement":
            np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-9, atol=1e-9)
        else:
            pd.testing.assert_series_equal(got[col], want[col], check_dtype=False, check_names=False, obj=col)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_touch_features_match_a_plain_pandas_groupby(seed):
    rng = np.random.default_rng(seed)
    touches, links = _touches(rng, 40, 400, DAY0 - pd.Timedelta(days=200), 210), _links(rng, 40)
    golden_ids = sorted(links["golden_id"].unique()) + ["g-no-touches"]
    got = touch_features(link_touches(touches, links), golden_ids, DAY0, CFG)
    want = _baseline(touches, links, golden_ids, DAY0)
    for col in want.columns.drop("campaign"):
        if col == "engagement" or col == "touch_value":
            np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-9, err_msg=col)
        else:
            pd.testing.assert_series_equal(got[col], want[col], check_dtype=False, check_names=False, obj=col)
    from slowburn.ripeness.features import interest_of
    expected = interest_of(want["campaign"].astype("string"), CFG).fillna("general")
    pd.testing.assert_series_equal(got["interest"], expected, check_dtype=False, check_names=False)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
@example(316)  # a first night whose only touch is dated after it: the stored rollup has no source lead yet
def test_a_rollup_carried_over_nights_equals_the_whole_history(seed):
    """Three nights: re-sent old events, touches dated after the night (they count once due), links that
    change between nights (merges), through the stored form the next night reads."""
    rng = np.random.default_rng(seed)
    nights = [DAY0 + pd.Timedelta(days=d) for d in range(3)]
    history = []
    rollup = None
    for i, as_of in enumerate(nights):
        tonight = _touches(rng, 30, int(rng.integers(0, 150)), as_of - pd.Timedelta(days=60), 62)  # some after as_of
        if history and rng.random() < 0.7:  # a file drop re-sending earlier events
            earlier = pd.concat(history)
            tonight = pd.concat([tonight, earlier.sample(frac=0.3, random_state=i)], ignore_index=True)
        history.append(tonight)
        rollup = TouchRollup.build(tonight, as_of, CFG) if rollup is None else rollup.fold(tonight, as_of, CFG)
        links = _links(rng, 30)
        golden_ids = sorted(links["golden_id"].unique())
        whole = pd.concat(history, ignore_index=True).drop_duplicates(TOUCH_KEY)
        want = touch_features(link_touches(whole, links), golden_ids, as_of, CFG)
        _same(rollup.features(links, golden_ids, CFG), want)
        rollup = TouchRollup.from_frames(*rollup.frames().values())  # as the next night reads it


def test_a_night_without_touches_only_decays_engagement():
    rng = np.random.default_rng(5)
    touches, links = _touches(rng, 20, 200, DAY0 - pd.Timedelta(days=30), 30), _links(rng, 20)
    golden_ids = sorted(links["golden_id"].unique())
    rollup = TouchRollup.build(touches, DAY0, CFG).fold(touches.iloc[:0], DAY0 + pd.Timedelta(days=30), CFG)
    later = rollup.features(links, golden_ids, CFG)
    before = touch_features(link_touches(touches, links), golden_ids, DAY0, CFG)
    np.testing.assert_allclose(later["engagement"], before["engagement"] / 2, rtol=1e-9)  # one half-life
    assert (later["touches"] == before["touches"]).all()


def test_a_rollup_refuses_other_engagement_settings_or_going_back():
    rng = np.random.default_rng(6)
    rollup = TouchRollup.build(_touches(rng, 5, 20, DAY0 - pd.Timedelta(days=5), 5), DAY0, CFG)
    with pytest.raises(ValueError, match="cannot be rolled back"):
        rollup.fold(rollup.pending, DAY0 - pd.Timedelta(days=1), CFG)
    other = CFG.model_copy(update={"engagement": CFG.engagement.model_copy(update={"half_life_days": 7})})
    with pytest.raises(ValueError, match="other engagement settings"):
        rollup.fold(rollup.pending, DAY0, other)


def _hashes_of_the_text(touches: pd.DataFrame) -> np.ndarray:
    """The plain reference: pandas' hash of every row's key as text."""
    from slowburn.ripeness.features import _ns

    canon = pd.DataFrame({"s": touches["source_system"].astype("string").to_numpy(),
                          "l": touches["lead_source_id"].astype("string").to_numpy(),
                          "t": touches["touch_type"].astype("string").to_numpy(),
                          "o": _ns(touches["occurred_at"])})
    return pd.util.hash_pandas_object(canon, index=False).to_numpy(dtype=np.uint64)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["crm", "hubspot", "ünïcode", ""]),
                          st.one_of(st.none(), st.text(max_size=6)),
                          st.sampled_from(["email_open", "form_fill", "page_view"]),
                          st.integers(0, 2**40)), max_size=25),
       st.sampled_from(["string", "object"]))
def test_touch_hashes_are_the_hashes_of_the_key_text(rows, dtype):
    """Stored rollups keep these hashes from night to night: they must never change for the same touch."""
    from slowburn.ripeness.rollup import touch_hashes

    frame = pd.DataFrame(rows, columns=["source_system", "lead_source_id", "touch_type", "ns"])
    touches = frame.drop(columns="ns").astype(dtype).assign(
        occurred_at=pd.to_datetime(frame["ns"].astype("int64"), unit="ns", utc=True))
    assert np.array_equal(touch_hashes(touches), _hashes_of_the_text(touches))
