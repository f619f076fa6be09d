"""slowburn.contracts: check() names every bad column and its fix; coerce() keeps every row."""
from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slowburn import contracts as C
from slowburn.contracts import ContractError, check, coerce


def _typed_owners() -> pd.DataFrame:
    """An owners frame whose every column already has its contract dtype."""
    return pd.DataFrame({
        "owner_id": pd.array(["O1"], dtype="string"),
        "name": pd.array(["Rita Rep"], dtype="string"),
        "email": pd.array(["rita@corp.com"], dtype="string"),
        "active": pd.array([True], dtype="boolean"),
        "deactivated_at": pd.Series([pd.Timestamp("2026-06-01T00:00:00Z")], dtype="datetime64[ns, UTC]"),
        "team": pd.array(["East"], dtype="string"),
        "territory": pd.array(["NA-East"], dtype="string"),
        "daily_capacity": pd.array([20], dtype="Int64"),
    })


def _named(message: str, column: str) -> bool:
    return f"'{column}'" in message


# ---------------------------------------------------------------------------------------------- check()

def test_check_accepts_a_correctly_typed_frame():
    check(_typed_owners(), C.OWNERS, step="unit")  # no exception


def test_check_names_every_missing_column_and_how_to_fix_it():
    df = _typed_owners().drop(columns=["email", "territory"])
    with pytest.raises(ContractError) as err:
        check(df, C.OWNERS, step="load_owners")
    msg = str(err.value)
    assert msg.startswith("load_owners: owners does not match its contract")
    for name in C.OWNERS.names:
        assert _named(msg, name) == (name in {"email", "territory"}), name
    assert "`columns:`" in msg  # the fix: map them in the sources file


def test_check_names_every_mistyped_column_with_expected_kind_and_fix():
    df = _typed_owners()
    df["active"] = pd.array(["yes"], dtype="string")
    df["deactivated_at"] = pd.array(["2026-06-01"], dtype="string")
    df["daily_capacity"] = pd.array(["20"], dtype="string")
    with pytest.raises(ContractError) as err:
        check(df, C.OWNERS, step="validate")
    msg = str(err.value)
    for name in C.OWNERS.names:
        assert _named(msg, name) == (name in {"active", "deactivated_at", "daily_capacity"}), name
    assert "expected bool (boolean)" in msg
    assert "expected datetime (datetime64[ns, UTC])" in msg
    assert "expected int (Int64)" in msg
    assert msg.count("coerce it with slowburn.contracts.coerce()") == 3


def test_check_reports_missing_and_mistyped_together():
    df = _typed_owners().drop(columns=["name"])
    df["deactivated_at"] = pd.array(["soon"], dtype="string")
    with pytest.raises(ContractError) as err:
        check(df, C.OWNERS, step="x")
    msg = str(err.value)
    assert "missing column(s) ['name']" in msg
    assert "column 'deactivated_at' has dtype" in msg


def test_check_naive_datetime_is_mistyped():
    df = _typed_owners()
    df["deactivated_at"] = pd.Series([pd.Timestamp("2026-06-01")], dtype="datetime64[ns]")
    with pytest.raises(ContractError, match="'deactivated_at'"):
        check(df, C.OWNERS, step="x")


def test_check_kinds_false_only_checks_presence():
    df = pd.DataFrame({c: pd.array(["text"], dtype="string") for c in C.OWNERS.names})
    check(df, C.OWNERS, step="normalise", kinds=False)  # text everywhere is fine before coercion
    with pytest.raises(ContractError, match=r"missing column\(s\) \['team'\]"):
        check(df.drop(columns=["team"]), C.OWNERS, step="normalise", kinds=False)


def test_check_all_null_column_passes_whatever_its_dtype():
    df = _typed_owners()
    df["daily_capacity"] = pd.Series([None], dtype="object")
    check(df, C.OWNERS, step="x")


@pytest.mark.parametrize("contract", [C.LEADS, C.TOUCHES, C.OWNERS, C.OUTCOMES_CONTRACT, C.NORMALISED_LEADS],
                         ids=lambda c: c.name)
def test_empty_frames_pass_check(contract):
    df = contract.empty()
    assert list(df.columns) == contract.names
    assert len(df) == 0
    check(df, contract, step="empty")


def test_empty_frame_has_contract_dtypes():
    dtypes = {k: str(v) for k, v in C.OWNERS.empty().dtypes.items()}
    assert dtypes["owner_id"] == "string"
    assert dtypes["active"] == "boolean"
    assert dtypes["deactivated_at"] == "datetime64[ns, UTC]"
    assert dtypes["daily_capacity"] == "Int64"


