"""Mailchimp client and `kind: mailchimp` sources against the loopback Mailchimp server (tests/fakes/mailchimp.py)."""
from __future__ import annotations

import json
import logging

import pytest

from fakes.base import Faults
from fakes.mailchimp import FakeMailchimp, md5
from slowburn.sources import extract_source, parse_sources
from slowburn.sources.http import ConnectorError
from slowburn.sources.mailchimp import MailchimpAuth, MailchimpClient, subscriber_hash

KEY = "0123456789abcdef0123456789abcdef-us6"


def client(fake, **kw) -> MailchimpClient:
    opts = {"max_requests": 10_000, "backoff": 0.005, "poll_interval": 0.01}
    opts.update(kw)
    return MailchimpClient(fake.api_url, KEY, **opts)


def test_subscriber_hash_is_md5_of_the_lowercased_address():
    assert subscriber_hash(" Ann@Example.COM ") == md5("ann@example.com")


def test_upserts_use_status_if_new_and_never_resubscribe_unsubscribed_or_bounced():
    with FakeMailchimp(token=KEY, faults=Faults(fail_every=4, throttle_every=7)) as fake:
        fake.add_member("aud1", "left@acme.com", "unsubscribed")
        fake.add_member("aud1", "bounced@acme.com", "cleaned")
        mc = client(fake)
        members = [{"email_address": f"p{i}@acme.com", "merge_fields": {"FNAME": f"P{i}"}} for i in range(40)]
        members += [{"email_address": "left@acme.com"}, {"email_address": "bounced@acme.com"},
                    {"email_address": "not-an-address"}]
        out = mc.upsert_members("aud1", members)
        assert len(out.ok) == 42
        [bad] = out.errors.values()
        assert "email_address" in bad and "Please provide a valid email address" in bad
        assert fake.member("aud1", "left@acme.com")["status"] == "unsubscribed"
        assert fake.member("aud1", "bounced@acme.com")["status"] == "cleaned"
        assert sorted(fake.subscribe_events) == sorted(f"p{i}@acme.com" for i in range(40))
        assert all("status" not in body for _, body in fake.member_puts)
        assert fake.peak_in_flight <= 10


def test_the_client_refuses_to_set_a_subscribing_status():
    mc = MailchimpClient("http://127.0.0.1:9/3.0", KEY)
    with pytest.raises(ConnectorError) as err:
        mc.member_operation("aud1", {"email_address": "a@b.com", "status": "subscribed"})
    assert "status" in str(err.value)


def test_large_upserts_go_through_batches_with_per_operation_results():
    with FakeMailchimp(token=KEY, batch_polls=2, faults=Faults(fail_every=5)) as fake:
        fake.add_member("aud1", "left@acme.com", "unsubscribed")
        mc = client(fake, batch_threshold=50, batch_size=40)
        members = [{"email_address": f"p{i}@acme.com"} for i in range(110)] + [{"email_address": "left@acme.com"},
                                                                               {"email_address": "broken@"}]
        out = mc.upsert_members("aud1", members)
        assert len(out.ok) == 111 and list(out.errors) == [subscriber_hash("broken@")]
        posts = [r for r in fake.received if r.method == "POST" and r.path == "/3.0/batches" and r.status == 200]
        assert len(posts) == 3 and all(len(r.json["operations"]) <= 40 for r in posts)
        assert all(isinstance(op["body"], str) for r in posts for op in r.json["operations"])
        assert fake.member("aud1", "left@acme.com")["status"] == "unsubscribed"
        archives = [r for r in fake.received if r.path.startswith("/_archives/")]
        assert archives and all("Authorization" not in r.headers for r in archives)


def test_tags_are_added_and_removed():
    with FakeMailchimp(token=KEY) as fake:
        h = fake.add_member("aud1", "a@acme.com")
        mc = client(fake)
        out = mc.run_direct([mc.tag_operation("aud1", h, [{"name": "slowburn:new", "status": "active"},
                                                          {"name": "slowburn:old", "status": "inactive"}])])
        assert h in out.ok
        assert fake.member("aud1", "a@acme.com")["tags"] == {"slowburn:new": True, "slowburn:old": False}
        missing = mc.run_direct([mc.tag_operation("aud1", "0" * 32, [{"name": "x", "status": "active"}])])
        assert "Resource Not Found" in missing.errors["0" * 32]


