"""The durable fetch queue in ``catalog.db`` (table ``fetch_queue``).

One row per file that someone wants and that is not cached yet. Because the file id is
the key, any number of requests for the same file — thirty terminals pressing 获取 on the
same lesson, the prefetch plan, the admin — share one row and so one upstream fetch: the
row keeps the highest priority asked for and counts the requests. Everyone watching sees
the same ``bytes_done`` (:meth:`FetchQueue.progress`).

Row states::

    waiting ──claim──▶ active ──success──▶ (row deleted, files.state = cached)
       ▲                 │
       └──back-off───────┤ network error, 5xx, throttled: next_try = now + back-off
                         ├─▶ held    an alert needs a person (auth:<source>); resumes
                         │           by itself when the alert is cleared
                         └─▶ failed  404 on every mirror, or bytes that never verify;
                                     files.state back to remote, enqueue again to retry

``files.state`` follows: remote → queued on enqueue → cached on success (remote again on
cancel or failure). Active rows left by a crash go back to waiting when the service
starts (:meth:`FetchQueue.recover`).

Each thread uses its own :class:`FetchQueue` on its own connection.
"""

from __future__ import annotations

import enum
import json
import time
from typing import Iterable

import sqlite_utils

from database import write_transaction

from .catalog import is_resource_id, now_iso


class Priority(enum.IntEnum):
    TEACHER = 300     # a teacher pressed 获取 / shuqiao fetch
    PLAN = 200        # the curriculum prefetch plan
    BACKGROUND = 100  # everything else (catalogue covers, bulk mirror)


ACTIVE_STATES = ("waiting", "active", "held")


class QueueError(ValueError):
    """Bad input to the queue (unknown ids); the message is for the person who gave it."""


def _rows(cursor) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r)) for r in cursor.fetchall()]


