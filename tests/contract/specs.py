"""The vendor specs as the contract tests serve them: tests/contract/vendor_specs (copies of the vendors' published
specs, see its SOURCES.md; or $SLOWBURN_SPECS), with the three
known vendor errata patched in a copy, and the seven HubSpot files merged into one document for one Prism.

The errata (the specs are wrong, the vendors' docs and SDKs right; see the specs' SOURCES.md):
1. HubSpot PublicObjectSearchRequest.after is optional: the first page of a search has no cursor
   (hubspot-api-nodejs#350).
2. HubSpot PublicObjectSearchRequest.sorts items may be {propertyName, direction} objects, not only strings
   (hubspot-api-python#236, hubspot-api-nodejs#9 and #559).
3. Mailchimp merge_fields values may be strings or numbers (the spec says objects; Mailchimp's docs send
   {"FNAME": "Elinore"}). Objects stay allowed: an ADDRESS merge field is one.
Nothing else is changed. Merging renames each HubSpot file's components with a per-file prefix (the files
reuse names such as NextPage with different shapes) and rewrites the $refs to match; paths do not overlap.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

HUBSPOT_FILES = ("hubspot-contacts-v3.json", "hubspot-tasks-v3.json", "hubspot-notes-v3.json",
                 "hubspot-calls-v3.json", "hubspot-meetings-v3.json", "hubspot-emails-v3.json",
                 "hubspot-associations-v4.json")
MAILCHIMP_FILE = "mailchimp-marketing-3.0.55.yaml"
SORT_OBJECT = {"type": "object", "required": ["propertyName"],
               "properties": {"propertyName": {"type": "string"},
                              "direction": {"type": "string", "enum": ["ASCENDING", "DESCENDING"]}}}
MERGE_VALUE = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "object"}]}


def spec_dir() -> Path:
    return Path(os.environ.get("SLOWBURN_SPECS", Path(__file__).parent / "vendor_specs"))


def patch_hubspot(doc: dict) -> list[str]:
    """Errata 1 and 2 on one HubSpot document; returns what was patched (empty when the schema is absent)."""
    done = []
    search = doc.get("components", {}).get("schemas", {}).get("PublicObjectSearchRequest")
    if search is None:
        return done
    if "after" in search.get("required", []):
        search["required"] = [r for r in search["required"] if r != "after"]
        done.append("PublicObjectSearchRequest.after optional")
    items = search["properties"]["sorts"]["items"]
    if "anyOf" not in items:
        search["properties"]["sorts"]["items"] = {"anyOf": [items, SORT_OBJECT]}
        done.append("PublicObjectSearchRequest.sorts items may be objects")
    return done


def patch_mailchimp(doc: dict) -> int:
    """Erratum 3: every merge_fields map takes string or number values. Returns how many maps were patched."""
    count = 0

    def walk(node):
        nonlocal count
        if isinstance(node, dict):
            merge = node.get("properties", {}).get("merge_fields") if isinstance(node.get("properties"), dict) else None
            if isinstance(merge, dict) and isinstance(merge.get("additionalProperties"), dict):
                value = merge["additionalProperties"]
                if value.get("type") == "object" and "anyOf" not in value:
                    merge["additionalProperties"] = {**{k: v for k, v in value.items() if k != "type"}, **MERGE_VALUE}
                    count += 1
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(doc)
    return count


def _prefix_refs(node, prefix: str):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/"):
                kind, _, name = value[len("#/components/"):].partition("/")
                out[key] = f"#/components/{kind}/{prefix}{name}"
            else:
                out[key] = _prefix_refs(value, prefix)
        return out
    if isinstance(node, list):
        return [_prefix_refs(v, prefix) for v in node]
    return node


def merged_hubspot(directory: Path | None = None) -> tuple[dict, list[str]]:
    directory = directory or spec_dir()
    merged = {"openapi": "3.0.1", "info": {"title": "HubSpot CRM (contract tests: merged)", "version": "v3+v4"},
              "servers": [{"url": "https://api.hubapi.com"}], "paths": {}, "components": {}}
    patched = []
    for name in HUBSPOT_FILES:
        doc = json.loads((directory / name).read_text(encoding="utf-8"))
        patched += [f"{name}: {p}" for p in patch_hubspot(doc)]
        prefix = name.split("-")[1] + "_"
        doc = _prefix_refs(doc, prefix)
        for kind, items in doc.get("components", {}).items():
            target = merged["components"].setdefault(kind, {})
            for key, value in items.items():
                target[f"{prefix}{key}"] = value
        # Operation-level security names the schemes: rename them the same way.
        for path, item in doc["paths"].items():
            if path in merged["paths"]:
                raise ValueError(f"{name}: path {path} is defined twice")
            for op in item.values():
                if isinstance(op, dict) and "security" in op:
                    op["security"] = [{f"{prefix}{k}": v for k, v in req.items()} for req in op["security"]]
            merged["paths"][path] = item
        if "security" in doc:
            merged.setdefault("security", [])
            merged["security"] += [{f"{prefix}{k}": v for k, v in req.items()} for req in doc["security"]]
    return merged, patched


def load_mailchimp(directory: Path | None = None) -> dict:
    with ((directory or spec_dir()) / MAILCHIMP_FILE).open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def mailchimp(directory: Path | None = None) -> tuple[dict, int]:
    doc = load_mailchimp(directory)
    return doc, patch_mailchimp(doc)


def write_served_copies(out: Path, directory: Path | None = None) -> dict[str, Path]:
    """The patched documents as JSON files under `out` (Prism parses JSON faster than a 1.6 MB YAML)."""
    out.mkdir(parents=True, exist_ok=True)
    hubspot, _ = merged_hubspot(directory)
    mc, _ = mailchimp(directory)
    paths = {"hubspot": out / "hubspot-merged.json", "mailchimp": out / "mailchimp-patched.json"}
    paths["hubspot"].write_text(json.dumps(hubspot), encoding="utf-8")
    paths["mailchimp"].write_text(json.dumps(mc, default=str), encoding="utf-8")
    return paths


