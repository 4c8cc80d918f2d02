"""Bulk transfer between Arrow and PostgreSQL: the one COPY helper, staging tables, and bulk reads.

Rows go in by COPY of CSV written by Arrow (no per-row Python) and come out as one NDJSON text
read by Arrow (psycopg spends ~12 us per fetched row).
"""

from __future__ import annotations

import io

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson


def _naive_utc(table: pa.Table) -> pa.Table:
    """Time-zone-aware timestamp columns as naive UTC: Arrow writes those to CSV ~5x faster."""
    columns = [column.cast(pa.timestamp(column.type.unit)) if pa.types.is_timestamp(column.type) and column.type.tz
               else column for column in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


#: Rows per CSV slice sent to COPY (a few MB of text each).
COPY_SLICE_ROWS = 20_000


def copy_csv(connection: psycopg.Connection, table_name: str, table: pa.Table) -> None:
    """COPY an Arrow table into ``table_name`` (same column names) as CSV written by Arrow.

    Timestamps travel as naive UTC text, read with the session time zone set to UTC for the COPY
    only (the transaction's own setting is restored after it).
    """
    # combine_chunks: pyarrow 26's CSV writer writes NUL bytes for strings that follow an empty chunk.
    table = _naive_utc(table.combine_chunks())
    columns = ", ".join(table.column_names)
    local = not connection.autocommit  # SET LOCAL would end with the statement in autocommit mode
    previous = connection.execute("SELECT current_setting('TimeZone'), set_config('TimeZone', 'UTC', %s)", (local,)).fetchone()[0]
    with connection.cursor() as cursor, cursor.copy(f"COPY {table_name} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        # Slice by slice: the CSV text of a large minute (~100 MB at 200,000 readings) is never whole in memory.
        for offset in range(0, table.num_rows, COPY_SLICE_ROWS):
            buffer = io.BytesIO()
            pacsv.write_csv(table.slice(offset, COPY_SLICE_ROWS), buffer, pacsv.WriteOptions(include_header=False))
            copy.write(buffer.getbuffer())
    connection.execute("SELECT set_config('TimeZone', %s, %s)", (previous, local))


def stage(connection: psycopg.Connection, name: str, definition: str, table: pa.Table) -> None:
    """A temporary table ``name`` (dropped at commit) filled from an Arrow table by COPY.

    ``definition`` is what goes between the parentheses of CREATE TABLE: column definitions, or
    ``LIKE kidjamo.measurements INCLUDING DEFAULTS``.
    """
    connection.execute(f"CREATE TEMP TABLE {name} ({definition}) ON COMMIT DROP")
    copy_csv(connection, name, table)


def copy_out(connection: psycopg.Connection, query: str, schema: dict) -> pd.DataFrame:
    """A query's rows as a DataFrame typed by ``schema``, fetched as one NDJSON text read by Arrow.

    One value instead of a row per message; timestamps travel as epoch microseconds, so no time
    zone is involved.
    """
    names = list(schema)
    fields = ", ".join(
        f"'{name}', (extract(epoch FROM q.{name}) * 1000000)::bigint" if pa.types.is_timestamp(kind) else f"'{name}', q.{name}"
        for name, kind in schema.items())
    text = connection.execute(
        f"SELECT string_agg(json_build_object({fields})::text, E'\\n') FROM ({query}) AS q").fetchone()[0]
    if not text:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in names})
    read_types = pa.schema([(name, pa.int64() if pa.types.is_timestamp(kind) else kind) for name, kind in schema.items()])
    table = pajson.read_json(pa.py_buffer(text.encode()),
                             parse_options=pajson.ParseOptions(explicit_schema=read_types, unexpected_field_behavior="error"))
    for name, kind in schema.items():
        if pa.types.is_timestamp(kind):
            table = table.set_column(names.index(name), name, table[name].cast(pa.timestamp("us")).cast(kind))
    return table.select(names).to_pandas()
