"""slowburn.sources.config: a sources file is validated at load time, naming the source and the bad key."""
from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest

from slowburn.contracts import ContractError
from slowburn.sources import extract_source
from slowburn.sources.config import SourceConfig, load_sources, parse_sources

VALID_YAML = """\
sources:
  - name: crm
    kind: sql
    entity: leads
    url: sqlite:///{here}/crm.db
    table: Lead
    watermark: LastModifiedDate
    default_region: GB
    chunk_rows: 5000
    constants: {source_system: salesforce}
    columns: {source_id: Id, email: Email, updated_at: LastModifiedDate}
    values:
      status: {"Open - Not Contacted": new, 3: working}
  - name: events
    kind: file
    entity: touches
    path: drops/events_*.csv
    encoding: latin-1
    columns: {lead_source_id: lead, occurred_at: at}
  - name: owners
    kind: file
    entity: owners
    path: /abs/owners.parquet
    columns: {owner_id: id}
"""


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sources.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _sql_source(**changes) -> dict:
    item = {"name": "crm", "kind": "sql", "entity": "leads", "url": "sqlite:///{here}/crm.db", "table": "Lead",
            "columns": {"source_id": "Id"}}
    for key, value in changes.items():
        if value is None:
            item.pop(key, None)
        else:
            item[key] = value
    return {"sources": [item]}


def _file_source(**changes) -> dict:
    item = {"name": "drop", "kind": "file", "entity": "owners", "path": "owners.csv",
            "columns": {"owner_id": "id"}}
    for key, value in changes.items():
        if value is None:
            item.pop(key, None)
        else:
            item[key] = value
    return {"sources": [item]}


# --------------------------------------------------------------------------------------------- valid

def test_load_valid_document(tmp_path):
    path = _write(tmp_path / "conf", VALID_YAML)
    here = (tmp_path / "conf").resolve()
    crm, events, owners = load_sources(path)

    assert isinstance(crm, SourceConfig)
    assert (crm.name, crm.kind, crm.entity) == ("crm", "sql", "leads")
    assert crm.url == f"sqlite:///{here}/crm.db"  # {here} is the sources file's folder
    assert crm.table == "Lead" and crm.query is None
    assert crm.watermark == "LastModifiedDate"
    assert crm.default_region == "GB"
    assert crm.chunk_rows == 5000
    assert crm.constants == {"source_system": "salesforce"}
    assert crm.columns == {"source_id": "Id", "email": "Email", "updated_at": "LastModifiedDate"}
    # vendor values are keys as text, even when YAML read them as numbers
    assert crm.values == {"status": {"Open - Not Contacted": "new", "3": "working"}}
    assert crm.contract.name == "leads"

    assert (events.kind, events.entity, events.encoding) == ("file", "touches", "latin-1")
    assert events.path == str(here / "drops" / "events_*.csv")  # relative paths resolve against the file
    assert events.url is None and events.watermark is None
    assert events.default_region == "US" and events.chunk_rows == 200_000  # defaults
    assert events.constants == {} and events.values == {}

    assert owners.path == "/abs/owners.parquet"  # absolute paths are kept
    assert owners.encoding == "utf-8"


def test_parse_query_source_and_here_in_path(tmp_path):
    (sql,) = parse_sources(_sql_source(table=None, query="SELECT * FROM Lead"), tmp_path)
    assert sql.table is None and sql.query == "SELECT * FROM Lead"
    (f,) = parse_sources(_file_source(path="{here}/x/owners.csv"), tmp_path)
    assert f.path == f"{tmp_path}/x/owners.csv"


def test_parse_accepts_empty_sources_list(tmp_path):
    assert parse_sources({"sources": []}, tmp_path) == []


# --------------------------------------------------------------------------------------------- errors

def _error(doc, here: Path) -> str:
    with pytest.raises(ContractError) as err:
        parse_sources(doc, here)
    return str(err.value)


