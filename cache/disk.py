"""Disk space: the free-space reserve, the storage quota, pins and LRU eviction.

- **Reserve** (setting ``disk_reserve_mb``): fetching never takes the file system below
  it. :meth:`DiskGuard.make_room` runs before a transfer starts (with the bytes it will
  add) and :meth:`DiskGuard.check_running` every few MB while it runs; both evict first
  and raise :class:`DiskFull` only when eviction cannot help.
- **Quota** (setting ``storage_quota_mb``, 0 = none): the bytes of cached blobs may not
  exceed it; the least recently used files go first.
- **What is never evicted**: files of pinned resources (a pin on a lesson package covers
  its parts), files that could not be fetched again (no upstream URL: teachers' uploads,
  the sample library), and blobs that a queued or in-progress file needs.
- **Last use**: :func:`touch` is what ``/content`` calls when it serves a blob. It only
  notes the time in memory and writes the batch at most every ``TOUCH_FLUSH_SECONDS``,
  so serving stays cheap; LRU order at minute granularity is all eviction needs.

An evicted file goes back to state ``remote`` (the kiosk shows 获取 again) and keeps its
``sha256``, which a later fetch then verifies against.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import sqlite_utils

from database import write_transaction

from .catalog import now_iso
from .store import BlobStore

MB = 1024 * 1024
TOUCH_FLUSH_SECONDS = 30.0


class DiskFull(Exception):
    """Fetching would take free space below the reserve, or the quota is full of content
    that may not be evicted. The message is for the admin page."""

    def __init__(self, key: str, message: str):
        self.key = key  # 'disk' or 'storage': the alert this raises
        super().__init__(message)


# --------------------------------------------------------------------------- usage


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def storage_used(db: sqlite_utils.Database) -> int:
    """Bytes of blobs the catalogue holds: cached files plus the pieces of fetched files
    (each blob counted once however many files share it)."""
    row = db.execute("""
        SELECT coalesce(sum(size), 0) FROM (
            SELECT sha256, max(coalesce(size, 0)) AS size FROM (
                SELECT f.sha256, coalesce(u.size, f.size) AS size FROM files f
                    LEFT JOIN blob_use u ON u.sha256 = f.sha256
                    WHERE f.state = 'cached' AND f.sha256 IS NOT NULL
                UNION ALL
                SELECT sha256, size FROM file_parts)
            GROUP BY sha256)""").fetchone()
    return int(row[0])


# ---------------------------------------------------------------------------- pins


def pin(db: sqlite_utils.Database, resource_ids, pinned_by: str = "") -> int:
    """Protect resources (and their parts) from eviction; returns how many were new."""
    added = 0
    with write_transaction(db):
        for rid in resource_ids:
            cursor = db.execute(
                "INSERT OR IGNORE INTO pins (resource_id, pinned_by, pinned_at) "
                "SELECT id, ?, ? FROM resources WHERE id = ?", [pinned_by, now_iso(), rid])
            added += cursor.rowcount
    return added


def unpin(db: sqlite_utils.Database, resource_ids) -> int:
    with write_transaction(db):
        return sum(db.execute("DELETE FROM pins WHERE resource_id = ?", [rid]).rowcount
                   for rid in resource_ids)


def pinned(db: sqlite_utils.Database) -> list[dict]:
    rows = db.execute("SELECT p.resource_id, r.title, p.pinned_by, p.pinned_at FROM pins p "
                      "JOIN resources r ON r.id = p.resource_id ORDER BY p.pinned_at").fetchall()
    return [dict(zip(("resource_id", "title", "pinned_by", "pinned_at"), r)) for r in rows]


# ------------------------------------------------------------------------ last use


class _TouchBuffer:
    """Last-use times noted in memory by serving threads, written in batches."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pending: dict[str, float] = {}
        self.last_flush = time.monotonic()


_touches = _TouchBuffer()


def touch(db: sqlite_utils.Database, sha256: str, now: float | None = None,
          force: bool = False) -> bool:
    """Note that a blob was just used (served). Cheap: one dict write; every
    ``TOUCH_FLUSH_SECONDS`` the caller's connection writes the whole batch (one
    transaction). Returns True when this call flushed."""
    stamp = time.time() if now is None else now
    with _touches.lock:
        _touches.pending[sha256] = stamp
        due = force or time.monotonic() - _touches.last_flush >= TOUCH_FLUSH_SECONDS
        if not due:
            return False
        batch, _touches.pending = _touches.pending, {}
        _touches.last_flush = time.monotonic()
    write_last_use(db, batch)
    return True


def flush_touches(db: sqlite_utils.Database) -> None:
    """Write any noted last-use times now (at shutdown, before an eviction pass)."""
    with _touches.lock:
        batch, _touches.pending = _touches.pending, {}
        _touches.last_flush = time.monotonic()
    write_last_use(db, batch)


def write_last_use(db: sqlite_utils.Database, stamps: dict[str, float]) -> None:
    if not stamps:
        return
    with write_transaction(db):
        for digest, stamp in stamps.items():
            # Only blobs the catalogue knows: size comes from the files that use it.
            db.execute(
                "INSERT INTO blob_use (sha256, size, last_used) "
                "SELECT ?, coalesce((SELECT max(size) FROM files WHERE sha256 = ?), 0), ? "
                "ON CONFLICT(sha256) DO UPDATE SET "
                "last_used = max(last_used, excluded.last_used)", [digest, digest, stamp])


