"""The store on an S3 bucket (AWS S3, MinIO, or any S3-compatible server) through boto3.

Keys are the same '/'-separated paths as in a local store, under an optional prefix of the bucket
(``s3://bucket/prefix``). A single S3 PUT is atomic (a reader sees the old object or the new one,
never half of it), so ``write_bytes`` writes directly; multi-file outputs stay consistent because the
pipeline writes ``summary.json`` last. Moves are copy + delete (S3 has no rename).

Claiming an incoming file for exactly one run needs more than copy + delete: two runs can both copy a
file and both "succeed" at deleting it (DELETE is idempotent on S3). :meth:`S3Store.claim_move` therefore
first takes an exclusive claim marker with a conditional PUT (``If-None-Match: *``, honoured by AWS S3
since 2024, MinIO and moto), and only the marker's owner moves the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from scrubber.settings import Settings
from scrubber.store import Store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover (type stubs are optional)

#: Error codes S3 and compatible servers use for "no such object".
_MISSING = {"NoSuchKey", "404", "NotFound"}
#: Error codes for a failed precondition (If-None-Match / If-Match / CopySourceIfMatch).
_PRECONDITION = {"PreconditionFailed", "412"}
#: A concurrent conditional write on the same key (AWS answers 409; retry-able, but for a claim it means
#: someone else is taking the same file right now).
_CONFLICT = {"ConditionalRequestConflict", "409"}
#: Where claim markers live, relative to the store root (see :meth:`S3Store.claim_move`).
CLAIMS_PREFIX = "processing/_claims/"
#: A claim older than this whose owner never finished (crashed worker) may be taken over.
DEFAULT_CLAIM_STALE_AFTER = timedelta(hours=6)


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: enough to decide whether a file is complete and to detect changes."""

    key: str
    size: int
    etag: str
    last_modified: datetime


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix/"); the prefix is "" or ends with '/'."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


def make_s3_client(*, endpoint_url: str | None = None, session: boto3.session.Session | None = None,
                   region_name: str | None = None) -> S3Client:
    """A boto3 S3 client; credentials come from the session or the standard AWS chain.

    With a custom endpoint (MinIO, moto, rclone) we use path-style addressing (bucket names in the
    path, not in a DNS name the local server cannot resolve) and compute request checksums only when
    an operation requires them: several S3-compatible servers store or reject the aws-chunked
    trailing checksums that newer botocore sends by default.
    """
    session = session or boto3.session.Session()
    region = region_name or session.region_name or os.environ.get("AWS_REGION") or "us-east-1"
    options: dict[str, Any] = {"retries": {"max_attempts": 5, "mode": "standard"}}
    if endpoint_url:
        options["s3"] = {"addressing_style": "path"}
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    return session.client("s3", endpoint_url=endpoint_url or None, region_name=region, config=Config(**options))


