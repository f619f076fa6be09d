"""slowburn.workers: the process map gives what a plain map gives, on real worker processes."""
from __future__ import annotations

import multiprocessing
import os

import pandas as pd
import pytest

from slowburn import workers
from slowburn.workers import available_cores, map_in_processes, shared_pool

needs_two_cores = pytest.mark.skipif(available_cores() < 2, reason="worker processes are used only with 2+ cores")


def square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


@needs_two_cores
def test_many_values_are_mapped_by_other_processes_in_order():
    got = map_in_processes(square_and_pid, list(range(500)), min_values=0)
    assert [v for v, _ in got] == [x * x for x in range(500)]
    assert {pid for _, pid in got} - {os.getpid()}, "no value was mapped by a worker process"


def test_few_values_are_mapped_here():
    got = map_in_processes(square_and_pid, list(range(50)))
    assert got == [(x * x, os.getpid()) for x in range(50)]


@needs_two_cores
def test_a_shared_pool_is_started_once_and_shut_on_exit():
    with shared_pool():
        first = {pid for _, pid in map_in_processes(square_and_pid, list(range(200)), min_values=0)}
        second = {pid for _, pid in map_in_processes(square_and_pid, list(range(200)), min_values=0)}
        pool = workers._shared[-1]
        assert pool is not None
        started = set(pool._processes)
    assert first and first | second <= started, "the second map started other workers"
    assert not workers._shared and pool._processes is None  # shut on exit


def _map_in_daemon(queue):
    queue.put(map_in_processes(square_and_pid, list(range(100)), min_values=0))


def test_a_daemonic_process_maps_its_values_itself():
    """A Celery prefork child is daemonic and may not start workers: it must still get every value."""
    ctx = multiprocessing.get_context("forkserver")
    queue = ctx.Queue()
    child = ctx.Process(target=_map_in_daemon, args=(queue,), daemon=True)
    child.start()
    got = queue.get(timeout=60)
    child.join(60)
    assert [v for v, _ in got] == [x * x for x in range(100)]
    assert {pid for _, pid in got} == {child.pid}


@needs_two_cores
def test_normalised_febrl_leads_are_the_same_through_worker_processes(monkeypatch):
    """Leads we did not generate (FEBRL), with phones and companies made from their fields, normalised
    once in this process and once through worker processes: every column must be equal."""
    from slowburn.dedupe.febrl import febrl_leads
    from slowburn.normalize import normalise_leads

    leads, _ = febrl_leads("febrl2")
    leads = leads.head(2000).copy()
    digits = leads["postcode"].fillna("0000").str.replace(r"\D", "", regex=True).str.pad(4, fillchar="0")
    leads["phone"] = ("(02) " + digits + " " + leads["source_id"].str[-4:].str.pad(4, fillchar="1")).astype("string")
    leads["company"] = (leads["last_name"].fillna("") + " Pty. Ltd.").astype("string")
    leads["row_key"] = ("febrl:" + leads["source_id"]).astype("string")
    leads["source_name"] = "febrl"
    here, problems_here = normalise_leads(leads, {"febrl": "AU"})
    monkeypatch.setattr(workers, "PARALLEL_MIN_VALUES", 0)
    there, problems_there = normalise_leads(leads, {"febrl": "AU"})
    pd.testing.assert_frame_equal(here, there)
    pd.testing.assert_frame_equal(problems_here, problems_there)
    assert here["phone_e164"].notna().sum() > 1000 and here["company_norm"].notna().sum() > 1000
