"""Salesforce client (over simple-salesforce) and `kind: salesforce` sources against tests/fakes/salesforce.py."""
from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from fakes.base import Faults
from fakes.salesforce import FakeSalesforce
from slowburn.sources import extract_source, parse_sources
from slowburn.sources.http import ConnectorError
from slowburn.sources.salesforce import SalesforceClient

TOKEN = "00D000000000001!AQ0AQFakeSessionIdForTests1234567890abcdef"
T0 = pd.Timestamp("2026-11-01T00:00:00Z")


def client(fake, **kw) -> SalesforceClient:
    opts = {"max_requests": 10_000, "backoff": 0.005, "bulk_poll": 0.01}
    opts.update(kw)
    return SalesforceClient(fake.url, TOKEN, **opts)


def seed_leads(fake, n):
    return [fake.add("Lead", {"FirstName": f"F{i}", "LastName": f"L{i}", "Email": f"p{i}@acme.com",
                              "Company": "Acme", "Status": "Open - Not Contacted", "HasOptedOutOfEmail": False,
                              "LastModifiedDate": (T0 + pd.Timedelta(minutes=i)).isoformat()},
                     modstamp=T0 + pd.Timedelta(minutes=i)) for i in range(n)]


def test_soql_follows_next_records_url_and_every_lead_arrives_once_across_faults():
    with FakeSalesforce(token=TOKEN, page_size=100, faults=Faults(fail_every=3, throttle_every=5)) as fake:
        ids = seed_leads(fake, 730)
        sf = client(fake)
        frame = sf.read_frame("Lead", ["Email", "FirstName"])
        assert sorted(frame["Id"]) == sorted(ids)
        pages = [r for r in fake.received if "/query/01g" in r.path and r.status == 200]
        assert len(pages) == 7  # 730 rows at 100 a page: the first via /query?q=, seven via nextRecordsUrl
        assert fake.injected["5xx"] > 0 and fake.injected["429"] > 0


def test_incremental_on_systemmodstamp_with_overlap(tmp_path, monkeypatch):
    with FakeSalesforce(token=TOKEN, page_size=50) as fake:
        ids = seed_leads(fake, 200)
        monkeypatch.setenv("SLOWBURN_CONN_SALESFORCE_DEFAULT", json.dumps(
            {"host": fake.url, "password": TOKEN, "extra": {"backoff": 0.005}}))
        [cfg] = parse_sources({"sources": [{
            "name": "sf_leads", "kind": "salesforce", "entity": "leads", "object": "Lead", "overlap_seconds": 120,
            "query": "Email != null",
            "constants": {"source_system": "salesforce"},
            "values": {"status": {"Open - Not Contacted": "new"}},
            "columns": {"source_id": "Id", "first_name": "FirstName", "last_name": "LastName", "email": "Email",
                        "company": "Company", "status": "Status", "updated_at": "SystemModstamp",
                        "email_opt_out": "HasOptedOutOfEmail"}}]}, tmp_path)
        first = extract_source(cfg)
        assert len(first.rows) == 200 and first.rows["status"].eq("new").all()
        assert pd.Timestamp(first.high_watermark) == T0 + pd.Timedelta(minutes=199)
        fake.objects["Lead"][ids[5]]["SystemModstamp"] = "2026-11-05T00:00:00.000+0000"
        second = extract_source(cfg, first.high_watermark)
        # the changed lead, plus the last three inside the two-minute overlap, once each
        assert sorted(second.rows["source_id"]) == sorted([ids[5], ids[197], ids[198], ids[199]])
        soql = [r.args["q"] for r in fake.received if r.args.get("q")][-1]
        assert "SystemModstamp >= 2026-11-01T03:17:00Z" in soql and "(Email != null)" in soql


