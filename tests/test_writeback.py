"""slowburn.writeback: pure planning, idempotent and resumable execution against the three loopback vendors."""
from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest
import sqlalchemy as sa

from fakes.base import Faults
from fakes.hubspot import FakeHubSpot
from fakes.mailchimp import FakeMailchimp
from fakes.salesforce import FakeSalesforce
from slowburn import writeback as wb
from slowburn.sources.hubspot import HubSpotClient
from slowburn.sources.mailchimp import MailchimpClient, subscriber_hash
from slowburn.sources.salesforce import SalesforceClient
from slowburn.warehouse import Warehouse

TOKEN = "wb-secret-token-123456"
KEY = "abcdefabcdefabcdefabcdefabcdef12-us1"
OWNER = "005000000000001AAA"
NOW = pd.Timestamp("2026-11-23T09:00:00Z")
CFG = wb.WritebackConfig(mailchimp_list_id="aud1")


def frames(n=40, sf_ids=None, hs_ids=None, *, opted=lambda i: i % 7 == 0, sales_n=12, segment="awareness/general/web"):
    sf_ids = sf_ids or [f"00Q{i:012d}AAA" for i in range(n)]
    hs_ids = hs_ids or [str(1001 + i) for i in range(n)]
    golden = pd.DataFrame({
        "golden_id": [f"g{i}" for i in range(n)], "email": [f"P{i}@Acme.com" for i in range(n)],
        "first_name": [f"P{i}" for i in range(n)], "last_name": "Lee",
        "email_opt_out": [opted(i) for i in range(n)],
        "source_keys": [f"hubspot:{hs_ids[i]}|salesforce:{sf_ids[i]}|event_list:B{i}" for i in range(n)]})
    sales = pd.DataFrame({"golden_id": [f"g{i}" for i in range(sales_n)], "owner_id": OWNER, "score": 88,
                          "tier": "hot", "reasons": json.dumps([{"factor": "demo_request", "points": 25}]),
                          "queued_at": NOW, "respond_by": NOW + pd.Timedelta(hours=1)})
    nurture = pd.DataFrame({"golden_id": [f"g{i}" for i in range(sales_n, n)], "segment": segment,
                            "email_opt_out": [opted(i) for i in range(sales_n, n)], "score": 35, "tier": "cool"})
    flags = pd.DataFrame({"golden_id": ["g1", "g20"], "flag": ["orphaned", "unclosed"], "severity": ["high", "medium"],
                          "owner_id": [None, OWNER], "evidence": ["{}", "{}"], "reason": ["no owner", "idle 90 days"],
                          "suggested_action": ["reassign", "close out"]})
    return golden, sales, nurture, flags


def plan(golden, sales, nurture, flags, previous=None, cfg=CFG):
    return wb.plan_writeback(golden, sales, nurture, flags=flags, previous=previous or {}, config=cfg)


# ---------------------------------------------------------------------------------------------- planning
def test_plan_maps_queues_tasks_flags_and_segments():
    golden, sales, nurture, flags = frames()
    ops = plan(golden, sales, nurture, flags)
    by = Counter((op.target, op.action) for op in ops)
    assert by[("salesforce", "update")] == by[("hubspot", "update")] == 40
    assert by[("salesforce", "task")] == by[("hubspot", "task")] == 12 + 2
    opted = sum(i % 7 == 0 for i in range(12, 40))
    assert by[("mailchimp", "member")] == by[("mailchimp", "tags")] == 28 - opted
    g0 = next(op for op in ops if op.target == "salesforce" and op.action == "update" and op.golden_id == "g0")
    assert g0.payload == {"attributes": {"type": "Lead"}, "Id": "00Q000000000000AAA", "Slowburn_Score__c": 88,
                          "Slowburn_Tier__c": "hot", "Slowburn_Queue__c": "sales", "Slowburn_Segment__c": None,
                          "Slowburn_Respond_By__c": "2026-11-23T10:00:00.000Z", "OwnerId": OWNER}
    hs0 = next(op for op in ops if op.target == "hubspot" and op.action == "update" and op.golden_id == "g0")
    assert "hubspot_owner_id" not in hs0.payload["properties"]  # a Salesforce user id is not a HubSpot owner
    task = next(op for op in ops if op.target == "salesforce" and op.action == "task" and op.golden_id == "g0")
    assert task.record_key == "slowburn-followup-g0-20261123T0900" and task.payload["WhoId"] == "00Q000000000000AAA"
    assert task.payload["ActivityDate"] == "2026-11-23" and "demo_request +25" in task.payload["Description"]
    member = next(op for op in ops if op.target == "mailchimp" and op.action == "member")
    assert member.payload["status_if_new"] == "subscribed" and "status" not in member.payload
    # Deterministic: the same frames plan the same hashes.
    assert [op.payload_hash for op in ops] == [op.payload_hash for op in plan(golden, sales, nurture, flags)]


