"""bench/ab_step.py: one step, two code versions, one saved state; it says whether the outputs agree."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_tiny_sources

REPO = Path(__file__).resolve().parents[1]


def _slowburn(*args, cwd):
    return subprocess.run([sys.executable, "-m", "slowburn.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory):
    """A tiny night run up to the flag step: the state a route A/B starts from."""
    root = tmp_path_factory.mktemp("ab")
    sources = write_tiny_sources(root / "src")
    common = ["--sources", str(sources), "--home", str(root / "home"), "--logical-date", "2026-11-23"]
    for step in ("extract", "normalise", "validate", "dedupe", "score", "route", "flag"):
        out = _slowburn("step", step, *common, cwd=root)
        assert out.returncode == 0, out.stderr[-2000:]
    return root, sources


def _ab_step():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import ab_step
    finally:
        sys.path.pop(0)
    return ab_step


def _ab(root, sources, *extra):
    return _ab_step().main(["route", "--home", str(root / "home"), "--sources", str(sources),
                            "--logical-date", "2026-11-23", "--a", "HEAD", "--repeats", "1",
                            "--workdir", str(root / "work"), *extra])


def test_same_code_twice_gives_equal_outputs_and_leaves_the_state_alone(saved_state, capsys):
    root, sources = saved_state
    before = sorted(p.name for p in (root / "home").rglob("*"))
    assert _ab(root, sources, "--b", "HEAD") == 0
    out = capsys.readouterr().out
    assert "B/A" in out and "all equal" in out
    assert sorted(p.name for p in (root / "home").rglob("*")) == before


def test_a_changed_output_file_is_told_apart(tmp_path):
    import pandas as pd
    ab_step = _ab_step()
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    frame = pd.DataFrame({"golden_id": ["g1", "g2"], "score": [40, 81]})
    frame.to_parquet(before / "kept.parquet")
    frame.to_parquet(before / "rewritten.parquet")
    shutil.copytree(before, after)
    frame.assign(score=[40, 82]).to_parquet(after / "rewritten.parquet")
    frame.to_parquet(after / "new.parquet")
    assert ab_step._written_by_step(before, after) == ["new.parquet", "rewritten.parquet"]
    assert ab_step._same(before / "kept.parquet", after / "kept.parquet")
    assert not ab_step._same(before / "rewritten.parquet", after / "rewritten.parquet")