def test_unknown_key_names_source_and_key(tmp_path):
    msg = _error(_sql_source(tabel="Lead"), tmp_path)
    assert "source 'crm'" in msg
    assert "unknown key(s) ['tabel']" in msg
    assert "'table'" in msg  # the allowed keys are listed, so the typo's fix is visible


def test_unknown_entity_names_source_and_key(tmp_path):
    msg = _error(_sql_source(entity="lead"), tmp_path)
    assert "source 'crm'" in msg
    assert "`entity`" in msg
    assert "'lead'" in msg
    assert "'leads'" in msg


def test_unknown_kind_names_source_and_key(tmp_path):
    msg = _error(_sql_source(kind="api"), tmp_path)
    assert "source 'crm'" in msg and "`kind`" in msg and "'api'" in msg


@pytest.mark.parametrize("section,value", [
    ("columns", {"source_id": "Id", "emial": "Mail"}),
    ("constants", {"emial": "x"}),
    ("values", {"emial": {"a": "b"}}),
])
def test_unknown_contract_column_names_source_and_column(tmp_path, section, value):
    msg = _error(_sql_source(**{section: value}), tmp_path)
    assert "source 'crm'" in msg
    assert "'emial' is not a leads contract column" in msg
    assert "'email'" in msg  # the contract columns are listed


def test_contract_column_check_uses_the_sources_entity(tmp_path):
    # owner_id is a leads column, but daily_capacity is not
    msg = _error(_sql_source(columns={"daily_capacity": "Cap"}), tmp_path)
    assert "'daily_capacity' is not a leads contract column" in msg


def test_sql_source_without_url(tmp_path):
    msg = _error(_sql_source(url=None), tmp_path)
    assert "source 'crm'" in msg and "`url`" in msg


def test_sql_source_with_empty_url(tmp_path):
    msg = _error(_sql_source(url=""), tmp_path)
    assert "source 'crm'" in msg and "`url`" in msg


@pytest.mark.parametrize("changes", [{"query": "SELECT 1"}, {"table": None}], ids=["both", "neither"])
def test_sql_source_needs_exactly_one_of_table_or_query(tmp_path, changes):
    msg = _error(_sql_source(**changes), tmp_path)
    assert "source 'crm'" in msg
    assert "`table`" in msg and "`query`" in msg


def test_file_source_without_path(tmp_path):
    msg = _error(_file_source(path=None), tmp_path)
    assert "source 'drop'" in msg and "`path`" in msg


def test_duplicate_names(tmp_path):
    doc = {"sources": [_sql_source()["sources"][0], _file_source(name="crm")["sources"][0]]}
    msg = _error(doc, tmp_path)
    assert "source 'crm'" in msg
    assert "used twice" in msg


def test_missing_name_names_the_position(tmp_path):
    doc = {"sources": [_file_source()["sources"][0], _sql_source(name=None)["sources"][0]]}
    msg = _error(doc, tmp_path)
    assert "sources[1]" in msg and "`name`" in msg


@pytest.mark.parametrize("doc", [None, {}, {"sources": {"crm": {}}}, ["crm"]], ids=["none", "empty", "map", "list"])
def test_document_without_sources_list(tmp_path, doc):
    assert "`sources:`" in _error(doc, tmp_path)


def test_missing_sources_file(tmp_path):
    missing = tmp_path / "nowhere" / "sources.yaml"
    with pytest.raises(ContractError) as err:
        load_sources(missing)
    msg = str(err.value)
    assert str(missing) in msg
    assert "does not exist" in msg


def test_error_in_a_loaded_file_names_the_source(tmp_path):
    path = _write(tmp_path, """\
        sources:
          - name: good
            kind: file
            entity: owners
            path: owners.csv
            columns: {owner_id: id}
          - name: typo
            kind: file
            entity: owners
            pth: owners.csv
            columns: {owner_id: id}
        """)
    with pytest.raises(ContractError) as err:
        load_sources(path)
    assert "source 'typo'" in str(err.value)
    assert "['pth']" in str(err.value)