def test_opted_out_leads_are_never_planned_for_mailchimp_except_to_unsubscribe_what_we_added():
    golden, sales, nurture, flags = frames()
    ops = plan(golden, sales, nurture, flags)
    opted_emails = {golden.loc[i, "email"] for i in range(40) if i % 7 == 0}
    sent_emails = {op.payload.get("email_address") for op in ops if op.target == "mailchimp"}
    assert not opted_emails & sent_emails
    # g13 was subscribed by slowburn last night and has opted out since: it is unsubscribed, never re-added.
    h = subscriber_hash(golden.loc[13, "email"])
    previous = {("mailchimp", f"member:{h}"): ("member", "x", {"email_address": "P13@Acme.com"}),
                ("mailchimp", f"tags:{h}"): ("tags", "y", {"tag": "slowburn:awareness/general/web"})}
    golden.loc[13, "email_opt_out"] = True
    ops = plan(golden, sales, nurture, flags, previous)
    mine = [op for op in ops if op.target == "mailchimp" and h in op.record_key]
    assert sorted((op.action, json.dumps(op.payload, sort_keys=True)) for op in mine) == sorted([
        ("member", json.dumps({"email_address": "P13@Acme.com", "status": "unsubscribed", "unsubscribe": True},
                              sort_keys=True)),
        ("tags", json.dumps({"hash": h, "tags": [{"name": "slowburn:awareness/general/web", "status": "inactive"}]},
                            sort_keys=True))])


def test_segment_changes_and_leaving_nurture_remove_the_old_tag_and_clear_queue_fields():
    golden, sales, nurture, flags = frames()
    first = plan(golden, sales, nurture, flags)
    previous = {(op.target, op.record_key): (op.action, op.payload_hash, op.state) for op in first}
    # g30 ripens into the sales queue; everyone else moves to a new segment; g39 leaves the queues entirely.
    sales2 = pd.concat([sales, sales.iloc[[0]].assign(golden_id="g30")], ignore_index=True)
    nurture2 = nurture[~nurture["golden_id"].isin(["g30", "g39"])].assign(segment="consideration/pricing/web")
    ops = plan(golden, sales2, nurture2, flags, previous)
    todo = wb.pending(ops, previous)
    tags = {op.record_key: op.payload["tags"] for op in todo if op.action == "tags"}
    h30 = subscriber_hash("P30@Acme.com")
    assert tags[f"tags:{h30}"] == [{"name": "slowburn:awareness/general/web", "status": "inactive"}]
    h31 = subscriber_hash("P31@Acme.com")
    assert tags[f"tags:{h31}"] == [{"name": "slowburn:consideration/pricing/web", "status": "active"},
                                   {"name": "slowburn:awareness/general/web", "status": "inactive"}]
    cleared = next(op for op in todo if op.target == "salesforce" and op.action == "update" and
                   op.record_key == "00Q000000000039AAA")
    assert cleared.payload["Slowburn_Queue__c"] is None
    # Unchanged members are not sent again.
    assert not [op for op in todo if op.action == "member"]