class FetchQueue:
    def __init__(self, db: sqlite_utils.Database):
        self.db = db

    # ------------------------------------------------------------------ demand

    def file_ids_for(self, ids: Iterable[str | int]) -> tuple[list[int], list]:
        """Expand resource ids (a resource and its parts) and file ids into file ids, in
        order; returns (file ids, ids that match nothing)."""
        file_ids: list[int] = []
        seen: set[int] = set()
        unknown: list = []
        for item in ids:
            if isinstance(item, int) or (isinstance(item, str) and item.isdigit()):
                found = [r[0] for r in self.db.execute(
                    "SELECT id FROM files WHERE id = ?", [int(item)])] or None
            elif is_resource_id(item) and self.db.execute(
                    "SELECT 1 FROM resources WHERE id = ?", [item]).fetchone():
                found = [r[0] for r in self.db.execute(
                    "SELECT f.id FROM files f JOIN resources r ON r.id = f.resource_id "
                    "WHERE r.id = ? OR r.parent_id = ? "
                    "ORDER BY r.parent_id IS NOT NULL, r.lesson_no, r.position, f.position",
                    [item, item])]
            else:
                found = None
            if found is None:
                unknown.append(item)
            else:
                fresh = [f for f in found if f not in seen]
                seen.update(fresh)
                file_ids.extend(fresh)
        return file_ids, unknown

    def enqueue(self, ids: Iterable[str | int], priority: int = Priority.TEACHER,
                requested_by: str = "") -> dict:
        """Queue every file of these resources (or these file ids) that is not cached.

        Idempotent: a file already queued keeps its one row, takes the higher of the two
        priorities and counts one more request; a failed row is given a fresh start.
        Returns ``{"queued": [file ids now on the queue], "cached": n, "unknown": [...]}``.
        :raises QueueError: when nothing at all matched.
        """
        ids = list(ids)
        file_ids, unknown = self.file_ids_for(ids)
        if unknown and not file_ids:
            raise QueueError("未找到 / not found: " + ", ".join(str(u) for u in unknown))
        now = now_iso()
        queued, cached = [], 0
        with write_transaction(self.db):
            seq = self.db.execute("SELECT coalesce(max(seq), 0) FROM fetch_queue").fetchone()[0]
            for file_id in file_ids:
                row = self.db.execute("SELECT state, size FROM files WHERE id = ?",
                                      [file_id]).fetchone()
                if row[0] == "cached":
                    cached += 1
                    continue
                seq += 1
                self.db.execute("""
                    INSERT INTO fetch_queue (file_id, priority, seq, bytes_total, requested_by,
                                             enqueued_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(file_id) DO UPDATE SET
                        priority = max(priority, excluded.priority),
                        requests = requests + 1,
                        requested_by = excluded.requested_by,
                        state = CASE state WHEN 'failed' THEN 'waiting' ELSE state END,
                        attempts = CASE state WHEN 'failed' THEN 0 ELSE attempts END,
                        next_try = CASE state WHEN 'failed' THEN 0 ELSE next_try END,
                        updated_at = excluded.updated_at
                    """, [file_id, int(priority), seq, row[1], requested_by, now, now])
                self.db.execute("UPDATE files SET state = 'queued' WHERE id = ? "
                                "AND state = 'remote'", [file_id])
                queued.append(file_id)
        return {"queued": queued, "cached": cached, "unknown": unknown}

    def cancel(self, ids: Iterable[str | int]) -> int:
        """Take files (or all files of resources) off the queue; returns how many rows.

        A transfer in progress notices within a second (its progress update finds no
        row) and stops; its partial data is removed by the service.
        """
        file_ids, _ = self.file_ids_for(list(ids))
        removed = 0
        with write_transaction(self.db):
            for file_id in file_ids:
                removed += self.db.execute("DELETE FROM fetch_queue WHERE file_id = ?",
                                           [file_id]).rowcount
                self.db.execute("UPDATE files SET state = 'remote' WHERE id = ? "
                                "AND state = 'queued'", [file_id])
        return removed

    # ------------------------------------------------------------------ reading

    def progress(self, file_id: int) -> dict:
        """What one file's watchers see: ``state`` is 'cached', 'remote' or a queue state,
        with bytes done/total and the last error."""
        row = self.db.execute(
            "SELECT f.state, f.size, q.state, q.bytes_done, q.bytes_total, q.last_error, "
            "q.error_kind, q.attempts, q.priority FROM files f "
            "LEFT JOIN fetch_queue q ON q.file_id = f.id WHERE f.id = ?", [file_id]).fetchone()
        if row is None:
            raise QueueError(f"no file {file_id}")
        fstate, size, qstate, done, total, error, kind, attempts, priority = row
        if fstate == "cached":
            return {"file_id": file_id, "state": "cached", "bytes_done": size or 0,
                    "bytes_total": size, "error": "", "error_kind": ""}
        return {"file_id": file_id, "state": qstate or "remote", "bytes_done": done or 0,
                "bytes_total": total if total is not None else size, "error": error or "",
                "error_kind": kind or "", "attempts": attempts or 0, "priority": priority}

    def position(self, file_id: int, rate: float | None = None,
                 eta=None) -> dict | None:
        """Queue position (1 = next or being fetched) and the bytes that must come first.

        ``eta(nbytes) -> seconds | None`` (from the service: the budget walked forward at
        the measured link rate) turns those bytes into an estimate; without it ``rate``
        (bytes/s) divides them. None when the file is not on the queue.
        """
        me = self.db.execute(
            "SELECT q.priority, q.seq, q.state, coalesce(q.bytes_total, f.size, 0) - q.bytes_done "
            "FROM fetch_queue q JOIN files f ON f.id = q.file_id WHERE q.file_id = ?",
            [file_id]).fetchone()
        if me is None:
            return None
        priority, seq, state, mine = me
        ahead = self.db.execute("""
            SELECT count(*), coalesce(sum(max(coalesce(q.bytes_total, f.size, 0) - q.bytes_done, 0)), 0)
            FROM fetch_queue q JOIN files f ON f.id = q.file_id
            WHERE q.file_id != ? AND (q.state = 'active' OR (q.state = 'waiting' AND
                  (q.priority > ? OR (q.priority = ? AND q.seq < ?))))""",
                                [file_id, priority, priority, seq]).fetchone()
        total = ahead[1] + max(mine, 0)
        seconds = eta(total) if eta else (total / rate if rate else None)
        return {"file_id": file_id, "state": state, "position": ahead[0] + 1,
                "bytes_ahead": ahead[1], "bytes_left": max(mine, 0), "eta_seconds": seconds}

    def resource_progress(self, resource_id: str, eta=None) -> dict:
        """One resource (with its parts) as the kiosk's 获取 button shows it: how many files
        are cached, bytes done of total, the best queue position, an ETA and any error."""
        rows = _rows(self.db.execute("""
            SELECT f.id, f.state AS file_state, f.size, q.state, q.bytes_done, q.bytes_total,
                   q.last_error, q.error_kind
            FROM files f JOIN resources r ON r.id = f.resource_id
            LEFT JOIN fetch_queue q ON q.file_id = f.id
            WHERE r.id = ? OR r.parent_id = ?""", [resource_id, resource_id]))
        files = len(rows)
        cached = sum(r["file_state"] == "cached" for r in rows)
        total = sum((r["bytes_total"] or r["size"] or 0) for r in rows)
        done = sum((r["size"] or 0) if r["file_state"] == "cached" else (r["bytes_done"] or 0)
                   for r in rows)
        queued = [r for r in rows if r["state"]]
        positions = [self.position(r["id"]) for r in queued if r["state"] in ACTIVE_STATES]
        positions = [p for p in positions if p]
        first = min(positions, key=lambda p: p["position"]) if positions else None
        last_eta = None
        if eta and positions:
            worst = max(p["bytes_ahead"] + p["bytes_left"] for p in positions)
            last_eta = eta(worst)
        if files and cached == files:
            state = "cached"
        elif any(r["state"] == "active" for r in queued):
            state = "active"
        elif any(r["state"] == "held" for r in queued):
            state = "held"
        elif any(r["state"] == "waiting" for r in queued):
            state = "waiting"
        elif any(r["state"] == "failed" for r in queued):
            state = "failed"
        else:
            state = "remote"
        errors = sorted({r["last_error"] for r in queued if r["last_error"]})
        return {"resource_id": resource_id, "state": state, "files": files,
                "files_cached": cached, "bytes_done": done, "bytes_total": total,
                "position": first["position"] if first else None,
                "eta_seconds": last_eta, "errors": errors}

    def status(self, limit: int = 200) -> dict:
        """The admin page's queue: counts per state and the first rows in queue order
        (active first), each with its resource title and live bytes."""
        counts = dict(self.db.execute(
            "SELECT state, count(*) FROM fetch_queue GROUP BY state").fetchall())
        entries = _rows(self.db.execute("""
            SELECT q.file_id, q.priority, q.state, q.attempts, q.next_try, q.last_error,
                   q.error_kind, q.held_on, q.bytes_done, coalesce(q.bytes_total, f.size)
                   AS bytes_total, q.requests, q.requested_by, q.enqueued_at, q.updated_at,
                   f.role, f.name, r.id AS resource_id, r.title, r.source,
                   coalesce(p.title, '') AS package
            FROM fetch_queue q JOIN files f ON f.id = q.file_id
            JOIN resources r ON r.id = f.resource_id
            LEFT JOIN resources p ON p.id = r.parent_id
            ORDER BY q.state != 'active', q.state = 'failed', q.priority DESC, q.seq
            LIMIT ?""", [limit]))
        return {"counts": {s: counts.get(s, 0) for s in ("waiting", "active", "held", "failed")},
                "entries": entries, "alerts": self.alerts()}

    # ------------------------------------------------------------------- alerts

    def raise_alert(self, key: str, kind: str, message: str, source: str = "") -> None:
        now = now_iso()
        with write_transaction(self.db):
            self.db.execute(
                "INSERT INTO fetch_alerts (key, kind, source, message, raised_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "message = excluded.message, updated_at = excluded.updated_at",
                [key, kind, source, message, now, now])

    def clear_alert(self, key: str) -> int:
        """The condition is gone (a new token, space freed): held rows waiting on it go back
        to waiting. Returns how many rows were released."""
        with write_transaction(self.db):
            self.db.execute("DELETE FROM fetch_alerts WHERE key = ?", [key])
            return self.db.execute(
                "UPDATE fetch_queue SET state = 'waiting', held_on = '', next_try = 0, "
                "updated_at = ? WHERE state = 'held' AND held_on = ?", [now_iso(), key]).rowcount

    def alerts(self) -> list[dict]:
        """Open alerts, for the admin page: key, kind ('auth', 'disk', 'storage'), source,
        message (Chinese first, then English), raised_at."""
        return _rows(self.db.execute(
            "SELECT key, kind, source, message, raised_at, updated_at FROM fetch_alerts "
            "ORDER BY raised_at"))

    # --------------------------------------------------- the workers' side

    def recover(self) -> int:
        """At service start: rows a killed process left active go back to waiting, and the
        interrupted attempt is not counted (a crash is not the file's fault, and counted
        attempts would lengthen its back-off)."""
        with write_transaction(self.db):
            return self.db.execute(
                "UPDATE fetch_queue SET state = 'waiting', attempts = max(attempts - 1, 0), "
                "updated_at = ? WHERE state = 'active'", [now_iso()]).rowcount

    def claim(self, now: float | None = None, skip_sources: Iterable[str] = ()) -> dict | None:
        """Atomically take the next due row (highest priority, then oldest) and mark it
        active; returns the file row with its resource's source, or None."""
        now = time.time() if now is None else now
        skip = list(skip_sources)
        skip_sql = (f" AND r.source NOT IN ({', '.join('?' for _ in skip)})" if skip else "")
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(f"""
                SELECT q.file_id FROM fetch_queue q
                JOIN files f ON f.id = q.file_id JOIN resources r ON r.id = f.resource_id
                WHERE q.state = 'waiting' AND q.next_try <= ?
                  AND NOT EXISTS (SELECT 1 FROM fetch_alerts a
                                  WHERE a.kind = 'auth' AND a.source = r.source){skip_sql}
                ORDER BY q.priority DESC, q.seq LIMIT 1""", [now, *skip]).fetchone()
            if row:
                conn.execute("UPDATE fetch_queue SET state = 'active', attempts = attempts + 1, "
                             "updated_at = ? WHERE file_id = ?", [now_iso(), row[0]])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return self.file_row(row[0]) if row else None

    def file_row(self, file_id: int) -> dict | None:
        rows = _rows(self.db.execute(
            "SELECT f.*, r.source, r.title, q.attempts, q.priority FROM files f "
            "JOIN resources r ON r.id = f.resource_id "
            "LEFT JOIN fetch_queue q ON q.file_id = f.id WHERE f.id = ?", [file_id]))
        if not rows:
            return None
        row = rows[0]
        row["urls"] = json.loads(row["urls"])
        row["extra"] = json.loads(row["extra"])
        return row

    def next_due(self) -> float | None:
        """When the earliest backed-off row becomes due (epoch seconds), if any."""
        row = self.db.execute("SELECT min(next_try) FROM fetch_queue WHERE state = 'waiting'"
                              ).fetchone()
        return row[0]

    def report_progress(self, file_id: int, done: int, total: int | None) -> bool:
        """Live bytes for the watchers; False when the row is gone (cancelled)."""
        with write_transaction(self.db):
            return self.db.execute(
                "UPDATE fetch_queue SET bytes_done = ?, bytes_total = coalesce(?, bytes_total), "
                "updated_at = ? WHERE file_id = ? AND state = 'active'",
                [done, total, now_iso(), file_id]).rowcount > 0

    def is_wanted(self, file_id: int) -> bool:
        return self.db.execute("SELECT 1 FROM fetch_queue WHERE file_id = ?",
                               [file_id]).fetchone() is not None

    def retry_later(self, file_id: int, delay: float, error: str, kind: str,
                    count_attempt: bool = True, reset_attempts: bool = False) -> None:
        """Back to waiting, due after ``delay`` seconds (the caller adds the jitter).
        ``count_attempt=False``: this try does not count (stopped, disk full);
        ``reset_attempts``: it made progress, so the back-off starts over."""
        with write_transaction(self.db):
            self.db.execute(
                "UPDATE fetch_queue SET state = 'waiting', next_try = ?, last_error = ?, "
                "error_kind = ?, attempts = CASE WHEN ? THEN 0 ELSE attempts - ? END, "
                "updated_at = ? WHERE file_id = ?",
                [time.time() + delay, error[:500], kind, reset_attempts,
                 0 if count_attempt else 1, now_iso(), file_id])

    def hold(self, file_id: int, alert_key: str, error: str, kind: str) -> None:
        with write_transaction(self.db):
            self.db.execute(
                "UPDATE fetch_queue SET state = 'held', held_on = ?, last_error = ?, "
                "error_kind = ?, updated_at = ? WHERE file_id = ?",
                [alert_key, error[:500], kind, now_iso(), file_id])

    def fail(self, file_id: int, error: str, kind: str) -> None:
        with write_transaction(self.db):
            self.db.execute(
                "UPDATE fetch_queue SET state = 'failed', last_error = ?, error_kind = ?, "
                "updated_at = ? WHERE file_id = ?", [error[:500], kind, now_iso(), file_id])
            self.db.execute("UPDATE files SET state = 'remote' WHERE id = ? AND state = 'queued'",
                            [file_id])