def record_blob(db: sqlite_utils.Database, sha256: str, size: int,
                now: float | None = None) -> None:
    """A blob was just stored: it counts as used now (inside the caller's transaction)."""
    db.execute(
        "INSERT INTO blob_use (sha256, size, last_used) VALUES (?, ?, ?) "
        "ON CONFLICT(sha256) DO UPDATE SET size = excluded.size, last_used = excluded.last_used",
        [sha256, size, time.time() if now is None else now])


# ------------------------------------------------------------------------ eviction

# Files that may be evicted, least recently used first. A file's last use is its own
# blob's (for HLS, the playlist, which every play requests first).
_CANDIDATES = """
    SELECT f.id, f.sha256, coalesce(u.size, f.size, 0), coalesce(u.last_used, 0)
    FROM files f
    JOIN resources r ON r.id = f.resource_id
    LEFT JOIN blob_use u ON u.sha256 = f.sha256
    WHERE f.state = 'cached' AND f.sha256 IS NOT NULL AND f.urls != '[]'
      AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.resource_id IN (r.id, r.parent_id))
    ORDER BY coalesce(u.last_used, 0), f.id
"""

# A blob is still needed while any of these refers to it.
_STILL_NEEDED = """
    SELECT 1 WHERE
        EXISTS (SELECT 1 FROM files WHERE sha256 = :d AND (state = 'cached'
                OR id IN (SELECT file_id FROM fetch_queue)))
     OR EXISTS (SELECT 1 FROM file_parts WHERE sha256 = :d)
     OR EXISTS (SELECT 1 FROM fetch_partials WHERE verified_sha256 = :d)
"""


def evict(db: sqlite_utils.Database, store: BlobStore, need_bytes: int) -> int:
    """Evict least-recently-used unpinned files until ``need_bytes`` are freed (or nothing
    more may go); returns the bytes of blobs actually removed.

    Runs in one write transaction (BEGIN IMMEDIATE) and unlinks inside it, so a fetch
    cannot mark a file cached on a blob that this pass is removing. A reader that already
    opened a blob keeps reading it (POSIX unlink).
    """
    flush_touches(db)
    freed = 0
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        candidates = conn.execute(_CANDIDATES).fetchall()
        for file_id, digest, _size, _last in candidates:
            if freed >= need_bytes:
                break
            digests = {digest} | {r[0] for r in conn.execute(
                "SELECT sha256 FROM file_parts WHERE file_id = ?", [file_id])}
            conn.execute("UPDATE files SET state = 'remote' WHERE id = ?", [file_id])
            conn.execute("DELETE FROM file_parts WHERE file_id = ?", [file_id])
            for d in digests:
                if conn.execute(_STILL_NEEDED, {"d": d}).fetchone():
                    continue
                try:
                    path = store.path(d)
                    size = path.stat().st_size
                    path.unlink()
                    freed += size
                except FileNotFoundError:
                    pass
                conn.execute("DELETE FROM blob_use WHERE sha256 = ?", [d])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return freed


class DiskGuard:
    """The reserve and the quota for one home, as the fetch workers see them."""

    def __init__(self, store: BlobStore, reserve_bytes: int, quota_bytes: int = 0):
        self.store = store
        self.reserve = int(reserve_bytes)
        self.quota = int(quota_bytes)

    @classmethod
    def from_config(cls, config, store: BlobStore) -> "DiskGuard":
        return cls(store, config.disk_reserve_mb * MB, config.storage_quota_mb * MB)

    def free(self) -> int:
        return free_bytes(self.store.root)

    def make_room(self, db: sqlite_utils.Database, incoming: int) -> None:
        """Before a fetch of ``incoming`` more bytes: evict what the reserve and the quota
        need; raise :class:`DiskFull` if they cannot both be kept."""
        incoming = max(0, int(incoming))
        short_of_reserve = self.reserve + incoming - self.free()
        over_quota = (storage_used(db) + incoming - self.quota) if self.quota else 0
        need = max(short_of_reserve, over_quota)
        if need > 0:
            evict(db, self.store, need)
        free = self.free()
        if free - incoming < self.reserve:
            raise DiskFull("disk", f"磁盘空间不足：可用 {free // MB} MB，需保留 "
                           f"{self.reserve // MB} MB。 Free disk {free // MB} MB is below the "
                           f"reserve of {self.reserve // MB} MB (disk_reserve_mb) plus "
                           f"{incoming // MB} MB to fetch.")
        if self.quota and storage_used(db) + incoming > self.quota:
            raise DiskFull("storage", f"存储配额已满（已固定的内容无法清理）。 The storage "
                           f"quota of {self.quota // MB} MB (storage_quota_mb) is full of "
                           "content that may not be evicted.")

    def check_running(self, db: sqlite_utils.Database, still_to_write: int) -> None:
        """During a fetch, every few MB: the same rule for the bytes still to come."""
        if self.free() - max(0, still_to_write) < self.reserve or self.quota:
            self.make_room(db, still_to_write)

    def state(self, db: sqlite_utils.Database) -> dict:
        usage = shutil.disk_usage(self.store.root if self.store.root.exists()
                                  else self.store.root.parent)
        return {"free": usage.free, "total": usage.total, "reserve": self.reserve,
                "quota": self.quota or None, "used_by_cache": storage_used(db),
                "pinned": db.execute("SELECT count(*) FROM pins").fetchone()[0]}