def test_tasks_and_events_read_as_touches(tmp_path, monkeypatch):
    with FakeSalesforce(token=TOKEN) as fake:
        [lead] = seed_leads(fake, 1)
        fake.add("Task", {"WhoId": lead, "Type": "Call", "OwnerId": "005000000000001AAA",
                          "CreatedDate": "2026-11-20T10:00:00.000+0000"})
        fake.add("Task", {"WhoId": lead, "Type": "Email", "OwnerId": "005000000000001AAA",
                          "CreatedDate": "2026-11-21T10:00:00.000+0000"})
        monkeypatch.setenv("SLOWBURN_CONN_SALESFORCE_DEFAULT", json.dumps({"host": fake.url, "password": TOKEN}))
        [cfg] = parse_sources({"sources": [{
            "name": "sf_tasks", "kind": "salesforce", "entity": "touches", "object": "Task",
            "constants": {"source_system": "salesforce", "channel": "phone"},
            "values": {"touch_type": {"Call": "call", "Email": "rep_email"}},
            "columns": {"lead_source_id": "WhoId", "touch_type": "Type", "occurred_at": "CreatedDate",
                        "actor": "OwnerId"}}]}, tmp_path)
        rows = extract_source(cfg).rows
        assert sorted(rows["touch_type"]) == ["call", "rep_email"] and rows["lead_source_id"].eq(lead).all()


def test_a_bad_field_fails_clearly_and_is_not_retried():
    with FakeSalesforce(token=TOKEN) as fake:
        seed_leads(fake, 3)
        sf = client(fake)
        with pytest.raises(ConnectorError) as err:
            sf.read_frame("Lead", ["Emial"])
        assert "INVALID_FIELD" in str(err.value) and "Emial" in str(err.value)
        assert len(fake.received) == 1
        with pytest.raises(ConnectorError):
            sf.read_frame("Lead", ["Email; DROP"])  # not a field name: refused before any request


def test_collections_update_200_at_a_time_and_name_record_and_field():
    with FakeSalesforce(token=TOKEN, faults=Faults(fail_every=4, fail_after_apply_every=3)) as fake:
        ids = seed_leads(fake, 450)
        sf = client(fake)
        records = [{"attributes": {"type": "Lead"}, "Id": i, "Slowburn_Score__c": 70} for i in ids]
        records[10]["Slowburn_Score__c"] = "seventy"
        records[20]["Bogus__c"] = 1
        out = sf.update(records)
        assert len(out.ok) == 448
        assert "Slowburn_Score__c" in out.errors[ids[10]] and ids[10] in out.errors[ids[10]]
        assert "Bogus__c" in out.errors[ids[20]] and "INVALID_FIELD" in out.errors[ids[20]]
        calls = [r for r in fake.received if r.method == "PATCH"]
        assert all(len(r.json["records"]) <= 200 for r in calls)
        assert all(r.json["allOrNone"] is False for r in calls)
        assert fake.objects["Lead"][ids[0]]["Slowburn_Score__c"] == 70


def test_task_upserts_by_external_id_never_double_when_answers_are_lost():
    with FakeSalesforce(token=TOKEN, faults=Faults(fail_after_apply_every=2, fail_every=5)) as fake:
        [lead] = seed_leads(fake, 1)
        sf = client(fake)
        tasks = [{"Slowburn_Key__c": f"slowburn-followup-g{i}", "Subject": "Respond", "WhoId": lead}
                 for i in range(420)]
        out = sf.upsert("Task", "Slowburn_Key__c", tasks)
        assert len(out.ok) == 420 and fake.injected["lost"] > 0
        keys = [t["Slowburn_Key__c"] for t in fake.objects["Task"].values()]
        assert len(keys) == len(set(keys)) == 420


