"""The rules model: points, decay, tiers and reasons."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from slowburn.ripeness import RulesModel, score_rules, touch_features

NOW = pd.Timestamp("2026-11-23T00:00:00Z")


def _golden(**over):
    base = {"golden_id": "g1", "lead_source": "form_fill", "title": None, "email_canonical": "a@gmail.com",
            "email_opt_out": False, "last_activity_at": pd.NaT}
    return pd.DataFrame([{**base, **over}])


def _touches(*events):
    return pd.DataFrame([{"source_system": "crm", "lead_source_id": "1", "touch_type": t,
                          "occurred_at": NOW - pd.Timedelta(days=d)} for t, d in events],
                        columns=["source_system", "lead_source_id", "touch_type", "occurred_at"])


LINKS = pd.DataFrame({"source_system": ["crm"], "source_id": ["1"], "golden_id": ["g1"]})


def test_engagement_decays_by_half_life():
    model = RulesModel(half_life_days=30)
    fresh = touch_features(_touches(("demo_request", 0)), LINKS, model, NOW)["engagement"].iloc[0]
    month = touch_features(_touches(("demo_request", 30)), LINKS, model, NOW)["engagement"].iloc[0]
    assert fresh == pytest.approx(25.0)
    assert month == pytest.approx(12.5)


def test_score_tier_and_reasons():
    model = RulesModel()
    feats = touch_features(_touches(("demo_request", 1), ("pricing_page_view", 1), ("form_fill", 2)), LINKS,
                           model, NOW)
    scored = score_rules(_golden(title="VP Sales", email_canonical="a@acme.com"), feats, model, NOW).iloc[0]
    # form fill 20 + engagement (capped) 40 + recent 10 + VP 12 + corporate email 5 = 87
    assert scored.score == 87 and scored.tier == "hot"
    reasons = json.loads(scored.reasons)
    assert reasons[0] == {"factor": "engagement", "points": 40.0}
    assert [r["factor"] for r in reasons] == ["engagement", "lead source", "title seniority"]


@pytest.mark.parametrize("title,expected_tier", [(None, "cold"), ("Engineering Manager", "cool")])
def test_tier_boundaries(title, expected_tier):
    model = RulesModel(tiers=(("hot", 70), ("warm", 45), ("cool", 25), ("cold", 0)))
    feats = touch_features(_touches(), LINKS, model, NOW)
    # purchased list 2 (no title) is cold; form fill 20 + manager 6 = 26 is cool (free-mail address: no bonus)
    golden = _golden(lead_source="form_fill" if title else "purchased_list", title=title)
    scored = score_rules(golden, feats, model, NOW).iloc[0]
    assert scored.tier == expected_tier


def test_negative_signals_floor_at_zero():
    model = RulesModel()
    feats = touch_features(_touches(("email_bounce", 1), ("unsubscribe", 1)), LINKS, model, NOW)
    scored = score_rules(_golden(lead_source="purchased_list", email_opt_out=True), feats, model, NOW).iloc[0]
    assert scored.score == 0 and scored.tier == "cold"
    assert scored.unsubscribed and scored.bounced
