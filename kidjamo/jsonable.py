"""Plain JSON values from what pandas, numpy, Arrow and Great Expectations hand back."""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd


def json_scalar(value, *, digits: int | None = None, timestamp_format: str | None = None):
    """One cell as JSON holds it: None when missing (None, NaN, NA, NaT), numpy scalars as Python
    numbers (floats rounded to ``digits`` when given), instants as ISO 8601 text (or ``timestamp_format``)."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, datetime):
        return value.strftime(timestamp_format) if timestamp_format else value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars (np.float64 is also a float: convert it first)
    if digits is not None and isinstance(value, float):
        return round(value, digits)
    return value


def jsonable(value):
    """A nested structure (dicts, lists, numpy scalars, frames) as plain JSON: keys as text, a
    DataFrame or Series as its length, anything else without a JSON type as its text."""
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (pd.DataFrame, pd.Series)):
        return len(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
