"""The durable outbox: usage events stored once each, in arrival order, until delivered."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlite_utils

_COLUMNS = ("id", "type", "resource", "terminal", "role", "at", "seconds")


class Outbox:
    def __init__(self, db: sqlite_utils.Database):
        self.db = db

    def record(self, events: list[dict]) -> tuple[int, int]:
        """Store validated events in one transaction (fsynced before returning).

        :returns: (stored, duplicates): an event whose id is already stored is a resend
            and is not stored again.
        """
        received = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        stored = 0
        with self.db.atomic():
            for event in events:
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO events (id, type, resource, terminal, role, at,"
                    " seconds, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [event[c] for c in _COLUMNS] + [received])
                stored += cursor.rowcount
        return stored, len(events) - stored

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, count(*) FROM events GROUP BY state").fetchall()
        counts = {"pending": 0, "delivered": 0}
        counts.update(dict(rows))
        counts["total"] = sum(v for k, v in counts.items())
        return counts

    def events(self, limit: int = 100) -> list[dict]:
        cursor = self.db.execute("SELECT * FROM events ORDER BY seq DESC LIMIT ?", [limit])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
