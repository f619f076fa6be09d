"""Arrow key lookups give what pandas gives, for every way an id column arrives."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from slowburn.arrowkeys import is_in, positions, strings

_ids = st.lists(st.one_of(st.none(), st.sampled_from(["g1", "g2", "G1", "g10", "", "é", "g 1"])), max_size=30)
_kinds = st.sampled_from(["object", "string[pyarrow]", "str", "arrow", "chunked"])


def _as(values: list, kind: str):
    if kind == "arrow":
        return pa.array(values, type=pa.string())
    if kind == "chunked":
        half = len(values) // 2
        return pa.chunked_array([pa.array(values[:half], pa.string()), pa.array(values[half:], pa.string())])
    return pd.Series(values, dtype=kind if kind != "object" else object)


@settings(max_examples=200, deadline=None)
@given(_ids, _ids, _kinds, _kinds)
def test_lookups_match_pandas(values, candidates, values_kind, candidates_kind):
    expected_in = pd.Series(values, dtype=object).isin(pd.Series(candidates, dtype=object)).to_numpy()
    assert np.array_equal(is_in(_as(values, values_kind), _as(candidates, candidates_kind)), expected_in)
    unique = list(dict.fromkeys(candidates))
    first = {v: i for i, v in reversed(list(enumerate(unique)))}
    expected_at = np.array([first.get(v, -1) for v in values], dtype=np.int64)
    assert np.array_equal(positions(_as(values, values_kind), _as(unique, candidates_kind)), expected_at)
    assert strings(_as(values, values_kind)).to_pylist() == values


def test_empty_and_non_text_columns():
    assert is_in(pd.Series([], dtype=object), pd.Series(["a"])).tolist() == []
    assert positions(pd.Series([1, 2, 3]), pd.Series([3, 1])).tolist() == [1, -1, 0]
    assert strings(pd.Series([], dtype="string[pyarrow]")).type == pa.large_string()