# ---------------------------------------------------------------------------------------------- execution
class Vendors:
    def __init__(self, faults: Faults | None = None, n=40, **fake_kw):
        self.sf = FakeSalesforce(token=TOKEN, faults=faults).start()
        self.hs = FakeHubSpot(token=TOKEN, faults=faults).start()
        self.mc = FakeMailchimp(token=KEY, faults=faults, batch_polls=2).start()
        self.sf_ids = [self.sf.add("Lead", {"Email": f"p{i}@acme.com"}) for i in range(n)]
        self.hs_ids = [self.hs.add("contacts", {"email": f"p{i}@acme.com"}) for i in range(n)]
        self.mc.add_member("aud1", "P20@Acme.com", "unsubscribed")   # unsubscribed in Mailchimp itself
        self.mc.add_member("aud1", "P21@Acme.com", "cleaned")        # bounced

    def sinks(self, cfg=CFG, **mc_kw):
        # Generous retries: these tests are about exactly-once delivery under faults, not retry limits,
        # and concurrent requests can meet several injected faults in a row on a loaded machine.
        kw = {"backoff": 0.005, "max_requests": 10_000, "max_retries": 10}
        return {"salesforce": wb.SalesforceSink(SalesforceClient(self.sf.url, TOKEN, bulk_poll=0.01, **kw), cfg),
                "hubspot": wb.HubSpotSink(HubSpotClient(self.hs.url, TOKEN, **kw), cfg),
                "mailchimp": wb.MailchimpSink(MailchimpClient(self.mc.api_url, KEY, poll_interval=0.01,
                                                              **{**kw, **mc_kw}), "aud1")}

    def stop(self):
        for fake in (self.sf, self.hs, self.mc):
            fake.stop()


@pytest.fixture
def store(tmp_path):
    s = wb.WritebackStore(Warehouse(f"sqlite:///{tmp_path / 'wh.db'}"))
    s.ensure()
    return s


def _write_requests(v: Vendors):
    return ([r for r in v.sf.received if r.method == "PATCH" and "composite" in r.path and r.status == 200],
            [r for r in v.hs.received if r.path.startswith("/crm/v3/") and "/batch/" in r.path and r.status in (200, 207)],
            [r for r in v.mc.received if r.method in ("PUT", "POST", "PATCH") and r.status < 300])


def test_every_record_arrives_once_across_faults_and_a_rerun_sends_nothing(store):
    v = Vendors(Faults(fail_every=5, throttle_every=9, fail_after_apply_every=3))
    try:
        golden, sales, nurture, flags = frames(sf_ids=v.sf_ids, hs_ids=v.hs_ids)
        ops = plan(golden, sales, nurture, flags, store.latest())
        report = wb.execute(ops, v.sinks(), store, "2026-11-23T000000")
        assert report.failed == [] and report.sent == len(ops)
        assert sum(f.injected["5xx"] + f.injected["lost"] for f in (v.sf, v.hs, v.mc)) > 0
        # One task per key however many times a lost answer made us resend.
        sf_keys = [t["Slowburn_Key__c"] for t in v.sf.objects["Task"].values()]
        hs_keys = [t["properties"]["slowburn_key"] for t in v.hs.objects["tasks"].values()]
        assert len(sf_keys) == len(set(sf_keys)) == 14 and len(hs_keys) == len(set(hs_keys)) == 14
        assert all(v.hs.associations.get(("tasks", t["id"])) for t in v.hs.objects["tasks"].values())
        assert {w[2] for w in v.sf.writes if w[1] == "update"} == set(v.sf_ids)
        assert v.sf.objects["Lead"][v.sf_ids[0]]["Slowburn_Queue__c"] == "sales"
        assert v.hs.objects["contacts"][v.hs_ids[30]]["properties"]["slowburn_segment"] == "awareness/general/web"
        # Mailchimp: the opted-out never arrive; the unsubscribed and bounced stay so; everyone else is tagged.
        opted = {f"P{i}@Acme.com".lower() for i in range(12, 40) if i % 7 == 0}
        assert not opted & {e.lower() for e, _ in v.mc.member_puts}
        assert not opted & {e.lower() for e, _ in v.mc.tag_posts}
        assert v.mc.member("aud1", "P20@Acme.com")["status"] == "unsubscribed"
        assert v.mc.member("aud1", "P21@Acme.com")["status"] == "cleaned"
        assert "p20@acme.com" not in {e.lower() for e in v.mc.subscribe_events}
        assert v.mc.member("aud1", "P33@Acme.com")["tags"] == {"slowburn:awareness/general/web": True}
        # Batch size limits.
        sf_calls, hs_calls, _ = _write_requests(v)
        assert all(len(r.json["records"]) <= 200 for r in sf_calls)
        assert all(len(r.json["inputs"]) <= 100 for r in hs_calls)
        # A re-run with the same state sends nothing.
        before = [len(x) for x in _write_requests(v)]
        again = wb.execute(plan(golden, sales, nurture, flags, store.latest()), v.sinks(), store, "2026-11-23T000000")
        assert again.to_send == 0 and again.already_sent == len(ops)
        assert [len(x) for x in _write_requests(v)] == before
    finally:
        v.stop()


