"""Every HubSpot call slowburn makes, against HubSpot's published specs served by Prism (see conftest.py)."""
from __future__ import annotations

import pandas as pd
import pytest

from contract.bounded import Bounded, drain
from slowburn.sources.engagement import hubspot_email_events
from slowburn.sources.hubspot import ENGAGEMENTS, HubSpotClient
from slowburn.writeback import HubSpotSink, WritebackConfig, plan_writeback

TOKEN = "pat-na1-00000000-contract-test-token"
OBJECTS = ["contacts", *[o for o in ENGAGEMENTS if o in ("calls", "meetings", "emails", "notes", "tasks")]]
NOW = pd.Timestamp("2026-11-23T09:00:00Z")


@pytest.fixture()
def hs(prism_hubspot):
    client = HubSpotClient(prism_hubspot.url, TOKEN, max_requests=10_000, per_seconds=1, search_per_second=10_000,
                           backoff=0.005, max_retries=1)
    yield client
    client.close()


@pytest.mark.parametrize("object_type", OBJECTS)
def test_list_and_incremental_search(prism_hubspot, hs, object_type):
    with prism_hubspot.checked() as seen:
        listed = drain(hs.iter_objects(object_type, ["email", "hs_timestamp", "hubspot_owner_id"]), 150)
        since_ms = int(pd.Timestamp("2026-11-01T00:00:00Z").value // 1_000_000)
        found = drain(hs.iter_modified_since(object_type, ["email", "hs_timestamp"], since_ms), 450)
        everything = drain(hs.iter_modified_since(object_type, ["email"], None), 5)
    assert ("GET", f"/crm/v3/objects/{object_type}") in seen
    assert ("POST", f"/crm/v3/objects/{object_type}/search") in seen
    assert all(isinstance(r, dict) for r in listed + found + everything)


def test_search_pages_with_the_cursor_it_was_given(prism_hubspot, hs):
    """Spec-shaped cursors are words, not digits: the second page must send back exactly what came."""
    body = {"filterGroups": [], "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["email"], "limit": 10}
    with prism_hubspot.checked():
        first = hs._search_page("contacts", body)
        cursor = first["paging"]["next"]["after"]
        records = drain(hs._walk("contacts", [], "lastmodifieddate", ["email"], 10), 25)
    sent = [line for line in prism_hubspot.snapshot() if "search" in line]
    assert isinstance(cursor, str) and not cursor.isdigit() and records and sent


def test_engagement_associations_and_task_associations(prism_hubspot, hs):
    with prism_hubspot.checked() as seen:
        for object_type in ("calls", "meetings", "emails", "notes", "tasks"):
            links = hs.contact_associations(object_type, ["101", "102", "103"])
            assert all(isinstance(v, list) for v in links.values())
        hs.associate_tasks([("9001", "101"), ("9002", "102")])
    assert ("POST", "/crm/v4/associations/calls/contacts/batch/read") in seen
    assert ("POST", "/crm/v4/associations/tasks/contacts/batch/associate/default") in seen


def _plan():
    golden = pd.DataFrame({"golden_id": ["g1", "g2", "g3"], "email": ["a@acme.com", "b@acme.com", "c@acme.com"],
                           "first_name": ["Ann", "Bob", "Cy"], "last_name": ["A", "B", "C"],
                           "email_opt_out": [False, False, False],
                           "source_keys": ["hubspot:101", "hubspot:102", "hubspot:103"]})
    sales = pd.DataFrame({"golden_id": ["g1"], "score": [88], "tier": ["hot"], "owner_id": ["4242"],
                          "queued_at": [NOW], "respond_by": [NOW + pd.Timedelta(hours=4)],
                          "reasons": ['[{"factor": "demo_request", "points": 30}]']})
    nurture = pd.DataFrame({"golden_id": ["g2"], "score": [35], "tier": ["cool"], "segment": ["webinar_followup"],
                            "next_touch_at": [NOW + pd.Timedelta(days=7)], "email_opt_out": [False]})
    flags = pd.DataFrame({"golden_id": ["g1"], "flag": ["stale_owner"], "severity": ["high"],
                          "reason": ["owner inactive 30 days"], "evidence": ["last activity 2026-10-01"],
                          "suggested_action": ["reassign"], "owner_id": ["4242"]})
    # g3 was in the sales queue last time: its queue fields are cleared now.
    previous = {("hubspot", "103"): ("update", "x", {"slowburn_queue": "sales", "slowburn_respond_by": "1",
                                                     "slowburn_segment": ""})}
    return plan_writeback(golden, sales, nurture, flags=flags, previous=previous,
                          config=WritebackConfig(targets=("hubspot",)))


def test_write_back_payloads_conform_nurture_respond_by_and_clears_included(prism_hubspot, hs):
    ops = _plan()
    sink = HubSpotSink(hs)
    updates = [op for op in ops if op.action == "update"]
    tasks = [op for op in ops if op.action == "task"]
    assert {op.record_key for op in updates} == {"101", "102", "103"} and len(tasks) == 2
    assert [op.payload["properties"]["slowburn_respond_by"] for op in updates if op.record_key == "102"] == [""]
    with prism_hubspot.checked() as seen:
        for batch in sink.batches("update", updates):
            errors = sink.send("update", batch)
            assert all(isinstance(e, str) for e in errors.values())
        for batch in sink.batches("task", tasks):
            sink.send("task", batch)
    assert ("POST", "/crm/v3/objects/contacts/batch/update") in seen
    assert ("POST", "/crm/v3/objects/tasks/batch/upsert") in seen


def test_email_events_read_contacts_with_history(prism_hubspot, hs):
    with prism_hubspot.checked() as seen:
        first = hubspot_email_events(Bounded(hs))
        later = hubspot_email_events(Bounded(hs), since=pd.Timestamp("2026-11-20T00:00:00Z"))
    assert ("POST", "/crm/v3/objects/contacts/batch/read") in seen
    assert list(first.columns) == list(later.columns)


def test_the_check_catches_a_request_the_spec_forbids(prism_hubspot, hs):
    """The harness must be able to fail: a null property value (what slowburn used to send) is a violation."""
    with pytest.raises(AssertionError, match="must be string"):
        with prism_hubspot.checked():
            resp = hs.session.request("POST", "/crm/v3/objects/contacts/batch/update",
                                      json={"inputs": [{"id": "1", "properties": {"slowburn_respond_by": None}}]})
            assert resp.status_code in (422, 500)  # Prism answers a violation with an error


def test_spec_shaped_partial_failures_207_are_reported_per_record(prism_hubspot, hs):
    """HubSpot's 207 (some records failed): every input ends up either written or with an error, none lost."""
    hs.session.headers["Prefer"] = "code=207"
    ops = [op for op in _plan() if op.action == "update"]
    with prism_hubspot.checked():
        out = hs.batch_update("contacts", [op.payload for op in ops])
        history = list(hs.read_with_history("contacts", ["101", "102"], ["email"], ["hs_email_optout"]))
    assert set(out.ok) | set(out.errors) == {op.record_key for op in ops}
    assert all(isinstance(r, dict) for r in history)
