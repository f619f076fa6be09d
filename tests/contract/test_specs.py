"""The served specs differ from the vendors' files in the three known errata and nothing else."""
from __future__ import annotations

import copy
import json

import pytest

from contract import specs


def _diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _diff(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{path}/{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _diff(x, y, f"{path}/{i}")
    elif a != b:
        yield path


@pytest.fixture(scope="module")
def spec_dir():
    missing = [n for n in (*specs.HUBSPOT_FILES, specs.MAILCHIMP_FILE) if not (specs.spec_dir() / n).exists()]
    assert not missing, f"vendor specs {missing} not found in {specs.spec_dir()}; set SLOWBURN_SPECS to their folder"
    return specs.spec_dir()


@pytest.mark.parametrize("name", specs.HUBSPOT_FILES)
def test_hubspot_changes_are_exactly_the_two_search_errata(spec_dir, name):
    original = json.loads((spec_dir / name).read_text(encoding="utf-8"))
    patched = json.loads((spec_dir / name).read_text(encoding="utf-8"))
    specs.patch_hubspot(patched)
    changed = sorted(_diff(original, patched))
    if "PublicObjectSearchRequest" in original["components"]["schemas"]:
        search = "/components/schemas/PublicObjectSearchRequest/"
        assert any(c.startswith(f"{search}properties/sorts/items") for c in changed)
        assert all(c.startswith((f"{search}properties/sorts/items", f"{search}required")) for c in changed)
        assert "after" not in patched["components"]["schemas"]["PublicObjectSearchRequest"]["required"]
    else:
        assert changed == []


def test_merged_hubspot_keeps_every_path_and_resolves_every_ref(spec_dir):
    merged, _ = specs.merged_hubspot(spec_dir)
    paths = set()
    for name in specs.HUBSPOT_FILES:
        paths |= set(json.loads((spec_dir / name).read_text(encoding="utf-8"))["paths"])
    assert set(merged["paths"]) == paths
    text = json.dumps(merged)
    for ref in set(part.split('"')[0] for part in text.split('"$ref": "#/components/')[1:]):
        kind, name = ref.split("/", 1)
        assert name in merged["components"][kind], ref


def test_mailchimp_changes_are_exactly_the_merge_field_values(spec_dir):
    original = specs.load_mailchimp(spec_dir)
    patched = copy.deepcopy(original)
    count = specs.patch_mailchimp(patched)
    assert count > 0
    changed = list(_diff(original, patched))
    assert len(changed) >= count and all("/merge_fields/additionalProperties" in c for c in changed)
