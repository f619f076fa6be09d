"""Clustering: the chaining guard, and golden ids that stay put across runs."""
from __future__ import annotations

import numpy as np
import pandas as pd

from slowburn.dedupe.clustering import assign_golden_ids, cluster, mint_id


def edges(*pairs):
    return pd.DataFrame({"a": [p[0] for p in pairs], "b": [p[1] for p in pairs],
                         "probability": [p[2] for p in pairs], "match_weight": [p[2] * 30 for p in pairs],
                         "rule": [p[3] if len(p) > 3 else "splink" for p in pairs]})


def test_chaining_guard_splits_two_companies():
    # 0 john@acme.com -- 1 (gmail, no corporate mail) -- 2 john@globex.com; 3 another acme row of 0.
    corp = pd.Series(["acme.com", None, "globex.com", "acme.com"])
    e = edges((0, 1, 0.999), (1, 2, 0.995), (0, 3, 1.0, "exact_email"))
    c = cluster(4, e, corp)
    labels = c.labels
    assert labels[0] == labels[1] == labels[3] != labels[2]   # the weaker link to globex is refused
    assert len(c.refused) == 1 and c.refused.iloc[0][["a", "b"]].tolist() == [1, 2]
    assert "acme.com" in c.refused.iloc[0]["reason"] and "globex.com" in c.refused.iloc[0]["reason"]
    assert c.split_components == 1


def test_chaining_guard_off_merges_everything():
    corp = pd.Series(["acme.com", None, "globex.com"])
    c = cluster(3, edges((0, 1, 0.999), (1, 2, 0.995)), corp, guard=False)
    assert len(set(c.labels)) == 1


def test_same_company_aliases_are_not_a_conflict():
    corp = pd.Series(["acme.com", "acme.com", None])
    c = cluster(3, edges((0, 1, 0.999), (1, 2, 0.995)), corp)
    assert len(set(c.labels)) == 1 and c.refused.empty


def test_golden_ids_keep_existing_merge_to_oldest_and_mint_new():
    keys = pd.Series(["s:1", "s:2", "s:3", "s:4", "s:5"])
    prev = pd.Series(["g-old", "g-new", None, "g-mine", None], dtype="string")
    existing = np.array([True, True, False, False, False])  # rows 3 and 4 are tonight's
    created = pd.to_datetime(["2025-01-01", "2026-01-01", "2026-02-01", "2026-03-01", "2026-03-02"], utc=True)
    labels = np.array([0, 0, 0, 1, 2])  # tonight's row 2 bridged two existing records
    gid, merges = assign_golden_ids(labels, keys, prev, existing, pd.Series(created))
    assert list(gid[:3]) == ["g-old"] * 3                 # the older record survives
    assert merges.to_dict("records") == [{"survivor": "g-old", "absorbed": "g-new", "rows_moved": 1}]
    assert gid[3] == "g-mine"                              # a changed lead keeps its id
    assert gid[4] == mint_id("s:5")                        # a new person gets a minted id


def test_minted_id_never_collides_with_one_in_use():
    # Row 1 once minted mint_id("s:1") for a record that still exists (held by row 0 now).
    keys = pd.Series(["s:0", "s:1"])
    prev = pd.Series([mint_id("s:1"), mint_id("s:1")], dtype="string")
    gid, _ = assign_golden_ids(np.array([0, 1]), keys, prev, np.array([True, False]),
                               pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True)))
    assert gid[0] == mint_id("s:1") and gid[1] != gid[0]


def test_changed_lead_cannot_take_an_id_an_untouched_record_still_holds():
    # Row 0 (existing, alone in its component) still holds g-a; row 1 was in g-a but changed tonight and
    # now stands apart: it gets a new id, and g-a stays with the record nobody touched.
    keys = pd.Series(["s:0", "s:1", "s:2"])
    prev = pd.Series(["g-a", "g-a", "g-b"], dtype="string")
    gid, merges = assign_golden_ids(np.array([0, 1, 2]), keys, prev, np.array([True, False, True]),
                                    pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True)))
    assert gid[0] == "g-a" and gid[2] == "g-b" and gid[1] == mint_id("s:1") and merges.empty