def test_a_failure_mid_write_resumes_where_it_stopped(store):
    v = Vendors(n=450)
    try:
        golden, sales, nurture, flags = frames(n=450, sf_ids=v.sf_ids, hs_ids=v.hs_ids, sales_n=30)
        cfg = wb.WritebackConfig(mailchimp_list_id="aud1", targets=("salesforce", "hubspot"))
        ops = plan(golden, sales, nurture, flags, store.latest(), cfg)
        # The first run dies after three acknowledged batches (a crash, a deploy, a kill -9 ...).
        first = wb.execute(ops, v.sinks(cfg), store, "r1", max_batches=3)
        assert first.batches == 3 and 0 < first.sent < len(ops)
        # HubSpot now refuses every request for a while: the run stops with a clear error, nothing lost.
        v.hs.faults.fail_every = 1
        with pytest.raises(wb.WritebackFailed) as err:
            wb.execute(plan(golden, sales, nurture, flags, store.latest(), cfg), v.sinks(cfg), store, "r1")
        assert "re-run resumes" in str(err.value)
        assert (store.interrupted()["status"] == "failed").sum() == 1
        v.hs.faults.fail_every = 0
        last = wb.execute(plan(golden, sales, nurture, flags, store.latest(), cfg), v.sinks(cfg), store, "r1")
        assert last.failed == []
        # Every record was acknowledged exactly once over the three runs.
        sf_calls, hs_calls, _ = _write_requests(v)
        sent = Counter([("sf", r["Id"] if "Id" in r else r["Slowburn_Key__c"]) for c in sf_calls
                        for r in c.json["records"]] + [("hs", str(i["id"])) for c in hs_calls for i in c.json["inputs"]])
        assert set(sent.values()) == {1} and len(sent) == len(ops)
        logged = store.wh.read("SELECT COUNT(*) AS n FROM writeback_log WHERE latest = 1 AND status = 'sent'")
        assert int(logged["n"][0]) == len(ops)
    finally:
        v.stop()


def test_large_lists_use_the_mailchimp_batch_endpoint_and_bulk_api(store):
    v = Vendors(Faults(fail_every=11), n=160)
    try:
        golden, sales, nurture, flags = frames(n=160, sf_ids=v.sf_ids, hs_ids=v.hs_ids, opted=lambda i: i % 10 == 0)
        ops = plan(golden, sales, nurture, flags, store.latest())
        sinks = v.sinks(batch_threshold=50, batch_size=60)
        sinks["salesforce"].client.bulk_threshold = 100
        report = wb.execute(ops, sinks, store, "r1")
        assert report.failed == []
        batches = [r for r in v.mc.received if r.path == "/3.0/batches" and r.status == 200]
        assert batches and all(len(r.json["operations"]) <= 60 for r in batches)
        assert v.sf.jobs  # 160 lead updates > 100: one Bulk API 2.0 job
        opted = {f"p{i}@acme.com" for i in range(160) if i % 10 == 0}
        assert not opted & {e.lower() for e, _ in v.mc.member_puts}
        assert len(v.mc.subscribe_events) == len(set(v.mc.subscribe_events))
    finally:
        v.stop()


def test_record_errors_name_the_record_and_field_and_are_retried_next_run(store):
    v = Vendors(n=20)
    try:
        golden, sales, nurture, flags = frames(n=20, sf_ids=v.sf_ids, hs_ids=v.hs_ids)
        cfg = wb.WritebackConfig(mailchimp_list_id="aud1", salesforce_fields={"tier": "Slowburn_Teir__c"},
                                 targets=("salesforce",))
        report = wb.execute(plan(golden, sales, nurture, flags, {}, cfg), v.sinks(cfg), store, "r1")
        assert len(report.failed) == 20 and all("Slowburn_Teir__c" in e and k in e for _, k, e in report.failed)
        assert report.sent == 12 + 1  # the follow-up tasks and the flag task (g1; g20 is not among 20 leads)
        again = wb.execute(plan(golden, sales, nurture, flags, store.latest(), cfg), v.sinks(cfg), store, "r1")
        assert again.to_send == 20  # failed records are not "sent": the next run tries them again
    finally:
        v.stop()


