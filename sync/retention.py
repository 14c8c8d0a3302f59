"""Retention of ``usage.db``: bounded by age and size, never at the cost of an undelivered
event, unless the disk is truly full.

- **Age** (``usage_retention_days``): delivered and handed-off events (and statements)
  older than that are deleted.
- **Size** (``usage_retention_mb``): while the live data in usage.db is larger, the oldest
  delivered / handed-off events go first. Undelivered ones stay even above the limit.
- **Disk truly full**: when free space on the home's disk is below ``usage_disk_floor_mb``,
  or SQLite reports the disk full while recording, :func:`make_room` drops the oldest
  events whatever their state (delivered ones first), so that recording can go on. Every
  drop is logged in the ``dropped`` table with how many were undelivered: the admin page
  shows it (:func:`report`).

Quarantined statements (invalid, conflict) are kept for a person to look at; only a full
disk removes them.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlite_utils

from .outbox import DONE_STATES, STATES, now_iso
from .state import load_state

log = logging.getLogger(__name__)

CHUNK = 2000
EMERGENCY_FRACTION = 0.10   # of all events, at least EMERGENCY_MINIMUM, per make_room
EMERGENCY_MINIMUM = 500


def db_bytes(db: sqlite_utils.Database) -> int:
    """Bytes of live data (pages in use) in the database file."""
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * page_size


def _db_path(db: sqlite_utils.Database) -> Path | None:
    row = db.execute("PRAGMA database_list").fetchone()
    return Path(row[2]) if row and row[2] else None


def _delete_events(db, seqs: list[int], reason: str) -> int:
    """Delete events (and statements no remaining event needs) in one transaction, and
    log the drop in ``dropped``."""
    if not seqs:
        return 0
    undelivered = statements = 0
    times: list[str] = []
    with db.atomic():
        for start in range(0, len(seqs), 500):
            part = seqs[start:start + 500]
            marks = ",".join("?" * len(part))
            count, oldest, newest = db.execute(
                f"SELECT sum(state NOT IN ('delivered', 'handed-off')), min(at), max(at)"
                f" FROM events WHERE seq IN ({marks})", part).fetchone()
            undelivered += count or 0
            times += [t for t in (oldest, newest) if t]
            sids = [r[0] for r in db.execute(
                f"SELECT DISTINCT statement_id FROM events WHERE seq IN ({marks})"
                f" AND statement_id IS NOT NULL", part).fetchall()]
            db.execute(f"DELETE FROM events WHERE seq IN ({marks})", part)
            for sid in sids:
                # A daily statement stays while any of its events remain.
                if not db.execute("SELECT 1 FROM events WHERE statement_id = ? LIMIT 1",
                                  [sid]).fetchone():
                    statements += db.execute("DELETE FROM statements WHERE id = ?",
                                             [sid]).rowcount
        db.execute("INSERT INTO dropped (at, reason, events, undelivered, statements, oldest,"
                   " newest) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [now_iso(), reason, len(seqs), undelivered, statements,
                    min(times, default=None), max(times, default=None)])
    if undelivered:
        log.error("usage.db: dropped %d events (%d never delivered) because %s",
                  len(seqs), undelivered, reason)
    return len(seqs)


def _oldest(db, states: tuple[str, ...], limit: int, before: str | None = None) -> list[int]:
    marks = ",".join("?" * len(states))
    sql = f"SELECT seq FROM events WHERE state IN ({marks})"
    params: list = list(states)
    if before is not None:
        sql += " AND received_at < ?"
        params.append(before)
    return [r[0] for r in db.execute(sql + " ORDER BY seq LIMIT ?", params + [limit])]


def make_room(db: sqlite_utils.Database, reason: str = "disk-full",
              count: int | None = None) -> int:
    """The disk is truly full: drop the oldest events, delivered ones first, then any.

    Also drops the oldest imported statements (they have no events) in proportion.
    Returns how many events were dropped.
    """
    total = db.execute("SELECT count(*) FROM events").fetchone()[0]
    count = count or max(EMERGENCY_MINIMUM, int(total * EMERGENCY_FRACTION))
    seqs = _oldest(db, DONE_STATES, count)
    if len(seqs) < count:
        seqs += _oldest(db, tuple(s for s in STATES if s not in DONE_STATES),
                        count - len(seqs))
    dropped = _delete_events(db, sorted(seqs), reason)
    with db.atomic():
        imported = db.execute("DELETE FROM statements WHERE seq IN (SELECT seq FROM statements"
                              " WHERE origin = 'import' ORDER BY seq LIMIT ?)",
                              [max(1, count // 10)]).rowcount
        if imported:
            db.execute("INSERT INTO dropped (at, reason, events, undelivered, statements)"
                       " VALUES (?, ?, 0, ?, ?)", [now_iso(), reason, imported, imported])
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except Exception:  # best effort: the space inside the file is free for reuse anyway
        pass
    return dropped


def enforce(db: sqlite_utils.Database, config, *, free_bytes: int | None = None) -> dict:
    """Apply the age, size and disk-floor limits; returns what was dropped, by reason."""
    dropped = {"age": 0, "size": 0, "disk-full": 0}
    cutoff = (datetime.now(timezone.utc) - timedelta(days=config.usage_retention_days)
              ).isoformat(timespec="milliseconds")
    while seqs := _oldest(db, DONE_STATES, CHUNK, before=cutoff):
        dropped["age"] += _delete_events(db, seqs, "age")
    with db.atomic():  # delivered statements without events (imported ones) age out too
        db.execute("DELETE FROM statements WHERE state IN ('delivered', 'handed-off')"
                   " AND done_at < ? AND NOT EXISTS (SELECT 1 FROM events"
                   " WHERE events.statement_id = statements.id)", [cutoff])
    limit = config.usage_retention_mb * 1024 * 1024
    while db_bytes(db) > limit:
        seqs = _oldest(db, DONE_STATES, CHUNK)
        if not seqs:
            break  # only undelivered events left: they stay
        dropped["size"] += _delete_events(db, seqs, "size")
    if free_bytes is None:
        path = _db_path(db)
        free_bytes = shutil.disk_usage(path.parent).free if path else None
    if free_bytes is not None and free_bytes < config.usage_disk_floor_mb * 1024 * 1024:
        dropped["disk-full"] += make_room(db, reason="disk-full")
    return dropped


def report(db: sqlite_utils.Database) -> dict:
    """Numbers for the admin page's usage panel (and ``shuqiao status --json``)."""
    events = dict(db.execute("SELECT state, count(*) FROM events GROUP BY state").fetchall())
    statements = dict(db.execute("SELECT state, count(*) FROM statements GROUP BY state"
                                 ).fetchall())
    oldest_pending = db.execute("SELECT min(at) FROM events WHERE state = 'pending'"
                                ).fetchone()[0]
    totals = db.execute("SELECT coalesce(sum(events), 0), coalesce(sum(undelivered), 0)"
                        " FROM dropped").fetchone()
    by_reason = {r: n for r, n in db.execute("SELECT reason, sum(events) FROM dropped"
                                             " GROUP BY reason").fetchall()}
    last_drop = db.execute("SELECT at, reason, events, undelivered FROM dropped"
                           " ORDER BY seq DESC LIMIT 1").fetchone()
    last_export = db.execute("SELECT name, statements, exported_at FROM exports"
                             " ORDER BY exported_at DESC LIMIT 1").fetchone()
    last_import = db.execute("SELECT name, statements, new, imported_at FROM imports"
                             " ORDER BY imported_at DESC LIMIT 1").fetchone()
    path = _db_path(db)
    wal = Path(str(path) + "-wal") if path else None
    return {
        "events": {s: events.get(s, 0) for s in STATES} | {"total": sum(events.values())},
        "statements": {s: statements.get(s, 0) for s in STATES},
        "oldest_pending_at": oldest_pending,
        "db_bytes": db_bytes(db),
        "file_bytes": (path.stat().st_size if path and path.exists() else 0)
                      + (wal.stat().st_size if wal and wal.exists() else 0),
        "dropped": {"events": totals[0], "undelivered": totals[1], "by_reason": by_reason,
                    "last": dict(zip(("at", "reason", "events", "undelivered"), last_drop))
                    if last_drop else None},
        "last_export": dict(zip(("name", "statements", "at"), last_export))
                       if last_export else None,
        "last_import": dict(zip(("name", "statements", "new", "at"), last_import))
                       if last_import else None,
        "uploader": load_state(db),
    }
