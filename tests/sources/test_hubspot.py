"""HubSpot client and `kind: hubspot` sources against the loopback HubSpot server (tests/fakes/hubspot.py)."""
from __future__ import annotations

import json
import logging
import time

import pandas as pd
import pytest

from fakes.base import Faults
from fakes.hubspot import FakeHubSpot
from slowburn.sources import extract_source, parse_sources
from slowburn.sources.http import ConnectorError, RateLimiter
from slowburn.sources.hubspot import HubSpotClient

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
T0 = pd.Timestamp("2026-11-01T00:00:00Z")


def client(fake, **kw) -> HubSpotClient:
    opts = {"max_requests": 10_000, "per_seconds": 1, "search_per_second": 10_000, "backoff": 0.005}
    opts.update(kw)
    return HubSpotClient(fake.url, TOKEN, **opts)


def seed(fake, n, *, step_seconds=1.0, same_instant=0):
    for i in range(n):
        stamp = T0 + pd.Timedelta(seconds=(i if i >= same_instant else 0) * step_seconds)
        fake.add("contacts", {"email": f"p{i}@acme.com", "firstname": f"F{i}", "lastname": "L",
                              "hs_email_optout": "false"}, modified=stamp)


def test_full_pull_pages_by_100_and_every_record_arrives_once_despite_5xx_and_429():
    with FakeHubSpot(token=TOKEN, faults=Faults(fail_every=4, throttle_every=6, throttle_burst=2)) as fake:
        seed(fake, 550)
        hs = client(fake)
        frame = hs.read_frame("contacts", ["email", "firstname"])
        assert len(frame) == 550 and frame["id"].is_unique
        assert set(frame["email"]) == {f"p{i}@acme.com" for i in range(550)}
        lists = [r for r in fake.received if r.method == "GET"]
        assert all(int(r.args["limit"]) <= 100 for r in lists)
        assert fake.injected["5xx"] > 0 and fake.injected["429"] > 0
        assert hs.session.stats.retries >= fake.injected["5xx"] + fake.injected["429"]


def test_incremental_search_windows_past_the_result_cap_with_overlap_and_dedupe():
    with FakeHubSpot(token=TOKEN, page_cap=300, faults=Faults(fail_every=7)) as fake:
        seed(fake, 1000, step_seconds=0.5)
        hs = client(fake, search_cap=300, search_limit=100)
        since = T0 + pd.Timedelta(seconds=100)
        frame = hs.read_frame("contacts", ["email"], since=since, overlap_seconds=10)
        expected = {f"p{i}@acme.com" for i in range(1000) if T0 + pd.Timedelta(seconds=i * 0.5) >= since
                    - pd.Timedelta(seconds=10)}
        assert set(frame["email"]) == expected and frame["id"].is_unique
        searches = [r for r in fake.received if r.path.endswith("/search") and r.status == 200]
        from fakes.hubspot import _offset
        assert all(r.json["limit"] <= 100 and _offset(r.json.get("after")) < 300 for r in searches)
        cursors = [r.json["after"] for r in searches if "after" in r.json]
        assert cursors and not any(c.isdigit() for c in cursors)  # opaque cursors went back as given
        windows = {json.dumps(r.json["filterGroups"]) for r in searches}
        assert len(windows) >= 3  # the time range was windowed


def test_a_window_of_records_sharing_one_timestamp_is_walked_by_object_id():
    with FakeHubSpot(token=TOKEN, page_cap=200) as fake:
        seed(fake, 450, same_instant=450)  # a bulk import: every record has the same lastmodifieddate
        hs = client(fake, search_cap=200, search_limit=100)
        frame = hs.read_frame("contacts", ["email"], since=T0, overlap_seconds=0)
        assert len(frame) == 450 and frame["id"].is_unique


def test_kind_hubspot_source_extracts_incrementally_through_extract_source(tmp_path, monkeypatch):
    with FakeHubSpot(token=TOKEN) as fake:
        seed(fake, 120)
        monkeypatch.setenv("SLOWBURN_CONN_HUBSPOT_TEST", json.dumps(
            {"host": fake.url, "password": TOKEN, "extra": {"backoff": 0.005, "max_requests": 1000, "per_seconds": 1,
                                                             "search_per_second": 1000}}))
        [cfg] = parse_sources({"sources": [{
            "name": "hs", "kind": "hubspot", "entity": "leads", "connection": "hubspot_test", "overlap_seconds": 5,
            "constants": {"source_system": "hubspot"},
            "columns": {"source_id": "id", "email": "email", "first_name": "firstname", "last_name": "lastname",
                        "updated_at": "lastmodifieddate", "email_opt_out": "hs_email_optout"}}]}, tmp_path)
        assert cfg.watermark == "lastmodifieddate" and cfg.object == "contacts"
        first = extract_source(cfg)
        assert len(first.rows) == 120 and first.rows["source_system"].eq("hubspot").all()
        assert pd.Timestamp(first.high_watermark) == T0 + pd.Timedelta(seconds=119)
        # Two records change; the next pull brings them plus the overlap, once each.
        fake.touch("contacts", first.rows["source_id"].iloc[3], T0 + pd.Timedelta(seconds=500))
        fake.touch("contacts", first.rows["source_id"].iloc[7], T0 + pd.Timedelta(seconds=501))
        second = extract_source(cfg, first.high_watermark)
        ids = set(second.rows["source_id"])
        assert {first.rows["source_id"].iloc[3], first.rows["source_id"].iloc[7]} <= ids
        assert second.rows["source_id"].is_unique and len(second.rows) <= 2 + 6
        assert pd.Timestamp(second.high_watermark) == T0 + pd.Timedelta(seconds=501)


