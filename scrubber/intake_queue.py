"""The incoming/ queue: find finished claim files, claim each for exactly one run, archive or quarantine after.

Store-agnostic: works on a local folder (claim = ``os.replace``, atomic on one filesystem: of two
claimers only one finds the file to rename) and on S3 (claim = conditional claim marker, then copy +
delete; see :meth:`scrubber.s3store.S3Store.claim_move`).

Life of a file (store layout, architecture 3.4, plus ``processing/``)::

    incoming/<name>  --claim-->  processing/<run_date>/<claimer>/<name>
                     --success-> archive/<run_date>/<name>
                     --whole file rejected-> quarantine/<run_date>/<run_id>/<name> (+ <name>.reason.txt)

Every step is idempotent so an Airflow retry can repeat it: claiming again with the same ``claimer``
returns the files that claimer already holds, and finishing skips files already moved.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from scrubber.store import Store

INCOMING = "incoming/"
PROCESSING = "processing/"
#: Names upload tools give files while they are still being written (SFTP clients, browsers, rsync
#: uses a leading dot, which is skipped too). Such a file is renamed to its final name when complete.
IN_PROGRESS_SUFFIXES: tuple[str, ...] = (".tmp", ".part", ".partial", ".filepart", ".crdownload",
                                         ".uploading", ".writing", ".lock")
DEFAULT_STALE_AFTER = timedelta(hours=6)


@dataclass(frozen=True)
class PendingFile:
    """A complete file waiting in incoming/. ``etag`` (S3 only) pins the version we decided to take."""

    key: str
    size: int
    etag: str | None = None


def safe_token(text: str) -> str:
    """A claimer / run token usable in a key on any filesystem (Airflow run ids contain ':' and '+')."""
    token = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    if not token:
        raise ValueError(f"cannot make a key token from {text!r}")
    return token


def processing_prefix(run_date: date | str, claimer: str) -> str:
    return f"{PROCESSING}{run_date}/{safe_token(claimer)}/"


def _skip_reason(key: str, size: int) -> str | None:
    """Why a listed object is not (yet) a claimable file, or None when it is."""
    name = key.rsplit("/", 1)[-1]
    if key.endswith("/") or not name:
        return "folder marker"
    if name.startswith(".") or name.startswith("_"):
        return "hidden/temporary name"
    if name.lower().endswith(IN_PROGRESS_SUFFIXES):
        return "still being written (temporary suffix)"
    if size == 0:
        return "empty (zero bytes): probably still being written"
    return None


def pending_files(store: Store, *, incoming: str = INCOMING, settle_seconds: float = 0.0) -> list[PendingFile]:
    """Files in ``incoming`` that are complete and may be claimed, sorted by key.

    Skipped (left in place for a later run): folder markers, hidden or temporary names, zero-byte
    objects, and, with ``settle_seconds``, files modified more recently than that. On S3 an object
    uploaded in parts does not appear in a listing until the upload is completed, so half-uploaded
    files are never seen at all.
    """
    now = time.time()
    out: list[PendingFile] = []
    list_info = getattr(store, "list_info", None)
    if list_info is not None:  # S3: one listing gives size, ETag and mtime
        for obj in list_info(incoming):
            if _skip_reason(obj.key, obj.size) is None and (
                    not settle_seconds or now - obj.last_modified.timestamp() >= settle_seconds):
                out.append(PendingFile(obj.key, obj.size, obj.etag))
        return out
    for key in store.list(incoming):
        path = store.local_path(key)
        if path is None:  # another store type: size unknown, take what the listing shows
            out.append(PendingFile(key, -1))
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            continue  # claimed by someone else while we listed
        if _skip_reason(key, st.st_size) is None and (not settle_seconds or now - st.st_mtime >= settle_seconds):
            out.append(PendingFile(key, st.st_size))
    return out


def _claim_one(store: Store, item: PendingFile, dst: str, claimer: str, stale_after: timedelta) -> bool:
    """Move one file to ``dst`` iff no other claimer gets it first."""
    src_path, dst_path = store.local_path(item.key), store.local_path(dst)
    if src_path is not None and dst_path is not None:
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src_path, dst_path)  # atomic: exactly one of two racing renames finds the source
        except FileNotFoundError:
            return False
        return True
    claim_move = getattr(store, "claim_move", None)
    if claim_move is None:
        raise TypeError(f"{store!r} supports neither local paths nor claim_move(): cannot claim files safely")
    return bool(claim_move(item.key, dst, owner=claimer, etag=item.etag, stale_after=stale_after))


def claim_incoming(store: Store, run_date: date | str, *, claimer: str, incoming: str = INCOMING,
                   settle_seconds: float = 0.0, stale_after: timedelta = DEFAULT_STALE_AFTER) -> list[str]:
    """Claim every pending file in ``incoming`` for ``claimer``; the keys it now holds, sorted.

    ``claimer`` identifies one run (in Airflow the dag run id): calling again with the same claimer
    (a task retry) returns what it already holds plus anything new, and never a file another claimer
    took. Files keep their path relative to ``incoming`` under ``processing/<run_date>/<claimer>/``.
    """
    if not incoming.endswith("/"):
        incoming += "/"
    target = processing_prefix(run_date, claimer)
    held = set(store.list(target))
    for item in pending_files(store, incoming=incoming, settle_seconds=settle_seconds):
        dst = target + item.key[len(incoming):]
        if _claim_one(store, item, dst, safe_token(claimer), stale_after):
            held.add(dst)
    return sorted(held)


def _relative_name(key: str) -> str:
    """incoming-relative name of a claimed key (processing/<date>/<claimer>/<name> -> <name>)."""
    if key.startswith(PROCESSING):
        parts = key.split("/", 3)
        if len(parts) == 4:
            return parts[3]
    if key.startswith(INCOMING):
        return key[len(INCOMING):]
    return key.rsplit("/", 1)[-1]


def _same_bytes(store: Store, a: str, b: str) -> bool:
    return store.read_bytes(a) == store.read_bytes(b)


def finish_claimed(store: Store, claimed: Iterable[str], *, run_date: date | str, run_id: str,
                   quarantined: Mapping[str, str] | None = None) -> dict[str, str]:
    """After a published run: claimed file -> archive/<run_date>/, or quarantine/<run_date>/<run_id>/ with
    ``<name>.reason.txt`` for files the pipeline rejected whole (``quarantined``: key -> reason).

    Returns {claimed key: where it is now}. Idempotent: a file already moved is found at its destination.
    An archive name already taken by different content that day goes under archive/<run_date>/<run_id>/.
    """
    quarantined = dict(quarantined or {})
    moved: dict[str, str] = {}
    for key in claimed:
        name = _relative_name(key)
        primary, alternative = f"archive/{run_date}/{name}", f"archive/{run_date}/{run_id}/{name}"
        jail = f"quarantine/{run_date}/{run_id}/{name}"
        if not store.exists(key):  # a retry: already moved by an earlier attempt
            done = [c for c in (jail, alternative, primary) if store.exists(c)]
            if not done:
                raise FileNotFoundError(f"{store.url}/{key}: claimed file vanished before it was archived")
            moved[key] = done[0]
            continue
        if key in quarantined:
            store.write_text(jail + ".reason.txt", f"{name}: {quarantined[key]}\n")
            dst = jail
        elif store.exists(primary) and not _same_bytes(store, key, primary):
            dst = alternative
        else:
            dst = primary
        store.move(key, dst)
        moved[key] = dst
    return moved


def requeue(store: Store, claimed: Iterable[str], *, incoming: str = INCOMING) -> list[str]:
    """Give claimed files back to incoming/ (an operator abandoning a run that cannot be repaired)."""
    back = []
    for key in claimed:
        if store.exists(key):
            dst = incoming.rstrip("/") + "/" + _relative_name(key)
            store.move(key, dst)
            back.append(dst)
    return back