def test_missing_data_file_names_the_source(tmp_path):
    (cfg,) = parse_sources(_file_source(name="event_drop", path="events_*.csv"), tmp_path)
    with pytest.raises(ContractError) as err:
        extract_source(cfg)
    msg = str(err.value)
    assert "events_*.csv" in msg and "`path`" in msg
    assert "event_drop" in msg


# ----------------------------------------------------------------------------- wrongly shaped values

def test_values_entry_must_be_a_mapping(tmp_path):
    msg = _error(_sql_source(values={"status": ["Open", "new"]}), tmp_path)
    assert "source 'crm'" in msg and "status" in msg


def test_columns_must_be_a_mapping(tmp_path):
    with pytest.raises(ContractError) as err:
        parse_sources(_sql_source(columns=["Id", "Email"]), tmp_path)
    assert "source 'crm'" in str(err.value) and "columns" in str(err.value)


def test_unknown_encoding_fails_at_load_time(tmp_path):
    msg = _error(_file_source(encoding="latin-9x"), tmp_path)
    assert "source 'drop'" in msg and "encoding" in msg


def test_yaml_boolean_looking_vendor_values_are_kept_as_written(tmp_path):
    path = _write(tmp_path, """\
        sources:
          - name: crm
            kind: file
            entity: leads
            path: leads.csv
            columns: {source_id: Id, email_opt_out: OptOut}
            values:
              email_opt_out: {Yes: "true", No: "false"}
        """)
    try:
        (cfg,) = load_sources(path)
    except ContractError as err:  # refusing the ambiguous file, naming source and key, is a fix too
        assert "source 'crm'" in str(err) and "email_opt_out" in str(err)
        return
    assert cfg.values == {"email_opt_out": {"Yes": "true", "No": "false"}}


def test_parse_does_not_change_the_callers_document(tmp_path):
    doc = _sql_source(values={"status": {1: "new"}})
    before = copy.deepcopy(doc)
    (first,) = parse_sources(doc, tmp_path / "a")
    assert doc == before
    (second,) = parse_sources(doc, tmp_path / "b")
    assert second.url == f"sqlite:///{tmp_path / 'b'}/crm.db"


@pytest.mark.parametrize("section", ["constants", "values"])
def test_constants_and_values_must_be_mappings(tmp_path, section):
    msg = _error(_sql_source(**{section: ["source_system", "x"]}), tmp_path)
    assert "source 'crm'" in msg and f"`{section}`" in msg


def test_vendor_column_must_be_text(tmp_path):
    msg = _error(_sql_source(columns={"source_id": "Id", "email_opt_out": True}), tmp_path)
    assert "source 'crm'" in msg and "email_opt_out" in msg and "quote" in msg


@pytest.mark.parametrize("keys", [{True: "true"}, {None: "new"}], ids=["bool", "null"])
def test_yaml_typed_vendor_values_are_refused(tmp_path, keys):
    msg = _error(_sql_source(values={"status": keys}), tmp_path)
    assert "source 'crm'" in msg and "status" in msg and "Quote" in msg


def test_quoted_yes_no_vendor_values_load(tmp_path):
    path = _write(tmp_path, """\
        sources:
          - name: crm
            kind: file
            entity: leads
            path: leads.csv
            columns: {source_id: Id, email_opt_out: OptOut}
            values:
              email_opt_out: {"Yes": "true", "No": "false"}
        """)
    (cfg,) = load_sources(path)
    assert cfg.values == {"email_opt_out": {"Yes": "true", "No": "false"}}


