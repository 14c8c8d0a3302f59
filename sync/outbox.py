"""The durable outbox in ``usage.db``: events as they happened, statements to send.

Two tables, two jobs:

- ``events``: append-only, one row per event (UUID), in arrival order; its ``state``
  follows the statement it went into: pending → delivered (or handed-off on a USB drive,
  or quarantined as invalid / conflict). Local reports read it.
- ``statements``: the upload queue, whatever the origin (an event, a daily aggregate, a
  statement imported from a USB drive). A statement is frozen as JSON when it is made and
  never changes, so every resend is the very same statement.

Every write is one transaction on a ``synchronous=FULL`` connection: when :meth:`record`
returns, the events survive a power cut; when :meth:`mark` returns, so does the state.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import sqlite_utils

from . import xapi

log = logging.getLogger(__name__)

ACTIVITY_FIELDS = ("source", "source_id", "kind", "title", "stage", "grade", "subject")
STATES = ("pending", "delivered", "handed-off", "invalid", "conflict")
DONE_STATES = ("delivered", "handed-off")   # the appliance's job for them is over


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def is_disk_full(error: sqlite3.Error) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "full" in str(error).lower()


@dataclass(frozen=True)
class QueuedStatement:
    seq: int
    id: str
    body: str       # frozen JSON
    bytes: int


class Outbox:
    def __init__(self, db: sqlite_utils.Database):
        self.db = db

    # ------------------------------------------------------------------ events

    def record(self, events: list[dict], activities: dict[str, dict] | None = None
               ) -> tuple[int, int]:
        """Store validated events in one transaction (fsynced before returning).

        :param activities: resource id → what the catalogue says of it (title, kind,
            source, source_id, stage, grade, subject), kept for the statements' activity
            definitions. Optional: a statement without it still names the resource.
        :returns: (stored, duplicates): an event whose id is already stored is a resend
            and is not stored again.
        """
        return self.record_groups([(events, activities or {})])[0]

    def record_groups(self, groups: list[tuple[list[dict], dict[str, dict]]]
                      ) -> list[tuple[int, int]]:
        """Several requests' events in ONE transaction (one fsync): group commit, see
        :class:`sync.Usage.record`. Returns (stored, duplicates) per group."""
        try:
            return self._record(groups)
        except sqlite3.OperationalError as error:
            if not is_disk_full(error):
                raise
            # Truly full: make room by dropping the oldest events (counted and reported on
            # the admin page), then try once more. Losing old records beats refusing new.
            from . import retention

            log.error("usage.db: the disk is full; dropping the oldest events to make room")
            retention.make_room(self.db, reason="disk-full")
            return self._record(groups)

    def _record(self, groups: list[tuple[list[dict], dict[str, dict]]]) -> list[tuple[int, int]]:
        received = now_iso()
        results = []
        with self.db.atomic():
            for events, activities in groups:
                stored = 0
                for event in events:
                    data = event.get("data") or {}
                    cursor = self.db.conn.execute(
                        "INSERT OR IGNORE INTO events (id, type, resource, terminal, role, at,"
                        " seconds, class, data, received_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [event.get("id"), event.get("type"), event.get("resource"),
                         event.get("terminal"), event.get("role"), event.get("at"),
                         event.get("seconds"), event.get("class") or "",
                         json.dumps(data, ensure_ascii=False) if data else "{}", received])
                    stored += cursor.rowcount
                results.append((stored, len(events) - stored))
                for resource, info in activities.items():
                    self._remember_activity(resource, info, received)
        return results

    def _remember_activity(self, resource: str, info: dict, when: str) -> None:
        values = [str(info.get(f) or "") for f in ACTIVITY_FIELDS]
        self.db.conn.execute(
            "INSERT INTO activities (resource, source, source_id, kind, title, stage,"
            " grade, subject, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (resource) DO UPDATE SET source = excluded.source,"
            " source_id = excluded.source_id, kind = excluded.kind,"
            " title = excluded.title, stage = excluded.stage, grade = excluded.grade,"
            " subject = excluded.subject, updated_at = excluded.updated_at"
            " WHERE (source, source_id, kind, title, stage, grade, subject) IS NOT"
            " (excluded.source, excluded.source_id, excluded.kind, excluded.title,"
            " excluded.stage, excluded.grade, excluded.subject)",
            [resource, *values, when])

    def counts(self) -> dict[str, int]:
        """Events by state, plus ``total`` (``pending`` = not yet delivered or handed off)."""
        rows = self.db.execute("SELECT state, count(*) FROM events GROUP BY state").fetchall()
        counts = {state: 0 for state in STATES}
        counts.update(dict(rows))
        counts["total"] = sum(counts.values())
        return counts

    def events(self, limit: int = 100) -> list[dict]:
        cursor = self.db.execute("SELECT * FROM events ORDER BY seq DESC LIMIT ?", [limit])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def activity(self, resource: str) -> dict | None:
        cursor = self.db.execute("SELECT * FROM activities WHERE resource = ?", [resource])
        row = cursor.fetchone()
        return dict(zip([d[0] for d in cursor.description], row)) if row else None

    # -------------------------------------------------------------- statements

    def compile_events(self, identity: xapi.Identity, limit: int = 2000) -> int:
        """Make one statement per event not yet made into one (raw mode); returns how many.

        One transaction: the statements and the events' link to them appear together, so
        a kill -9 at any point leaves either both or neither.
        """
        cursor = self.db.execute(
            "SELECT e.*, a.source, a.source_id, a.kind, a.title, a.stage, a.grade, a.subject"
            " FROM events e LEFT JOIN activities a ON a.resource = e.resource"
            " WHERE e.statement_id IS NULL AND e.state = 'pending' ORDER BY e.seq LIMIT ?",
            [limit])
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
        if not rows:
            return 0
        made = []
        for row in rows:
            info = {k: row[k] for k in ACTIVITY_FIELDS if row.get(k)} or None
            statement = xapi.event_statement(identity, row, info)
            made.append((row["id"], statement["id"], xapi.to_json(statement)))
        self.add_statements([(sid, body, "event") for _, sid, body in made],
                            links=[(sid, eid) for eid, sid, _ in made])
        return len(made)

    def add_statements(self, statements: Iterable[tuple[str, str, str]],
                       links: Iterable[tuple[str, str]] = ()) -> int:
        """Queue (id, frozen JSON, origin) statements; ``links`` are (statement id, event
        id) pairs. A statement id already queued is kept as it was. Returns how many new."""
        created = now_iso()
        added = 0
        with self.db.atomic():
            for sid, body, origin in statements:
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO statements (id, body, bytes, origin, created_at)"
                    " VALUES (?, ?, ?, ?, ?)", [sid, body, len(body.encode()), origin, created])
                added += cursor.rowcount
            self.db.conn.executemany("UPDATE events SET statement_id = ? WHERE id = ?",
                                     list(links))
        return added

    def last_pending_seq(self) -> int:
        row = self.db.execute("SELECT max(seq) FROM statements WHERE state = 'pending'"
                              ).fetchone()
        return row[0] or 0

    def pending_batch(self, max_count: int, max_bytes: int, after_seq: int = 0,
                      up_to_seq: int | None = None) -> list[QueuedStatement]:
        """The next pending statements in order, at most ``max_count`` and ``max_bytes``
        (always at least one, so a statement larger than the byte bound still goes)."""
        cursor = self.db.execute(
            "SELECT seq, id, body, bytes FROM statements WHERE state = 'pending' AND seq > ?"
            " AND seq <= ? ORDER BY seq LIMIT ?",
            [after_seq, up_to_seq if up_to_seq is not None else 2 ** 62, max_count])
        batch, total = [], 0
        for seq, sid, body, size in cursor.fetchall():
            if batch and total + size + 1 > max_bytes:
                break
            batch.append(QueuedStatement(seq, sid, body, size))
            total += size + 1
        return batch

    def mark(self, statement_ids: list[str], state: str, error: str = "",
             handoff: str = "") -> None:
        """Set the state of statements and of the events they carry, in one transaction.

        Called only after the LRS acknowledged (delivered), the drive's file was verified
        (handed-off), or the LRS refused the statement for good (invalid, conflict).
        """
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        done = None if state == "pending" else now_iso()
        with self.db.atomic():
            self.db.conn.executemany(
                "UPDATE statements SET state = ?, error = ?, done_at = ?,"
                " handoff = CASE WHEN ? = '' THEN handoff ELSE ? END,"
                " attempts = attempts + 1 WHERE id = ?",
                [(state, error[:2000], done, handoff, handoff, sid) for sid in statement_ids])
            self.db.conn.executemany("UPDATE events SET state = ? WHERE statement_id = ?",
                                     [(state, sid) for sid in statement_ids])

    def statement_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, count(*) FROM statements GROUP BY state"
                               ).fetchall()
        counts = {state: 0 for state in STATES}
        counts.update(dict(rows))
        return counts

    def uncompiled(self) -> int:
        return self.db.execute("SELECT count(*) FROM events WHERE statement_id IS NULL"
                               " AND state = 'pending'").fetchone()[0]

    def quarantined(self, limit: int = 50) -> list[dict]:
        """Statements the LRS refused for good, with the reason (for the admin page)."""
        cursor = self.db.execute(
            "SELECT id, state, error, origin, done_at FROM statements"
            " WHERE state IN ('invalid', 'conflict') ORDER BY seq DESC LIMIT ?", [limit])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def requeue(self, states: tuple[str, ...] = ("invalid", "conflict")) -> int:
        """Put quarantined (or handed-off) statements back in the queue, e.g. after the LRS
        was fixed or a USB drive was lost; returns how many."""
        marks = ", ".join("?" for _ in states)
        ids = [r[0] for r in self.db.execute(
            f"SELECT id FROM statements WHERE state IN ({marks})", list(states)).fetchall()]
        self.mark(ids, "pending")
        return len(ids)
