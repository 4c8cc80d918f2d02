"""DuckDB over the lake: SQL on the silver and gold layers' hive-partitioned Parquet, local or on S3.

The layers are registered as Arrow datasets (through the lake's own filesystem, so S3 works with
the project's endpoint and credentials and no DuckDB extension is downloaded), with the partition
columns ``dt``, ``hh``, ``mm`` (arrival minute) for pruning. With ``pseudonymize=True`` the views
carry the same ``patient_key`` / ``device_key`` pseudonyms as the PostgreSQL ``analytics`` schema
instead of the registry identifiers, so results can be shared and joined with the analytics views.
Reading the lake at all needs read access to it (docs/duckdb.md).
"""

from __future__ import annotations

import posixpath

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from kidjamo.warehouse.pseudonyms import pseudonym
from kidjamo.lake.partitions import is_layer_file
from kidjamo.lake.storage import Lake

#: Layer view name -> (lake prefix, the Parquet file of each partition, or its shards' files).
LAYERS = {"silver": ("silver/vitals", "part-0.parquet"), "gold": ("gold/vitals", "part-0.parquet"),
          "alert_candidates": ("gold/vitals", "alert_candidates.parquet")}
PARTITIONING = ds.partitioning(pa.schema([("dt", pa.string()), ("hh", pa.int8()), ("mm", pa.int8())]), flavor="hive")
#: Columns that identify a patient or a reading, replaced or dropped in pseudonymized views.
IDENTIFYING = ("patient_id", "device_id", "message_id", "record_hash", "age_years")


def layer_dataset(lake: Lake, layer: str) -> ds.Dataset | None:
    """The Arrow dataset of one layer's partition files (None while the layer is empty)."""
    prefix, file_name = LAYERS[layer]
    paths = [lake.local_path(f.path) if not lake.is_s3 else f"{lake.uri(f.path).removeprefix('s3://')}"
             for f in lake.list_files(prefix) if is_layer_file(posixpath.basename(f.path), file_name)]
    if not paths:
        return None
    base = lake.local_path(prefix) if not lake.is_s3 else lake.uri(prefix).removeprefix("s3://")
    return ds.dataset(paths, filesystem=lake.fs, format="parquet", partitioning=PARTITIONING, partition_base_dir=base)


def _keys(dataset: ds.Dataset, column: str, subject: str, key: str) -> pa.Table:
    identifiers = pc.unique(dataset.to_table(columns=[column])[column].combine_chunks()).drop_null()
    return pa.table({column: identifiers,
                     f"{subject}_key": pa.array([pseudonym(subject, i, key) for i in identifiers.to_pylist()], pa.string())})


def connect_lake(lake: Lake, *, pseudonymize: bool = False, pseudonym_key: str | None = None,
                 layers: tuple[str, ...] = ("silver", "gold")) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per layer (``silver``, ``gold``, ``alert_candidates``).

    ``pseudonymize`` needs the deployment's ``pseudonym_key`` (``KIDJAMO_PSEUDONYM_KEY``).
    """
    if pseudonymize and not pseudonym_key:
        raise ValueError("pseudonymized views need the pseudonym key (KIDJAMO_PSEUDONYM_KEY)")
    connection = duckdb.connect()
    for layer in layers:
        dataset = layer_dataset(lake, layer)
        if dataset is None:
            continue
        if not pseudonymize:
            connection.register(layer, dataset)
            continue
        source = f"_{layer}_source"
        connection.register(source, dataset)
        names = set(dataset.schema.names)
        selections, joins = [f"* EXCLUDE ({', '.join(c for c in IDENTIFYING if c in names)})"], []
        for column, subject in (("patient_id", "patient"), ("device_id", "device")):
            if column in names:
                connection.register(f"_{layer}_{subject}_keys", _keys(dataset, column, subject, pseudonym_key))
                selections.append(f"{subject[0]}.{subject}_key")
                joins.append(f"LEFT JOIN _{layer}_{subject}_keys AS {subject[0]} ON {subject[0]}.{column} = l.{column}")
        connection.execute(f"CREATE VIEW {layer} AS SELECT {', '.join(s if '.' in s else 'l.' + s for s in selections)}"
                           f" FROM {source} AS l {' '.join(joins)}")
    return connection
