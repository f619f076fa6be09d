"""A lead set whose conversions depend on custom attributes: the check that slowburn learns them.

The default sample (slowburn.sample) drives conversions by fit and engagement. Real CRMs carry the
strongest signals in custom fields (occupation, time on site, company size, industry), which a
scorer that ignores them cannot see. `write_attribute_sample` writes a sources folder in the shape
of a real export: leads.csv with vendor column names and custom fields, touches.csv whose page
views carry seconds on page, owners.csv, outcomes.csv and a sources.yaml that maps the custom
fields under `attributes:`. The truth (each lead's conversion log-odds) is known, so the benchmark
and tests can check that the model recovers it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

OCCUPATIONS = {"Working Professional": 1.6, "Businessman": 0.8, "Other": 0.0, "Housewife": -0.3,
               "Unemployed": -0.9, "Student": -1.3}
INDUSTRIES = {"Finance": 0.6, "Software": 0.5, "Healthcare": 0.1, "Retail": -0.1, "Education": -0.4,
              "Media": 0.0, "Logistics": 0.0, "Select": 0.0}
TITLES = ["Student", "Unemployed", "Marketing Manager", "VP Sales", "Analyst", "Founder", "Teacher", "Consultant",
          "Head of Ops", None]
SOURCES = {"form_fill": 0.3, "target_page": 0.2, "email": 0.0, "event": -0.1, "purchased_list": -0.5}


def generate(n_leads: int, seed: int, now: str | pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Vendor-shaped frames: leads, touches, owners, outcomes, and truth (golden key, log-odds, won)."""
    rng = np.random.default_rng(seed)
    now = pd.Timestamp(now, tz="UTC") if pd.Timestamp(now).tzinfo is None else pd.Timestamp(now)
    n = n_leads
    ids = np.array([f"X{i:07d}" for i in range(n)])
    occupation = rng.choice(list(OCCUPATIONS), n, p=[0.35, 0.08, 0.12, 0.05, 0.15, 0.25])
    industry = rng.choice(list(INDUSTRIES), n)
    employees = np.round(np.exp(rng.normal(4.0, 1.6, n))).astype(int) + 1
    newsletter = rng.random(n) < 0.3
    interest = rng.random(n)                       # latent: drives time on site and page views
    time_on_site = np.round(rng.gamma(1.5, 300, n) * (0.3 + 1.7 * interest))
    source = rng.choice(list(SOURCES), n, p=[0.3, 0.2, 0.2, 0.15, 0.15])
    title = rng.choice(np.array(TITLES, dtype=object), n)
    z = (-0.9 + np.vectorize(OCCUPATIONS.get)(occupation) + np.vectorize(INDUSTRIES.get)(industry)
         + 1.2 * (time_on_site / 1000.0) + 0.25 * np.log10(employees) + 0.3 * newsletter
         + np.vectorize(SOURCES.get)(source))
    won = rng.random(n) < 1 / (1 + np.exp(-z))
    created = now - pd.to_timedelta(rng.uniform(5, 730, n), unit="D")
    life = pd.to_timedelta(rng.uniform(10, 120, n), unit="D")
    closes = created + life
    closed = closes < now
    # Blank custom fields, as real exports have them; and a placeholder category ("Select").
    occ_text = np.where(rng.random(n) < 0.1, "", occupation)
    tos_text = np.where(rng.random(n) < 0.05, "", time_on_site.astype(int).astype(str))
    leads = pd.DataFrame({
        "Lead Id": ids, "First Name": [f"Ann{i}" for i in range(n)], "Last Name": [f"Lee{i}" for i in range(n)],
        "Email": [f"lead{i}@example{i % 97}.com" for i in range(n)], "Job Title": title,
        "Company": [f"Company {i % 5000}" for i in range(n)],
        "Phone": [f"+1 415 {200 + i // 10000 % 800:03d} {i % 10000:04d}" for i in range(n)],
        "Street": [f"{1 + i % 900} Main St" for i in range(n)], "City": rng.choice(["Austin", "Leeds", "Pune"], n),
        "Zip": [f"{10000 + i % 89999}" for i in range(n)], "Country": rng.choice(["US", "GB", "DE", "IN"], n),
        "Owner": rng.choice(["o1", "o2", "o3", "o4"], n), "Lead Status": np.where(closed, "closed", "working"),
        "Lead Origin": source, "Created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Modified": (created + pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "What is your current occupation": occ_text, "Industry": industry, "Employees": employees.astype(str),
        "Total Time Spent on Website": tos_text, "Newsletter": np.where(newsletter, "Yes", "No"),
    })
    # A web form re-captured some leads later: same person, a newer (longer) time on site, no other custom field.
    again = np.flatnonzero(rng.random(n) < 0.08)
    webform = pd.DataFrame({
        "id": [f"W{i:07d}" for i in again], "email": leads["Email"].to_numpy()[again],
        "first": leads["First Name"].to_numpy()[again], "last": leads["Last Name"].to_numpy()[again],
        "created": (created[again] + pd.Timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": (time_on_site[again] + 60).astype(int).astype(str)})
    # Touches: page views carry seconds on page; the interested view more, and longer.
    k = rng.poisson(1 + 5 * interest)
    lead_of = np.repeat(np.arange(n), k)
    frac = rng.random(len(lead_of))
    span = np.where(closed, life.total_seconds(), (now - created).total_seconds())[lead_of]
    occurred = created[lead_of] + pd.to_timedelta(frac * span * 0.999, unit="s")
    kind = np.where(rng.random(len(lead_of)) < 0.7, "page_view", "email_open")
    seconds = np.where(kind == "page_view", np.round(rng.gamma(2, 40, len(lead_of)) * (0.5 + interest[lead_of])), "")
    touches = pd.DataFrame({"lead": ids[lead_of], "type": kind, "channel": np.where(kind == "page_view", "web", "email"),
                            "at": occurred.strftime("%Y-%m-%dT%H:%M:%SZ"), "seconds": seconds.astype(str)})
    touches["seconds"] = touches["seconds"].replace("", pd.NA).str.replace(".0", "", regex=False)
    owners = pd.DataFrame({"owner_id": ["o1", "o2", "o3", "o4"], "name": ["A", "B", "C", "D"],
                           "email": [f"o{i}@seller.com" for i in range(1, 5)], "active": "true",
                           "deactivated_at": "", "team": "inside", "territory": "all", "daily_capacity": "25"})
    outcomes = pd.DataFrame({"source_system": "crm", "source_id": ids[closed],
                             "outcome": np.where(won[closed], "won", "lost"),
                             "closed_at": closes[closed].strftime("%Y-%m-%dT%H:%M:%SZ"), "amount": ""})
    truth = pd.DataFrame({"source_id": ids, "log_odds": z, "won": won, "closed": closed})
    return {"leads": leads, "webform": webform, "touches": touches, "owners": owners, "outcomes": outcomes,
            "truth": truth}


def sources_document() -> dict:
    return {"sources": [
        {"name": "crm", "kind": "file", "entity": "leads", "path": "leads.csv",
         "constants": {"source_system": "crm", "stage": "mql"},
         "columns": {"source_id": "Lead Id", "first_name": "First Name", "last_name": "Last Name", "email": "Email",
                     "title": "Job Title", "company": "Company",
                     "phone": "Phone", "street": "Street", "city": "City", "postcode": "Zip", "country": "Country", "owner_id": "Owner",
                     "status": "Lead Status", "lead_source": "Lead Origin", "created_at": "Created",
                     "updated_at": "Modified"},
         "attributes": {"occupation": "What is your current occupation", "industry": "Industry",
                        "employees": {"column": "Employees", "type": "number"},
                        "time_on_site": {"column": "Total Time Spent on Website", "type": "number"},
                        "newsletter": {"column": "Newsletter", "type": "boolean"}}},
        {"name": "webform", "kind": "file", "entity": "leads", "path": "webform.csv",
         "constants": {"source_system": "webform", "lead_source": "form_fill", "status": "new", "stage": "inquiry"},
         "columns": {"source_id": "id", "email": "email", "first_name": "first", "last_name": "last",
                     "created_at": "created", "updated_at": "created"},
         "attributes": {"time_on_site": {"column": "seconds", "type": "number"}}},
        {"name": "web", "kind": "file", "entity": "touches", "path": "touches.csv",
         "constants": {"source_system": "crm"},
         "columns": {"lead_source_id": "lead", "touch_type": "type", "channel": "channel", "occurred_at": "at",
                     "value": "seconds"}},
        {"name": "owners", "kind": "file", "entity": "owners", "path": "owners.csv",
         "columns": {c: c for c in ("owner_id", "name", "email", "active", "deactivated_at", "team", "territory",
                                    "daily_capacity")}},
        {"name": "outcomes", "kind": "file", "entity": "outcomes", "path": "outcomes.csv",
         "columns": {c: c for c in ("source_system", "source_id", "outcome", "closed_at", "amount")}},
    ]}


def write_attribute_sample(out: str | Path, n_leads: int = 20_000, seed: int = 5,
                           now: str | pd.Timestamp = "2026-11-23") -> Path:
    """Write the folder; returns the path of its sources.yaml."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = generate(n_leads, seed, now)
    for name in ("leads", "webform", "touches", "owners", "outcomes"):
        frames[name].to_csv(out / f"{name}.csv", index=False)
    frames["truth"].to_parquet(out / "truth.parquet", index=False)
    path = out / "sources.yaml"
    path.write_text("# Attribute-driven sample (slowburn.ripeness.synthetic): conversions depend on custom fields.\n"
                    + yaml.safe_dump(sources_document(), sort_keys=False, width=120), encoding="utf-8")
    return path
