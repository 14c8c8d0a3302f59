"""Partial downloads on disk, and what verifies them.

A :class:`Partial` is one resumable download: ``blobs/tmp/resume/<name>.partial`` plus its
row in ``fetch_partials`` (checkpointed offset, validator, boot id, verified digest). See
:mod:`cache.transfer` for how the engine uses it: why the prefix is re-hashed on resume,
which bytes are trusted after a crash, and the order of verify → record → rename.

``BlobStore.clean_temporary`` only removes ``blobs/tmp/*.part`` (the random names of
:class:`~cache.store.BlobWriter`), so these ``.partial`` files in a subdirectory survive a
restart; :func:`cache.fetcher.sweep_partials` removes the ones nobody wants any more.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from database import write_transaction

from .store import BlobStore, fsync_directory, validate_digest

READ_CHUNK = 1024 * 1024
CHECKPOINT_BYTES = 2 * 1024 * 1024    # fsync + record the offset at least this often…
CHECKPOINT_SECONDS = 1.0              # …or this often, whichever comes first
# Bodies that are an error page, not content (smartedu-upstream.md §6.2: openresty 401 HTML,
# object-storage XML <Error><Code>, content-service JSON {"code": …}).
_ERROR_PAGE_STARTS = (b"<!doctype html", b"<html", b"<?xml", b"<error", b'{"code"',
                      b'{"message"', b'{"error"')
MAGIC_BY_MIME = {"application/pdf": b"%PDF-", "image/png": b"\x89PNG", "image/jpeg": b"\xff\xd8\xff",
                 "application/zip": b"PK\x03\x04"}


def looks_like_error_page(head: bytes, mime: str | None) -> bool:
    """True when the first bytes are an HTML/XML/JSON error body and ``mime`` is not one of
    those text types (a real JSON exercise or an m3u8 playlist is left alone)."""
    if mime and (mime.startswith("text/") or "json" in mime or "xml" in mime
                 or "html" in mime or "mpegurl" in mime):
        return False
    return head.lstrip()[:16].lower().startswith(_ERROR_PAGE_STARTS)


@dataclass
class Expect:
    """What the bytes must be: any of these may be unknown."""

    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    magic: bytes | None = None
    mime: str | None = None

    @property
    def strong(self) -> bool:
        """A digest will check the whole file at the end."""
        return bool(self.md5 or self.sha256)


class Partial:
    """One resumable download: ``blobs/tmp/resume/<name>.partial`` and its row."""

    def __init__(self, db: sqlite_utils.Database, store: BlobStore, file_id: int, url: str = ""):
        self.db, self.store, self.file_id, self.url = db, store, file_id, url
        self.name = str(file_id) if not url else (
            f"{file_id}-{hashlib.sha256(url.encode()).hexdigest()[:20]}")
        self.path = resume_dir(store) / (self.name + ".partial")
        row = db.execute("SELECT offset, mirror, etag, last_modified, verified_sha256, boot_id "
                         "FROM fetch_partials WHERE name = ?", [self.name]).fetchone()
        (self.checkpoint_offset, self.mirror, self.etag, self.last_modified, self.verified,
         self.boot_id) = row if row else (0, "", "", "", None, "")
        self.size = 0
        self._file = None
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5()
        self._last_checkpoint = (0, time.monotonic())

    # -- lifecycle

    def open(self, trust_tail: bool) -> None:
        """Open for appending, keeping what is trustworthy on disk, and re-hash it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+b")
        on_disk = os.fstat(self._file.fileno()).st_size
        same_boot = bool(self.boot_id) and self.boot_id == BOOT_ID
        keep = on_disk if trust_tail or same_boot else min(on_disk, self.checkpoint_offset)
        if keep != on_disk:
            self._file.truncate(keep)
        self._file.seek(0)
        self._sha, self._md5 = hashlib.sha256(), hashlib.md5()
        remaining = keep
        while remaining > 0:
            block = self._file.read(min(READ_CHUNK, remaining))
            if not block:
                break
            self._sha.update(block)
            self._md5.update(block)
            remaining -= len(block)
        self.size = keep - remaining
        self._file.seek(0, os.SEEK_END)
        with write_transaction(self.db):
            self.db.execute(
                "INSERT INTO fetch_partials (name, file_id, url, offset, boot_id, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "offset = min(offset, excluded.offset), boot_id = excluded.boot_id",
                [self.name, self.file_id, self.url, self.size, BOOT_ID, time.time()])
        self.checkpoint_offset = min(self.checkpoint_offset, self.size)
        self._last_checkpoint = (self.size, time.monotonic())

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()

    def reset(self) -> None:
        """Throw the bytes away and start again from 0 (validator forgotten too)."""
        self._file.truncate(0)
        self._file.seek(0)
        self._sha, self._md5 = hashlib.sha256(), hashlib.md5()
        self.size = 0
        self.etag = self.last_modified = self.mirror = ""
        self.checkpoint(force=True)

    def discard(self) -> None:
        """Remove the partial file and its row (cancelled, or done with)."""
        self.close()
        self.path.unlink(missing_ok=True)
        with write_transaction(self.db):
            self.db.execute("DELETE FROM fetch_partials WHERE name = ?", [self.name])

    # -- data

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._sha.update(data)
        self._md5.update(data)
        self.size += len(data)

    def head(self, n: int = 512) -> bytes:
        self._file.flush()
        with open(self.path, "rb") as f:
            return f.read(n)

    def validator(self, url: str) -> str | None:
        """The If-Range validator for asking ``url`` (only the mirror that gave it)."""
        if self.mirror != url:
            return None
        if self.etag and not self.etag.startswith("W/"):
            return self.etag  # weak ETags may not be used with If-Range (RFC 9110)
        return self.last_modified or None

    def remember_validator(self, url: str, etag: str | None, last_modified: str | None) -> None:
        """Record at once (before any byte of this response is written) which version of
        the file the bytes on disk belong to, so a restarted process can resume them."""
        fresh = (url, etag or "", last_modified or "")
        if fresh == (self.mirror, self.etag, self.last_modified):
            return
        self.mirror, self.etag, self.last_modified = fresh
        with write_transaction(self.db):
            self.db.execute("UPDATE fetch_partials SET mirror = ?, etag = ?, last_modified = ? "
                            "WHERE name = ?", [*fresh, self.name])

    def checkpoint(self, force: bool = False) -> bool:
        """fsync and record the offset, when due (or ``force``). True when it wrote."""
        last_size, last_time = self._last_checkpoint
        if not force and (self.size - last_size < CHECKPOINT_BYTES
                          and time.monotonic() - last_time < CHECKPOINT_SECONDS):
            return False
        self._file.flush()
        os.fsync(self._file.fileno())
        with write_transaction(self.db):
            self.db.execute(
                "UPDATE fetch_partials SET offset = ?, mirror = ?, etag = ?, last_modified = ?, "
                "updated_at = ? WHERE name = ?",
                [self.size, self.mirror, self.etag, self.last_modified, time.time(), self.name])
        self.checkpoint_offset = self.size
        self._last_checkpoint = (self.size, time.monotonic())
        return True

    # -- the end

    def verify(self, expect: Expect) -> tuple[str, list[str]]:
        """Check everything known: (SHA-256, problems); no problems means verified."""
        self._file.flush()
        problems = []
        if expect.size is not None and self.size != expect.size:
            problems.append(f"size {self.size}, expected {expect.size}")
        if expect.md5 and self._md5.hexdigest() != expect.md5.lower():
            problems.append(f"md5 {self._md5.hexdigest()}, expected {expect.md5.lower()}")
        digest = self._sha.hexdigest()
        if expect.sha256 and digest != expect.sha256:
            problems.append(f"sha256 {digest}, expected {expect.sha256}")
        head = self.head()
        if expect.magic and not head.startswith(expect.magic):
            problems.append(f"does not start with {expect.magic!r}")
        elif looks_like_error_page(head, expect.mime):
            problems.append("is an error page, not content")
        return digest, problems

    def publish(self, digest: str) -> None:
        """Record the verified digest, then fsync and rename into the store."""
        validate_digest(digest)
        self._file.flush()
        os.fsync(self._file.fileno())
        with write_transaction(self.db):
            self.db.execute("UPDATE fetch_partials SET verified_sha256 = ?, offset = ? "
                            "WHERE name = ?", [digest, self.size, self.name])
        self.verified = digest
        self.close()
        final = self.store.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o644)
        os.replace(self.path, final)
        fsync_directory(final.parent)


def _boot_id() -> str:
    """This boot of the machine (Linux); '' where unknown (then only fsynced bytes count)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


BOOT_ID = _boot_id()


def resume_dir(store: BlobStore) -> Path:
    return store.tmp_dir / "resume"
