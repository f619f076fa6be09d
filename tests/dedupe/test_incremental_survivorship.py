"""Incremental survivorship (issue 13): only the records tonight touched are survived again; the rest
are carried from the previous golden state, and the result says what changed."""
from __future__ import annotations

import pandas as pd
import pytest

from conftest import NOW, validated_sample
from slowburn.dedupe import dedupe_leads
from slowburn.dedupe.config import load_config
from slowburn.dedupe.survivorship import golden_frame
from slowburn.pipeline import RunContext, _previous_golden
from slowburn.warehouse import Warehouse


@pytest.fixture(scope="module")
def night1(tmp_path_factory):
    """Night 1 of a generated sample (80% of its leads, by creation), deduped from scratch."""
    tmp = tmp_path_factory.mktemp("incremental")
    _, leads = validated_sample(tmp, n_leads=1500, seed=7)
    created = pd.to_datetime(leads["created_at"], utc=True)
    first = leads[created <= created.quantile(0.8)].assign(run_id="r1").reset_index(drop=True)
    cfg = load_config()
    result = dedupe_leads(first, None, cfg, run_id="r1", model_dir=tmp / "model", run_dir=tmp)
    return {"tmp": tmp, "cfg": cfg, "leads": leads, "later": leads[created > created.quantile(0.8)],
            "rows": first, "result": result}


def run(night1, tonight: pd.DataFrame, previous_golden=None):
    return dedupe_leads(tonight, night1["result"].links, night1["cfg"], previous_golden=previous_golden, run_id="r2",
                        model_dir=night1["tmp"] / "model", run_dir=night1["tmp"])


def incremental_and_full(night1, tonight: pd.DataFrame, previous_golden=None):
    """Tonight with the previous golden state, and as a full rebuild without it: the same records."""
    previous = night1["result"].golden if previous_golden is None else previous_golden
    inc, full = run(night1, tonight, previous), run(night1, tonight)
    pd.testing.assert_frame_equal(inc.golden, full.golden)
    pd.testing.assert_frame_equal(inc.links, full.links)
    assert inc.removed_golden_ids == full.removed_golden_ids
    return inc, full


def marked(golden: pd.DataFrame) -> pd.DataFrame:
    """The previous golden state with every title overwritten: a record survived again loses the mark."""
    return golden.assign(title="carried:" + golden["golden_id"])


def copy_row(row: pd.Series, **values) -> pd.DataFrame:
    return pd.DataFrame([{**row.to_dict(), **values}]).astype(row.to_frame().T.dtypes.to_dict())


def changed_against(previous: pd.DataFrame, golden: pd.DataFrame) -> set:
    """Golden ids whose row is new or differs in any value from previous (an independent definition)."""
    both = golden.merge(previous, on="golden_id", how="left", suffixes=("", "_prev"), indicator=True)
    differs = both["_merge"].eq("left_only")
    for col in golden.columns.drop("golden_id"):
        a, b = both[col].astype(object), both[col + "_prev"].astype(object)
        differs |= ~((a == b).fillna(False) | (a.isna() & b.isna()))
    return set(both.loc[differs, "golden_id"])


def test_incremental_equals_full_rebuild_and_reports_what_changed(night1):
    """Tonight: the later leads (new people and returning ones), five changed leads, three re-sent unchanged."""
    rows = night1["rows"]
    changed = rows.sample(5, random_state=3).assign(title="Changed Title")
    resent = rows.drop(changed.index).sample(3, random_state=4)
    tonight = pd.concat([rows.drop(changed.index.union(resent.index)), changed.assign(run_id="r2"),
                         resent.assign(run_id="r2", row_key=resent["row_key"] + ":again"),
                         night1["later"].assign(run_id="r2")], ignore_index=True)
    inc, full = incremental_and_full(night1, tonight)
    previous = night1["result"].golden
    assert 0 < inc.report["incremental"]["golden_survived"] < len(inc.golden) // 2
    assert inc.changed_golden_ids == changed_against(previous, inc.golden)
    assert full.changed_golden_ids == set(full.golden["golden_id"])   # without a previous state: everything
    # Each changed lead's record changed; a lead re-sent with the same values changed nothing of its record.
    gid = inc.links.set_index("row_key")["golden_id"]
    assert set(gid[changed["row_key"]]) <= inc.changed_golden_ids
    resent_ids = set(gid[resent["row_key"] + ":again"])
    assert resent_ids - inc.changed_golden_ids, "an identical re-survived record must not count as changed"
    # Links: new and moved rows are flagged, an untouched earlier row is not.
    before = night1["result"].links.set_index(["source_system", "source_id"])
    now = inc.links.set_index(["source_system", "source_id"])
    assert inc.changed_links[(inc.links["run_id"] == "r2").to_numpy()].all()
    same = (now["golden_id"] == before["golden_id"].reindex(now.index)).to_numpy() & (inc.links["run_id"] == "r1")
    assert not inc.changed_links[same.to_numpy() & inc.links["previous_golden_id"].isna().to_numpy()
                                 & inc.links["review_reason"].isna().to_numpy()
                                 & before["review_reason"].reindex(now.index).isna().to_numpy()].any()