def test_dry_run_sends_and_logs_nothing_and_writes_the_plan(store, tmp_path):
    v = Vendors(n=10)
    try:
        golden, sales, nurture, flags = frames(n=10, sf_ids=v.sf_ids, hs_ids=v.hs_ids, sales_n=4)
        ops = plan(golden, sales, nurture, flags)
        report = wb.execute(ops, v.sinks(), store, "r1", dry_run=True, plan_path=tmp_path / "plan.jsonl")
        assert report.dry_run and report.to_send == len(ops) and report.sent == 0 and report.sample
        assert sum(len(x) for x in _write_requests(v)) == 0
        assert store.latest() == {}
        lines = (tmp_path / "plan.jsonl").read_text().splitlines()
        assert len(lines) == len(ops) and json.loads(lines[0])["payload_hash"]
    finally:
        v.stop()


def test_run_writeback_reads_the_warehouse_state_and_upgrades_an_old_log(tmp_path):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a warehouse made before write-back grew its columns
        conn.exec_driver_sql("CREATE TABLE writeback_log (target TEXT NOT NULL, record_key TEXT NOT NULL, "
                             "payload_hash TEXT NOT NULL, run_id TEXT NOT NULL, sent_at TEXT NOT NULL, "
                             "status TEXT NOT NULL, PRIMARY KEY (target, record_key, payload_hash))")
    wh = Warehouse(url)
    wh.ensure_schema()
    golden, sales, nurture, flags = frames(n=6, sales_n=2)
    with wh.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO run_ledger (run_id, logical_date, status, landed_leads, linked_leads, "
                             "quarantined_leads, golden_leads, landed_touches, quarantined_touches, sales_queue, "
                             "nurture_queue, lead_flags, invariant_ok, step_counts) VALUES ('2026-11-23T000000', "
                             "'2026-11-23T00:00:00', 'success', 6, 6, 0, 6, 0, 0, 2, 4, 2, 1, '{}')")
    golden.assign(run_id="2026-11-23T000000", source_count=3).to_sql("golden_leads", wh.engine, if_exists="append",
                                                                     index=False)
    sales.assign(run_id="2026-11-23T000000", owner_kept=True, over_capacity=False).to_sql(
        "sales_queue", wh.engine, if_exists="append", index=False)
    nurture.drop(columns=["score", "tier"]).assign(run_id="2026-11-23T000000", cadence_days=14, next_touch_at=NOW,
                                                   touches_so_far=1).to_sql(
        "nurture_queue", wh.engine, if_exists="append", index=False)
    scored = pd.concat([sales[["golden_id", "score", "tier"]], nurture[["golden_id", "score", "tier"]]])
    scored.assign(run_id="2026-11-23T000000", model_version="m1", touches=1, rep_touches=0, scored_at=NOW).to_sql(
        "lead_scores", wh.engine, if_exists="append", index=False)
    report = wb.run_writeback(url, {}, CFG, dry_run=True, plan_dir=tmp_path)
    plan_rows = [json.loads(line) for line in (tmp_path / "writeback_plan_2026-11-23T000000.jsonl").open()]
    nurture_updates = [r["payload"] for r in plan_rows if r["target"] == "salesforce" and r["golden_id"] == "g2"]
    # The nurture queue keeps no score: the write-back takes it from lead_scores.
    assert [(p["Slowburn_Score__c"], p["Slowburn_Tier__c"], p["Slowburn_Queue__c"]) for p in nurture_updates] == [
        (35, "cool", "nurture")]
    assert report.run_id == "2026-11-23T000000" and report.by_action["salesforce/update"] == 6
    assert (tmp_path / "writeback_plan_2026-11-23T000000.jsonl").exists()
    columns = {c["name"] for c in sa.inspect(wh.engine).get_columns("writeback_log")}
    assert {"action", "payload", "latest", "batch_id", "error"} <= columns
    # Without a sink a target is skipped and reported, not failed.
    report = wb.run_writeback(url, {}, CFG)
    assert report.skipped_targets["salesforce"] == 6 + 2 and report.failed == []


