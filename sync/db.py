"""``usage.db``: the usage-event outbox, as numbered sqlite-utils migrations.

The outbox is the one place where losing a row is not acceptable: an event the API has
acknowledged must survive a power cut. So every connection runs with
``synchronous=FULL`` (WAL alone, at NORMAL, may lose the last commits on power loss).
"""

from __future__ import annotations

from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

import database

migrations = Migrations("shuqiao_usage")


@migrations(name="0001_events")
def m0001_events(db: sqlite_utils.Database) -> None:
    db.execute("""
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY,      -- arrival order, for upload in order
            id TEXT NOT NULL UNIQUE,      -- the event's UUID: a resend is stored once
            type TEXT NOT NULL,
            resource TEXT NOT NULL,
            terminal TEXT NOT NULL,       -- pseudonymous terminal id, never a name
            role TEXT NOT NULL,
            at TEXT NOT NULL,             -- when it happened (terminal's clock)
            seconds REAL,
            data TEXT NOT NULL DEFAULT '{}',  -- JSON: type-specific fields
            received_at TEXT NOT NULL,    -- when the appliance stored it (its clock)
            state TEXT NOT NULL DEFAULT 'pending'  -- pending, then delivered (upload issue)
        )""")
    db.execute("CREATE INDEX events_state ON events (state, seq)")


def connect(path: Path) -> sqlite_utils.Database:
    """Open ``usage.db`` for this thread, with synchronous=FULL (see above)."""
    return database.connect(path, synchronous="FULL")


def migrate(path: Path) -> list[str]:
    return database.migrate(connect(path), migrations)