@pytest.mark.parametrize("encoding", ["base64", "rot13x", ""])
def test_non_text_encodings_are_refused(tmp_path, encoding):
    msg = _error(_file_source(encoding=encoding), tmp_path)
    assert "source 'drop'" in msg and "`encoding`" in msg


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "UTF8", "utf_8"])
def test_known_encodings_are_accepted(tmp_path, encoding):
    (cfg,) = parse_sources(_file_source(encoding=encoding), tmp_path)
    assert cfg.encoding == encoding


@pytest.mark.parametrize("chunk_rows", [0, -5, "1000", True])
def test_chunk_rows_must_be_a_positive_whole_number(tmp_path, chunk_rows):
    msg = _error(_sql_source(chunk_rows=chunk_rows), tmp_path)
    assert "source 'crm'" in msg and "`chunk_rows`" in msg


def test_parse_does_not_change_nested_mappings(tmp_path):
    doc = _file_source(values=None, constants={"team": "East"})
    before = copy.deepcopy(doc)
    (cfg,) = parse_sources(doc, tmp_path)
    cfg.constants["team"] = "West"
    assert doc == before


# --------------------------------------------------------------------------------------------- attributes
def test_attributes_short_and_long_form(tmp_path):
    doc = _sql_source(attributes={"occupation": "Occupation",
                                  "time_on_site": {"column": "TotalTime", "type": "number"},
                                  "newsletter": {"column": "Newsletter", "type": "boolean"}})
    (src,) = parse_sources(doc, tmp_path)
    assert src.attributes == {"occupation": {"column": "Occupation", "type": "category"},
                              "time_on_site": {"column": "TotalTime", "type": "number"},
                              "newsletter": {"column": "Newsletter", "type": "boolean"}}


@pytest.mark.parametrize("attributes,message", [
    ({"size": {"column": "Employees", "type": "integer"}}, r"`attributes.size.type` must be one of number, "
                                                            r"category, boolean, got 'integer'"),
    ({"size": {"col": "Employees"}}, r"`attributes.size` must name a vendor column as text"),
    ({"size": {"column": "Employees", "kind": "number"}}, r"`attributes.size` has unknown key\(s\) \['kind'\]"),
    ({"company size": "Employees"}, r"attribute name 'company size' must be letters, digits and '_'"),
    (["Employees"], r"`attributes` must be a mapping"),
])
def test_attribute_mistakes_name_the_source_and_key(tmp_path, attributes, message):
    with pytest.raises(ContractError, match=r"source 'crm': " + message):
        parse_sources(_sql_source(attributes=attributes), tmp_path)


def test_attributes_only_on_leads_and_with_one_type_everywhere(tmp_path):
    with pytest.raises(ContractError, match=r"source 'drop': `attributes` only apply to leads sources"):
        parse_sources(_file_source(attributes={"x": "X"}), tmp_path)
    doc = _sql_source(attributes={"size": {"column": "Employees", "type": "number"}})
    other = {**doc["sources"][0], "name": "web", "attributes": {"size": "CompanySize"}}
    with pytest.raises(ContractError, match=r"attribute 'size' is a number in source 'crm' but a category in "
                                            r"source 'web'"):
        parse_sources({"sources": doc["sources"] + [other]}, tmp_path)
    with pytest.raises(ContractError, match=r"map custom fields under `attributes:`"):
        parse_sources(_sql_source(columns={"source_id": "Id", "attributes": "Extra"}), tmp_path)


def test_a_missing_attribute_column_names_it(tmp_path):
    (tmp_path / "leads.csv").write_text("id,email\n1,a@x.com\n", encoding="utf-8")
    (src,) = parse_sources({"sources": [{"name": "drop", "kind": "file", "entity": "leads", "path": "leads.csv",
                                         "columns": {"source_id": "id", "email": "email"},
                                         "attributes": {"size": "Employees"}}]}, tmp_path)
    with pytest.raises(ContractError, match=r"source 'drop': mapped column\(s\) not found: attributes.size <- "
                                            r"'Employees'"):
        extract_source(src)
