"""Aged reasons are edited as JSON text (a sixth of a million a night); they must equal what parsing,
editing and dumping the JSON gives, for any factor names (quotes, unicode, the word "points")."""
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from slowburn.ripeness.reasons import TIME_FACTOR, aged_reasons, reasons_json, reasons_now


def _by_json(text: str, score: float, day: str) -> str:
    """The plain reference: parse, drop an earlier time factor (keep its label), add the new one."""
    factors = json.loads(text)
    kept = [f for f in factors if not str(f["factor"]).startswith(TIME_FACTOR)]
    old = next((f["factor"] for f in factors if str(f["factor"]).startswith(TIME_FACTOR)), None)
    points = round(float(score) - sum(float(f["points"]) for f in kept), 1)
    return json.dumps(kept + [{"factor": old or f"{TIME_FACTOR} ({day})", "points": points}])


names = st.text(min_size=1, max_size=20).filter(lambda s: not s.startswith(TIME_FACTOR)) | st.sampled_from(
    ['"points": 5', 'pricing page views: 2', 'ümlaut "quoted"', '}, {"factor": "x"'])


@settings(max_examples=200, deadline=None)
@given(st.lists(names, min_size=1, max_size=6, unique=True), st.data())
def test_aged_reasons_equal_the_json_edit(factor_names, data):
    n = data.draw(st.integers(1, 8))
    decimals = data.draw(st.sampled_from([0, 1]))
    points = np.array(data.draw(st.lists(st.lists(st.integers(-400, 400), min_size=len(factor_names),
                                                  max_size=len(factor_names)), min_size=n, max_size=n)))
    texts = list(reasons_json(factor_names, points, decimals=decimals))
    scores = data.draw(st.lists(st.integers(0, 100), min_size=n, max_size=n))
    days = ["2026-11-23"] * n
    once = aged_reasons(texts, scores, days)
    assert once == [_by_json(t, s, d) for t, s, d in zip(texts, scores, days)]
    later = data.draw(st.lists(st.integers(0, 100), min_size=n, max_size=n))
    twice = aged_reasons(once, later, ["2026-11-30"] * n)  # replaced, keeping the first date
    assert twice == [_by_json(t, s, "2026-11-30") for t, s in zip(once, later)]
    assert all(abs(sum(f["points"] for f in json.loads(t)) - s) < 0.05 for t, s in zip(twice, later))


@settings(max_examples=100, deadline=None)
@given(st.lists(names, min_size=1, max_size=5, unique=True), st.data())
def test_stored_reasons_explain_tonights_score_only_with_the_days_passed(factor_names, data):
    """reasons_now leaves reasons whose score has not moved exactly as stored, and gives the others the
    time factor (the JSON edit above): every text sums to tonight's score."""
    n = data.draw(st.integers(0, 8))
    points = np.array(data.draw(st.lists(st.lists(st.integers(0, 30), min_size=len(factor_names),
                                                  max_size=len(factor_names)), min_size=n, max_size=n)),
                      dtype=np.int64).reshape(n, len(factor_names))
    stored = list(reasons_json(factor_names, points)) if n else []
    stored_score = points.sum(axis=1)
    tonight = [s + data.draw(st.sampled_from([0, 0, -3, 2])) for s in stored_score]
    since = np.array(["2026-11-23"] * n, dtype=object)
    shown = reasons_now(stored, stored_score, tonight, since)
    for text, was, score, now in zip(stored, stored_score, tonight, shown):
        assert (now == text) if score == was else (now == _by_json(text, score, "2026-11-23"))
        assert abs(sum(f["points"] for f in json.loads(now)) - score) < 0.05