def test_engagements_come_with_their_contacts_as_touches(tmp_path, monkeypatch):
    with FakeHubSpot(token=TOKEN) as fake:
        c1 = fake.add("contacts", {"email": "a@x.com"})
        c2 = fake.add("contacts", {"email": "b@x.com"})
        fake.add("meetings", {"hs_timestamp": "2026-11-20T10:00:00Z", "hubspot_owner_id": "77"}, contacts=[c1, c2])
        fake.add("meetings", {"hs_timestamp": "2026-11-21T10:00:00Z", "hubspot_owner_id": "78"}, contacts=[c2])
        monkeypatch.setenv("SLOWBURN_CONN_HUBSPOT_DEFAULT", json.dumps({"host": fake.url, "password": TOKEN}))
        [cfg] = parse_sources({"sources": [{
            "name": "hs_meetings", "kind": "hubspot", "entity": "touches", "object": "meetings",
            "constants": {"source_system": "hubspot", "touch_type": "meeting", "channel": "in_person"},
            "columns": {"lead_source_id": "contact_id", "occurred_at": "hs_timestamp",
                        "actor": "hubspot_owner_id"}}]}, tmp_path)
        rows = extract_source(cfg).rows
        assert sorted(zip(rows["lead_source_id"], rows["actor"])) == sorted([(c1, "77"), (c2, "77"), (c2, "78")])
        assert rows["touch_type"].eq("meeting").all()


def test_batch_update_sends_at_most_100_and_names_the_bad_record_and_field():
    with FakeHubSpot(token=TOKEN, faults=Faults(fail_every=5)) as fake:
        seed(fake, 230)
        ids = sorted(fake.objects["contacts"], key=int)
        hs = client(fake)
        inputs = [{"id": i, "properties": {"slowburn_score": "50"}} for i in ids]
        inputs[150]["properties"]["slowburn_score"] = "very hot"
        inputs.append({"id": "999999", "properties": {"slowburn_score": "1"}})
        out = hs.batch_update("contacts", inputs)
        assert len(out.ok) == 229
        assert set(out.errors) == {ids[150], "999999"}
        assert "slowburn_score" in out.errors[ids[150]] and ids[150] in out.errors[ids[150]]
        assert "OBJECT_NOT_FOUND" in out.errors["999999"]
        batches = [r for r in fake.received if r.path.endswith("/batch/update")]
        assert all(len(r.json["inputs"]) <= 100 for r in batches)
        assert {w[2] for w in fake.writes} == set(ids) - {ids[150]}


def test_batch_upsert_by_unique_property_never_doubles_on_lost_answers():
    with FakeHubSpot(token=TOKEN, faults=Faults(fail_after_apply_every=2)) as fake:
        hs = client(fake)
        inputs = [{"id": f"key-{i}", "idProperty": "slowburn_key", "properties": {"hs_task_subject": "call"}}
                  for i in range(250)]
        out = hs.batch_upsert("tasks", inputs)
        assert len(out.ok) == 250 and fake.injected["lost"] > 0
        keys = [t["properties"]["slowburn_key"] for t in fake.objects["tasks"].values()]
        assert len(keys) == len(set(keys)) == 250


def test_4xx_is_not_retried_and_the_error_is_hubspots_message():
    with FakeHubSpot(token=TOKEN) as fake:
        hs = HubSpotClient(fake.url, "wrong-token", backoff=0.005)
        with pytest.raises(ConnectorError) as err:
            hs.read_frame("contacts", ["email"])
        assert "401" in str(err.value) and "INVALID_AUTHENTICATION" in str(err.value)
        assert len(fake.received) == 1


def test_retry_after_is_honoured():
    with FakeHubSpot(token=TOKEN, faults=Faults(throttle_every=1, throttle_burst=1, retry_after="0.3")) as fake:
        seed(fake, 5)
        fake.faults.throttle_every = 2  # requests 2, 4, ... answer 429 with Retry-After: 0.3
        hs = client(fake)
        started = time.perf_counter()
        frame = hs.read_frame("contacts", ["email"])
        assert len(frame) == 5
        assert time.perf_counter() - started >= 0.3 * fake.injected["429"] * 0.9


