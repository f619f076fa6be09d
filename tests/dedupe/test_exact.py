"""Exact-match dedupe: transitive clusters, stable golden ids, survivorship."""
from __future__ import annotations

import pandas as pd

from slowburn.dedupe import cluster_exact, survive


def _leads(rows):
    cols = ["row_key", "source_system", "source_id", "email_canonical", "phone_e164", "last_name_norm",
            "first_name", "last_name", "email", "company", "title", "website", "street", "city", "state",
            "postcode", "country_code", "owner_id", "status", "stage", "lead_source"]
    frame = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows]).astype("string")
    for c in ("created_at", "updated_at", "last_activity_at"):
        frame[c] = pd.to_datetime([r.get(c) for r in rows], utc=True)
    frame["email_opt_out"] = pd.array([r.get("email_opt_out", False) for r in rows], dtype="boolean")
    frame["do_not_call"] = pd.array([False] * len(rows), dtype="boolean")
    return frame


ROWS = [
    {"row_key": "a:1", "source_system": "crm", "source_id": "1", "email_canonical": "bsmith@gmail.com",
     "last_name_norm": "smith", "first_name": "Bill", "updated_at": "2026-11-01", "created_at": "2026-10-01"},
    {"row_key": "a:2", "source_system": "hub", "source_id": "9", "email_canonical": "bsmith@gmail.com",
     "phone_e164": "+14155550100", "last_name_norm": "smith", "first_name": "William", "owner_id": "O2",
     "updated_at": "2026-11-05", "created_at": "2026-11-01", "email_opt_out": True},
    {"row_key": "a:3", "source_system": "evt", "source_id": "5", "phone_e164": "+14155550100",
     "last_name_norm": "smith", "first_name": None, "title": "VP", "updated_at": "2026-11-09"},
    {"row_key": "a:4", "source_system": "evt", "source_id": "6", "phone_e164": "+14155550100",
     "last_name_norm": "jones", "first_name": "Al", "updated_at": "2026-11-09"},
]


def test_transitive_clusters_and_rules():
    links = cluster_exact(_leads(ROWS))
    ids = links["golden_id"].tolist()
    assert ids[0] == ids[1] == ids[2] != ids[3]  # 1~2 by email, 2~3 by phone+surname; Jones shares a phone only
    assert links["match_rule"].tolist() == ["exact_email", "exact_email", "exact_phone_surname", "singleton"]


def test_golden_ids_are_stable_across_input_order():
    first = cluster_exact(_leads(ROWS)).set_index("row_key")["golden_id"]
    again = cluster_exact(_leads(ROWS[::-1])).set_index("row_key")["golden_id"]
    assert first.sort_index().equals(again.sort_index())


def test_survivorship():
    leads = _leads(ROWS)
    golden = survive(leads, cluster_exact(leads)).set_index("source_count")
    smith = golden.loc[3]
    assert smith.first_name == "William"       # newest non-null (row 3 is newer but has no first name)
    assert smith.title == "VP"                 # the only non-null value
    assert smith.owner_id == "O2"
    assert str(smith.created_at).startswith("2026-10-01")
    assert bool(smith.email_opt_out) is True   # an opt-out anywhere wins
    assert smith.source_keys.count("|") == 2


def test_empty_input():
    assert cluster_exact(_leads([])).empty
