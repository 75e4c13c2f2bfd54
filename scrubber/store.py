"""The object store: a local folder (the embedded default) or an S3 bucket, behind one interface.

Keys are '/'-separated paths relative to the store root, the same on disk and in a bucket
(layout: architecture 3.4). Every write is atomic: a reader never sees half a file.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scrubber.schemas import parquet_dictionary_columns


class Store(ABC):
    """Minimal object-store API the library needs; implementations must publish atomically."""

    url: str

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Publish ``data`` at ``key`` atomically (temporary object, then rename/copy)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (recursive), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def move(self, src: str, dst: str) -> None:
        """Move an object (copy then delete); implementations may do better."""
        self.write_bytes(dst, self.read_bytes(src))
        self.delete(src)

    def delete_prefix(self, prefix: str) -> None:
        for key in self.list(prefix):
            self.delete(key)

    def upload_file(self, path: str | os.PathLike[str], key: str) -> None:
        """Publish a local file at ``key`` (files written in pieces, e.g. a streamed Parquet file)."""
        self.write_bytes(key, Path(path).read_bytes())

    def publish_file(self, path: str | os.PathLike[str], key: str) -> None:
        """Publish a local scratch file at ``key``; the caller is done with it, so the store may take the
        file itself (a local store renames it into place: a 10M-line night's report is ~1.3 GB to copy).
        The file may or may not exist afterwards."""
        self.upload_file(path, key)

    # --- helpers built on the primitives ---
    def read_text(self, key: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(key).decode(encoding)

    def write_text(self, key: str, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(key, text.encode(encoding))

    def write_parquet(self, key: str, table: pa.Table | pd.DataFrame) -> None:
        """Encoded to a local temporary file, then published (no second in-memory copy of big files)."""
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table, preserve_index=False)
        with tempfile.TemporaryDirectory(prefix="parquet-") as tmp:
            path = Path(tmp) / "part.parquet"
            pq.write_table(table, path, compression="zstd",
                           use_dictionary=parquet_dictionary_columns(table.column_names))
            self.publish_file(path, key)

    def read_parquet_table(self, key: str, columns: list[str] | None = None,
                           filters: list | None = None) -> pa.Table:
        return pq.read_table(io.BytesIO(self.read_bytes(key)), columns=columns, filters=filters)

    def read_parquet(self, key: str, columns: list[str] | None = None, filters: list | None = None) -> pd.DataFrame:
        return self.read_parquet_table(key, columns=columns, filters=filters).to_pandas()

    def local_path(self, key: str) -> Path | None:
        """A local filesystem path for ``key`` when the store is on disk (fast paths), else None."""
        return None

    def walk(self, prefix: str) -> Iterator[str]:
        yield from self.list(prefix)


class LocalStore(Store):
    """A folder on disk. Atomic publish: write to a temporary file in the same folder, then rename."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        key = key.lstrip("/")
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise ValueError(f"key {key!r} escapes the store root")
        return path

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url}/{key}: no such object in the store") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{uuid.uuid4().hex[:8]}.tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def upload_file(self, path: str | os.PathLike[str], key: str) -> None:
        """Copy to a temporary file beside the target, then rename (no whole-file buffer in memory)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def publish_file(self, path: str | os.PathLike[str], key: str) -> None:
        """Rename the file into place (atomic); a copy when it is on another filesystem."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self.upload_file(path, key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if base.is_file():
            return [prefix.lstrip("/")]
        if not base.is_dir():
            return []
        keys = []
        for p in base.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                keys.append(p.relative_to(self.root).as_posix())
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def move(self, src: str, dst: str) -> None:
        s, d = self._path(src), self._path(dst)
        d.parent.mkdir(parents=True, exist_ok=True)
        os.replace(s, d)

    def delete_prefix(self, prefix: str) -> None:
        p = self._path(prefix)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.is_file():
            p.unlink()


def open_store(url: str | os.PathLike[str]) -> Store:
    """A store for ``url``: ``s3://bucket/prefix`` selects S3, anything else is a local folder."""
    text = str(url)
    if text.startswith("s3://"):
        from scrubber.s3store import S3Store  # boto3 only when asked for

        return S3Store.from_url(text)
    return LocalStore(text)