def test_more_than_the_bulk_threshold_goes_through_bulk_api_2():
    with FakeSalesforce(token=TOKEN, faults=Faults(fail_every=6)) as fake:
        ids = seed_leads(fake, 120)
        sf = client(fake, bulk_threshold=100)
        records = [{"attributes": {"type": "Lead"}, "Id": i, "Slowburn_Tier__c": "hot"} for i in ids]
        records.append({"attributes": {"type": "Lead"}, "Id": "00Q999999999999AAA", "Slowburn_Tier__c": "hot"})
        out = sf.update(records)
        assert len(out.ok) == 120
        assert "INVALID_CROSS_REFERENCE_KEY" in out.errors["00Q999999999999AAA"]
        assert fake.jobs and all(j["state"] == "JobComplete" for j in fake.jobs.values())
        assert not [r for r in fake.received if r.path.endswith("/composite/sobjects")]
        tasks = [{"Slowburn_Key__c": f"k{i}", "Subject": "x", "WhoId": ids[0]} for i in range(101)]
        assert len(sf.upsert("Task", "Slowburn_Key__c", tasks).ok) == 101


def test_session_id_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    with FakeSalesforce(token=TOKEN, faults=Faults(fail_every=2)) as fake:
        seed_leads(fake, 3)
        sf = client(fake)
        sf.read_frame("Lead", ["Email"])
        with pytest.raises(ConnectorError) as err:
            SalesforceClient(fake.url, TOKEN + "x", backoff=0.001).read_frame("Lead", ["Email"])
    assert TOKEN not in caplog.text and TOKEN not in str(err.value) and "INVALID_SESSION_ID" in str(err.value)


# ---------------------------------------------------------------------------------------------- Bulk clears
def test_bulk_writes_none_as_na_so_clears_happen_above_the_bulk_threshold():
    with FakeSalesforce(token=TOKEN) as fake:
        ids = seed_leads(fake, 30)
        for rid in ids:
            fake.objects["Lead"][rid].update(Slowburn_Queue__c="nurture", Slowburn_Segment__c="s1")
        sf = client(fake, bulk_threshold=10)
        records = [{"attributes": {"type": "Lead"}, "Id": i, "Slowburn_Queue__c": None, "Slowburn_Segment__c": None,
                    "Slowburn_Tier__c": "cold"} for i in ids]
        out = sf.update(records)
        assert len(out.ok) == 30 and not out.errors and fake.jobs
        uploaded = next(iter(fake.jobs.values()))["csv"]
        assert "#N/A" in uploaded
        for rid in ids:
            assert fake.objects["Lead"][rid]["Slowburn_Queue__c"] is None
            assert fake.objects["Lead"][rid]["Slowburn_Segment__c"] is None
            assert fake.objects["Lead"][rid]["Slowburn_Tier__c"] == "cold"


def test_unprocessed_bulk_rows_of_a_failed_job_are_reported_by_id():
    with FakeSalesforce(token=TOKEN, bulk_stop_after=12) as fake:
        ids = seed_leads(fake, 20)
        sf = client(fake, bulk_threshold=5)
        out = sf.update([{"attributes": {"type": "Lead"}, "Id": i, "Slowburn_Tier__c": "hot"} for i in ids])
        assert sorted(out.ok) == sorted(ids[:12])
        assert sorted(out.errors) == sorted(ids[12:])
        assert all("not processed" in out.errors[i] and "Failed" in out.errors[i] for i in ids[12:])
        assert [r for r in fake.received if r.path.endswith("/unprocessedrecords")]


# ---------------------------------------------------------------------------------------------- logging in
CLIENT_ID = "3MVG9fakeConsumerKeyForTests"
REFRESH = "5Aep861fakeRefreshTokenForTests0123456789"
SECRET = "F1A2K3E4S5E6C7R8E9T0"


def _refresh_auth(fake, **kw):
    from slowburn.sources.salesforce import SalesforceAuth
    return SalesforceAuth(flow="refresh_token", client_id=CLIENT_ID, client_secret=SECRET,
                          refresh_token=kw.pop("refresh_token", REFRESH), login_url=fake.url)