def test_audience_as_leads_and_unsubscribes_as_touches(tmp_path, monkeypatch):
    with FakeMailchimp(token=KEY) as fake:
        fake.add_member("aud1", "a@acme.com", "subscribed", FNAME="Ann")
        fake.add_member("aud1", "b@acme.com", "unsubscribed")
        fake.add_member("aud1", "c@acme.com", "cleaned")
        monkeypatch.setenv("SLOWBURN_CONN_MAILCHIMP_DEFAULT", json.dumps(
            {"host": fake.api_url, "password": KEY, "extra": {"backoff": 0.005}}))
        leads_cfg, touch_cfg = parse_sources({"sources": [
            {"name": "mc", "kind": "mailchimp", "entity": "leads", "list_id": "aud1",
             "constants": {"source_system": "mailchimp"},
             "columns": {"source_id": "id", "email": "email_address", "first_name": "first_name",
                         "updated_at": "last_changed", "email_opt_out": "opted_out"}},
            {"name": "mc_events", "kind": "mailchimp", "entity": "touches", "list_id": "aud1",
             "constants": {"source_system": "mailchimp", "channel": "email"},
             "columns": {"lead_source_id": "id", "touch_type": "event", "occurred_at": "last_changed"}}]}, tmp_path)
        leads = extract_source(leads_cfg)
        assert dict(zip(leads.rows["email"], leads.rows["email_opt_out"])) == {
            "a@acme.com": "false", "b@acme.com": "true", "c@acme.com": "true"}
        touches = extract_source(touch_cfg).rows
        assert sorted(touches["touch_type"]) == ["email_bounce", "unsubscribe"]
        # Incremental: nothing changed since the watermark (the overlap brings back at most the last ones).
        again = extract_source(leads_cfg, leads.high_watermark)
        assert len(again.rows) <= 3 and again.rows["source_id"].is_unique


def test_api_key_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    with FakeMailchimp(token=KEY, faults=Faults(fail_every=2)) as fake:
        mc = client(fake)
        mc.upsert_members("aud1", [{"email_address": "a@acme.com"}])
        with pytest.raises(ConnectorError) as err:
            MailchimpClient(fake.api_url, KEY.replace("0", "9"), backoff=0.001).upsert_members(
                "aud1", [{"email_address": "a@acme.com"}])
    assert "API Key Invalid" in str(err.value)
    for secret in (KEY, KEY.split("-")[0], KEY.replace("0", "9")):
        assert secret not in caplog.text and secret not in str(err.value)


OAUTH_TOKEN = "5b1e9f0c7d2a4e3b8c6f1a0d9e8b7c6a"


def test_oauth_access_token_finds_its_data_centre_and_is_never_logged(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeMailchimp(token=OAUTH_TOKEN) as fake:
        fake.add_member("aud1", "a@acme.com", FNAME="Ann")
        monkeypatch.setenv("SLOWBURN_CONN_MC_OAUTH", json.dumps({"password": OAUTH_TOKEN, "extra": {
            "auth": "oauth", "metadata_url": f"{fake.url}/oauth2/metadata", "backoff": 0.005}}))
        mc = MailchimpClient.from_connection("mc_oauth")
        assert mc.session.base_url == fake.url + "/3.0"  # from the metadata endpoint's api_endpoint
        frame = mc.read_frame("aud1")
        assert list(frame["email_address"]) == ["a@acme.com"]
        assert all(r.headers.get("Authorization") == f"Bearer {OAUTH_TOKEN}" for r in fake.received
                   if r.path.startswith("/3.0/"))
        with pytest.raises(ConnectorError) as err:  # the key's place taken by a token the server does not know
            MailchimpClient(fake.api_url, auth=MailchimpAuth(
                access_token=OAUTH_TOKEN[::-1]), backoff=0.001).read_frame("aud1")
    assert OAUTH_TOKEN not in caplog.text and OAUTH_TOKEN[::-1] not in str(err.value) and "401" in str(err.value)
