"""Survivorship: every rule, and provenance that names the source row of every field."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from slowburn.dedupe.config import DedupeConfig, DEFAULTS, _merge
from slowburn.dedupe.survivorship import survive_rules


def leads():
    rows = [
        # golden A: three rows from three systems
        {"source_system": "hubspot", "source_id": "h1", "first_name": "Bill", "company": "ACME",
         "title": "VP Sales", "website": "acme.com", "owner_id": None, "lead_source": "form_fill",
         "created_at": "2026-01-01", "updated_at": "2026-03-01", "email_opt_out": False},
        {"source_system": "salesforce", "source_id": "s1", "first_name": "William", "company": "Acme Incorporated",
         "title": None, "website": "https://www.acme.com", "owner_id": "O1", "lead_source": "rep_created",
         "created_at": "2026-02-01", "updated_at": "2026-02-15", "email_opt_out": True},
        {"source_system": "event_list", "source_id": "e1", "first_name": None, "company": "Acme Inc",
         "title": "VP of Sales", "website": None, "owner_id": None, "lead_source": "event",
         "created_at": "2026-03-01", "updated_at": "2026-04-01", "email_opt_out": None},
        # golden B: a single row
        {"source_system": "salesforce", "source_id": "s2", "first_name": "Ann", "company": "Globex",
         "title": "CTO", "website": None, "owner_id": "O2", "lead_source": "email",
         "created_at": "2026-05-01", "updated_at": "2026-05-02", "email_opt_out": None},
    ]
    df = pd.DataFrame(rows)
    for c in ("created_at", "updated_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    df["email_opt_out"] = df["email_opt_out"].astype("boolean")
    return df, ["A", "A", "A", "B"]


def run(**fields):
    cfg = DedupeConfig(_merge(DEFAULTS, {"survivorship": {"fields": fields}}))
    df, gid = leads()
    return survive_rules(df, gid, cfg).set_index("golden_id")


def test_most_recent_non_null():
    g = run(first_name="most_recent", title="most_recent")
    assert g.loc["A", "first_name"] == "Bill"       # e1 is newer but has no first name; h1 (March) beats s1
    assert g.loc["A", "title"] == "VP of Sales"     # e1, updated in April
    prov = json.loads(g.loc["A", "provenance"])
    assert prov["first_name"] == "hubspot:h1" and prov["title"] == "event_list:e1"


def test_source_priority():
    g = run(company="source_priority", title="source_priority")
    assert g.loc["A", "company"] == "Acme Incorporated"   # salesforce first
    assert g.loc["A", "title"] == "VP Sales"              # salesforce has none: hubspot next
    assert json.loads(g.loc["A", "provenance"])["title"] == "hubspot:h1"


def test_most_complete():
    g = run(company="most_complete", website="most_complete")
    assert g.loc["A", "company"] == "Acme Incorporated"
    assert g.loc["A", "website"] == "https://www.acme.com"


def test_union():
    g = run(company="union")
    assert g.loc["A", "company"] == "Acme Inc | ACME | Acme Incorporated"  # most recent first
    assert json.loads(g.loc["A", "provenance"])["company"] == ["event_list:e1", "hubspot:h1", "salesforce:s1"]
    assert g.loc["B", "company"] == "Globex"


def test_earliest_latest_and_any():
    g = run(lead_source="earliest", owner_id="latest", created_at="earliest", updated_at="latest")
    assert g.loc["A", "lead_source"] == "form_fill"      # the first sighting: marketing's form fill
    assert g.loc["A", "owner_id"] == "O1"                # the latest-created row with an owner
    assert g.loc["A", "created_at"] == pd.Timestamp("2026-01-01", tz="UTC")
    assert g.loc["A", "updated_at"] == pd.Timestamp("2026-04-01", tz="UTC")
    assert bool(g.loc["A", "email_opt_out"]) is True     # one source said opt out: that wins
    assert bool(g.loc["B", "email_opt_out"]) is False
    assert json.loads(g.loc["A", "provenance"])["email_opt_out"] == "salesforce:s1"


def test_single_row_records_and_members():
    g = run()
    assert g.loc["B", "source_count"] == 1 and g.loc["B", "source_keys"] == "salesforce:s2"
    assert json.loads(g.loc["B", "provenance"]) == {"*": "salesforce:s2"}
    assert pd.isna(g.loc["B", "members"])
    members = json.loads(g.loc["A", "members"])
    assert [m["key"] for m in members] == ["hubspot:h1", "salesforce:s1", "event_list:e1"]  # by creation
    assert members[1] == {"key": "salesforce:s1", "lead_source": "rep_created", "owner_id": "O1",
                          "created_at": "2026-02-01T00:00:00Z"}
    assert g.loc["A", "source_keys"] == "event_list:e1|hubspot:h1|salesforce:s1"


def test_unknown_rule_is_rejected():
    with pytest.raises(ValueError, match="unknown survivorship rule"):
        DedupeConfig(_merge(DEFAULTS, {"survivorship": {"fields": {"title": "loudest"}}}))