def test_refresh_token_flow_logs_in_and_logs_in_again_once_when_the_session_expires(caplog):
    caplog.set_level(logging.DEBUG)
    apps = {CLIENT_ID: {"secret": SECRET, "refresh_token": REFRESH}}
    with FakeSalesforce(token="unused-initial-session", clients=apps) as fake:
        ids = seed_leads(fake, 250)
        sf = SalesforceClient(None, auth=_refresh_auth(fake), max_requests=10_000, backoff=0.005)
        assert sf.session.base_url == fake.url  # the instance URL came from the token endpoint
        first = sf.update([{"attributes": {"type": "Lead"}, "Id": i, "Slowburn_Tier__c": "warm"} for i in ids[:200]])
        fake.expire_sessions()
        second = sf.update([{"attributes": {"type": "Lead"}, "Id": i, "Slowburn_Tier__c": "warm"} for i in ids[200:]])
        frame = sf.read_frame("Lead", ["Slowburn_Tier__c"])
        assert len(first.ok) == 200 and len(second.ok) == 50 and frame["Slowburn_Tier__c"].eq("warm").all()
        assert fake.logins == ["refresh_token", "refresh_token"]
        assert [r.status for r in fake.received if r.status == 401] == [401]
        issued = [t for t in fake.sessions]
    for secret in (REFRESH, SECRET, *issued):
        assert secret not in caplog.text


def test_a_refused_refresh_token_fails_clearly_without_showing_it():
    with FakeSalesforce(clients={CLIENT_ID: {"secret": SECRET, "refresh_token": REFRESH}}) as fake:
        with pytest.raises(ConnectorError) as err:
            SalesforceClient(None, auth=_refresh_auth(fake, refresh_token=REFRESH + "old"), backoff=0.005)
    message = str(err.value)
    assert "invalid_grant" in message and "token request" in message and REFRESH not in message


def test_a_fixed_session_id_that_expires_fails_naming_the_fix():
    with FakeSalesforce(token=TOKEN) as fake:
        seed_leads(fake, 2)
        sf = client(fake)
        fake.expire_sessions()
        with pytest.raises(ConnectorError) as err:
            sf.read_frame("Lead", ["Email"])
    assert "INVALID_SESSION_ID" in str(err.value) and TOKEN not in str(err.value)


def test_jwt_bearer_flow_signs_an_assertion_the_server_verifies(caplog):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from slowburn.sources.salesforce import SalesforceAuth

    caplog.set_level(logging.DEBUG)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with FakeSalesforce(clients={CLIENT_ID: {}}, jwt_public_key=key.public_key(),
                        jwt_username="integration@acme.com") as fake:
        ids = seed_leads(fake, 5)
        auth = SalesforceAuth(flow="jwt", client_id=CLIENT_ID, username="integration@acme.com", private_key=pem,
                              login_url=fake.url)
        sf = SalesforceClient(fake.url, auth=auth, backoff=0.005)
        assert sorted(sf.read_frame("Lead", ["Email"])["Id"]) == sorted(ids)
        fake.expire_sessions()
        assert len(sf.read_frame("Lead", ["Email"])) == 5
        assert fake.logins == [JWT := "urn:ietf:params:oauth:grant-type:jwt-bearer", JWT]
        with pytest.raises(ConnectorError) as err:  # a key the connected app does not know
            SalesforceClient(fake.url, auth=SalesforceAuth(flow="jwt", client_id=CLIENT_ID, private_key=other,
                                                           username="integration@acme.com", login_url=fake.url))
        assert "invalid_grant" in str(err.value)
    assert pem.splitlines()[1] not in caplog.text and other.splitlines()[1] not in str(err.value)


def test_connection_picks_the_flow_and_the_hook_needs_no_token_in_code(monkeypatch):
    with FakeSalesforce(clients={CLIENT_ID: {"secret": SECRET, "refresh_token": REFRESH}}) as fake:
        seed_leads(fake, 3)
        monkeypatch.setenv("SLOWBURN_CONN_SF_OAUTH", json.dumps({
            "password": REFRESH, "extra": {"auth": "refresh_token", "client_id": CLIENT_ID, "client_secret": SECRET,
                                           "login_url": fake.url, "backoff": 0.005}}))
        sf = SalesforceClient.from_connection("sf_oauth")
        assert len(sf.read_frame("Lead", ["Email"])) == 3 and fake.logins == ["refresh_token"]
        assert REFRESH not in repr(sf.auth) and SECRET not in repr(sf.auth)


