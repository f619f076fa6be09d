"""Property tests: every pipeline step over contract-valid frames we did not hand-pick.

Each step either returns a frame that passes the next step's contract (and keeps every row
accounted for) or raises a ContractError that names the column. Frames come from the contract
definitions (tests/property/strategies.py): arbitrary nulls, empty frames, odd text and dates.
"""
from __future__ import annotations

import inspect

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slowburn import contracts as C
from slowburn.dedupe import GOLDEN_COLUMNS, dedupe_leads
from slowburn.dedupe.lineage import LINK_COLUMNS
from slowburn.dedupe.config import load_config
from slowburn.flags import FLAG_COLUMNS, FlagConfig, flag_leads
from slowburn.normalize import normalise_leads
from slowburn.pipeline import _golden_id_of_touches
from slowburn.ripeness import load_config as ripeness_config
from slowburn.ripeness import score_leads
from slowburn.route import RoutingConfig, route
from slowburn.validate import gx_context, validate

from contract_strategies import NOW, frames, landed

PROPERTY = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def gx(tmp_path_factory):
    return gx_context(tmp_path_factory.mktemp("gx"))


def contract_error_names_a_column(exc: C.ContractError, contract: C.Contract) -> bool:
    return any(repr(name) in str(exc) or name in str(exc) for name in contract.names)


def run_chain(leads: pd.DataFrame, touches: pd.DataFrame, owners: pd.DataFrame, outcomes: pd.DataFrame, gx):
    """normalise -> validate -> dedupe -> score -> route -> flag, checking each hand-over."""
    # normalise: every landed row comes out, typed to the normalised contract.
    norm, problems = normalise_leads(landed(leads))
    C.check(norm, C.NORMALISED_LEADS, step="property normalise")
    assert len(norm) == len(leads)
    # validate: every row is valid or quarantined, never both, never neither.
    result = validate(norm, "leads", run_id="p", context=gx, coercion_problems=problems)
    valid, quarantine = result.valid, result.quarantine
    C.check(valid, C.NORMALISED_LEADS, step="property validate")
    assert set(valid["row_key"]) | set(quarantine["row_key"]) == set(norm["row_key"])
    assert not set(valid["row_key"]) & set(quarantine["row_key"])
    # dedupe: one link per valid row, every link's golden record exists.
    res = dedupe_leads(valid.assign(run_id="p"), None, load_config(), run_id="p")
    links, golden = res.links, res.golden
    assert list(links.columns) == LINK_COLUMNS and len(links) == len(valid)
    assert links["golden_id"].notna().all() and set(links["golden_id"]) == set(golden["golden_id"])
    assert set(GOLDEN_COLUMNS) <= set(golden.columns) and golden["golden_id"].is_unique
    # score: one score per golden lead, 0..100, a known tier.
    C.check(touches, C.TOUCHES, step="property score")
    cfg = ripeness_config()
    scores, _ = score_leads(golden, links, touches, outcomes, cfg, NOW)
    assert sorted(scores["golden_id"]) == sorted(golden["golden_id"])
    assert scores["score"].between(0, 100).all() and scores["tier"].isin(C.TIERS).all()
    # route: each lead in at most one queue, only golden leads.
    C.check(owners, C.OWNERS, step="property route")
    sales, nurture = route(golden, scores, owners, NOW, RoutingConfig.from_config(cfg))
    assert not set(sales["golden_id"]) & set(nurture["golden_id"])
    assert set(sales["golden_id"]) | set(nurture["golden_id"]) <= set(golden["golden_id"])
    # flag: flags name golden leads and carry every flag column.
    history = touches.assign(golden_id=_golden_id_of_touches(touches, links))
    outcome_ids = outcomes.merge(links[["source_system", "source_id", "golden_id"]], on=["source_system", "source_id"])
    queues = {"sales_queue": sales, "nurture_queue": nurture, "routing": RoutingConfig.from_config(cfg)}
    accepted = inspect.signature(flag_leads).parameters  # the SLA rule reads tonight's queues where it can
    flags = flag_leads(golden, scores, owners, NOW, FlagConfig(), touches=history, outcomes=outcome_ids,
                       **{k: v for k, v in queues.items() if k in accepted})
    assert list(flags.columns) == FLAG_COLUMNS
    assert set(flags["golden_id"]) <= set(golden["golden_id"])
    return flags


@PROPERTY
@given(leads=frames(C.LEADS, max_rows=10), touches=frames(C.TOUCHES, max_rows=8),
       owners=frames(C.OWNERS, max_rows=3), outcomes=frames(C.OUTCOMES_CONTRACT, max_rows=3))
def test_every_step_holds_on_contract_valid_frames(leads, touches, owners, outcomes, gx):
    try:
        run_chain(leads, touches, owners, outcomes, gx)
    except C.ContractError as exc:  # allowed, but it must say which column
        assert contract_error_names_a_column(exc, C.NORMALISED_LEADS), str(exc)


# Valid rows only (a contact point, an id, a status): the later steps then always get work to do.
_VALID = {"source_id": st.sampled_from(["1", "2", "3", "4", "5"]), "email": st.sampled_from(
    ["ann@acme.com", "B.Smith+x@gmail.com", "bsmith@googlemail.com", "lee@globex.de"]),
    "status": st.sampled_from(C.OPEN_STATUSES), "created_at": st.just(NOW - pd.Timedelta(days=40)),
    "updated_at": st.just(NOW - pd.Timedelta(days=2))}


@PROPERTY
@given(leads=frames(C.LEADS, min_rows=1, max_rows=8, overrides=_VALID), touches=frames(C.TOUCHES, max_rows=8),
       owners=frames(C.OWNERS, max_rows=3), outcomes=frames(C.OUTCOMES_CONTRACT, max_rows=3))
def test_later_steps_hold_on_valid_leads_with_nulls_elsewhere(leads, touches, owners, outcomes, gx):
    run_chain(leads, touches, owners, outcomes, gx)


def test_empty_night_runs_every_step(gx):
    flags = run_chain(C.LEADS.empty(), C.TOUCHES.empty(), C.OWNERS.empty(), C.OUTCOMES_CONTRACT.empty(), gx)
    assert flags.empty


def test_a_missing_column_is_named():
    leads = C.LEADS.empty().drop(columns=["status"])
    with pytest.raises(C.ContractError, match="status"):
        C.check(leads, C.LEADS, step="property")


# Small frames with Splink forced on (training.min_rows=2): the model is built from whatever columns
# carry data, and must never fail (the deterministic fallback would hide that, so it is checked).
_FORCED = load_config().with_overrides(training={"min_rows": 2, "u_max_pairs": 10_000, "em_max_pairs": 10_000})
_SAME_PEOPLE = {"first_name": st.sampled_from(["Ann", "Bill", "William", None]),
                "last_name": st.sampled_from(["Smith", "Lee", None]),
                "street": st.sampled_from(["12 Main Street", "12 main st.", None]),
                "postcode": st.sampled_from(["02110", "02111", None])}


@settings(max_examples=6, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(leads=frames(C.LEADS, max_rows=12, overrides=_SAME_PEOPLE))
def test_splink_linkage_never_fails_on_the_shape_of_the_data(leads):
    norm, _ = normalise_leads(landed(leads))
    res = dedupe_leads(norm.assign(run_id="p"), None, _FORCED, run_id="p")
    assert "Splink failed" not in str(res.report.get("reason")), res.report["reason"]
    assert len(res.links) == len(norm) and res.links["golden_id"].notna().all()
    assert set(res.links["golden_id"]) == set(res.golden["golden_id"])