def test_unaffected_record_is_carried_byte_identical(night1):
    rows = night1["rows"]
    tonight = pd.concat([rows, night1["later"].assign(run_id="r2")], ignore_index=True)
    previous = night1["result"].golden
    inc = run(night1, tonight, previous)
    carried = previous[~previous["golden_id"].isin(inc.changed_golden_ids) & previous["source_count"].gt(1)]
    assert len(carried) > 10
    got = inc.golden.set_index("golden_id").loc[carried["golden_id"]].reset_index()
    pd.testing.assert_frame_equal(got, carried.reset_index(drop=True))
    # They were carried, not survived again: a mark in the previous state comes through untouched.
    out = run(night1, tonight, marked(previous)).golden.set_index("golden_id")["title"]
    assert (out[carried["golden_id"]] == "carried:" + carried["golden_id"].to_numpy()).all()


def test_new_row_joining_a_record_survives_only_that_record(night1):
    rows = night1["rows"]
    gid = night1["result"].links.set_index("row_key")["golden_id"]
    member = rows[rows["email_canonical"].notna()].iloc[0]
    joined = gid[member["row_key"]]
    new = copy_row(member, source_id="copy-1", row_key="copy:1", run_id="r2", title="Joined Tonight",
                   updated_at=member["updated_at"] + pd.Timedelta(days=1))
    tonight = pd.concat([rows, new], ignore_index=True)
    inc, _ = incremental_and_full(night1, tonight)
    assert inc.links.set_index("row_key").loc["copy:1", "golden_id"] == joined
    out = run(night1, tonight, marked(night1["result"].golden))
    assert out.report["incremental"]["golden_survived"] == 1
    title = out.golden.set_index("golden_id")["title"]
    assert title[joined] == "Joined Tonight"
    others = title.drop(joined)
    assert (others == "carried:" + others.index.to_series()).all()
    assert joined in out.changed_golden_ids and not out.removed_golden_ids


def test_merge_of_two_records_reports_the_absorbed_one_removed(night1):
    rows = night1["rows"]
    links = night1["result"].links.set_index("row_key")
    single = rows[rows["row_key"].map(links["golden_id"]).map(links["golden_id"].value_counts()).eq(1)]
    free = single["email_domain"].isin(["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"])
    a = single[free & single["email_canonical"].notna()].iloc[0]     # free mail: no company to collide
    b = single[single["phone_e164"].notna() & single["last_name_norm"].notna()
               & (single["row_key"] != a["row_key"])].iloc[0]
    bridge = copy_row(b, source_id="bridge-1", row_key="bridge:1", run_id="r2",
                      **{c: a[c] for c in ("email", "email_canonical", "email_domain", "email_tag")})
    tonight = pd.concat([rows, bridge], ignore_index=True)
    inc, _ = incremental_and_full(night1, tonight)
    ga, gb = links.loc[a["row_key"], "golden_id"], links.loc[b["row_key"], "golden_id"]
    now = inc.links.set_index("row_key")["golden_id"]
    assert now[a["row_key"]] == now[b["row_key"]] == now["bridge:1"]
    survivor = now["bridge:1"]
    absorbed = ({ga, gb} - {survivor}).pop()
    assert absorbed in inc.removed_golden_ids and absorbed not in set(inc.golden["golden_id"])
    assert inc.removed_golden_ids == set(inc.merges["absorbed"])
    assert survivor in inc.changed_golden_ids


def test_previous_golden_read_back_from_the_warehouse(night1, tmp_path):
    """The state as the warehouse returns it (text timestamps, 0/1 booleans) is typed so that carried
    records compare equal: only what tonight touched is reported changed."""
    ctx = RunContext(logical_date=NOW, sources_path=tmp_path / "sources.yaml", home=tmp_path)
    wh = Warehouse(ctx.warehouse_url)
    assert _previous_golden(ctx) is None   # the first night: every record is survived
    first = night1["result"]
    ledger = {"logical_date": NOW, "status": "success", "landed_leads": 0, "linked_leads": 0, "quarantined_leads": 0,
              "golden_leads": len(first.golden), "landed_touches": 0, "quarantined_touches": 0, "sales_queue": 0,
              "nurture_queue": 0, "lead_flags": 0, "invariant_ok": True, "step_counts": "{}"}
    wh.replace_run("r1", {"golden_leads": first.golden}, ledger)
    stored = _previous_golden(ctx)
    assert len(stored) == len(first.golden)
    tonight = pd.concat([night1["rows"], night1["later"].head(5).assign(run_id="r2")], ignore_index=True)
    from_wh, in_memory = run(night1, tonight, stored), run(night1, tonight, first.golden)
    assert from_wh.changed_golden_ids == in_memory.changed_golden_ids
    assert len(from_wh.changed_golden_ids) < len(first.golden) // 10
    carried = sorted(set(from_wh.golden["golden_id"]) - from_wh.changed_golden_ids)
    pd.testing.assert_frame_equal(from_wh.golden.set_index("golden_id").loc[carried],
                                  golden_frame(stored, ("merged_from", "review_reason")).set_index("golden_id")
                                  .loc[carried, from_wh.golden.columns.drop("golden_id")])
