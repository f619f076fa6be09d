"""Every Mailchimp call slowburn makes, against Mailchimp Marketing API 3.0.55 served by Prism (conftest.py).

The spec knows only HTTP Basic (API key) auth, so these run with a key; OAuth bearer tokens are checked
against the loopback fake (tests/sources/test_mailchimp.py)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from contract.bounded import Bounded, drain
from slowburn.sources.engagement import mailchimp_activity
from slowburn.sources.mailchimp import MailchimpClient
from slowburn.writeback import MailchimpSink, WritebackConfig, plan_writeback

KEY = "00000000000000000000000000contract-us6"
NOW = pd.Timestamp("2026-11-23T09:00:00Z")


@pytest.fixture()
def mc(prism_mailchimp):
    client = MailchimpClient(prism_mailchimp.url, KEY, max_requests=10_000, backoff=0.005, max_retries=1,
                             concurrency=1)
    yield client
    client.close()


def test_members_full_and_incremental(prism_mailchimp, mc):
    with prism_mailchimp.checked() as seen:
        full = drain(mc.iter_members("aud1"), 5)
        recent = drain(mc.iter_members("aud1", since_last_changed=pd.Timestamp("2026-11-01T00:00:00Z")), 5)
    assert ("GET", "/lists/aud1/members") in seen
    assert all(isinstance(m, dict) for m in full + recent)


def _ops():
    golden = pd.DataFrame({"golden_id": ["g1", "g2"], "email": ["ann@acme.com", "bob@acme.com"],
                           "first_name": ["Ann", "Bob"], "last_name": ["Lee", "Ray"], "email_opt_out": [False, True],
                           "source_keys": ["hubspot:101", "hubspot:102"]})
    nurture = pd.DataFrame({"golden_id": ["g1", "g2"], "score": [30, 20], "tier": ["cool", "cold"],
                            "segment": ["webinar_followup", "newsletter"], "next_touch_at": [NOW, NOW],
                            "email_opt_out": [False, True]})
    from slowburn.sources.mailchimp import subscriber_hash
    bob = subscriber_hash("bob@acme.com")
    previous = {("mailchimp", f"member:{bob}"): ("member", "x", {"email_address": "bob@acme.com",
                                                                 "status_if_new": "subscribed"}),
                ("mailchimp", f"tags:{bob}"): ("tags", "y", {"tag": "slowburn:newsletter"})}
    return plan_writeback(golden, pd.DataFrame(columns=["golden_id"]), nurture, previous=previous,
                          config=WritebackConfig(mailchimp_list_id="aud1", targets=("mailchimp",)))


def test_member_upserts_unsubscribes_and_tags_conform(prism_mailchimp, mc):
    ops = _ops()
    members = [op for op in ops if op.action == "member"]
    tags = [op for op in ops if op.action == "tags"]
    assert any(op.payload.get("unsubscribe") for op in members) and any(op.payload.get("merge_fields")
                                                                        for op in members)
    sink = MailchimpSink(mc, "aud1")
    with prism_mailchimp.checked() as seen:
        for action, group in (("member", members), ("tags", tags)):
            for batch in sink.batches(action, group):
                sink.send(action, batch)
    methods = {m for m, _ in seen}
    assert {"PUT", "PATCH", "POST"} <= methods


def test_batch_operations_submit_and_status(prism_mailchimp, mc):
    ops = [mc.member_operation("aud1", {"email_address": f"p{i}@acme.com", "merge_fields": {"FNAME": f"P{i}",
                                                                                            "SCORE": i}})
           for i in range(3)]
    wire = [{"method": op["method"], "path": op["path"], "operation_id": op["operation_id"],
             "body": json.dumps(op["body"])} for op in ops]
    with prism_mailchimp.checked() as seen:
        batch = mc.submit_batch(wire)
        status = mc.batch_status(str(batch.get("id") or "b1"))
    assert ("POST", "/batches") in seen and isinstance(status, dict)


def test_campaign_email_activity_and_unsubscribes(prism_mailchimp, mc):
    with prism_mailchimp.checked() as seen:
        first = mailchimp_activity(Bounded(mc), "aud1")
        later = mailchimp_activity(Bounded(mc), "aud1", since=pd.Timestamp("2026-11-20T00:00:00Z"))
        drain(mc.iter_email_activity("c1", since=pd.Timestamp("2026-11-20T00:00:00Z")))
        drain(mc.iter_unsubscribes("c1"))
    paths = {p for _, p in seen}
    assert "/campaigns" in paths and "/reports/c1/email-activity" in paths and "/reports/c1/unsubscribed" in paths
    assert list(first.columns) == list(later.columns)


def test_the_check_catches_a_request_the_spec_forbids(prism_mailchimp, mc):
    with pytest.raises(AssertionError, match="Violation"):
        with prism_mailchimp.checked():
            mc.session.request("PUT", "/lists/aud1/members/abc", json={"email_address": 42, "status_if_new": "maybe"})


