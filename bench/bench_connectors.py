"""Connector benchmark: pull 100k HubSpot contacts and push 100k Mailchimp member upserts over loopback.

The fake vendors (tests/fakes) run in a separate process, so the CPU time measured here is the client's
own: paging, JSON, frames, planning, hashing and the writeback_log. Each run is done twice:

* at the configured rate limit, where requests/s should sit just under the limit (bound by it), with no 429;
* with the limiter off ("ceiling"), which shows how far above the limit our own overhead would allow.

    python bench/bench_connectors.py                      # 100k/100k, HubSpot 100/1s, Mailchimp 100/10s
    python bench/bench_connectors.py --contacts 20000 --members 20000 --json bench/results/connectors.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "plugins"))

TOKEN = "bench-token-0123456789"
KEY = "bench0123456789abcdef0123456789ab-us1"


def _serve(kind: str, n: int, window, queue, stop):
    import pandas as pd

    from fakes.base import Faults

    faults = Faults(window=window) if window else Faults()
    if kind == "hubspot":
        from fakes.hubspot import FakeHubSpot

        fake = FakeHubSpot(token=TOKEN, faults=faults, record_bodies=False)
        t0 = pd.Timestamp("2026-11-01T00:00:00Z")
        for i in range(n):
            fake.add("contacts", {"email": f"person{i}@example.com", "firstname": f"First{i}", "lastname": "Last",
                                  "company": "Acme", "hs_email_optout": "false"},
                     modified=t0 + pd.Timedelta(seconds=i))
        url = fake.start().url
    else:
        from fakes.mailchimp import FakeMailchimp

        fake = FakeMailchimp(token=KEY, faults=faults, record_bodies=False, batch_polls=1)
        url = fake.start().api_url
    queue.put(url)
    stop.wait()
    queue.put({"429": fake.injected["429"], "requests": fake.count})
    fake.stop()


class Server:
    def __init__(self, kind, n, window=None):
        ctx = mp.get_context("fork")
        self.queue, self.stop_event = ctx.Queue(), ctx.Event()
        self.proc = ctx.Process(target=_serve, args=(kind, n, window, self.queue, self.stop_event), daemon=True)

    def __enter__(self):
        self.proc.start()
        self.url = self.queue.get(timeout=600)
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.stats = self.queue.get(timeout=60)
        self.proc.join(timeout=30)


def _measure(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def bench_pull(n: int, rate: tuple[float, float] | None) -> dict:
    from slowburn.sources.hubspot import HubSpotClient

    window = (int(rate[0]), rate[1]) if rate else None
    with Server("hubspot", n, window) as srv:
        opts = {"max_requests": rate[0], "per_seconds": rate[1]} if rate else {"max_requests": 1e9, "per_seconds": 1}
        client = HubSpotClient(srv.url, TOKEN, **opts)
        frame, wall, cpu = _measure(lambda: client.read_frame("contacts", ["email", "firstname", "lastname",
                                                                           "company", "hs_email_optout"]))
        client.close()
    assert len(frame) == n and frame["id"].is_unique, "every contact exactly once"
    requests = client.session.stats.requests
    return {"what": "hubspot pull (list, 100 per page)", "records": n, "requests": requests,
            "configured_rps": round(rate[0] / rate[1], 2) if rate else None, "wall_s": round(wall, 2),
            "requests_per_s": round(requests / wall, 1), "cpu_s": round(cpu, 2),
            "cpu_ms_per_1k_records": round(cpu / n * 1e6, 1), "throttled_429": srv.stats["429"],
            "limiter_wait_s": round(client.limiter.waited, 2)}


def bench_push(n: int, rate: tuple[float, float] | None, batch_size: int) -> dict:
    import pandas as pd

    from slowburn import writeback as wb
    from slowburn.sources.mailchimp import MailchimpClient
    from slowburn.warehouse import Warehouse

    golden = pd.DataFrame({"golden_id": [f"g{i}" for i in range(n)],
                           "email": [f"person{i}@example.com" for i in range(n)],
                           "first_name": [f"First{i}" for i in range(n)], "last_name": "Last",
                           "email_opt_out": [i % 50 == 0 for i in range(n)], "source_keys": "event_list:x"})
    nurture = pd.DataFrame({"golden_id": golden["golden_id"], "segment": "awareness/general/web",
                            "email_opt_out": golden["email_opt_out"]})
    empty = pd.DataFrame(columns=["golden_id"])
    cfg = wb.WritebackConfig(mailchimp_list_id="aud1", targets=("mailchimp",))
    window = (int(rate[0]), rate[1]) if rate else None
    with Server("mailchimp", 0, window) as srv, tempfile.TemporaryDirectory() as tmp:
        opts = {"max_requests": rate[0], "per_seconds": rate[1]} if rate else {"max_requests": 1e9, "per_seconds": 1}
        client = MailchimpClient(srv.url, KEY, batch_threshold=1000, batch_size=batch_size, poll_interval=0.05,
                                 **opts)
        store = wb.WritebackStore(Warehouse(f"sqlite:///{tmp}/wh.db"))
        store.ensure()
        (ops, plan_wall, plan_cpu) = _measure(lambda: wb.plan_writeback(golden, empty, nurture, previous={},
                                                                        config=cfg))
        members = sum(op.action == "member" for op in ops)
        sink = wb.MailchimpSink(client, "aud1")
        report, wall, cpu = _measure(lambda: wb.execute(ops, {"mailchimp": sink}, store, "bench"))
        client.close()
    assert not report.failed and report.sent == len(ops)
    requests = client.session.stats.requests  # rate-limited API calls; archive downloads go to a storage host
    return {"what": f"mailchimp push (member upserts + segment tags via /batches of {batch_size}, logged)",
            "records": members, "operations": len(ops), "requests": requests,
            "archive_downloads": client.archive_session.stats.requests,
            "configured_rps": round(rate[0] / rate[1], 2) if rate else None, "wall_s": round(wall, 2),
            "requests_per_s": round(requests / wall, 1), "cpu_s": round(cpu, 2),
            "cpu_ms_per_1k_records": round(cpu / members * 1e6, 1),
            "plan_cpu_ms_per_1k_records": round(plan_cpu / members * 1e6, 1),
            "throttled_429": srv.stats["429"], "limiter_wait_s": round(client.limiter.waited, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contacts", type=int, default=100_000)
    p.add_argument("--members", type=int, default=100_000)
    p.add_argument("--hubspot-rate", default="100/1", help="requests/seconds for the HubSpot pull")
    p.add_argument("--mailchimp-rate", default="100/10", help="requests/seconds for the Mailchimp push")
    p.add_argument("--batch-size", type=int, default=500, help="Mailchimp operations per /batches call")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    hs_rate = tuple(float(x) for x in args.hubspot_rate.split("/"))
    mc_rate = tuple(float(x) for x in args.mailchimp_rate.split("/"))
    results = []
    for label, fn in (("pull at limit", lambda: bench_pull(args.contacts, hs_rate)),
                      ("pull ceiling", lambda: bench_pull(args.contacts, None)),
                      ("push at limit", lambda: bench_push(args.members, mc_rate, args.batch_size)),
                      ("push ceiling", lambda: bench_push(args.members, None, args.batch_size))):
        res = {"run": label, **fn()}
        results.append(res)
        print(json.dumps(res), flush=True)
    print()
    print(f"| run | records | requests | configured req/s | achieved req/s | wall s | CPU ms / 1k records | 429s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['run']} | {r['records']} | {r['requests']} | {r['configured_rps'] or 'off'} | "
              f"{r['requests_per_s']} | {r['wall_s']} | {r['cpu_ms_per_1k_records']} | {r['throttled_429']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