# ---------------------------------------------------------------------------------------------- daily quota
def test_stops_before_the_daily_api_quota_runs_out_with_a_clear_message():
    with FakeSalesforce(token=TOKEN, page_size=10, daily_limit=1000, api_used=880) as fake:
        seed_leads(fake, 400)
        sf = client(fake, quota_reserve=100)
        with pytest.raises(ConnectorError) as err:
            sf.read_frame("Lead", ["Email"])
        assert err.value.code == "API_QUOTA" and "900 of 1,000" in str(err.value) and "quota_reserve" in str(err.value)
        assert fake.api_used == 900  # the call that reached the reserve was the last one sent
        assert sf.quota_left() == 100


def test_quota_reserve_as_a_fraction_of_the_daily_limit():
    with FakeSalesforce(token=TOKEN, page_size=10, daily_limit=1000, api_used=0) as fake:
        seed_leads(fake, 50)
        sf = client(fake, quota_reserve=0.1)
        assert len(sf.read_frame("Lead", ["Email"])) == 50 and sf.api_usage == (5, 1000)
        fake.api_used = 899
        with pytest.raises(ConnectorError, match="API quota"):
            sf.read_frame("Lead", ["Email"])


@pytest.mark.airflow
def test_the_airflow_hook_logs_in_with_the_connections_refresh_token_and_never_logs_it(monkeypatch, caplog):
    from slowburn.airflow.connectors import SalesforceHook

    caplog.set_level(logging.DEBUG)
    with FakeSalesforce(clients={CLIENT_ID: {"secret": SECRET, "refresh_token": REFRESH}}) as fake:
        seed_leads(fake, 3)
        monkeypatch.setenv("AIRFLOW_CONN_SF_HOOK", json.dumps({
            "conn_type": "http", "password": REFRESH,
            "extra": {"auth": "refresh_token", "client_id": CLIENT_ID, "client_secret": SECRET, "login_url": fake.url,
                      "backoff": 0.005, "quota_reserve": 5}}))
        sf = SalesforceHook("sf_hook").get_conn()
        assert len(sf.read_frame("Lead", ["Email"])) == 3 and sf.quota_reserve == 5
        issued = list(fake.sessions)
    for secret in (REFRESH, SECRET, *issued):
        assert secret not in caplog.text


def test_a_rotated_refresh_token_is_used_for_the_next_login(caplog):
    caplog.set_level(logging.DEBUG)
    apps = {CLIENT_ID: {"secret": SECRET, "refresh_token": REFRESH, "rotate": True}}
    with FakeSalesforce(clients=apps) as fake:
        seed_leads(fake, 2)
        sf = SalesforceClient(None, auth=_refresh_auth(fake), backoff=0.005)
        for _ in range(3):
            fake.expire_sessions()
            assert len(sf.read_frame("Lead", ["Email"])) == 2
        assert fake.logins == ["refresh_token"] * 4
        rotated = apps[CLIENT_ID]["refresh_token"]
    assert rotated != REFRESH and rotated not in caplog.text


def test_jwt_key_from_a_file_named_in_the_connection(tmp_path):
    from slowburn.sources.http import Credentials
    from slowburn.sources.salesforce import SalesforceAuth

    with pytest.raises(ConnectorError, match="private_key_file"):
        SalesforceAuth.from_credentials(Credentials("", None, {"auth": "jwt", "client_id": CLIENT_ID,
                                                               "private_key_file": str(tmp_path / "missing.pem")},
                                                    "integration@acme.com"))
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE "
                                      "KEY-----\n")
    auth = SalesforceAuth.from_credentials(Credentials("", None, {"auth": "jwt", "client_id": CLIENT_ID,
                                                                  "private_key_file": str(tmp_path / "key.pem")},
                                                       "integration@acme.com"))
    assert auth.flow == "jwt" and auth.private_key.startswith("-----BEGIN") and "MIIE" not in repr(auth)