# --------------------------------------------------------------------------------------------- coerce()

@pytest.fixture
def messy_owners() -> pd.DataFrame:
    """Owners as text, with a non-default index so that problem indexes are not just positions."""
    return pd.DataFrame({
        "owner_id": ["O1", "O2", "O3", "O4"],
        "name": [" Rita Rep ", "Sam Rep", "", "   "],
        "email": ["rita@corp.com", "sam@corp.com", "x@corp.com", None],
        "active": ["yes", "maybe", "0", None],
        "deactivated_at": ["2026-02-28", "31/02/2026", "yesterday", ""],
        "team": ["East", "West", "West", "East"],
        "territory": ["NA-East", "NA-West", "NA-West", "NA-East"],
        "daily_capacity": ["10", "ten", "3", None],
    }, index=[10, 11, 12, 13]).astype("string")


def test_coerce_keeps_every_row_and_its_index(messy_owners):
    out, _ = coerce(messy_owners, C.OWNERS)
    assert list(out.index) == [10, 11, 12, 13]
    assert out["owner_id"].tolist() == ["O1", "O2", "O3", "O4"]


def test_coerce_casts_to_contract_dtypes_and_then_passes_check(messy_owners):
    out, _ = coerce(messy_owners, C.OWNERS)
    check(out, C.OWNERS, step="after coerce")
    assert str(out["deactivated_at"].dtype) == "datetime64[ns, UTC]"
    assert str(out["active"].dtype) == "boolean"
    assert str(out["daily_capacity"].dtype) == "Int64"


def test_coerce_values(messy_owners):
    out, _ = coerce(messy_owners, C.OWNERS)
    # strings are stripped; blank becomes null
    assert out["name"].tolist()[:2] == ["Rita Rep", "Sam Rep"]
    assert out["name"].isna().tolist() == [False, False, True, True]
    assert out["active"].tolist()[0] is True
    assert out["active"].tolist()[2] is False
    assert out["active"].isna().tolist() == [False, True, False, True]
    assert out.loc[10, "deactivated_at"] == pd.Timestamp("2026-02-28T00:00:00Z")
    assert out["deactivated_at"].isna().tolist() == [False, True, True, True]
    assert out.loc[10, "daily_capacity"] == 10
    assert out.loc[12, "daily_capacity"] == 3
    assert out["daily_capacity"].isna().tolist() == [False, True, False, True]


def test_coerce_reports_each_unparseable_cell_with_index_column_and_raw_value(messy_owners):
    _, problems = coerce(messy_owners, C.OWNERS)
    assert list(problems.columns) == ["index", "column", "value"]
    got = sorted(zip(problems["index"].tolist(), problems["column"].tolist(), problems["value"].tolist()))
    assert got == [
        (11, "active", "maybe"),
        (11, "daily_capacity", "ten"),
        (11, "deactivated_at", "31/02/2026"),
        (12, "deactivated_at", "yesterday"),
    ]


def test_coerce_blank_and_null_cells_are_not_problems():
    df = pd.DataFrame({"active": ["", None, "  "], "deactivated_at": ["", None, " "],
                       "daily_capacity": ["", None, " "]}).astype("string")
    out, problems = coerce(df, C.OWNERS)
    assert len(problems) == 0
    assert out["active"].isna().all() and out["deactivated_at"].isna().all() and out["daily_capacity"].isna().all()


def test_coerce_without_problems_returns_empty_problem_frame():
    _, problems = coerce(_typed_owners(), C.OWNERS)
    assert list(problems.columns) == ["index", "column", "value"]
    assert len(problems) == 0


def test_coerce_converts_offsets_to_utc_and_localises_naive_datetimes():
    df = pd.DataFrame({
        "deactivated_at": pd.array(["2026-11-20T10:00:00+02:00", "2026-11-20 10:00"], dtype="string"),
    })
    out, problems = coerce(df, C.OWNERS)
    assert out["deactivated_at"].tolist() == [pd.Timestamp("2026-11-20T08:00:00Z"),
                                              pd.Timestamp("2026-11-20T10:00:00Z")]
    assert len(problems) == 0
    naive = pd.DataFrame({"deactivated_at": pd.Series([pd.Timestamp("2026-01-01 10:00")])})
    out, _ = coerce(naive, C.OWNERS)
    assert out["deactivated_at"].tolist() == [pd.Timestamp("2026-01-01T10:00:00Z")]
    berlin = pd.DataFrame({"deactivated_at": pd.Series([pd.Timestamp("2026-01-01 10:00", tz="Europe/Berlin")])})
    out, _ = coerce(berlin, C.OWNERS)
    assert out["deactivated_at"].tolist() == [pd.Timestamp("2026-01-01T09:00:00Z")]


