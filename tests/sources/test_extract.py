"""slowburn.sources: the row hashes that tell a changed source row from an unchanged one, and the
vendor-value mapping."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from slowburn.sources import _replaced, _row_hashes, hex_digits


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=40))
def test_hex_digits_are_pythons_016x(values):
    hashes = np.array(values, dtype=np.uint64)
    assert list(hex_digits(hashes)) == [f"{v:016x}" for v in values]
    assert str(hex_digits(hashes).dtype) == "string"


def test_row_hashes_are_the_hex_of_pandas_row_hashes():
    raw = pd.DataFrame({"Email": ["a@x.com", None, "c@z.org"], "Phone": ["1", "2", None]}, dtype="string")
    expected = [f"{v:016x}" for v in pd.util.hash_pandas_object(raw, index=False)]
    assert list(_row_hashes(raw)) == expected


_WORDS = st.one_of(st.none(), st.sampled_from(["Open", "open", "NEW", "", " Open", "Nurturing", "x\u00e9"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(_WORDS, max_size=30), st.dictionaries(st.sampled_from(["Open", "NEW", "", "x\u00e9", "absent"]),
                                                     st.one_of(st.none(), st.sampled_from(["new", "working", ""])),
                                                     max_size=4))
def test_vendor_values_map_as_series_replace_does(values, mapping):
    """Exact matches only, nulls stay null, unmapped values stay; a null target keeps pandas' own path."""
    text = pd.Series(values, dtype="string", index=range(3, 3 + len(values)))
    pd.testing.assert_series_equal(_replaced(text, mapping), text.replace(mapping))
