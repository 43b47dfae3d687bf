"""Frames to and from arrow in a table's declared types, and key ranges as arrow filters.

Shared by both stores: the Parquet store writes and filters with these, the PostgreSQL store
turns its COPY batches into frames with the same dtypes, so a read gives one frame shape
whichever store holds the table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from eraflow.common.errors import StoreError
from eraflow.store.base import Key, Range
from eraflow.store.tables import Table


def _value_type(target: pa.DataType) -> pa.DataType:
    """The type of one value: a dictionary column's values are compared as plain strings."""
    return target.value_type if pa.types.is_dictionary(target) else target


def _column(series: pd.Series, target: pa.DataType, name: str) -> pa.Array:
    if pa.types.is_dictionary(target):
        if isinstance(series.dtype, pd.CategoricalDtype):
            array = pa.array(series, from_pandas=True)  # codes and categories, no per-row strings
            return array.cast(pa.dictionary(target.index_type, array.type.value_type)).cast(target)
        return pa.array(series.astype("str"), from_pandas=True).dictionary_encode().cast(target)
    if pa.types.is_list(target):
        # NaN inside a feature vector is a value ("not computable"), not a missing list.
        return pa.array(series.to_numpy(dtype=object), type=target, from_pandas=False)
    try:
        return pa.array(series, type=target, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        pass
    try:
        array = pa.array(series, from_pandas=True)
        if isinstance(array, pa.DictionaryArray):
            array = array.dictionary_decode()
        return array.cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise StoreError(
            f"column {name!r} ({series.dtype}) cannot be stored as {target}: "
            f"{exc}; fix its dtype in the frame"
        ) from None


def to_arrow(spec: Table, frame: pd.DataFrame) -> pa.Table:
    """``frame``'s table columns as an arrow table in the declared schema."""
    schema = spec.schema
    arrays = [_column(frame[f.name], f.type, f.name) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def to_frame(spec: Table, data: pa.Table, columns: list[str] | None = None) -> pd.DataFrame:
    """An arrow table of ``spec`` as a frame: int columns with nulls become ``Int64``."""
    names = columns or data.column_names
    out: dict[str, Any] = {}
    for name in names:
        column = data.column(name)
        if spec.kind(name) == "int" and column.null_count:
            out[name] = column.to_pandas().astype("Int64")
        elif spec.kind(name) == "floats":
            out[name] = pd.Series(
                [
                    None if v is None else np.asarray(v, dtype=np.float64)
                    for v in column.to_pylist()
                ],
                dtype=object,
            )
        else:
            out[name] = _sorted_categories(column.to_pandas())
    return pd.DataFrame(out, columns=names)


def _sorted_categories(series: pd.Series) -> pd.Series:
    """Categories in sorted order, so a read does not depend on the order rows were stored in."""
    if not isinstance(series.dtype, pd.CategoricalDtype):
        return series
    return series.cat.reorder_categories(sorted(series.cat.categories))


def empty_frame(spec: Table, columns: list[str] | None = None) -> pd.DataFrame:
    """A frame with no rows and the table's dtypes."""
    return to_frame(spec, spec.schema.empty_table(), columns)


def _scalar(spec: Table, column: str, value: Any) -> pa.Scalar:
    target = _value_type(spec.schema.field(column).type)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    elif isinstance(value, np.generic):
        value = value.item()
    try:
        return pa.scalar(value, type=target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise StoreError(f"{spec.name}.{column}: {value!r} is not a {target}: {exc}") from None


def key_filter(spec: Table, key: Key) -> pc.Expression:
    """The key range as an arrow dataset filter (owner and every condition)."""
    expr = pc.field(spec.owner) == pa.scalar(key.owner, type=pa.string())
    for column, condition in key.where.items():
        field = pc.field(column)
        if isinstance(condition, Range):
            if condition.low is not None:
                expr = expr & (field >= _scalar(spec, column, condition.low))
            if condition.high is not None:
                expr = expr & (field < _scalar(spec, column, condition.high))
        elif isinstance(condition, list | tuple | set | frozenset):
            values = pa.array(
                [_scalar(spec, column, v).as_py() for v in condition],
                type=_value_type(spec.schema.field(column).type),
            )
            expr = expr & field.isin(values)
        else:
            expr = expr & (field == _scalar(spec, column, condition))
    return expr


def _dictionary_ranks(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each row's rank among the dictionary's values: sorts as the values, without them.

    Casting a dictionary column to its values builds a string per row (millions in a
    feature batch); ranking the few distinct values and taking them by index does not. The
    chunks are first given one dictionary, so that their ranks compare.
    """
    unified = column.unify_dictionaries()
    if unified.num_chunks == 0:
        return pa.chunked_array([], type=pa.uint64())
    ranks = pc.rank(unified.chunk(0).dictionary, sort_keys="ascending", tiebreaker="dense")
    return pa.chunked_array(
        [pc.take(ranks, chunk.indices) for chunk in unified.chunks], type=pa.uint64()
    )


def key_order(spec: Table, data: pa.Table) -> np.ndarray:
    """The row positions of ``data`` in primary-key order (the order every read returns)."""
    keys = [c for c in spec.key if c in data.column_names]
    if not keys or data.num_rows < 2:
        return np.arange(data.num_rows)
    columns = []
    for name in keys:  # arrow cannot sort dictionary columns: sort on their values' ranks
        column = data.column(name)
        if pa.types.is_dictionary(column.type):
            column = _dictionary_ranks(column)
        columns.append(column)
    order = pc.sort_indices(
        pa.table(columns, names=keys), sort_keys=[(c, "ascending") for c in keys]
    )
    return np.asarray(order.to_numpy(zero_copy_only=False), dtype=np.int64)


def sort_by_key(spec: Table, data: pa.Table) -> pa.Table:
    """Rows in primary-key order (the order every read returns)."""
    if data.num_rows < 2 or not any(c in data.column_names for c in spec.key):
        return data
    return data.take(pa.array(key_order(spec, data)))