@pytest.mark.parametrize("word,expected", [
    ("true", True), ("T", True), ("Yes", True), ("y", True), ("1", True), ("1.0", True),
    ("false", False), ("F", False), ("NO", False), ("n", False), ("0", False), ("0.0", False),
])
def test_coerce_bool_words(word, expected):
    out, problems = coerce(pd.DataFrame({"active": pd.array([word], dtype="string")}), C.OWNERS)
    assert out["active"].tolist() == [expected]
    assert len(problems) == 0


def test_coerce_ignores_columns_outside_the_contract():
    df = pd.DataFrame({"owner_id": ["O1"], "extra": ["keep me"]})
    out, _ = coerce(df, C.OWNERS)
    assert out["extra"].tolist() == ["keep me"]


@pytest.mark.parametrize("raw", ["1e30", "99999999999999999999", "inf"])
def test_coerce_int_overflow_is_a_problem_not_a_wrong_number(raw):
    df = pd.DataFrame({"daily_capacity": pd.array([raw, "2"], dtype="string")})
    out, problems = coerce(df, C.OWNERS)
    assert out["daily_capacity"].isna().tolist() == [True, False]
    assert list(zip(problems["index"], problems["column"], problems["value"])) == [(0, "daily_capacity", raw)]


def test_coerce_far_future_sentinel_date_does_not_crash():
    df = pd.DataFrame({"owner_id": ["O1", "O2"], "deactivated_at": ["9999-12-31", "2026-01-01"]}).astype("string")
    out, problems = coerce(df, C.OWNERS)
    assert len(out) == 2
    assert out.loc[1, "deactivated_at"] == pd.Timestamp("2026-01-01T00:00:00Z")
    kept = out.loc[0, "deactivated_at"]
    reported = list(zip(problems["index"], problems["column"], problems["value"]))
    # either the value survives, or it is null and reported for quarantine
    assert kept == pd.Timestamp("9999-12-31T00:00:00Z") or (pd.isna(kept) and reported == [
        (0, "deactivated_at", "9999-12-31")])


def test_coerce_int_keeps_the_int64_extremes_exactly():
    df = pd.DataFrame({"daily_capacity": pd.array(["-9223372036854775808", "9223372036854775807", "7"],
                                                  dtype="string")})
    out, problems = coerce(df, C.OWNERS)
    assert out["daily_capacity"].tolist() == [-2 ** 63, 2 ** 63 - 1, 7]
    assert len(problems) == 0


@pytest.mark.parametrize("raw", ["9223372036854775808", "-1e19", "-inf", "nan"])
def test_coerce_int_just_outside_int64_is_a_problem(raw):
    df = pd.DataFrame({"daily_capacity": pd.array([raw], dtype="string")})
    out, problems = coerce(df, C.OWNERS)
    assert out["daily_capacity"].isna().all()
    assert problems["value"].tolist() == [raw]


def test_coerce_int_from_python_ints_beyond_int64():
    df = pd.DataFrame({"daily_capacity": pd.Series([2 ** 63, 2 ** 70, 3], dtype="object")})
    out, problems = coerce(df, C.OWNERS)
    assert out["daily_capacity"].isna().tolist() == [True, True, False]
    assert problems["index"].tolist() == [0, 1]


@pytest.mark.parametrize("raw", ["9999-12-31T23:59:59Z", "0001-01-01", "1500-06-01 10:00"])
def test_coerce_dates_outside_the_nanosecond_range_are_problems(raw):
    df = pd.DataFrame({"deactivated_at": pd.array([raw, "2026-01-01"], dtype="string")})
    out, problems = coerce(df, C.OWNERS)
    assert str(out["deactivated_at"].dtype) == "datetime64[ns, UTC]"
    assert pd.isna(out.loc[0, "deactivated_at"])
    assert out.loc[1, "deactivated_at"] == pd.Timestamp("2026-01-01T00:00:00Z")
    assert list(zip(problems["index"], problems["value"])) == [(0, raw)]


