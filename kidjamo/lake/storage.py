"""The one place that touches the lake, whether it is a local folder or an S3 bucket.

Paths handed to :class:`Lake` are relative to the lake root and always use ``/``
(``raw/vitals/dt=2026-11-27/hh=15/mm=31/part-0.parquet``). Local writes are atomic (temporary
name, fsync, rename); S3 writes are one PUT, which S3 makes atomic.
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kidjamo.settings import Settings, get_settings


@dataclass(frozen=True)
class LakeFile:
    path: str  # relative to the lake root
    size: int


class Lake:
    """Files and Parquet datasets under one lake root (``file://`` or ``s3://``)."""

    def __init__(self, root_url: str, s3_endpoint_url: str | None = None, s3_region: str = "us-east-1"):
        self.root_url = root_url.rstrip("/")
        parsed = urlparse(self.root_url)
        if parsed.scheme in ("", "file"):
            self.is_s3 = False
            self._root = os.path.abspath(parsed.path if parsed.scheme else self.root_url)
            os.makedirs(self._root, exist_ok=True)
            self.fs: pafs.FileSystem = pafs.LocalFileSystem()
        elif parsed.scheme == "s3":
            self.is_s3 = True
            self._root = f"{parsed.netloc}{parsed.path}".rstrip("/")
            self.fs = _s3_filesystem(s3_endpoint_url, s3_region)
        else:
            raise ValueError(f"KIDJAMO_LAKE_URL must start with file:// or s3://, got {root_url!r}")

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "Lake":
        settings = settings or get_settings()
        return cls(settings.lake_root, settings.s3_endpoint_url, settings.s3_region)

    def _full(self, path: str) -> str:
        return posixpath.join(self._root, path.lstrip("/")) if path else self._root

    def uri(self, path: str) -> str:
        """A URL a human or another tool can open (``file:///…`` or ``s3://…``)."""
        return f"{'s3' if self.is_s3 else 'file'}://{self._full(path)}"

    def local_path(self, path: str) -> str:
        """The local filesystem path of a lake path (local lakes only)."""
        if self.is_s3:
            raise ValueError("local_path() is only defined for a local lake")
        return self._full(path)

    # --- listing -------------------------------------------------------------------------------
    def list_files(self, prefix: str, recursive: bool = True) -> list[LakeFile]:
        """Files under ``prefix``, sorted by path; a missing prefix is an empty list."""
        selector = pafs.FileSelector(self._full(prefix), allow_not_found=True, recursive=recursive)
        infos = self.fs.get_file_info(selector)
        root_len = len(self._root) + 1
        files = [LakeFile(info.path[root_len:], info.size or 0) for info in infos if info.type == pafs.FileType.File]
        return sorted(files, key=lambda f: f.path)

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(self._full(path)).type == pafs.FileType.File

    # --- bytes ---------------------------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(self._full(path), compression=None) as stream:
            return stream.read()

    def write_bytes(self, path: str, data: bytes, *, durable: bool = True) -> None:
        """Write a whole file so that readers see either nothing or all of it.

        ``durable`` (local lakes) also fsyncs the file and its folder before returning: landing and
        raw need it (they are the only copy); derived layers, which any run rebuilds from raw, skip
        it — an fsync per minute partition is most of a wide re-process's I/O time.
        """
        full = self._full(path)
        if self.is_s3:
            with self.fs.open_output_stream(full, compression=None) as stream:
                stream.write(data)
            return
        directory = os.path.dirname(full)
        os.makedirs(directory, exist_ok=True)
        temporary = os.path.join(directory, f".{os.path.basename(full)}.{uuid.uuid4().hex}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, full)
        if durable:
            _fsync_directory(directory)

    def delete(self, path: str) -> None:
        try:
            self.fs.delete_file(self._full(path))
        except FileNotFoundError:
            pass

    def write_parquet(self, path: str, table: pa.Table, *, durable: bool = False) -> None:
        """Write a Parquet file atomically (derived layers: not fsynced unless ``durable``)."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        self.write_bytes(path, buffer.getvalue(), durable=durable)

    def read_parquet(self, paths: list[str], schema: pa.Schema | None = None) -> pa.Table:
        """Concatenate Parquet files; an empty list gives an empty table of ``schema``."""
        tables = [pq.read_table(self._full(p), filesystem=self.fs) for p in paths]
        if not tables:
            if schema is None:
                raise ValueError("read_parquet() of no files needs a schema")
            return schema.empty_table()
        if schema is not None:
            tables = [t.select(schema.names).cast(schema) for t in tables]
        # One chunk per column: pyarrow 26's CSV writer corrupts strings after an empty chunk.
        return pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0]

    def read_parquet_prefix(self, prefix: str, schema: pa.Schema | None = None) -> pa.Table:
        paths = [f.path for f in self.list_files(prefix) if f.path.endswith(".parquet")]
        return self.read_parquet(paths, schema)


def _fsync_directory(directory: str) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _s3_filesystem(endpoint_url: str | None, region: str) -> pafs.S3FileSystem:
    """An Arrow S3 filesystem whose credentials come from boto3's standard chain."""
    import boto3

    credentials = boto3.Session().get_credentials()
    options: dict = {"region": region}
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
    if endpoint_url:
        parsed = urlparse(endpoint_url)
        options.update(endpoint_override=parsed.netloc or endpoint_url, scheme=parsed.scheme or "https")
    return pafs.S3FileSystem(**options)
