"""Key lookups over million-row id columns with Arrow's hash kernels.

pandas 3's `isin` on an Arrow string column builds a Python scalar for every candidate value (about
a microsecond each: 12 s of a 1M-lead load went there), and `Index.get_indexer` over Python strings
is several times slower than `pyarrow.compute.index_in`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def strings(values) -> pa.Array:
    """A column (pandas or Arrow) as one contiguous Arrow large_string array (zero-copy when Arrow-backed)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    else:
        arr = _from_pandas(pd.Series(values))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], type=arr.type)
    return arr.cast(pa.large_string())


def _from_pandas(s: pd.Series) -> pa.Array | pa.ChunkedArray:
    if s.dtype == object:
        # Python strings (as a warehouse read returns them): straight into Arrow, 3x faster than astype.
        try:
            return pa.array(s.to_numpy(), type=pa.large_string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    if not (isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow"):
        s = s.astype("string[pyarrow]")
    return pa.array(s.array)


def joined(*columns) -> pa.Array:
    """One key per row from several key columns (a unit separator between them; null if any is null),
    so composite keys are looked up like single ones."""
    if len(columns) == 1:
        return strings(columns[0])
    return pc.binary_join_element_wise(*map(strings, columns), pa.scalar("\x1f", pa.large_string()))


def positions(values, unique_values) -> np.ndarray:
    """Per value, its position in `unique_values` (first occurrence), -1 when absent."""
    found = pc.index_in(strings(values), value_set=strings(unique_values))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def is_in(values, candidates) -> np.ndarray:
    """Per value, whether it is among `candidates` (a missing value matches a missing candidate, as
    pandas' isin does)."""
    return pc.is_in(strings(values), value_set=strings(candidates)).to_numpy(zero_copy_only=False)