def test_the_rate_limiter_keeps_the_pull_under_the_rolling_window():
    # The server allows 20 requests per rolling second; the client is configured to match.
    with FakeHubSpot(token=TOKEN, faults=Faults(window=(20, 1.0))) as fake:
        seed(fake, 2500)
        hs = client(fake, max_requests=20, per_seconds=1.0)
        started = time.perf_counter()
        frame = hs.read_frame("contacts", ["email"])
        elapsed = time.perf_counter() - started
        assert len(frame) == 2500
        assert fake.injected["429"] == 0
        assert elapsed >= (25 - 20) / 20 * 0.9  # 25 requests at <= 20/s


def test_rate_limiter_math():
    clock = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        clock[0] += s

    lim = RateLimiter(100, 10, clock=lambda: clock[0], sleep=sleep)
    for _ in range(200):
        lim.acquire()
    # 10 burst + 9/s: 200 requests take about (200 - 10) / 9 seconds, never more than 100 in any 10 s.
    assert clock[0] == pytest.approx(190 / 9, rel=0.01)


def test_the_token_never_reaches_logs_or_errors(caplog):
    caplog.set_level(logging.DEBUG)
    with FakeHubSpot(token=TOKEN, faults=Faults(fail_every=2)) as fake:
        seed(fake, 3)
        hs = client(fake)
        hs.read_frame("contacts", ["email"])
        bad = HubSpotClient(fake.url + "/nowhere", TOKEN, backoff=0.001, max_retries=1)
        with pytest.raises(ConnectorError) as err:
            bad.batch_update("contacts", [{"id": "1", "properties": {"email": f"leak {TOKEN}"}}])
    assert TOKEN not in caplog.text
    assert TOKEN not in str(err.value)
    assert "Authorization" not in caplog.text or "Bearer ***" in caplog.text
    assert TOKEN not in repr(hs) and TOKEN not in repr(hs.session)


# ---------------------------------------------------------------------------------------------- OAuth
APP_ID, APP_SECRET = "7a1b2c3d-app-client-id", "c0ffee00-app-client-secret"
REFRESH = "na1-refresh-0000-1111-2222-333333333333"


def test_oauth_fetches_a_token_and_refreshes_it_once_on_401(caplog):
    from slowburn.sources.hubspot import HubSpotAuth

    caplog.set_level(logging.DEBUG)
    with FakeHubSpot(token="never-issued", apps={APP_ID: {"secret": APP_SECRET, "refresh_token": REFRESH}}) as fake:
        seed(fake, 250)
        auth = HubSpotAuth(client_id=APP_ID, client_secret=APP_SECRET, refresh_token=REFRESH)
        hs = HubSpotClient(fake.url, auth=auth, max_requests=10_000, per_seconds=1, search_per_second=10_000,
                           backoff=0.005)
        assert len(hs.read_frame("contacts", ["email"])) == 250 and fake.refreshes == 1
        fake.expire_sessions()  # the 30-minute access token ran out mid-run
        out = hs.batch_update("contacts", [{"id": str(i), "properties": {"slowburn_tier": "warm"}}
                                           for i in range(1001, 1251)])
        assert len(out.ok) == 250 and fake.refreshes == 2
        assert len([r for r in fake.received if r.status == 401]) == 1
        issued = list(fake.sessions)
    for secret in (APP_SECRET, REFRESH, *issued):
        assert secret not in caplog.text


def test_a_bad_refresh_token_or_a_revoked_private_app_token_fails_clearly():
    from slowburn.sources.hubspot import HubSpotAuth

    with FakeHubSpot(token=TOKEN, apps={APP_ID: {"secret": APP_SECRET, "refresh_token": REFRESH}}) as fake:
        seed(fake, 3)
        hs = HubSpotClient(fake.url, auth=HubSpotAuth(client_id=APP_ID, client_secret=APP_SECRET,
                                                      refresh_token="revoked-refresh-token-xyz"), backoff=0.005)
        with pytest.raises(ConnectorError) as err:
            hs.read_frame("contacts", ["email"])
        assert "BAD_REFRESH_TOKEN" in str(err.value) and "revoked-refresh-token-xyz" not in str(err.value)
        static = client(fake)
        fake.expire_sessions()
        with pytest.raises(ConnectorError) as err:
            static.read_frame("contacts", ["email"])
        assert "401" in str(err.value) and TOKEN not in str(err.value)
    with pytest.raises(ConnectorError, match="client_id, client_secret and refresh_token"):
        HubSpotAuth(client_id=APP_ID, refresh_token=REFRESH)


def test_oauth_connection_from_the_environment(monkeypatch):
    with FakeHubSpot(apps={APP_ID: {"secret": APP_SECRET, "refresh_token": REFRESH}}) as fake:
        seed(fake, 4)
        monkeypatch.setenv("SLOWBURN_CONN_HS_OAUTH", json.dumps({"host": fake.url, "extra": {
            "client_id": APP_ID, "client_secret": APP_SECRET, "refresh_token": REFRESH, "backoff": 0.005}}))
        hs = HubSpotClient.from_connection("hs_oauth")
        assert len(hs.read_frame("contacts", ["email"])) == 4 and fake.refreshes == 1
        assert APP_SECRET not in repr(hs.auth) and REFRESH not in repr(hs.auth)