def test_nightly_pipeline_on_api_sources_then_write_back(tmp_path, monkeypatch):
    """HubSpot, Salesforce and Mailchimp as sources of the nightly run, then the write-back of its queues."""
    from conftest import OWNERS_CSV
    from slowburn.pipeline import RunContext, run_all

    faults = Faults(fail_every=6, throttle_every=10)
    with FakeHubSpot(token=TOKEN, faults=faults) as hs, FakeSalesforce(token=TOKEN, faults=faults) as sf, \
            FakeMailchimp(token=KEY, faults=faults) as mc:
        stamp = pd.Timestamp("2026-11-20T10:00:00Z")
        people = [("Ann", "Lee", "ann@globex.com"), ("Bo", "Chen", "bo@initech.com"), ("Cy", "Diaz", "cy@hooli.com"),
                  ("Di", "Eze", "di@umbrella.com")]
        hs_ids = [hs.add("contacts", {"email": e, "firstname": f, "lastname": l, "company": e.split("@")[1],
                                      "country": "US", "hubspot_owner_id": "O1", "hs_lead_status": "NEW",
                                      "createdate": "2026-11-01T00:00:00.000Z",
                                      "hs_email_optout": "true" if f == "Bo" else "false"}, modified=stamp)
                  for f, l, e in people]
        sf_id = sf.add("Lead", {"FirstName": "Ann", "LastName": "Lee", "Email": "ann@globex.com", "Company": "Globex",
                                "Country": "US", "OwnerId": "O2", "Status": "Open - Not Contacted",
                                "CreatedDate": "2026-11-02T00:00:00.000+0000", "HasOptedOutOfEmail": False},
                       modstamp=stamp)
        mc.add_member("aud1", "cy@hooli.com", "unsubscribed")  # Cy left the newsletter in Mailchimp
        for name, host, token in (("HS", hs.url, TOKEN), ("SF", sf.url, TOKEN), ("MC", mc.api_url, KEY)):
            monkeypatch.setenv(f"SLOWBURN_CONN_{name}", json.dumps(
                {"host": host, "password": token, "extra": {"backoff": 0.005}}))
        src = tmp_path / "src"
        src.mkdir()
        (src / "owners.csv").write_text(OWNERS_CSV, encoding="utf-8")
        (src / "sources.yaml").write_text(json.dumps({"sources": [
            {"name": "hubspot", "kind": "hubspot", "entity": "leads", "connection": "hs",
             "constants": {"source_system": "hubspot"}, "values": {"status": {"NEW": "new"}},
             "columns": {"source_id": "id", "first_name": "firstname", "last_name": "lastname", "email": "email",
                         "company": "company", "country": "country", "owner_id": "hubspot_owner_id",
                         "status": "hs_lead_status", "created_at": "createdate", "updated_at": "lastmodifieddate",
                         "email_opt_out": "hs_email_optout"}},
            {"name": "salesforce", "kind": "salesforce", "entity": "leads", "connection": "sf",
             "constants": {"source_system": "salesforce"}, "values": {"status": {"Open - Not Contacted": "new"}},
             "columns": {"source_id": "Id", "first_name": "FirstName", "last_name": "LastName", "email": "Email",
                         "company": "Company", "country": "Country", "owner_id": "OwnerId", "status": "Status",
                         "created_at": "CreatedDate", "updated_at": "SystemModstamp",
                         "email_opt_out": "HasOptedOutOfEmail"}},
            {"name": "mailchimp", "kind": "mailchimp", "entity": "leads", "connection": "mc", "list_id": "aud1",
             "constants": {"source_system": "mailchimp", "status": "new"},
             "columns": {"source_id": "id", "email": "email_address", "first_name": "first_name",
                         "created_at": "last_changed", "updated_at": "last_changed", "email_opt_out": "opted_out"}},
            {"name": "owners", "kind": "file", "entity": "owners", "path": "owners.csv",
             "columns": {c: c for c in ("owner_id", "name", "email", "active", "deactivated_at", "team",
                                        "territory", "daily_capacity")}}]}), encoding="utf-8")
        ctx = RunContext(logical_date=pd.Timestamp("2026-11-23T00:00:00Z"), sources_path=src / "sources.yaml",
                         home=tmp_path / "home")
        run_all(ctx)
        wh = ctx.warehouse()
        ledger = wh.read_table("run_ledger").iloc[0]
        assert ledger.landed_leads == 6 and bool(ledger.invariant_ok)
        golden = wh.read_table("golden_leads").set_index("email")
        assert "salesforce:" + sf_id in golden.loc["ann@globex.com", "source_keys"]
        assert bool(golden.loc["cy@hooli.com", "email_opt_out"])  # Mailchimp's unsubscribe reached the golden lead

        cfg = wb.WritebackConfig(mailchimp_list_id="aud1")
        # Generous retries: these tests are about exactly-once delivery under faults, not retry limits,
        # and concurrent requests can meet several injected faults in a row on a loaded machine.
        kw = {"backoff": 0.005, "max_requests": 10_000, "max_retries": 10}
        sinks = {"salesforce": wb.SalesforceSink(SalesforceClient(sf.url, TOKEN, **kw), cfg),
                 "hubspot": wb.HubSpotSink(HubSpotClient(hs.url, TOKEN, **kw), cfg),
                 "mailchimp": wb.MailchimpSink(MailchimpClient(mc.api_url, KEY, **kw), "aud1")}
        report = wb.run_writeback(ctx.warehouse_url, sinks, cfg)
        assert report.failed == [] and report.sent == report.to_send > 0
        queued = {p["properties"].get("slowburn_queue") for p in hs.objects["contacts"].values()}
        assert queued <= {"sales", "nurture"} and queued
        assert sf.objects["Lead"][sf_id].get("Slowburn_Queue__c") in ("sales", "nurture")
        put = {e for e, _ in mc.member_puts}
        assert not put & {"bo@initech.com", "cy@hooli.com"}  # opted out in HubSpot / unsubscribed in Mailchimp
        assert mc.member("aud1", "cy@hooli.com")["status"] == "unsubscribed"
        assert wb.run_writeback(ctx.warehouse_url, sinks, cfg).to_send == 0


