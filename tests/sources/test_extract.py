"""slowburn.sources: the row hashes that tell a changed source row from an unchanged one."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from slowburn.sources import _row_hashes, hex_digits


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
