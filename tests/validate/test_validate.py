"""GX-backed validation: each rule quarantines exactly the rows that break it, with a readable reason."""
from __future__ import annotations

import pandas as pd

from slowburn.normalize import normalise_leads
from slowburn.validate import validate


def _landed(rows):
    base = {c: None for c in ("source_system", "source_id", "first_name", "last_name", "email", "phone", "company",
                              "title", "website", "street", "city", "state", "postcode", "country", "owner_id",
                              "status", "stage", "lead_source", "created_at", "updated_at", "last_activity_at",
                              "email_opt_out", "do_not_call")}
    frame = pd.DataFrame([{**base, "source_system": "crm", "status": "new", "created_at": "2026-11-01",
                           "updated_at": "2026-11-02", **r} for r in rows]).astype("string")
    frame.insert(0, "row_key", [f"crm:{i + 1}" for i in range(len(frame))])
    frame.insert(1, "source_name", "crm")
    return frame


def test_rules_and_reasons(tmp_path):
    landed = _landed([
        {"source_id": "A", "email": "ok@acme.com"},
        {"source_id": "B", "email": "bob@@acme"},
        {"source_id": "C", "email": None, "phone": None},
        {"source_id": "D", "email": "d@acme.com", "status": "Bogus"},
        {"source_id": None, "email": "e@acme.com"},
        {"source_id": "F", "email": "f@acme.com", "created_at": "31/02/2026"},
        {"source_id": "G", "phone": "+1 415 555 0100"},
    ])
    leads, problems = normalise_leads(landed)
    result = validate(leads, "leads", run_id="r1", docs_dir=tmp_path / "gx", coercion_problems=problems)
    rules = result.quarantine.groupby("row_key")["rule"].apply(set).to_dict()
    assert rules == {
        "crm:2": {"invalid_email", "no_contact_point"},
        "crm:3": {"no_contact_point"},
        "crm:4": {"unknown_status"},
        "crm:5": {"missing_source_id"},
        "crm:6": {"missing_created_at", "unparseable_created_at"},
    }
    assert result.valid["source_id"].tolist() == ["A", "G"]
    reason = result.quarantine.set_index("rule").loc["invalid_email", "reason"]
    assert "bob@@acme" in reason and "correct it" in reason
    assert result.docs_index and result.docs_index.endswith("index.html")
    assert (tmp_path / "gx").exists()


def test_duplicate_source_id_keeps_the_newest(tmp_path):
    landed = _landed([
        {"source_id": "A", "email": "old@acme.com", "updated_at": "2026-11-01"},
        {"source_id": "A", "email": "new@acme.com", "updated_at": "2026-11-05"},
        {"source_id": "B", "email": "b@acme.com"},
    ])
    leads, problems = normalise_leads(landed)
    result = validate(leads, "leads", run_id="r1", coercion_problems=problems)
    assert result.quarantine[["row_key", "rule"]].values.tolist() == [["crm:1", "duplicate_source_id"]]
    assert sorted(result.valid["email"]) == ["b@acme.com", "new@acme.com"]


def test_every_row_is_valid_or_quarantined(tmp_path):
    landed = _landed([{"source_id": str(i), "email": "x@@y" if i % 3 == 0 else f"p{i}@acme.com"}
                      for i in range(30)])
    leads, problems = normalise_leads(landed)
    result = validate(leads, "leads", run_id="r1", coercion_problems=problems)
    assert len(result.valid) + result.quarantine["row_key"].nunique() == 30
    assert not set(result.valid["row_key"]) & set(result.quarantine["row_key"])
