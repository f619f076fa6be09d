"""slowburn.sources.files and extract_source on real CSV and Parquet files: nothing read is lost."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slowburn.contracts import ContractError
from slowburn.sources import MALFORMED, extract_source, parse_sources
from slowburn.sources.files import read_file

OWNERS_HEADER = "Id,Name,Mail,Active"


def _source(folder: Path, path: str, columns: dict, **extra):
    item = {"name": "drop", "kind": "file", "entity": "owners", "path": path, "columns": columns, **extra}
    (cfg,) = parse_sources({"sources": [item]}, folder)
    return cfg


def _owners_source(folder: Path, path: str = "owners.csv", **extra):
    return _source(folder, path, {"owner_id": "Id", "name": "Name", "email": "Mail", "active": "Active"}, **extra)


# --------------------------------------------------------------------------------------------- encodings

def test_utf8_bom_is_stripped_from_first_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffId,Name\nO1,Zoë\n".encode("utf-8"))
    df = read_file(path)
    assert list(df.columns) == ["Id", "Name"]
    assert "\ufeff" not in df.columns[0]
    assert df.to_dict("list") == {"Id": ["O1"], "Name": ["Zoë"]}


def test_utf8_bom_file_maps_through_extract(tmp_path):
    (tmp_path / "owners.csv").write_bytes(f"\ufeff{OWNERS_HEADER}\nO1,Rita,r@x.com,true\n".encode("utf-8"))
    got = extract_source(_owners_source(tmp_path))
    assert got.rows["owner_id"].tolist() == ["O1"]


LATIN1_TEXT = "Id,Name,Mail,Active\nO1,Ann,a@x.com,true\nO2,José,j@x.com,false\n"


def test_latin1_file_with_latin1_encoding_keeps_accents(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_bytes(LATIN1_TEXT.encode("latin-1"))
    df = read_file(path, "latin-1")
    assert df["Name"].tolist() == ["Ann", "José"]
    got = extract_source(_owners_source(tmp_path, encoding="latin-1"))
    assert got.rows["name"].tolist() == ["Ann", "José"]


def test_latin1_file_read_as_utf8_names_file_line_and_fix(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_bytes(LATIN1_TEXT.encode("latin-1"))
    with pytest.raises(ContractError) as err:
        read_file(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "line 3 " in msg  # 'José' is on the third line of the file
    assert "`encoding:`" in msg
    with pytest.raises(ContractError, match="line 3 .*`encoding:`"):
        extract_source(_owners_source(tmp_path))


# ------------------------------------------------------------------------------------ empty and header-only

def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_bytes(b"")
    with pytest.raises(ContractError) as err:
        read_file(path)
    assert str(path) in str(err.value)
    assert "empty" in str(err.value)


def test_blank_lines_only_is_a_clear_error(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_text("\n\n")
    with pytest.raises(ContractError, match="no header row"):
        read_file(path)


@pytest.mark.parametrize("text", [OWNERS_HEADER + "\n", OWNERS_HEADER], ids=["newline", "no-newline"])
def test_header_only_file_gives_zero_rows(tmp_path, text):
    path = tmp_path / "owners.csv"
    path.write_text(text)
    df = read_file(path)
    assert list(df.columns) == ["Id", "Name", "Mail", "Active"]
    assert len(df) == 0
    got = extract_source(_owners_source(tmp_path, watermark="Active"), since="2026-01-01T00:00:00+00:00")
    assert len(got.rows) == 0
    assert "owner_id" in got.rows.columns
    assert got.high_watermark is None


def test_csv_values_stay_text_and_blank_is_null(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_text("Id,Zip,Note\n007,02134,NA\n008,,null\n")
    df = read_file(path)
    assert df["Id"].tolist() == ["007", "008"]  # no numeric coercion: leading zeros kept
    assert df["Zip"].tolist()[0] == "02134"
    assert pd.isna(df["Zip"].tolist()[1])
    assert df["Note"].tolist() == ["NA", "null"]  # only empty cells are null
    assert all(str(t) == "string" for t in df.dtypes)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "owners.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(ContractError, match=r"unsupported file type '\.xlsx'"):
        read_file(path)


# -------------------------------------------------------------------------------------------- ragged CSV

RAGGED = (
    "Id,Name,Mail,Active\n"
    "O1,Ann,a@x.com,true\n"
    "O2,Bob,b@x.com,false,EXTRA\n"
    "O3,Cy,c@x.com,true\n"
)


def test_ragged_line_is_kept_as_malformed_row(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_text(RAGGED)
    df = read_file(path)
    assert len(df) == 3
    assert df["Id"].tolist()[0] == "O1" and df["Id"].tolist()[2] == "O3"
    assert df.loc[1, MALFORMED] == "O2,Bob,b@x.com,false,EXTRA"
    assert df[["Id", "Name", "Mail", "Active"]].iloc[1].isna().all()
    assert df[MALFORMED].isna().tolist() == [True, False, True]
    assert df.loc[0].drop(MALFORMED).tolist() == ["O1", "Ann", "a@x.com", "true"]
    assert df.loc[2].drop(MALFORMED).tolist() == ["O3", "Cy", "c@x.com", "true"]


def test_ragged_line_survives_extract(tmp_path):
    (tmp_path / "owners.csv").write_text(RAGGED)
    rows = extract_source(_owners_source(tmp_path)).rows
    assert rows["owner_id"].tolist()[0] == "O1" and rows["owner_id"].tolist()[2] == "O3"
    assert pd.isna(rows["owner_id"].tolist()[1])
    assert rows[MALFORMED].tolist()[1] == "O2,Bob,b@x.com,false,EXTRA"
    assert rows["row_number"].tolist() == [1, 2, 3]
    assert rows["row_hash"].notna().all()


def test_ragged_line_keeps_its_quotes(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_text('Id,Name,Mail,Active\nO1,Ann,a@x.com,true\nO2,"Bob, Jr",b@x.com,false,EXTRA\n')
    df = read_file(path)
    assert df.loc[1, MALFORMED] == 'O2,"Bob, Jr",b@x.com,false,EXTRA'


# ----------------------------------------------------------------------------------------------- Parquet

def test_parquet_with_datetime_columns(tmp_path):
    df = pd.DataFrame({
        "Id": ["O1", "O2", "O3"],
        "Name": ["Rita", "Sam", None],
        "Gone": pd.to_datetime(["2026-06-01 09:30:00", None, "2026-07-01 00:00:00"]),  # naive
        "Seen": pd.to_datetime(["2026-11-01T10:00:00+02:00", "2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"],
                               utc=True),
        "Cap": pd.array([20, 5, None], dtype="Int64"),
    })
    df.to_parquet(tmp_path / "owners.parquet")
    cfg = _source(tmp_path, "owners.parquet", {"owner_id": "Id", "name": "Name", "deactivated_at": "Gone",
                                               "daily_capacity": "Cap"}, watermark="Seen")
    got = extract_source(cfg)
    rows = got.rows
    assert rows["owner_id"].tolist() == ["O1", "O2", "O3"]
    assert rows["name"].tolist()[:2] == ["Rita", "Sam"] and pd.isna(rows["name"].tolist()[2])
    assert rows["deactivated_at"].tolist()[0] == "2026-06-01T09:30:00"
    assert pd.isna(rows["deactivated_at"].tolist()[1])
    assert rows["deactivated_at"].tolist()[2] == "2026-07-01T00:00:00"
    assert rows["daily_capacity"].tolist()[:2] == ["20", "5"]
    assert got.high_watermark == "2026-11-03T00:00:00+00:00"
    newer = extract_source(cfg, since="2026-11-01T09:00:00+00:00")  # first row is 08:00 UTC
    assert newer.rows["owner_id"].tolist() == ["O2", "O3"]


def test_parquet_aware_datetime_maps_to_iso_text_with_offset(tmp_path):
    df = pd.DataFrame({"Id": ["O1"], "Gone": pd.to_datetime(["2026-06-01T09:30:00Z"], utc=True)})
    df.to_parquet(tmp_path / "owners.parquet")
    rows = extract_source(_source(tmp_path, "owners.parquet", {"owner_id": "Id", "deactivated_at": "Gone"})).rows
    assert rows["deactivated_at"].tolist() == ["2026-06-01T09:30:00+00:00"]


def test_parquet_nullable_int_ids_land_without_decimal_point(tmp_path):
    table = pa.table({"Id": pa.array([101, None, 103], pa.int64()), "Name": ["a", "b", "c"]})
    pq.write_table(table, tmp_path / "owners.parquet")
    rows = extract_source(_source(tmp_path, "owners.parquet", {"owner_id": "Id", "name": "Name"})).rows
    assert rows["owner_id"].tolist()[0] == "101"
    assert rows["owner_id"].tolist()[2] == "103"


# -------------------------------------------------------------------------------------------------- glob

def test_glob_over_two_files_concatenates_in_name_order(tmp_path):
    (tmp_path / "owners_2026-11-02.csv").write_text(f"{OWNERS_HEADER}\nO3,Cy,c@x.com,true\n")
    (tmp_path / "owners_2026-11-01.csv").write_text(f"{OWNERS_HEADER}\nO1,Ann,a@x.com,true\nO2,Bob,b@x.com,no\n")
    (tmp_path / "other.csv").write_text(f"{OWNERS_HEADER}\nX9,No,n@x.com,true\n")
    rows = extract_source(_owners_source(tmp_path, "owners_*.csv")).rows
    assert rows["owner_id"].tolist() == ["O1", "O2", "O3"]
    assert rows["active"].tolist() == ["true", "no", "true"]
    assert rows["row_number"].tolist() == [1, 2, 3]


def test_glob_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(ContractError, match=r"no file matches .*owners_\*\.csv.*`path`"):
        extract_source(_owners_source(tmp_path, "owners_*.csv"))


# --------------------------------------------------------------------------------------- mapping, values

def test_mapped_column_absent_lists_columns_present(tmp_path):
    (tmp_path / "owners.csv").write_text("Id,FullName,Mail,Active\nO1,Ann,a@x.com,true\n")
    with pytest.raises(ContractError) as err:
        extract_source(_owners_source(tmp_path))
    msg = str(err.value)
    assert "source 'drop'" in msg
    assert "name <- 'Name'" in msg
    assert "columns present: ['Id', 'FullName', 'Mail', 'Active']" in msg
    assert "`columns:`" in msg


def test_mapping_fills_constants_and_unmapped_columns(tmp_path):
    (tmp_path / "owners.csv").write_text("Id\nO1\nO2\n")
    cfg = _source(tmp_path, "owners.csv", {"owner_id": "Id"}, constants={"team": "East", "daily_capacity": 20})
    rows = extract_source(cfg).rows
    assert rows["owner_id"].tolist() == ["O1", "O2"]
    assert rows["team"].tolist() == ["East", "East"]
    assert rows["daily_capacity"].tolist() == ["20", "20"]  # still text: coercion is normalise's job
    assert rows["territory"].isna().all()
    assert list(rows.columns) == ["owner_id", "name", "email", "active", "deactivated_at", "team", "territory",
                                  "daily_capacity", "row_number", "row_hash"]


def test_values_map_translates_vendor_values_and_keeps_unknown_ones(tmp_path):
    (tmp_path / "leads.csv").write_text(
        "Id,Status,Source\n"
        "L1,Open - Not Contacted,Web\n"
        "L2,Working - Contacted,List\n"
        "L3,Bogus,Web\n"
        "L4,,Trade Show\n"
    )
    cfg = _source(tmp_path, "leads.csv", {"source_id": "Id", "status": "Status", "lead_source": "Source"},
                  entity="leads",
                  values={"status": {"Open - Not Contacted": "new", "Working - Contacted": "working"},
                          "lead_source": {"Web": "form_fill", "List": "purchased_list"}})
    rows = extract_source(cfg).rows
    assert rows["status"].tolist()[:3] == ["new", "working", "Bogus"]
    assert pd.isna(rows["status"].tolist()[3])
    assert rows["lead_source"].tolist() == ["form_fill", "purchased_list", "form_fill", "Trade Show"]


def test_values_map_matches_whole_values_only(tmp_path):
    (tmp_path / "leads.csv").write_text("Id,Status\nL1,Open\nL2,Reopened\n")
    cfg = _source(tmp_path, "leads.csv", {"source_id": "Id", "status": "Status"}, entity="leads",
                  values={"status": {"Open": "new"}})
    assert extract_source(cfg).rows["status"].tolist() == ["new", "Reopened"]


# ---------------------------------------------------------------------------------------------- watermark

WATERMARKED = (
    "Id,Name,Mail,Active,Modified\n"
    "O1,Ann,a@x.com,true,2026-11-20\n"
    "O2,Bob,b@x.com,true,2026-11-21T00:00:00Z\n"
    "O3,Cy,c@x.com,true,2026-11-22T09:00:00+02:00\n"
    "O4,Dee,d@x.com,true,yesterday\n"
    "O5,Eve,e@x.com,true,\n"
    "O6,Fay,f@x.com,true,2026-11-23\n"
)


def test_watermark_keeps_newer_and_unparseable_rows(tmp_path):
    (tmp_path / "owners.csv").write_text(WATERMARKED)
    cfg = _owners_source(tmp_path, watermark="Modified")
    got = extract_source(cfg, since="2026-11-21T00:00:00+00:00")
    # O2 equals `since` (not newer); O3 is 07:00 UTC on the 22nd; O4 and O5 cannot be read, so they are kept
    assert got.rows["owner_id"].tolist() == ["O3", "O4", "O5", "O6"]
    assert got.rows["row_number"].tolist() == [1, 2, 3, 4]
    assert got.high_watermark == "2026-11-23T00:00:00+00:00"


def test_watermark_full_pull_without_since(tmp_path):
    (tmp_path / "owners.csv").write_text(WATERMARKED)
    got = extract_source(_owners_source(tmp_path, watermark="Modified"))
    assert got.rows["owner_id"].tolist() == ["O1", "O2", "O3", "O4", "O5", "O6"]
    assert got.high_watermark == "2026-11-23T00:00:00+00:00"


def test_watermark_column_missing_from_file(tmp_path):
    (tmp_path / "owners.csv").write_text(f"{OWNERS_HEADER}\nO1,Ann,a@x.com,true\n")
    with pytest.raises(ContractError) as err:
        extract_source(_owners_source(tmp_path, watermark="Modified"), since="2026-11-21T00:00:00+00:00")
    assert "source 'drop'" in str(err.value) and "'Modified'" in str(err.value)


def test_no_watermark_means_no_high_watermark(tmp_path):
    (tmp_path / "owners.csv").write_text(WATERMARKED)
    assert extract_source(_owners_source(tmp_path)).high_watermark is None


def test_watermark_since_without_offset_is_read_as_utc(tmp_path):
    (tmp_path / "owners.csv").write_text(WATERMARKED)
    got = extract_source(_owners_source(tmp_path, watermark="Modified"), since="2026-11-21")
    assert got.rows["owner_id"].tolist() == ["O3", "O4", "O5", "O6"]


# ----------------------------------------------------------------------------------------------- row hash

def _hashes(folder: Path, text: str) -> dict:
    folder.mkdir()
    (folder / "owners.csv").write_text(text)
    rows = extract_source(_owners_source(folder)).rows
    return dict(zip(rows["owner_id"], rows["row_hash"]))


def test_row_hash_is_stable_for_identical_content_and_changes_with_a_value(tmp_path):
    a = _hashes(tmp_path / "a", f"{OWNERS_HEADER}\nO1,Ann,a@x.com,true\nO2,Bob,b@x.com,true\n")
    # same rows in another file, in another order, plus one changed value
    b = _hashes(tmp_path / "b", f"{OWNERS_HEADER}\nO2,Bob,b@x.com,false\nO1,Ann,a@x.com,true\n")
    assert all(re.fullmatch(r"[0-9a-f]{16}", h) for h in list(a.values()) + list(b.values()))
    assert a["O1"] == b["O1"]
    assert a["O2"] != b["O2"]
    assert a["O1"] != a["O2"]


def test_row_hash_tells_blank_from_text(tmp_path):
    a = _hashes(tmp_path / "a", f"{OWNERS_HEADER}\nO1,Ann,,true\n")
    b = _hashes(tmp_path / "b", f"{OWNERS_HEADER}\nO1,Ann,<NA>,true\n")
    assert a["O1"] != b["O1"]


def test_row_hash_of_a_row_does_not_depend_on_other_malformed_lines(tmp_path):
    a = _hashes(tmp_path / "a", f"{OWNERS_HEADER}\nO1,Ann,a@x.com,true\nO2,Bob,b@x.com,true\n")
    b = _hashes(tmp_path / "b", f"{OWNERS_HEADER}\nO1,Ann,a@x.com,true\nO2,Bob,b@x.com,true,EXTRA\n")
    assert a["O1"] == b["O1"]


def test_ragged_quoted_multiline_record_is_kept_as_written(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_bytes(b'Id,Name,Mail,Active\r\nO1,Ann,a@x.com,true\r\nO2,"Bob\r\nJr",b@x.com,false,EXTRA\r\n'
                     b'O3,Cy,c@x.com,true\r\n')
    df = read_file(path)
    assert df["Id"].tolist()[0] == "O1" and df["Id"].tolist()[2] == "O3"
    assert df.loc[1, MALFORMED] == 'O2,"Bob\r\nJr",b@x.com,false,EXTRA'
    assert df.loc[2].drop(MALFORMED).tolist() == ["O3", "Cy", "c@x.com", "true"]


def test_ragged_line_after_a_blank_line_keeps_its_text(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_text('Id,Name,Mail,Active\nO1,Ann,a@x.com,true\n\nO2 , Bob,"b@x.com",no,\nO3,"Cy",,true\n')
    df = read_file(path)
    assert len(df) == 3
    assert df[MALFORMED].tolist()[1] == 'O2 , Bob,"b@x.com",no,'
    assert df.loc[2].drop(MALFORMED).tolist()[:2] == ["O3", "Cy"] and pd.isna(df.loc[2, "Mail"])


def test_row_hash_of_a_malformed_line_follows_its_text(tmp_path):
    a = extract_source(_owners_source(_write_folder(tmp_path / "a", RAGGED))).rows["row_hash"].tolist()
    b = extract_source(_owners_source(_write_folder(tmp_path / "b", RAGGED))).rows["row_hash"].tolist()
    c = extract_source(_owners_source(_write_folder(tmp_path / "c", RAGGED.replace("EXTRA", "MORE"))))
    assert a == b
    assert c.rows["row_hash"].tolist()[1] != a[1]
    assert c.rows["row_hash"].tolist()[0] == a[0] and c.rows["row_hash"].tolist()[2] == a[2]


def _write_folder(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / "owners.csv").write_text(text)
    return folder


def test_parquet_numeric_watermark_is_compared_as_a_number(tmp_path):
    table = pa.table({"Id": ["O1", "O2", "O3", "O4"], "Ver": pa.array([9, 10, None, 2], pa.int64())})
    pq.write_table(table, tmp_path / "owners.parquet")
    cfg = _source(tmp_path, "owners.parquet", {"owner_id": "Id"}, watermark="Ver")
    full = extract_source(cfg)
    assert full.high_watermark == "10"
    newer = extract_source(cfg, since="9")
    assert newer.rows["owner_id"].tolist() == ["O2", "O3"]  # the null watermark is kept for validation
    assert len(extract_source(cfg, since=full.high_watermark).rows) == 1


def test_watermark_since_in_another_offset_and_unreadable_since(tmp_path):
    (tmp_path / "owners.csv").write_text(WATERMARKED)
    cfg = _owners_source(tmp_path, watermark="Modified")
    got = extract_source(cfg, since="2026-11-22T10:00:00+05:00")  # 05:00 UTC on the 22nd
    assert got.rows["owner_id"].tolist() == ["O3", "O4", "O5", "O6"]
    with pytest.raises(ContractError, match="source 'drop'.*'last tuesday'"):
        extract_source(cfg, since="last tuesday")


# ------------------------------------------------------------------------------ stray quotes, NUL bytes

def test_unterminated_quote_costs_one_line_not_the_records_after_it(tmp_path):
    lines = ["O1,Ann,a@x.com,true", 'O2,"Bob,b@x.com,false'] + [f"O{i},N{i},n{i}@x.com,true" for i in range(3, 40)]
    lines.insert(20, 'O99,"Quoted",q@x.com,true')  # a later quote that would close the stray one
    path = tmp_path / "owners.csv"
    path.write_text(OWNERS_HEADER + "\n" + "\n".join(lines) + "\n")
    df = read_file(path)
    assert len(df) == len(lines)
    assert df[MALFORMED].dropna().tolist() == ['O2,"Bob,b@x.com,false']
    assert df.loc[df[MALFORMED].isna(), "Id"].tolist() == [line.split(",")[0] for line in lines if "Bob" not in line]


def test_stray_quote_that_pandas_would_merge_silently_is_split(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_text(OWNERS_HEADER + '\nO1,"Ann,a@x.com,true\nO2,Bob,b@x.com,false\nO3,"Cy",c@x.com,true\n')
    df = read_file(path)
    assert df["Id"].tolist()[1:] == ["O2", "O3"] and df.loc[0, MALFORMED] == 'O1,"Ann,a@x.com,true'


def test_legitimate_multiline_value_is_one_record(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_text(OWNERS_HEADER + '\nO1,"Ann\nSmith",a@x.com,true\nO2,Bob,b@x.com,false\n')
    df = read_file(path)
    assert df["Name"].tolist() == ["Ann\nSmith", "Bob"]
    assert MALFORMED not in df or df[MALFORMED].isna().all()


def test_nul_bytes_are_removed_and_counted(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_text(OWNERS_HEADER + "\nO1,A\x00nn,a@x.com,true\nO2,Bob,b\x00@x.com\x00,false\n")
    got = extract_source(_owners_source(tmp_path))
    assert got.rows["name"].tolist() == ["Ann", "Bob"] and got.rows["email"].tolist() == ["a@x.com", "b@x.com"]
    assert got.repairs == {"Name": 1, "Mail": 1}


def test_extract_is_bounded_by_the_data_interval(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_text("Id,Name,Mail,Active,Changed\nO1,Ann,a@x.com,true,2026-11-22T10:00:00Z\n"
                    "O2,Bob,b@x.com,false,2026-11-23T10:00:00Z\nO3,Cy,c@x.com,true,not a date\n")
    cfg = _owners_source(tmp_path, watermark="Changed")
    got = extract_source(cfg, None, until=pd.Timestamp("2026-11-23", tz="UTC"))
    # O2 changed after the interval: a later run lands it; an unreadable stamp is kept for quarantine.
    assert got.rows["owner_id"].tolist() == ["O1", "O3"] and got.deferred == 1
    assert pd.Timestamp(got.high_watermark) == pd.Timestamp("2026-11-22T10:00:00Z")