class S3Store(Store):
    """A bucket (and optional key prefix) as a :class:`~scrubber.store.Store`."""

    #: Keys per ListObjectsV2 page (S3's maximum is 1000); smaller only to exercise pagination in tests.
    page_size: int = 1000

    def __init__(self, bucket: str, prefix: str = "", *, client: S3Client | None = None,
                 endpoint_url: str | None = None, session: boto3.session.Session | None = None) -> None:
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = prefix + "/" if prefix else ""
        self.endpoint_url = endpoint_url
        self.client = client or make_s3_client(endpoint_url=endpoint_url, session=session)
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")

    @classmethod
    def from_url(cls, url: str, *, settings: Settings | None = None, endpoint_url: str | None = None,
                 session: boto3.session.Session | None = None, client: S3Client | None = None) -> S3Store:
        """Open ``s3://bucket/prefix``. Endpoint: the argument, else settings/``SCRUBBER_S3_ENDPOINT_URL``/
        ``AWS_ENDPOINT_URL``, else AWS itself."""
        bucket, prefix = parse_s3_url(url)
        if endpoint_url is None:
            endpoint_url = (settings or Settings.from_env()).s3_endpoint_url
        return cls(bucket, prefix, client=client, endpoint_url=endpoint_url, session=session)

    def __repr__(self) -> str:
        where = f" via {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3Store({self.url!r}{where})"

    # --- key mapping ---
    def _key(self, key: str) -> str:
        key = key.lstrip("/")
        if any(part == ".." for part in key.split("/")):
            raise ValueError(f"key {key!r} escapes the store root")
        return self.prefix + key

    def _rel(self, full_key: str) -> str:
        return full_key[len(self.prefix):]

    # --- primitives ---
    def read_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as err:
            if _code(err) in _MISSING:
                raise FileNotFoundError(f"{self.url}/{key}: no such object in the store") from None
            raise

    def write_bytes(self, key: str, data: bytes) -> None:
        """One PUT: atomic per object on S3 (readers see the old or the new object, never a part)."""
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if no object exists there (conditional PUT). False when it already exists."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except ClientError as err:
            if _code(err) in _PRECONDITION | _CONFLICT:
                return False
            raise
        return True

    def head(self, key: str) -> ObjectInfo | None:
        """Size/ETag/mtime of ``key``, or None when it does not exist."""
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _code(err) in _MISSING:
                return None
            raise
        return ObjectInfo(key.lstrip("/"), int(r["ContentLength"]), r["ETag"], r["LastModified"])

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def iter_info(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` with its metadata, page by page (ListObjectsV2, 1000 per page).

        Objects of multipart uploads still in progress are not listed by S3 until completed, so a
        listing never shows a half-uploaded file. "Folder" markers (keys ending in '/') are kept here;
        :meth:`list` drops them.
        """
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix),
                                   PaginationConfig={"PageSize": self.page_size})
        for page in pages:
            for obj in page.get("Contents", []):
                yield ObjectInfo(self._rel(obj["Key"]), int(obj["Size"]), obj["ETag"], obj["LastModified"])

    def list_info(self, prefix: str) -> list[ObjectInfo]:
        return sorted(self.iter_info(prefix), key=lambda o: o.key)

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (recursive), sorted; folder markers are not files and are left out."""
        return sorted(o.key for o in self.iter_info(prefix) if not o.key.endswith("/"))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        """Delete everything under ``prefix`` in batches of 1000 (one request per batch)."""
        batch: list[dict[str, str]] = []
        for obj in self.iter_info(prefix):
            batch.append({"Key": self._key(obj.key)})
            if len(batch) == 1000:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, batch: list[dict[str, str]]) -> None:
        r = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        errors = [e for e in r.get("Errors", []) if e.get("Code") not in _MISSING]
        if errors:
            raise OSError(f"{self.url}: could not delete {len(errors)} objects, first: {errors[0]}")

    def copy(self, src: str, dst: str, *, if_match: str | None = None) -> None:
        """Server-side copy. ``if_match``: copy only while ``src`` still has this ETag (else precondition error)."""
        extra: dict[str, Any] = {}
        if if_match:
            extra["CopySourceIfMatch"] = if_match
        self.client.copy_object(Bucket=self.bucket, Key=self._key(dst),
                                CopySource={"Bucket": self.bucket, "Key": self._key(src)}, **extra)

    def move(self, src: str, dst: str) -> None:
        """Copy then delete (server-side; no bytes pass through this process). Missing ``src`` raises."""
        try:
            self.copy(src, dst)
        except ClientError as err:
            if _code(err) in _MISSING:
                raise FileNotFoundError(f"{self.url}/{src}: no such object in the store") from None
            raise
        self.delete(src)

    def download_file(self, key: str, path: str | os.PathLike[str]) -> Path:
        """Stream ``key`` to a local file (multipart-aware, no whole-file buffer in memory)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except ClientError as err:
            if _code(err) in _MISSING:
                raise FileNotFoundError(f"{self.url}/{key}: no such object in the store") from None
            raise
        return path

    def upload_file(self, path: str | os.PathLike[str], key: str) -> None:
        """Upload a local file (multipart above 8 MB; the object appears only when complete)."""
        self.client.upload_file(str(path), self.bucket, self._key(key))

    # --- exclusive claims ---
    def claim_move(self, src: str, dst: str, *, owner: str, etag: str | None = None,
                   stale_after: timedelta = DEFAULT_CLAIM_STALE_AFTER) -> bool:
        """Move ``src`` to ``dst`` for ``owner`` only; True when this owner now holds the file at ``dst``.

        1. Take the claim marker ``processing/_claims/<src>`` with a conditional PUT. If it exists and
           belongs to ``owner`` (a retry of the same run), carry on; if it belongs to someone else and
           is older than ``stale_after`` (its owner died mid-claim), take it over; else give up.
        2. Copy ``src`` -> ``dst`` only while ``src`` still has the listed ETag (a file replaced in the
           meantime is left for the next run), delete ``src``, then drop the marker.
        A claimer that arrives after the whole move finds ``src`` gone at step 2, releases its marker
        and returns False. So each file ends at exactly one ``dst``.
        """
        if etag is None:
            info = self.head(src)
            if info is None:
                return False
            etag = info.etag
        marker = CLAIMS_PREFIX + src.lstrip("/")
        body = json.dumps({"owner": owner, "src": src, "etag": etag,
                           "claimed_at": datetime.now(UTC).isoformat()}).encode()
        if not self._take_marker(marker, body, owner, stale_after):
            return False
        try:
            # Still the version we listed? (HEAD If-Match, then CopySourceIfMatch closes the remaining
            # window on AWS and MinIO; moto 5.2 checks the HEAD precondition but ignores the copy's.)
            self.client.head_object(Bucket=self.bucket, Key=self._key(src), IfMatch=etag)
            self.copy(src, dst, if_match=etag)
        except ClientError as err:
            if _code(err) not in _MISSING | _PRECONDITION:
                raise
            # src is gone (another claimer finished) or was replaced by a newer upload (left for the
            # next run). Ours only if an earlier attempt of this owner already copied it (crash retry).
            ours = self.exists(dst)
            self.delete(marker)
            return ours
        self._delete_if_unchanged(src, etag)
        self.delete(marker)
        return True

    def _delete_if_unchanged(self, key: str, etag: str) -> None:
        """Delete ``key`` unless it was replaced since we listed it (conditional DELETE where supported)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key), IfMatch=etag)
        except ClientError as err:
            code = _code(err)
            if code in _PRECONDITION | _MISSING:
                return  # replaced by a newer upload (keep it for the next run) or already gone
            if code in {"NotImplemented", "InvalidArgument", "501", "400"}:
                self.delete(key)  # a server without conditional deletes: plain delete
                return
            raise

    def _take_marker(self, marker: str, body: bytes, owner: str, stale_after: timedelta) -> bool:
        for _ in range(2):
            if self.put_if_absent(marker, body):
                return True
            try:
                r = self.client.get_object(Bucket=self.bucket, Key=self._key(marker))
                current = json.loads(r["Body"].read() or b"{}")
            except ClientError as err:
                if _code(err) in _MISSING:
                    continue  # released between our PUT and GET: try once more
                raise
            if current.get("owner") == owner:
                return True
            claimed_at = datetime.fromisoformat(current.get("claimed_at", "1970-01-01T00:00:00+00:00"))
            if datetime.now(UTC) - claimed_at < stale_after:
                return False
            # Stale claim: remove exactly that marker version (If-Match), then race for a fresh one.
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(marker), IfMatch=r["ETag"])
            except ClientError as err:
                if _code(err) not in _PRECONDITION | _MISSING:
                    raise
        return False
