"""The sources file: which sources to pull and how their columns map to the contracts.

A sources file is YAML that RevOps or a data engineer edits; it is validated here so that a
typo fails at load time with the source's name and the bad key, not at 2 a.m. mid-run.

```yaml
sources:
  - name: crm                   # unique; used in row keys, watermarks and the ledger
    kind: sql                   # sql | file
    entity: leads               # leads | touches | owners | outcomes
    url: sqlite:///{here}/crm.db   # any SQLAlchemy URL; {here} is this file's folder
    table: Lead                 # or `query: SELECT ...`
    watermark: LastModifiedDate # vendor column for incremental pulls (optional)
    default_region: US          # phone numbers without a country code
    constants: {source_system: salesforce}
    columns: {source_id: Id, first_name: FirstName, ...}   # contract column: vendor column
    values:                     # contract column: {vendor value: contract value}
      status: {"Open - Not Contacted": new}
    attributes:                 # leads only: any other vendor column, kept in the lead's `attributes`
      time_on_site: {column: TotalTimeSpentOnWebsite, type: number}   # number | category | boolean
      occupation: Occupation    # short form: a category
  - name: events
    kind: file
    entity: leads
    path: event_list.csv        # relative to this file; globs allowed
    encoding: latin-1           # csv only; default utf-8, which also strips a BOM
  - name: hubspot_contacts
    kind: hubspot               # also: salesforce, mailchimp (API sources, see below)
    entity: leads
    connection: hubspot_default # Airflow Connection (or SLOWBURN_CONN_<ID> JSON): host = base URL, password = token
    object: contacts            # hubspot: contacts | calls | meetings | emails | ...; salesforce: Lead | Contact | Task | Event
    rate_limit: 100/10s         # requests per window; defaults: hubspot 100/10s, salesforce 25/1s, mailchimp 20/1s
    overlap_seconds: 300        # incremental pulls start this long before the watermark; rows are deduped on id
    constants: {source_system: hubspot}
    columns: {source_id: id, email: email, updated_at: lastmodifieddate}
```
API sources: `url` overrides the connection's base URL; `watermark` defaults to the vendor's
last-modified field (hubspot lastmodifieddate / hs_lastmodifieddate, salesforce SystemModstamp,
mailchimp last_changed); salesforce `query` is an extra SOQL WHERE condition; mailchimp needs
`list_id` (the audience), and as entity touches it yields only unsubscribes and bounces (column `event`).
`kind: mailchimp_activity` (campaign opens, clicks, bounces, unsubscribes; optional `list_id`) and
`kind: hubspot_email_events` land touches with no `columns:` needed (slowburn.sources.engagement).
"""
from __future__ import annotations

import codecs
import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slowburn.contracts import ATTRIBUTE_TYPES, INPUT_CONTRACTS, ContractError

KINDS = ("sql", "file", "hubspot", "salesforce", "mailchimp", "mailchimp_activity", "hubspot_email_events")
API_KINDS = ("hubspot", "salesforce", "mailchimp", "mailchimp_activity", "hubspot_email_events")
# Engagement kinds (slowburn.sources.engagement): touches whose frame already uses the contract's names.
ENGAGEMENT_KINDS = {"mailchimp_activity": "mailchimp", "hubspot_email_events": "hubspot"}
ENGAGEMENT_COLUMNS = ("source_system", "lead_source_id", "touch_type", "channel", "campaign", "occurred_at", "actor")
_DEFAULT_OBJECT = {"hubspot": "contacts", "salesforce": "Lead", "mailchimp": None}


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    entity: str
    columns: dict[str, str]
    constants: dict[str, Any] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    url: str | None = None
    table: str | None = None
    query: str | None = None
    path: str | None = None
    encoding: str = "utf-8"
    watermark: str | None = None
    default_region: str = "US"
    chunk_rows: int = 200_000
    # API sources (kind hubspot / salesforce / mailchimp)
    connection: str | None = None
    object: str | None = None
    list_id: str | None = None
    overlap_seconds: int = 300
    rate_limit: str | None = None
    # Custom fields (leads): attribute name -> {"column": vendor column, "type": number|category|boolean}
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def contract(self):
        return INPUT_CONTRACTS[self.entity]


_ALLOWED = {f for f in SourceConfig.__dataclass_fields__}