@pytest.mark.postgres
def test_the_log_works_on_the_postgresql_warehouse(pg_url):
    v = Vendors(Faults(fail_every=7), n=30)
    try:
        store = wb.WritebackStore(Warehouse(pg_url))
        store.ensure()
        golden, sales, nurture, flags = frames(n=30, sf_ids=v.sf_ids, hs_ids=v.hs_ids)
        first = wb.execute(plan(golden, sales, nurture, flags, store.latest()), v.sinks(), store, "r1")
        assert first.failed == [] and first.sent == first.planned
        nurture2 = nurture.assign(segment="decision/pricing/web")
        second = wb.execute(plan(golden, sales, nurture2, flags, store.latest()), v.sinks(), store, "r2")
        assert second.by_action == {"hubspot/update": 18, "mailchimp/tags": first.by_action["mailchimp/tags"],
                                    "salesforce/update": 18}
        assert wb.execute(plan(golden, sales, nurture2, flags, store.latest()), v.sinks(), store, "r3").to_send == 0
    finally:
        v.stop()


def test_tags_wait_for_their_member(store):
    v = Vendors(n=14)
    try:
        golden, sales, nurture, flags = frames(n=14, sf_ids=v.sf_ids, hs_ids=v.hs_ids, sales_n=10,
                                               opted=lambda i: False)
        golden.loc[12, "email"] = "broken@@acme"
        cfg = wb.WritebackConfig(mailchimp_list_id="aud1", targets=("mailchimp",))
        report = wb.execute(plan(golden, sales, nurture, flags, {}, cfg), v.sinks(cfg), store, "r1")
        h = subscriber_hash("broken@@acme")
        failed = {k: e for _, k, e in report.failed}
        assert set(failed) == {f"member:{h}", f"tags:{h}"}
        assert "email_address" in failed[f"member:{h}"] and "depends on failed" in failed[f"tags:{h}"]
        assert len(v.mc.tag_posts) == 3  # the other three nurture leads
    finally:
        v.stop()
