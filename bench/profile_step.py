#!/usr/bin/env python
"""Profile one slowburn pipeline step in-process: where the time goes and where memory peaks.

    python bench/profile_step.py load --sources S --home H --logical-date 2026-11-23 [--cprofile out.prof]

The run folder in --home must already hold the outputs of the steps before NAME (run the pipeline
with `slowburn step ...` or bench_pipeline.py --keep-homes first). A sampler thread reads this
process's RSS every --interval seconds and remembers the main thread's Python stack at the highest
RSS seen, so the report says which line was running when memory peaked. With --cprofile the step
also runs under cProfile and the top functions by cumulative and own time are printed.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import resource
import sys
import threading
import time
import traceback
from pathlib import Path


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakSampler(threading.Thread):
    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval = interval
        self.main_id = threading.main_thread().ident
        self.peak_kib = 0
        self.peak_stack: list[str] = []
        self.peak_at = 0.0
        self.timeline: list[tuple[float, int, str]] = []
        self._halt = threading.Event()
        self.t0 = time.perf_counter()

    def run(self):
        last_logged = -1.0
        while not self._halt.is_set():
            rss = _rss_kib()
            frame = sys._current_frames().get(self.main_id)
            now = time.perf_counter() - self.t0
            if rss > self.peak_kib:
                self.peak_kib = rss
                self.peak_at = now
                self.peak_stack = traceback.format_stack(frame) if frame is not None else []
            if now - last_logged >= 1.0 and frame is not None:
                here = _innermost_project_frame(frame)
                self.timeline.append((now, rss, here))
                last_logged = now
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()


def _innermost_project_frame(frame) -> str:
    f = frame
    while f is not None:
        if "/slowburn/" in f.f_code.co_filename:
            return f"{Path(f.f_code.co_filename).name}:{f.f_lineno} {f.f_code.co_name}"
        f = f.f_back
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step")
    p.add_argument("--sources", required=True)
    p.add_argument("--home", required=True)
    p.add_argument("--logical-date", required=True)
    p.add_argument("--cprofile", metavar="OUT.prof", help="also run under cProfile and write stats here")
    p.add_argument("--interval", type=float, default=0.05, help="RSS sampling interval in seconds")
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import pandas as pd
    from slowburn.pipeline import RunContext, run_step

    ctx = RunContext(logical_date=pd.Timestamp(args.logical_date), sources_path=Path(args.sources),
                     home=Path(args.home))
    print(f"profiling step {args.step} of run {ctx.run_id} in {ctx.run_dir} "
          f"(slowburn from {sys.modules['slowburn.pipeline'].__file__}); RSS before: {_rss_kib() / 1024:.0f} MB",
          flush=True)
    sampler = PeakSampler(args.interval)
    sampler.start()
    prof = cProfile.Profile() if args.cprofile else None
    started = time.perf_counter()
    try:
        if prof:
            prof.enable()
        run_step(ctx, args.step)
    finally:
        if prof:
            prof.disable()
        seconds = time.perf_counter() - started
        sampler.stop()
    print(f"\nstep {args.step}: {seconds:.1f} s; ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB;"
          f" sampled peak RSS {sampler.peak_kib / 1024:.0f} MB at t={sampler.peak_at:.1f} s, while running:")
    # the project's own frames (where in slowburn), then the innermost library frames (what it was doing)
    ours = [f for f in sampler.peak_stack if "/slowburn/" in f and "profile_step.py" not in f]
    print("".join(ours) + "  ...\n" + "".join(sampler.peak_stack[-4:]))
    print("RSS timeline (1 s samples: t, MB, innermost slowburn frame):")
    for t, rss, where in sampler.timeline:
        print(f"  {t:7.1f} s {rss / 1024:8.0f} MB  {where}")
    if prof:
        prof.dump_stats(args.cprofile)
        for key in ("cumulative", "tottime"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(args.top)
            print(f"\n---- top {args.top} by {key} ----")
            print(buf.getvalue().split("\n", 6)[-1] if key else buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
