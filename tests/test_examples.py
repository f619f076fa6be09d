"""Shipped example configuration stays valid as the contracts evolve."""
from pathlib import Path

from slowburn.sources.config import load_sources

ROOT = Path(__file__).resolve().parents[1]


def test_example_sources_file_is_valid():
    sources = load_sources(ROOT / "include" / "config" / "sources.example.yaml")
    assert {s.name: s.entity for s in sources} == {"crm": "leads", "webinar_list": "leads", "owners": "owners"}
