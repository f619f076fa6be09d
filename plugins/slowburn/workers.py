"""How many cores a step may use, and a map over them for pure-Python work.

Normalisers such as phonenumbers and cleanco are pure Python (50-100 us a value), so threads do not
help them; a first night has a few hundred thousand distinct phones and companies.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager

log = logging.getLogger(__name__)

# Below this many values a pool's start-up (about a second: each worker imports the normalisers)
# costs more than it saves.
PARALLEL_MIN_VALUES = 20_000

_shared: list = []  # the pool of the innermost shared_pool(), once started


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def shared_pool():
    """Inside, map_in_processes calls share one pool of workers, started on first need and shut on exit."""
    _shared.append(None)
    try:
        yield
    finally:
        pool = _shared.pop()
        if pool is not None:
            pool.shutdown()


def map_in_processes(fn, values: list, min_values: int | None = None) -> list:
    """[fn(v) for v in values], spread over worker processes when there are many values and cores.

    `fn` must be a module-level function (it is pickled by name). Where worker processes cannot be
    started (a daemonic process, such as a Celery prefork child, may not have children) the values are
    mapped here, one after the other: slower, never different.
    """
    import multiprocessing

    workers = min(available_cores(), 8)
    min_values = PARALLEL_MIN_VALUES if min_values is None else min_values
    if workers < 2 or len(values) < max(min_values, 2) or multiprocessing.current_process().daemon:
        return [fn(v) for v in values]
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    own = not _shared
    try:
        pool = None if own else _shared[-1]
        if pool is None:
            # forkserver, not fork: a fork of a process that runs Arrow's thread pools can deadlock.
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
            if not own:
                _shared[-1] = pool
        try:
            return list(pool.map(fn, values, chunksize=max(1, len(values) // (workers * 8))))
        finally:
            if own:
                pool.shutdown()
    except (OSError, BrokenProcessPool) as exc:
        log.warning("%s: worker processes failed (%s); mapping %d values in this process", fn.__name__, exc,
                    len(values))
        if not own and _shared[-1] is not None:  # a broken pool is not used again
            _shared[-1].shutdown(wait=False, cancel_futures=True)
            _shared[-1] = None
        return [fn(v) for v in values]