def test_coerce_typed_far_future_datetimes_are_problems():
    # e.g. a Parquet timestamp[us] column holding the sentinel
    stamps = pd.Series(pd.to_datetime(["9999-12-31", "2026-01-01"]).as_unit("us"))
    out, problems = coerce(pd.DataFrame({"deactivated_at": stamps}), C.OWNERS)
    assert pd.isna(out.loc[0, "deactivated_at"])
    assert out.loc[1, "deactivated_at"] == pd.Timestamp("2026-01-01T00:00:00Z")
    assert problems["index"].tolist() == [0]


def test_custom_attributes_and_touch_values_are_optional_contract_columns():
    from slowburn.contracts import LEADS, TOUCHES, check, coerce

    assert LEADS.column("attributes").kind == "string" and not LEADS.column("attributes").required
    assert TOUCHES.column("value").kind == "float" and not TOUCHES.column("value").required
    check(LEADS.empty().drop(columns=["attributes"]), LEADS, step="test")  # sources without them still pass
    typed, problems = coerce(pd.DataFrame({"value": ["12.5", "", "ten"]}), TOUCHES)
    assert typed["value"].tolist()[0] == 12.5 and typed["value"].isna().tolist()[1:] == [True, True]
    assert problems[["column", "value"]].values.tolist() == [["value", "ten"]]


def _iso_text_by_numpy(values: pd.Series) -> pd.Series:
    """The plain reference: numpy's datetime_as_string, value by value into a string column."""
    import numpy as np

    aware = isinstance(values.dtype, pd.DatetimeTZDtype)
    if aware:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    stamps = values.to_numpy(dtype="datetime64[us]")
    fractional = bool((stamps[~np.isnat(stamps)].astype("int64") % 1_000_000).any())
    text = pd.Series(np.datetime_as_string(stamps, unit="us" if fractional else "s"), index=values.index,
                     dtype="string")
    return (text + "+00:00" if aware else text).mask(values.isna())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.datetimes(min_value=datetime(1678, 1, 1), max_value=datetime(2261, 12, 31))),
                max_size=30),
       st.sampled_from([None, "UTC", "Europe/Paris", "America/St_Johns", "Asia/Kathmandu"]),
       st.booleans())
def test_iso_utc_text_is_numpys_text(stamps, zone, whole_seconds):
    """Every timestamp, in any zone, with and without fractions of a second, missing ones too."""
    values = pd.Series(pd.to_datetime(stamps, format="ISO8601") if stamps else [], dtype="datetime64[ns]",
                       index=range(7, 7 + len(stamps)))
    if whole_seconds:
        values = values.dt.floor("s")
    if zone is not None:
        values = values.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    pd.testing.assert_series_equal(C.iso_utc_text(values), _iso_text_by_numpy(values))


def _iso_like_texts():
    """Timestamps written the ways sources write them (offsets, Z, no zone, fractions, a space for
    the T), plus near misses and years outside the fast parser's range."""
    stamp = st.datetimes(min_value=datetime(1600, 1, 1), max_value=datetime(2300, 12, 31))
    zone = st.sampled_from(["", "Z", "+00:00", "+0000", "-03:30", "+0530", "+05", "z", " UTC"])
    shape = st.sampled_from(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d",
                             "%Y-%m-%dT%H:%M:%S.%f", "%d/%m/%Y %H:%M", "%Y-%m-%dT%H"])

    def written(t, f, z, cut):  # fractions of 1-6 digits
        text = t.strftime(f)
        return (text[:len(text) - cut] if "%f" in f else text) + z

    text = st.builds(written, stamp, shape, zone, st.integers(0, 5))
    odd = st.sampled_from(["2026-02-30T10:00:00Z", "9999-12-31", "2026-11-23T24:00:00Z", "2026-11-23T10:00:00,5Z",
                           "", "  ", "not a date", "2026-13-01", "1677-09-21T00:12:43Z"])
    return st.lists(st.one_of(st.none(), text, odd, text.map(lambda t: f" {t} ")), max_size=25)


@settings(max_examples=300, deadline=None)
@given(_iso_like_texts())
def test_datetimes_parse_as_pandas_mixed_format_does(texts):
    """The Arrow fast path for ISO-8601 gives pandas' instants exactly, and nulls what pandas nulls."""
    raw = pd.Series(texts, dtype="string", index=range(5, 5 + len(texts)))
    text = raw.str.strip()
    pd.testing.assert_series_equal(C._to_datetime(raw), C._mixed_datetimes(text))
