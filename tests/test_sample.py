"""slowburn.sample: synthetic lead sources whose planted truth the rest of the pipeline is judged by."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow.parquet as pq
import pytest

from slowburn import contracts as C
from slowburn.sample import VALUE_MAPS, generate, name_pools, next_night
from slowburn.sources.config import load_sources

NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)
N = 5000
NOW_TS_UTC = pd.Timestamp(NOW)


def _parse(values: pd.Series) -> pd.Series:
    """How the pipeline reads text timestamps (contracts.coerce)."""
    return pd.to_datetime(values.astype("string").str.strip(), errors="coerce", utc=True, format="mixed")


def _read(out: Path, manifest: dict) -> dict:
    return {
        "dir": out,
        "manifest": manifest,
        "now": pd.Timestamp(manifest["now"]),
        "crm": pd.read_sql('SELECT * FROM "Lead"', sqlite3.connect(out / "crm.db")),
        "marketing": pd.read_parquet(out / "marketing_leads.parquet"),
        "events": pd.read_csv(out / "event_list.csv", encoding="latin-1", dtype="string",
                              keep_default_na=False, na_values=[""]),
        "touches": pd.read_parquet(out / "touches.parquet"),
        "owners": pd.read_csv(out / "owners.csv", dtype="string", keep_default_na=False, na_values=[""]),
        "outcomes": pd.read_csv(out / "outcomes.csv", dtype="string"),
        "truth": pd.read_parquet(out / "truth.parquet"),
    }


@pytest.fixture(scope="module")
def first_night(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("sample")
    return _read(out, generate(out, N, seed=3, now=NOW))


@pytest.fixture(scope="module")
def second_night(first_night, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("night2")
    return _read(out, next_night(first_night["dir"], out=out))


@pytest.fixture(scope="module", params=["first night", "second night"])
def sample(request) -> dict:
    """The generated sample, and the same sample a night later: every property holds for both."""
    return request.getfixturevalue("first_night" if request.param == "first night" else "second_night")


def _truth_of(sample, system: str) -> pd.DataFrame:
    t = sample["truth"]
    return t[t["source_system"] == system].sort_values("row_number").reset_index(drop=True)


# ---------------------------------------------------------------- files, counts, truth coverage
def test_manifest_lists_every_file(sample):
    m = sample["manifest"]
    assert set(m["files"]) == {"crm", "marketing", "events", "touches", "owners", "outcomes", "truth", "sources",
                               "manifest"}
    for path in m["files"].values():
        assert Path(path).is_file()
    on_disk = json.loads((sample["dir"] / "manifest.json").read_text())
    assert on_disk == m
    assert m["counts"]["leads"] == len(sample["truth"]) >= N
    assert m["counts"]["touches"] == len(sample["touches"])


def test_row_counts_close_to_n_and_split_by_source(sample):
    crm, hs, ev = len(sample["crm"]), len(sample["marketing"]), len(sample["events"])
    assert abs(crm + hs + ev - N) <= 0.01 * N
    assert 0.50 < crm / N < 0.60
    assert 0.30 < hs / N < 0.40
    assert 0.07 < ev / N < 0.13


def test_truth_covers_every_lead_row_exactly_once_in_source_order(sample):
    t = sample["truth"]
    assert len(t) == len(sample["crm"]) + len(sample["marketing"]) + len(sample["events"])
    assert not t.duplicated(["source_system", "row_number"]).any()
    assert not t["row_key"].duplicated().any()
    for system, frame, id_col, name in (("salesforce", sample["crm"], "Id", "crm"),
                                        ("hubspot", sample["marketing"], "hs_object_id", "marketing"),
                                        ("event_list", sample["events"], "Badge ID", "events")):
        tt = _truth_of(sample, system)
        assert tt["row_number"].tolist() == list(range(1, len(frame) + 1))
        assert tt["source_id"].tolist() == frame[id_col].astype(str).tolist()
        assert (tt["row_key"] == name + ":" + tt["row_number"].astype(str)).all()


def test_timestamps_never_after_now_and_touches_not_before_their_lead(sample):
    crm, hs, t = sample["crm"], sample["marketing"], sample["truth"]
    now = sample["now"]
    for col in ("CreatedDate", "LastModifiedDate", "LastActivityDate"):
        assert (_parse(crm[col]).dropna() <= now).all(), col
    for col in ("createdate", "lastmodifieddate", "notes_last_updated"):
        assert (hs[col].dropna() <= now).all(), col
    assert (_parse(sample["events"]["Scanned At"]).dropna() <= now).all()
    assert (sample["touches"]["ts"] <= now).all()
    assert (_parse(sample["outcomes"]["closed_at"]) <= now).all()
    assert (_parse(sample["owners"]["deactivated_at"]).dropna() <= now).all()
    created = t.groupby(["source_system", "source_id"])["created_at"].min().rename("created").reset_index()
    joined = sample["touches"].merge(created, left_on=["system", "lead_id"], right_on=["source_system", "source_id"],
                                     how="left")
    assert joined["created"].notna().all(), "every touch points at a lead row"
    assert (joined["ts"] >= joined["created"]).all()


def test_now_defaults_to_todays_midnight_utc(tmp_path):
    m = generate(tmp_path, 60, seed=1)
    now = pd.Timestamp(m["now"])
    assert now == pd.Timestamp.now(tz="UTC").normalize()
    assert (pd.read_parquet(tmp_path / "touches.parquet")["ts"] <= now).all()


# ---------------------------------------------------------------- determinism
def _content(folder: Path) -> dict:
    out = {}
    for name in ("event_list.csv", "owners.csv", "outcomes.csv", "sources.yaml"):
        out[name] = (folder / name).read_bytes()
    for name in ("marketing_leads.parquet", "touches.parquet", "truth.parquet"):
        out[name] = pq.read_table(folder / name)
    with sqlite3.connect(folder / "crm.db") as con:
        out["crm.db"] = con.execute('SELECT * FROM "Lead"').fetchall()
    manifest = json.loads((folder / "manifest.json").read_text())
    out["counts"] = manifest["counts"]
    return out


def test_same_seed_gives_identical_files(tmp_path):
    a = generate(tmp_path / "a", 1500, seed=11, now=NOW)
    b = generate(tmp_path / "b", 1500, seed=11, now=NOW)
    assert a["counts"] == b["counts"]
    ca, cb = _content(tmp_path / "a"), _content(tmp_path / "b")
    for key in ca:
        if isinstance(ca[key], bytes) or not hasattr(ca[key], "equals"):
            assert ca[key] == cb[key], key
        else:
            assert ca[key].equals(cb[key]), key
    c = generate(tmp_path / "c", 1500, seed=12, now=NOW)
    assert _content(tmp_path / "c")["crm.db"] != ca["crm.db"]
    assert c["counts"]["leads"] == 1500


# ---------------------------------------------------------------- encodings and names
def test_event_list_is_latin1_with_accented_names(sample):
    raw = (sample["dir"] / "event_list.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("latin-1")
    for name in ("José", "Müller", "Zoë", "François"):
        assert name in text
    names = pd.concat([sample["events"]["First Name"], sample["events"]["Last Name"]]).dropna()
    assert names.str.contains(r"[À-ÿ]").mean() > 0.03


def test_name_pools_are_large_and_have_nicknames():
    pools = name_pools()
    assert len(pools["first"]) >= 300
    assert len(set(pools["last"])) >= 20_000
    nick = dict(zip(pools["first"], pools["nicknames"]))
    assert "Bill" in nick["William"] and "Bob" in nick["Robert"]
    for name in pools["first"] + pools["last"]:
        name.encode("latin-1")


def test_people_rarely_share_a_full_name(sample):
    people = sample["truth"].drop_duplicates("person_id")
    shared = people.groupby(["true_first_name", "true_last_name"])["person_id"].transform("size") > 1
    assert shared.mean() < 0.02


def test_phones_and_emails_are_realistic(sample):
    t = sample["truth"]
    people = t.drop_duplicates("person_id")
    numbers = people["true_phone_e164"].head(400)
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(n)) for n in numbers)
    assert set(people["country_code"]) == {"US", "GB", "DE", "FR", "AU"}
    assert (people["country_code"] == "US").mean() > 0.65
    for code, dial in (("GB", "+44"), ("DE", "+49"), ("FR", "+33"), ("US", "+1")):
        assert people.loc[people["country_code"] == code, "true_phone_e164"].str.startswith(dial).all()
    assert not people["true_email"].duplicated().any()
    domains = people["true_email"].str.split("@").str[1]
    for free in ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com"):
        assert (domains == free).any()
    assert 0.2 < domains.isin(["gmail.com", "yahoo.com", "outlook.com", "hotmail.com"]).mean() < 0.5
    phones = pd.concat([sample["crm"]["Phone"], sample["marketing"]["phone"]]).dropna()
    for pattern in (r"^\(\d{3}\) \d{3}-\d{4}$", r"^\d{3}\.\d{3}\.\d{4}$", r"^\+1 \d{3} \d{3} \d{4}$", r"^\d{10}$"):
        assert phones.str.match(pattern).any(), pattern


# ---------------------------------------------------------------- planted categories
def test_duplicates_and_their_variations(sample):
    t = sample["truth"]
    assert 0.17 < t["is_duplicate"].mean() < 0.23
    assert (t.groupby("person_id")["is_duplicate"].apply(lambda s: (~s).sum()) == 1).all()
    dups = t[t["is_duplicate"]]
    first_system = t[~t["is_duplicate"]].set_index("person_id")["source_system"]
    cross = dups["source_system"].to_numpy() != first_system.loc[dups["person_id"]].to_numpy()
    assert 0.2 < cross.mean() < 0.8, "duplicates both within and across sources"
    seen = set(t["variations"].dropna().str.split(";").explode())
    for v in ("nickname", "typo_first", "typo_last", "name_case", "gmail_dots", "email_plus_tag", "googlemail",
              "email_case", "email_missing", "phone_missing", "company_variant", "ascii_fold"):
        assert v in seen, v
    emails = pd.concat([sample["crm"]["Email"], sample["marketing"]["email"]]).dropna()
    assert emails.str.contains(r"\+\w+@gmail\.com$").any()
    assert emails.str.endswith("@googlemail.com").any()


def test_harder_lead_data_no_email_sources_address_typos_shared_phones_common_surnames(sample):
    t = sample["truth"]
    seen = set(t["variations"].dropna().str.split(";").explode())
    for v in ("typo_street", "typo_city", "typo_postcode", "no_email_source", "shared_phone"):
        assert v in seen, v
    # Badge scans and purchased lists come without email (with a phone, so they stay contactable).
    varied = t["variations"].fillna("")
    no_email = t[varied.str.contains("no_email_source")]
    assert set(no_email["lead_source"]) <= {"event", "purchased_list"}
    events = sample["events"]
    email_col = next(c for c in events.columns if "mail" in c.lower())
    assert 0.25 < events[email_col].isna().mean() < 0.6
    # Shared corporate lines: one number, several people of one company.
    phones = t.groupby("true_phone_e164").agg(people=("person_id", "nunique"), companies=("company_id", "nunique"))
    shared = phones[phones["people"] > 1]
    assert len(shared) >= 20 and (shared["companies"] == 1).all()
    # Common surnames: the most frequent surname covers many people.
    top = t.drop_duplicates("person_id")["true_last_name"].value_counts()
    assert top.iloc[0] >= 0.005 * t["person_id"].nunique()


def test_duplicates_for_credit_are_rep_created_crm_copies_of_marketing_leads(sample):
    t, crm = sample["truth"], sample["crm"]
    credit = t[t["duplicate_for_credit"]]
    assert len(credit) >= 20
    assert (credit["source_system"] == "salesforce").all()
    first = t[~t["is_duplicate"]].set_index("person_id")
    assert (first.loc[credit["person_id"], "source_system"] == "hubspot").all()
    assert credit["owner_id"].notna().all()
    assert (first.loc[credit["person_id"], "owner_id"].fillna("").to_numpy() != credit["owner_id"].to_numpy()).all()
    assert (first.loc[credit["person_id"], "created_at"].to_numpy() < credit["created_at"].to_numpy()).all()
    rows = crm.iloc[credit["row_number"].to_numpy() - 1]
    assert (rows["LeadSource"] == "Rep Created").all()


def test_invalid_rows_each_reason_present_and_broken(sample):
    t, crm = sample["truth"], sample["crm"]
    assert 0.01 < t["planted_invalid"].notna().mean() < 0.02
    reasons = t["planted_invalid"].value_counts()
    assert set(reasons.index) == {"malformed_email", "unparseable_created_date", "no_contact", "unknown_status",
                                  "duplicate_source_id"}
    tc = _truth_of(sample, "salesforce")
    # Duplicate ids: pairs of CRM rows with the same Id and different LastModifiedDate, both marked.
    dup_id = crm["Id"].duplicated(keep=False)
    assert dup_id.sum() == reasons["duplicate_source_id"]
    assert (tc.loc[dup_id, "planted_invalid"] == "duplicate_source_id").all()
    assert crm[dup_id].groupby("Id")["LastModifiedDate"].nunique().eq(2).all()
    # Unparseable dates parse nowhere else.
    bad = tc["planted_invalid"] == "unparseable_created_date"
    parsed = _parse(crm["CreatedDate"])
    assert parsed[bad].isna().all() and parsed[~bad].notna().all()
    te = _truth_of(sample, "event_list")
    bad_ev = te["planted_invalid"] == "unparseable_created_date"
    assert _parse(sample["events"]["Scanned At"])[bad_ev].isna().all()
    # Malformed emails fail a plain address check; valid rows pass it.
    good_email = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    bad_mail = tc["planted_invalid"] == "malformed_email"
    assert not crm.loc[bad_mail, "Email"].str.match(good_email).any()
    assert crm.loc[~bad_mail, "Email"].dropna().str.match(good_email).all()
    # No contact point at all only where planted.
    none = crm["Email"].isna() & crm["Phone"].isna()
    assert (none == (tc["planted_invalid"] == "no_contact")).all()
    # Unknown statuses are outside the value map.
    unknown = ~crm["Status"].isin(list(VALUE_MAPS["crm"]["status"]))
    assert (unknown == (tc["planted_invalid"] == "unknown_status")).all()


def test_orphans_match_the_owners_table(sample):
    t, owners = sample["truth"], sample["owners"]
    assert 0.04 < t["orphan_reason"].notna().mean() < 0.06
    from slowburn.contracts import OPEN_STATUSES
    is_open = t["status"].isin(list(OPEN_STATUSES)).fillna(False).to_numpy()
    unowned = (t["orphan_reason"].notna() | t["owner_id"].isna()).to_numpy()
    assert (t["planted_orphaned"].to_numpy() == (is_open & unowned)).all()
    active = set(owners.loc[owners["active"] == "true", "owner_id"])
    inactive = set(owners.loc[owners["active"] == "false", "owner_id"])
    o = t[t["source_system"] != "event_list"]
    reason = o["orphan_reason"]
    assert o.loc[reason == "no_owner", "owner_id"].isna().all()
    assert not o.loc[reason == "unknown_owner", "owner_id"].isin(active | inactive).any()
    assert o.loc[reason == "deactivated_owner", "owner_id"].isin(inactive).all()
    assert o.loc[reason.isna(), "owner_id"].isin(active).all()
    crm_owner = sample["crm"]["OwnerId"]
    no_owner = _truth_of(sample, "salesforce")["orphan_reason"].eq("no_owner").fillna(False)
    assert (crm_owner.isna().to_numpy() == no_owner.to_numpy()).all()


def test_owners_table(sample):
    owners = sample["owners"]
    assert len(owners) >= 8 and owners["owner_id"].is_unique
    assert 0.08 < (owners["active"] == "false").mean() < 0.25
    assert owners.loc[owners["active"] == "true", "deactivated_at"].isna().all()
    assert owners.loc[owners["active"] == "false", "deactivated_at"].notna().all()
    assert set(owners["territory"]) == {"NA-West", "NA-East", "EMEA", "APAC"}
    assert owners["daily_capacity"].astype(int).gt(0).all()


def test_stale_is_open_and_idle_and_matches_the_touches(sample):
    t = sample["truth"]
    assert 0.08 < t["planted_stale"].mean() < 0.12
    last = sample["touches"].groupby(["system", "lead_id"])["ts"].max().rename("last").reset_index()
    x = t.merge(last, left_on=["source_system", "source_id"], right_on=["system", "lead_id"], how="left")
    idle_since = x["last"].fillna(x["created_at"])
    expect = x["status"].isin(C.OPEN_STATUSES) & (idle_since < sample["now"] - pd.Timedelta(days=45))
    assert (expect == x["planted_stale"]).all()
    # LastActivityDate in the CRM is the last touch.
    tc = _truth_of(sample, "salesforce")
    act = _parse(sample["crm"]["LastActivityDate"])
    assert (act.fillna(pd.Timestamp(0, tz="UTC")) == tc["last_touch_at"].fillna(pd.Timestamp(0, tz="UTC"))).all()


def test_opt_outs_bounces_and_touch_volume(sample):
    t, touches = sample["truth"], sample["touches"]
    assert 3 <= len(touches) / len(t) <= 6
    assert set(touches["event"]) == set(C.TOUCH_TYPES)
    assert set(touches["medium"]) <= set(C.CHANNELS)
    assert set(touches["system"]) == {"salesforce", "hubspot", "event_list"}
    rep = touches["event"].isin(C.REP_TOUCH_TYPES)
    assert (touches.loc[~rep, "actor"] == "marketing").all()
    assert touches.loc[rep, "actor"].str.startswith("005").all()
    assert sample["crm"]["HasOptedOutOfEmail"].sum() > 0 and sample["marketing"]["hs_email_optout"].sum() > 0
    assert (touches["event"] == "unsubscribe").any() and (touches["event"] == "email_bounce").any()
    unsub = touches.loc[touches["event"] == "unsubscribe", ["system", "lead_id"]].drop_duplicates()
    flagged = t.set_index(["source_system", "source_id"])["email_opt_out"]
    assert flagged.loc[list(unsub.itertuples(index=False, name=None))].all()


def test_ripeness_drives_touches_and_outcomes(sample):
    t, outcomes = sample["truth"], sample["outcomes"]
    people = t.drop_duplicates("person_id")
    assert people["ripeness"].between(0, 1).all()
    assert people["ripeness"].median() < 0.3 and (people["ripeness"] > 0.6).mean() < 0.08
    assert 0.10 <= len(outcomes) / len(t) <= 0.15
    assert set(outcomes["outcome"]) == {"won", "lost"}
    keyed = t.set_index(["source_system", "source_id"])
    assert keyed.index.is_unique is False  # duplicate CRM ids are planted
    keys = list(outcomes[["source_system", "source_id"]].itertuples(index=False, name=None))
    assert pd.Index(keys).isin(keyed.index).all()
    closed = t[t["outcome"].notna()]
    won = closed["outcome"] == "won"
    assert closed.loc[won, "converted"].all()
    # Buyers mostly close after 5-12 touches.
    assert closed.loc[won, "n_touches"].between(5, 12).mean() > 0.7
    # Ripe people buy more; a fast first response helps.
    hi = closed["ripeness"] > closed["ripeness"].quantile(0.67)
    lo = closed["ripeness"] < closed["ripeness"].quantile(0.33)
    assert won[hi].mean() > won[lo].mean() + 0.15
    assert won[closed["fast_response"]].mean() > won[~closed["fast_response"]].mean() + 0.05
    # Ripe people fill forms and look at pricing; cold ones mostly open mail.
    ripe = t[["source_system", "source_id", "ripeness"]].drop_duplicates(["source_system", "source_id"])
    per = sample["touches"].merge(ripe, left_on=["system", "lead_id"], right_on=["source_system", "source_id"])
    hot_share = per.loc[per["ripeness"] > 0.5, "event"].isin(["pricing_page_view", "demo_request"]).mean()
    cold_share = per.loc[per["ripeness"] < 0.15, "event"].isin(["pricing_page_view", "demo_request"]).mean()
    assert hot_share > 2 * cold_share


# ---------------------------------------------------------------- sources.yaml
def test_sources_yaml_loads_and_every_mapped_column_exists(sample):
    configs = {c.name: c for c in load_sources(sample["dir"] / "sources.yaml")}
    assert set(configs) == {"crm", "marketing", "events", "engagement", "owners", "outcomes"}
    assert configs["crm"].kind == "sql" and configs["crm"].table == "Lead"
    assert configs["crm"].url == f"sqlite:///{sample['dir'].resolve()}/crm.db"
    assert configs["events"].encoding == "latin-1"
    assert configs["events"].constants == {"source_system": "event_list", "lead_source": "event", "status": "new",
                                           "stage": "inquiry"}
    assert configs["engagement"].entity == "touches" and configs["owners"].entity == "owners"
    assert configs["outcomes"].entity == "outcomes"
    frames = {"crm": sample["crm"], "marketing": sample["marketing"], "events": sample["events"],
              "engagement": sample["touches"], "owners": sample["owners"], "outcomes": sample["outcomes"]}
    for name, cfg in configs.items():
        frame = frames[name]
        missing = [v for v in cfg.columns.values() if v not in frame.columns]
        assert not missing, (name, missing)
        if cfg.watermark:
            assert cfg.watermark in frame.columns
        covered = set(cfg.columns) | set(cfg.constants)
        if cfg.entity == "leads":
            assert {"source_system", "source_id", "first_name", "last_name", "email", "created_at"} <= covered
        else:
            assert covered == {c.name for c in cfg.contract.columns if c.required}, name
    assert set(configs["crm"].columns) | set(configs["crm"].constants) == {c.name for c in C.LEADS.columns if c.required}
    marketing = configs["marketing"]
    required = {c.name for c in C.LEADS.columns if c.required}
    assert required - set(marketing.columns) - set(marketing.constants) == {"do_not_call"}


def test_value_maps_cover_every_vendor_value_and_hit_the_contract_enums(sample):
    configs = {c.name: c for c in load_sources(sample["dir"] / "sources.yaml")}
    enums = {"status": C.LEAD_STATUSES, "stage": C.LEAD_STAGES, "lead_source": C.LEAD_SOURCES,
             "touch_type": C.TOUCH_TYPES, "channel": C.CHANNELS}
    frames = {"crm": sample["crm"], "marketing": sample["marketing"], "engagement": sample["touches"]}
    for name, frame in frames.items():
        cfg = configs[name]
        for column, mapping in cfg.values.items():
            assert set(mapping.values()) <= set(enums[column]), (name, column)
            present = set(frame[cfg.columns[column]].dropna().astype(str))
            unmapped = present - set(mapping)
            if column == "status":
                allowed = set(sample["truth"].loc[sample["truth"]["planted_invalid"] == "unknown_status", "source_id"])
                rows = frame[frame[cfg.columns[column]].isin(unmapped)]
                assert set(rows.iloc[:, 0].astype(str)) <= allowed, (name, unmapped)
            else:
                assert not unmapped, (name, column, unmapped)
    # Truth's contract values are the mapped vendor values.
    tc = _truth_of(sample, "salesforce")
    mapped = sample["crm"]["Stage__c"].map(configs["crm"].values["stage"])
    assert (mapped.to_numpy() == tc["stage"].to_numpy()).all()


def test_truth_columns(sample):
    t = sample["truth"]
    for col in ("source_system", "source_id", "person_id", "is_duplicate", "planted_invalid", "planted_orphaned",
                "planted_stale", "ripeness", "converted", "duplicate_for_credit"):
        assert col in t.columns
    assert t["is_duplicate"].dtype == bool and t["planted_stale"].dtype == bool
    assert np.isin(t["status"].dropna(), C.LEAD_STATUSES).all()


def test_duplicate_for_credit_truth_is_exactly_the_flag_definition(sample):
    """Planted credit grabs, and no look-alikes: a rep-created lead with an owner, created after a
    non-rep-created lead of the same person owned by someone else (or no one), is a credit grab."""
    t = sample["truth"]
    rep = t[(t["lead_source"] == "rep_created") & t["owner_id"].notna()]
    mkt = t[t["lead_source"].notna() & (t["lead_source"] != "rep_created")]
    pairs = rep[["row_key", "person_id", "owner_id", "created_at"]].merge(
        mkt[["person_id", "owner_id", "created_at"]], on="person_id", suffixes=("", "_m"))
    hit = pairs[(pairs["created_at_m"] < pairs["created_at"])
                & (pairs["owner_id_m"].fillna("") != pairs["owner_id"])]
    by_definition = set(hit["row_key"])
    planted = set(t.loc[t["duplicate_for_credit"], "row_key"])
    assert planted == by_definition
    assert len(planted) >= 20


# ---------------------------------------------------------------- the next night
def _in_next_interval(values: pd.Series, night: dict) -> pd.Series:
    stamps = values if isinstance(values.dtype, pd.DatetimeTZDtype) else _parse(values)
    return (stamps > night["now"] - pd.Timedelta(days=1)) & (stamps <= night["now"])


def _differs(a: pd.Series, b: pd.Series) -> pd.Series:
    return ~((a == b).fillna(False) | (a.isna() & b.isna()))


def _lead_diff(before: pd.DataFrame, after: pd.DataFrame, modified: str, activity: str):
    """Rows of `before` as they are in `after` (same positions): which changed, and in what."""
    now = after.iloc[:len(before)].reset_index(drop=True)
    content = [c for c in before.columns if c not in (modified, activity)]
    differs = pd.DataFrame({c: _differs(before[c], now[c]) for c in content})
    return now, differs, _differs(before[modified], now[modified])


def test_next_night_changes_about_the_asked_fraction_inside_the_next_interval(first_night, second_night):
    last = second_night["manifest"]["last_night"]
    assert second_night["now"] == first_night["now"] + pd.Timedelta(days=1)
    assert second_night["manifest"]["night"] == 2
    for name, modified, activity in (("crm", "LastModifiedDate", "LastActivityDate"),
                                     ("marketing", "lastmodifieddate", "notes_last_updated")):
        before, after = first_night[name], second_night[name]
        now, differs, restamped = _lead_diff(before, after, modified, activity)
        # About 1% of the rows changed, and every changed row is stamped inside the next interval.
        assert restamped.sum() == last["changed"][name]
        assert 0.008 * len(before) <= restamped.sum() <= 0.012 * len(before)
        assert _in_next_interval(now.loc[restamped, modified], second_night).all()
        # A restamped row changed for real; rows not restamped kept every value (the CRM's activity date
        # may follow a new touch without counting as a change of the lead).
        assert differs[restamped].any(axis=1).all()
        assert not differs[~restamped].any(axis=None)
        moved = _differs(before[activity], now[activity])
        assert moved.sum() > restamped.sum() and _in_next_interval(now.loc[moved, activity], second_night).all()
    # Every kind of change happens.
    assert all(n > 0 for kind, n in last["changed_by_kind"].items() if kind != "company_fix"), last
    crm_before, crm_after = first_night["crm"], second_night["crm"].iloc[:len(first_night["crm"])]
    progressed = (crm_before["Status"] != crm_after["Status"]) | (crm_before["Stage__c"] != crm_after["Stage__c"])
    assert progressed.sum() > 0


def test_next_night_adds_new_leads_some_of_known_people_in_the_next_interval(first_night, second_night):
    last = second_night["manifest"]["last_night"]
    total_new = sum(last["new"].values())
    assert total_new == len(second_night["truth"]) - len(first_night["truth"])
    assert abs(total_new - 0.003 * len(first_night["truth"])) <= 1
    for name, id_col, created in (("crm", "Id", "CreatedDate"), ("marketing", "hs_object_id", "createdate"),
                                  ("events", "Badge ID", "Scanned At")):
        added = second_night[name].iloc[len(first_night[name]):]
        assert len(added) == last["new"][name]
        assert not added[id_col].isin(first_night[name][id_col]).any()
        assert _in_next_interval(added[created], second_night).all()
    t1, t2 = first_night["truth"], second_night["truth"]
    old = t2.set_index(["source_system", "source_id"]).index.isin(t1.set_index(["source_system", "source_id"]).index)
    new = t2[~old]
    assert len(new) == total_new and new["planted_invalid"].isna().all()
    known = new["person_id"].isin(t1["person_id"])
    assert (known == new["is_duplicate"]).all()
    assert known.sum() == last["new_duplicates"] and 0.15 < known.mean() < 0.35
    assert not new.loc[~known, "true_email"].isin(t1["true_email"]).any()


def test_next_night_touches_and_outcomes_are_appended_in_the_next_interval(first_night, second_night):
    last = second_night["manifest"]["last_night"]
    before, after = first_night["touches"], second_night["touches"]
    pd.testing.assert_frame_equal(after.iloc[:len(before)], before)
    added = after.iloc[len(before):]
    assert len(added) == last["new_touches"]
    assert 0.02 * len(first_night["truth"]) < added[["system", "lead_id"]].drop_duplicates().shape[0]
    assert _in_next_interval(added["ts"], second_night).all() and added["ts"].is_monotonic_increasing
    leads = second_night["truth"].set_index(["source_system", "source_id"]).index
    assert pd.Index(list(added[["system", "lead_id"]].itertuples(index=False, name=None))).isin(leads).all()
    o1, o2 = first_night["outcomes"], second_night["outcomes"]
    pd.testing.assert_frame_equal(o2.iloc[:len(o1)], o1)
    new = o2.iloc[len(o1):]
    assert len(new) == last["new_outcomes"] >= 1
    assert _in_next_interval(new["closed_at"], second_night).all()
    # The deal's lead shows it closed, and the truth knows.
    t = second_night["truth"].set_index(["source_system", "source_id"])
    for row in new.itertuples():
        truth = t.loc[(row.source_system, row.source_id)]
        assert truth["outcome"] == row.outcome
        assert truth["stage"] == ("customer" if row.outcome == "won" else "opportunity")
    pd.testing.assert_frame_equal(second_night["owners"], first_night["owners"])


def test_next_night_is_deterministic_for_a_seed_and_chains(first_night, tmp_path):
    a = next_night(first_night["dir"], out=tmp_path / "a", seed=5)
    b = next_night(first_night["dir"], out=tmp_path / "b", seed=5)
    assert a["last_night"] == b["last_night"]
    ca, cb = _content(tmp_path / "a"), _content(tmp_path / "b")
    for key in ca:
        assert (ca[key] == cb[key]) if not hasattr(ca[key], "equals") else ca[key].equals(cb[key]), key
    next_night(first_night["dir"], out=tmp_path / "c", seed=6)
    assert _content(tmp_path / "c")["crm.db"] != ca["crm.db"]
    # A third night follows the second, in place.
    third = next_night(tmp_path / "a")
    assert third["night"] == 3 and pd.Timestamp(third["now"]) == first_night["now"] + pd.Timedelta(days=2)
    assert third["counts"]["leads"] > a["counts"]["leads"]


def test_next_night_from_the_command_line(first_night, tmp_path):
    from slowburn.cli import main
    assert main(["sample", "--next-night", str(first_night["dir"]), "--out", str(tmp_path / "n2"),
                 "--changed", "0.03", "--new", "0"]) == 0
    m = json.loads((tmp_path / "n2" / "manifest.json").read_text())
    assert m["night"] == 2 and m["files"]["crm"] == str((tmp_path / "n2" / "crm.db").resolve())
    changed = sum(m["last_night"]["changed"].values())
    assert abs(changed - 0.03 * (m["counts"]["crm"] + m["counts"]["marketing"])) <= 2
    assert sum(m["last_night"]["new"].values()) == 0
    assert json.loads((first_night["dir"] / "manifest.json").read_text()).get("night") is None  # left as it was


def test_two_nights_through_the_pipeline_land_only_what_changed(tmp_path):
    """Night 2 on the same warehouse pulls the changed and new rows, all valid, and both ledgers balance."""
    from slowburn.pipeline import RunContext, run_all
    folder = tmp_path / "sample"
    first = generate(folder, 500, seed=4, now=NOW)
    home = tmp_path / "home"
    night1 = RunContext(logical_date=NOW_TS_UTC, sources_path=first["files"]["sources"], home=home)
    run_all(night1)
    before = {n: pd.read_parquet(folder / f) for n, f in (("marketing", "marketing_leads.parquet"),
                                                         ("truth", "truth.parquet"))}
    with sqlite3.connect(folder / "crm.db") as con:
        before["crm"] = pd.read_sql('SELECT * FROM "Lead"', con)
    second = next_night(folder)
    night2 = RunContext(logical_date=NOW_TS_UTC + pd.Timedelta(days=1), sources_path=second["files"]["sources"],
                        home=home)
    run_all(night2)
    wh = night2.warehouse()
    ledger = wh.read_table("run_ledger").set_index("run_id")
    assert ledger["invariant_ok"].astype(bool).all() and len(ledger) == 2
    # What night 2 should land: changed and new lead rows (plus the event rows whose scan time cannot be
    # read, which a watermark cannot leave behind and validation quarantines again).
    truth = pd.read_parquet(folder / "truth.parquet")
    key = truth["source_system"] + ":" + truth["source_id"]
    old_key = before["truth"]["source_system"] + ":" + before["truth"]["source_id"]
    with sqlite3.connect(folder / "crm.db") as con:
        crm = pd.read_sql('SELECT * FROM "Lead"', con)
    marketing = pd.read_parquet(folder / "marketing_leads.parquet")
    changed = set("salesforce:" + crm.iloc[:len(before["crm"])].loc[
        crm["LastModifiedDate"].iloc[:len(before["crm"])] != before["crm"]["LastModifiedDate"], "Id"])
    changed |= set("hubspot:" + marketing.iloc[:len(before["marketing"])].loc[
        marketing["lastmodifieddate"].iloc[:len(before["marketing"])] != before["marketing"]["lastmodifieddate"],
        "hs_object_id"])
    new = set(key[~key.isin(old_key)])
    unreadable = set(key[(truth["source_system"] == "event_list")
                         & (truth["planted_invalid"] == "unparseable_created_date")])
    assert len(changed) == sum(second["last_night"]["changed"].values()) > 0 and new
    landed = wh.read("SELECT source_system || ':' || source_id AS k FROM landed_leads WHERE run_id = :r",
                     r=night2.run_id)["k"]
    assert set(landed) == changed | new | unreadable and len(landed) == len(set(landed))
    quarantined = set(wh.read("SELECT DISTINCT source_system || ':' || source_id AS k FROM quarantine "
                              "WHERE run_id = :r AND entity = 'leads'", r=night2.run_id)["k"])
    assert quarantined == unreadable, "every changed and new row is contract-valid"
    touches = wh.read("SELECT COUNT(*) AS n FROM touches WHERE run_id = :r", r=night2.run_id)["n"].iloc[0]
    assert touches == second["last_night"]["new_touches"]
    linked = set(wh.read("SELECT source_system || ':' || source_id AS k FROM lead_links")["k"])
    assert (changed | new) <= linked
