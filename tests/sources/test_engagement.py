"""Mailchimp campaign activity and HubSpot email events as touches, against the loopback fakes: incremental,
deduplicated, and all the way through extract_source with no `columns:` mapping."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from fakes.base import Faults
from fakes.hubspot import FakeHubSpot
from fakes.mailchimp import FakeMailchimp, md5
from slowburn.contracts import ContractError
from slowburn.sources import extract_source, parse_sources
from slowburn.sources.engagement import hubspot_email_events, mailchimp_activity
from slowburn.sources.hubspot import HubSpotClient
from slowburn.sources.mailchimp import MailchimpClient

KEY = "0123456789abcdef0123456789abcdef-us6"
TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"


def mailchimp_world(fake):
    fake.add_campaign("c_old", "aud1", "2026-08-01T09:00:00+00:00")
    fake.add_campaign("c1", "aud1", "2026-11-10T09:00:00+00:00")
    fake.add_campaign("c_other", "aud2", "2026-11-10T09:00:00+00:00")
    fake.add_activity("c1", "ann@acme.com", "open", "2026-11-10T10:00:00+00:00")
    fake.add_activity("c1", "ann@acme.com", "click", "2026-11-10T10:01:00+00:00", url="https://acme.com/pricing")
    fake.add_activity("c1", "ann@acme.com", "click", "2026-11-10T10:01:00+00:00", url="https://acme.com/demo")
    fake.add_activity("c1", "bob@acme.com", "bounce", "2026-11-10T09:00:05+00:00", bounce_type="hard")
    fake.add_unsubscribe("c1", "cy@acme.com", "2026-11-11T08:00:00+00:00")
    fake.add_activity("c_old", "ann@acme.com", "open", "2026-08-02T10:00:00+00:00")


def test_mailchimp_activity_becomes_touches_then_only_new_activity_arrives():
    with FakeMailchimp(token=KEY, list_ids=("aud1", "aud2"), faults=Faults(fail_every=4, throttle_every=5)) as fake:
        mailchimp_world(fake)
        mc = MailchimpClient(fake.api_url, KEY, max_requests=10_000, backoff=0.005)
        first = mailchimp_activity(mc, "aud1")
        got = sorted(zip(first["lead_source_id"], first["touch_type"], first["campaign"]))
        assert got == sorted([(md5("ann@acme.com"), "email_open", "c1"), (md5("ann@acme.com"), "email_click", "c1"),
                              (md5("ann@acme.com"), "email_click", "c1"), (md5("bob@acme.com"), "email_bounce", "c1"),
                              (md5("cy@acme.com"), "unsubscribe", "c1"), (md5("ann@acme.com"), "email_open", "c_old")])
        assert first["touch_key"].is_unique and set(first["channel"]) == {"email"}
        # The same pull again lands the same keys: a touch is identified by what happened, not by when we read it.
        assert sorted(mailchimp_activity(mc, "aud1")["touch_key"]) == sorted(first["touch_key"])
        # Later: one new open. Incremental from the watermark, with the overlap bringing back the last ones.
        fake.add_activity("c1", "bob@acme.com", "open", "2026-11-12T12:00:00+00:00")
        since = pd.Timestamp("2026-11-11T08:00:00Z")
        second = mailchimp_activity(mc, "aud1", since=since, overlap_seconds=60)
        assert sorted(second["touch_type"]) == ["email_open", "unsubscribe"]
        asked = [r.args for r in fake.received if "/email-activity" in r.path and r.status == 200]
        assert asked[-1]["since"] == "2026-11-11T07:59:00+00:00"
        campaigns = [r.args for r in fake.received if r.path == "/3.0/campaigns" and r.status == 200]
        assert campaigns[-1]["since_send_time"] == "2026-10-12T07:59:00+00:00"  # 30 days before: c_old is not read
        assert fake.injected["5xx"] and fake.injected["429"]


def test_mailchimp_activity_source_through_extract_source(tmp_path, monkeypatch):
    with FakeMailchimp(token=KEY, list_ids=("aud1", "aud2")) as fake:
        mailchimp_world(fake)
        monkeypatch.setenv("SLOWBURN_CONN_MAILCHIMP_DEFAULT", json.dumps(
            {"host": fake.api_url, "password": KEY, "extra": {"backoff": 0.005}}))
        [cfg] = parse_sources({"sources": [{"name": "mc_activity", "kind": "mailchimp_activity",
                                            "entity": "touches", "list_id": "aud1", "overlap_seconds": 60}]},
                              tmp_path)
        got = extract_source(cfg)
        assert len(got.rows) == 6 and set(got.rows["source_system"]) == {"mailchimp"}
        assert pd.Timestamp(got.high_watermark) == pd.Timestamp("2026-11-11T08:00:00Z")
        assert got.rows["occurred_at"].notna().all() and set(got.rows["actor"]) == {"marketing"}
        fake.add_activity("c1", "cy@acme.com", "open", "2026-11-13T12:00:00+00:00")
        again = extract_source(cfg, got.high_watermark)
        assert list(again.rows["touch_type"]) == ["email_open", "unsubscribe"] or \
            sorted(again.rows["touch_type"]) == ["email_open", "unsubscribe"]
        assert pd.Timestamp(again.high_watermark) == pd.Timestamp("2026-11-13T12:00:00Z")


def test_unknown_actions_and_unreadable_times_are_landed_for_validation_not_dropped():
    with FakeMailchimp(token=KEY) as fake:
        fake.add_campaign("c1", "aud1", "2026-11-10T09:00:00+00:00")
        fake.add_activity("c1", "ann@acme.com", "forward", "2026-11-10T10:00:00+00:00")
        fake.add_activity("c1", "ann@acme.com", "open", "sometime")
        frame = mailchimp_activity(MailchimpClient(fake.api_url, KEY, backoff=0.005), "aud1")
        assert sorted(frame["touch_type"]) == ["email_open", "forward"]
        assert "sometime" in set(frame["occurred_at"])


def test_engagement_sources_are_checked_when_the_file_is_loaded(tmp_path):
    with pytest.raises(ContractError, match="entity: touches"):
        parse_sources({"sources": [{"name": "x", "kind": "mailchimp_activity", "entity": "leads"}]}, tmp_path)
    with pytest.raises(ContractError, match="list_id"):
        parse_sources({"sources": [{"name": "x", "kind": "hubspot_email_events", "entity": "touches",
                                    "list_id": "a"}]}, tmp_path)
    [cfg] = parse_sources({"sources": [{"name": "x", "kind": "hubspot_email_events", "entity": "touches",
                                        "columns": {"campaign": "email"}}]}, tmp_path)
    assert cfg.connection == "hubspot_default" and cfg.watermark == "occurred_at"
    assert cfg.columns["campaign"] == "email" and cfg.columns["lead_source_id"] == "lead_source_id"


def hubspot_world(fake):
    t0 = pd.Timestamp("2026-11-01T00:00:00Z")
    ann = fake.add("contacts", {"email": "ann@acme.com"}, modified=t0)
    bob = fake.add("contacts", {"email": "bob@acme.com"}, modified=t0)
    quiet = fake.add("contacts", {"email": "quiet@acme.com"}, modified=t0)
    opened = "hs_email_last_open_date"
    fake.set_with_history("contacts", ann, opened, "2026-11-05T10:00:00.000Z", "2026-11-05T10:00:03Z")
    fake.set_with_history("contacts", ann, opened, "2026-11-06T11:00:00.000Z", "2026-11-06T11:00:02Z")
    fake.set_with_history("contacts", ann, "hs_email_last_click_date", "2026-11-06T11:01:00.000Z",
                          "2026-11-06T11:01:01Z")
    fake.set_with_history("contacts", bob, "hs_email_bounce", 1, "2026-11-07T09:00:00Z")
    fake.set_with_history("contacts", bob, "hs_email_optout", "false", "2026-11-01T09:00:00Z")
    fake.set_with_history("contacts", bob, "hs_email_optout", "true", "2026-11-08T09:00:00Z")
    return ann, bob, quiet


def test_hubspot_email_events_from_contact_property_history_then_incrementally():
    with FakeHubSpot(token=TOKEN, faults=Faults(fail_every=5)) as fake:
        ann, bob, quiet = hubspot_world(fake)
        hs = HubSpotClient(fake.url, TOKEN, max_requests=10_000, per_seconds=1, search_per_second=10_000,
                           backoff=0.005)
        first = hubspot_email_events(hs)
        got = sorted(zip(first["lead_source_id"], first["touch_type"], first["occurred_at"]))
        assert got == sorted([(ann, "email_open", "2026-11-05T10:00:00.000Z"),
                              (ann, "email_open", "2026-11-06T11:00:00.000Z"),
                              (ann, "email_click", "2026-11-06T11:01:00.000Z"),
                              (bob, "email_bounce", "2026-11-07T09:00:00.000Z"),
                              (bob, "unsubscribe", "2026-11-08T09:00:00.000Z")])
        reads = [r.json for r in fake.received if r.path.endswith("/batch/read") and r.status in (200, 207)]
        assert reads and all(sorted(r["propertiesWithHistory"]) == ["hs_email_bounce", "hs_email_last_click_date",
                                                                     "hs_email_last_open_date", "hs_email_optout"]
                             for r in reads)
        # A new click for ann; bob unchanged. Only contacts modified since the watermark are read again.
        fake.set_with_history("contacts", ann, "hs_email_last_click_date", "2026-11-09T15:00:00.000Z",
                              "2026-11-09T15:00:01Z")
        second = hubspot_email_events(hs, since=pd.Timestamp("2026-11-08T09:00:00Z"), overlap_seconds=300)
        new = second[~second["touch_key"].isin(first["touch_key"])]
        assert list(zip(new["lead_source_id"], new["touch_type"])) == [(ann, "email_click")]
        # bob's unsubscribe sits inside the overlap: read again, with the same key, so it lands once.
        assert list(second.loc[second["lead_source_id"] == bob, "touch_type"]) == ["unsubscribe"]
        last_read = [r.json for r in fake.received if r.path.endswith("/batch/read") and r.status == 200][-1]
        assert sorted(i["id"] for i in last_read["inputs"]) == sorted([ann, bob])  # not quiet: unchanged since


def test_hubspot_email_events_source_through_extract_source(tmp_path, monkeypatch):
    with FakeHubSpot(token=TOKEN) as fake:
        hubspot_world(fake)
        monkeypatch.setenv("SLOWBURN_CONN_HUBSPOT_DEFAULT", json.dumps({"host": fake.url, "password": TOKEN, "extra": {
            "backoff": 0.005, "max_requests": 1000, "per_seconds": 1, "search_per_second": 1000}}))
        [cfg] = parse_sources({"sources": [{"name": "hs_email", "kind": "hubspot_email_events",
                                            "entity": "touches"}]}, tmp_path)
        got = extract_source(cfg)
        assert len(got.rows) == 5 and set(got.rows["source_system"]) == {"hubspot"}
        assert pd.Timestamp(got.high_watermark) == pd.Timestamp("2026-11-08T09:00:00Z")
        again = extract_source(cfg, got.high_watermark)
        # Nothing new: the overlap brings back only the last event, the same touch as before.
        assert list(again.rows["touch_type"]) == ["unsubscribe"]
        assert pd.Timestamp(again.high_watermark) == pd.Timestamp(got.high_watermark)


def test_engagement_touches_reach_the_golden_leads_through_the_nightly_run(tmp_path, monkeypatch):
    """Mailchimp members and HubSpot contacts as leads, their email engagement as touches: validated, linked."""
    from conftest import OWNERS_CSV
    from slowburn.pipeline import RunContext, run_all

    with FakeHubSpot(token=TOKEN) as hs, FakeMailchimp(token=KEY, list_ids=("aud1", "aud2")) as mc:
        ann, bob, _ = hubspot_world(hs)
        mailchimp_world(mc)
        for email in ("ann@acme.com", "bob@acme.com", "cy@acme.com"):
            mc.add_member("aud1", email, FNAME=email.split("@")[0].title())
        monkeypatch.setenv("SLOWBURN_CONN_HS", json.dumps({"host": hs.url, "password": TOKEN, "extra": {
            "backoff": 0.005, "max_requests": 1000, "per_seconds": 1, "search_per_second": 1000}}))
        monkeypatch.setenv("SLOWBURN_CONN_MC", json.dumps({"host": mc.api_url, "password": KEY,
                                                           "extra": {"backoff": 0.005}}))
        src = tmp_path / "src"
        src.mkdir()
        (src / "owners.csv").write_text(OWNERS_CSV, encoding="utf-8")
        (src / "sources.yaml").write_text(json.dumps({"sources": [
            {"name": "hubspot", "kind": "hubspot", "entity": "leads", "connection": "hs",
             "constants": {"source_system": "hubspot", "status": "new", "country": "US"},
             "columns": {"source_id": "id", "email": "email", "created_at": "createdAt",
                         "updated_at": "lastmodifieddate"}},
            {"name": "mailchimp", "kind": "mailchimp", "entity": "leads", "connection": "mc", "list_id": "aud1",
             "constants": {"source_system": "mailchimp", "status": "new", "country": "US"},
             "columns": {"source_id": "id", "email": "email_address", "first_name": "first_name",
                         "created_at": "last_changed", "updated_at": "last_changed", "email_opt_out": "opted_out"}},
            {"name": "hs_email", "kind": "hubspot_email_events", "entity": "touches", "connection": "hs"},
            {"name": "mc_activity", "kind": "mailchimp_activity", "entity": "touches", "connection": "mc",
             "list_id": "aud1"},
            {"name": "owners", "kind": "file", "entity": "owners", "path": "owners.csv",
             "columns": {c: c for c in ("owner_id", "name", "email", "active", "deactivated_at", "team",
                                        "territory", "daily_capacity")}}]}), encoding="utf-8")
        ctx = RunContext(logical_date=pd.Timestamp("2026-11-23T00:00:00Z"), sources_path=src / "sources.yaml",
                         home=tmp_path / "home")
        run_all(ctx)
        wh = ctx.warehouse()
        ledger = wh.read_table("run_ledger").iloc[0]
        assert ledger.landed_touches == 11 and ledger.quarantined_touches == 0 and bool(ledger.invariant_ok)
        touches = wh.read_table("touches")
        golden = wh.read_table("golden_leads").set_index("golden_id")["email"]
        linked = touches.assign(email=touches["golden_id"].map(golden))
        # Every touch found its lead: HubSpot's by contact id, Mailchimp's by member id, both onto one golden lead.
        assert linked["email"].notna().all()
        assert sorted(linked.loc[linked["email"] == "ann@acme.com", "touch_type"]) == [
            "email_click", "email_click", "email_click", "email_open", "email_open", "email_open", "email_open"]
        assert sorted(linked.loc[linked["email"] == "bob@acme.com", "touch_type"]) == [
            "email_bounce", "email_bounce", "unsubscribe"]
        watermarks = wh.read_table("source_watermarks").set_index("source_name")["high_watermark"]
        assert pd.Timestamp(watermarks["mc_activity"]) == pd.Timestamp("2026-11-11T08:00:00Z")