def parse_sources(raw: dict, here: Path) -> list[SourceConfig]:
    """Validate a parsed sources document; `here` resolves {here} and relative paths.

    The caller's document is not changed: each source is validated and resolved on a copy.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("sources"), list):
        raise ContractError("sources file: expected a top-level `sources:` list")
    out: list[SourceConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw["sources"]):
        where = f"sources[{i}]"
        if not isinstance(item, dict):
            raise ContractError(f"{where}: expected a mapping")
        item = copy.deepcopy(item)
        name = item.get("name")
        if not name or not isinstance(name, str):
            raise ContractError(f"{where}: `name` is required")
        where = f"source {name!r}"
        if name in seen:
            raise ContractError(f"{where}: the name is used twice; names must be unique")
        seen.add(name)
        unknown = sorted(set(item) - _ALLOWED, key=str)
        if unknown:
            raise ContractError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_ALLOWED)}")
        if item.get("kind") not in KINDS:
            raise ContractError(f"{where}: `kind` must be one of {KINDS}, got {item.get('kind')!r}")
        if item.get("entity") not in INPUT_CONTRACTS:
            raise ContractError(f"{where}: `entity` must be one of {sorted(INPUT_CONTRACTS)}, "
                                f"got {item.get('entity')!r}")
        contract = INPUT_CONTRACTS[item["entity"]]
        columns = _mapping(item, "columns", where, "contract column: vendor column")
        if item.get("kind") in ENGAGEMENT_KINDS and item.get("entity") == "touches":  # frames use contract names
            columns = {**{c: c for c in ENGAGEMENT_COLUMNS}, **columns}
        constants = _mapping(item, "constants", where, "contract column: value")
        values = _mapping(item, "values", where, "contract column: {vendor value: contract value}")
        for key in list(columns) + list(constants) + list(values):
            if key == "attributes":
                raise ContractError(f"{where}: map custom fields under `attributes:` (attribute name: vendor "
                                    f"column), not as `{key}` in columns/constants/values")
            if key not in contract.names:
                raise ContractError(f"{where}: {key!r} is not a {contract.name} contract column; "
                                    f"contract columns are {contract.names}")
        for key, vendor in columns.items():
            if not isinstance(vendor, str) or not vendor:
                raise ContractError(f"{where}: `columns.{key}` must name a vendor column as text, got {vendor!r}; "
                                    f"quote it in the sources file (YAML reads Yes/No/On/Off, numbers and "
                                    f"null as other types)")
        item["values"] = {key: _value_map(where, key, vmap) for key, vmap in values.items()}
        item["attributes"] = _attributes(where, item["entity"], item.get("attributes"), columns)
        for key in ("url", "table", "query", "path", "encoding", "watermark", "default_region"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise ContractError(f"{where}: `{key}` must be text, got {item[key]!r}")
        if "encoding" in item:
            _check_encoding(where, item["encoding"])
        chunk_rows = item.get("chunk_rows", 1)
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ContractError(f"{where}: `chunk_rows` must be a whole number of at least 1, got {chunk_rows!r}")
        for key in ("connection", "object", "list_id", "rate_limit"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise ContractError(f"{where}: `{key}` must be text, got {item[key]!r}")
        if item["kind"] not in API_KINDS:
            extra = sorted(k for k in ("connection", "object", "list_id", "rate_limit", "overlap_seconds") if k in item)
            if extra:
                raise ContractError(f"{where}: {extra} only apply to API sources (kind {' / '.join(API_KINDS)})")
        if item["kind"] in API_KINDS:
            _check_api_source(where, item)
        elif item["kind"] == "sql":
            if not item.get("url"):
                raise ContractError(f"{where}: a sql source needs `url`")
            if bool(item.get("table")) == bool(item.get("query")):
                raise ContractError(f"{where}: a sql source needs exactly one of `table` or `query`")
            item["url"] = item["url"].replace("{here}", str(here))
        else:
            if not item.get("path"):
                raise ContractError(f"{where}: a file source needs `path`")
            path = Path(str(item["path"]).replace("{here}", str(here)))
            item["path"] = str(path if path.is_absolute() else here / path)
        item["columns"], item["constants"] = columns, constants
        out.append(SourceConfig(**item))
    attribute_types(out)  # the same attribute must have one type in every source
    return out


_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _attributes(where: str, entity: str, raw, columns: dict) -> dict[str, dict[str, str]]:
    """`attributes:` as {name: {"column": vendor column, "type": kind}}; a bare vendor column is a category."""
    if raw is None:
        return {}
    shape = "attribute name: vendor column, or attribute name: {column: vendor column, type: number}"
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: `attributes` must be a mapping ({shape}), got a {type(raw).__name__}: {raw!r}")
    if raw and entity != "leads":
        raise ContractError(f"{where}: `attributes` only apply to leads sources (this one feeds {entity}); "
                            f"a touch carries one number as the `value` column")
    out = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not _ATTRIBUTE_NAME.fullmatch(name):
            raise ContractError(f"{where}: attribute name {name!r} must be letters, digits and '_' "
                                f"(starting with a letter or '_', at most 63 characters)")
        if isinstance(spec, str):
            spec = {"column": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("column"), str) or not spec["column"]:
            raise ContractError(f"{where}: `attributes.{name}` must name a vendor column as text ({shape}), "
                                f"got {spec!r}")
        unknown = sorted(set(spec) - {"column", "type"}, key=str)
        if unknown:
            raise ContractError(f"{where}: `attributes.{name}` has unknown key(s) {unknown}; allowed: column, type")
        kind = spec.get("type", "category")
        if kind not in ATTRIBUTE_TYPES:
            raise ContractError(f"{where}: `attributes.{name}.type` must be one of {', '.join(ATTRIBUTE_TYPES)}, "
                                f"got {kind!r}")
        out[name] = {"column": spec["column"], "type": kind}
    return out


def attribute_types(sources: list[SourceConfig]) -> dict[str, str]:
    """Every mapped attribute and its type across the sources; one attribute with two types is an error."""
    types: dict[str, str] = {}
    where: dict[str, str] = {}
    for src in sources:
        for name, spec in src.attributes.items():
            if name in types and types[name] != spec["type"]:
                raise ContractError(f"attribute {name!r} is a {types[name]} in source {where[name]!r} but a "
                                    f"{spec['type']} in source {src.name!r}; give it one type in every source")
            types.setdefault(name, spec["type"])
            where.setdefault(name, src.name)
    return types


def _check_api_source(where: str, item: dict) -> None:
    """Defaults and checks for kind hubspot / salesforce / mailchimp (mutates the copied item)."""
    kind = item["kind"]
    if item.get("path") or item.get("table"):
        raise ContractError(f"{where}: a {kind} source reads its API; `path` and `table` do not apply")
    if kind != "salesforce" and item.get("query"):
        raise ContractError(f"{where}: `query` (an extra SOQL WHERE condition) only applies to salesforce sources")
    item.setdefault("connection", f"{ENGAGEMENT_KINDS.get(kind, kind)}_default")
    if kind in ENGAGEMENT_KINDS:
        if item["entity"] != "touches" or item.get("object") or item.get("watermark"):
            raise ContractError(f"{where}: a {kind} source lands touches (entity: touches), on its own watermark "
                                f"(the activity time); `object` and `watermark` do not apply")
        if kind == "hubspot_email_events" and item.get("list_id"):
            raise ContractError(f"{where}: `list_id` only applies to mailchimp sources")
        item["watermark"] = "occurred_at"
    elif kind == "mailchimp":
        if not item.get("list_id"):
            raise ContractError(f"{where}: a mailchimp source needs `list_id` (the audience id)")
        if item.get("object"):
            raise ContractError(f"{where}: a mailchimp source reads list members; use `list_id`, not `object`")
        item.setdefault("watermark", "last_changed")
    else:
        if item.get("list_id"):
            raise ContractError(f"{where}: `list_id` only applies to mailchimp sources")
        item.setdefault("object", _DEFAULT_OBJECT[kind])
        if kind == "hubspot":
            item.setdefault("watermark", "lastmodifieddate" if item["object"] == "contacts" else "hs_lastmodifieddate")
        else:
            item.setdefault("watermark", "SystemModstamp")
    if item.get("url") and "://" not in item["url"]:
        raise ContractError(f"{where}: `url` must be the API's base URL with its scheme, got {item['url']!r}")
    overlap = item.get("overlap_seconds", 300)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ContractError(f"{where}: `overlap_seconds` must be a whole number of seconds >= 0, got {overlap!r}")
    rate = item.get("rate_limit")
    if rate is not None:
        if not re.fullmatch(r"\s*\d+(\.\d+)?\s*/\s*(\d+(\.\d+)?)?\s*s?\s*", rate):
            raise ContractError(f"{where}: `rate_limit` must look like 100/10s (requests per seconds), got {rate!r}")


def _mapping(item: dict, key: str, where: str, shape: str) -> dict:
    value = item.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ContractError(f"{where}: `{key}` must be a mapping ({shape}), got a {type(value).__name__}: "
                            f"{value!r}")
    return dict(value)


def _value_map(where: str, column: str, vmap) -> dict:
    """Vendor value -> contract value, with vendor values as text, as they are compared."""
    if vmap is None:
        return {}
    if not isinstance(vmap, dict):
        raise ContractError(f"{where}: `values.{column}` must be a mapping of vendor value to contract value, "
                            f"got a {type(vmap).__name__}: {vmap!r}")
    ambiguous = [k for k in vmap if isinstance(k, bool) or k is None]
    if ambiguous:
        raise ContractError(
            f"{where}: `values.{column}` has vendor value(s) {ambiguous} that YAML read as "
            f"{'booleans' if any(isinstance(k, bool) for k in ambiguous) else 'null'}; the file most likely says "
            f"Yes/No/On/Off/True/False/null unquoted. Quote them (for example \"Yes\": \"true\") so they match "
            f"the vendor's text as written")
    return {str(a): b for a, b in vmap.items()}


def _check_encoding(where: str, encoding: str) -> None:
    try:
        text_encoding = getattr(codecs.lookup(encoding), "_is_text_encoding", True)  # not base64, zlib...
    except LookupError:
        text_encoding = False
    if not text_encoding:
        raise ContractError(f"{where}: `encoding` {encoding!r} is not a known text encoding; use for example "
                            f"utf-8, latin-1 or cp1252")


def load_sources(path: str | Path) -> list[SourceConfig]:
    path = Path(path)
    if not path.exists():
        raise ContractError(f"sources file {path} does not exist; create one (see `slowburn sample`) "
                            f"or set SLOWBURN_SOURCES")
    with path.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return parse_sources(raw, path.resolve().parent)
