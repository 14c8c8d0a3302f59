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


@migrations(name="0002_statements")
def m0002_statements(db: sqlite_utils.Database) -> None:
    """Upload state (issue 4): the statement queue, USB hand-offs, retention and sync logs.

    ``events`` stays the append-only record of what happened (local reports read it);
    ``statements`` is what must go upstream, whatever its origin, each frozen once made so
    that every resend is the very same statement (an LRS answers 409 to a same-id
    statement whose body differs).
    """
    for sql in (
        # A class label set by the teacher (三年级一班), never a child's name.
        "ALTER TABLE events ADD COLUMN class TEXT NOT NULL DEFAULT ''",
        # The statement this event went into (NULL: not made into one yet). Event state
        # follows it: pending, delivered, handed-off, invalid, conflict.
        "ALTER TABLE events ADD COLUMN statement_id TEXT",
        "CREATE INDEX events_uncompiled ON events (seq) WHERE statement_id IS NULL",
        "CREATE INDEX events_statement ON events (statement_id) WHERE statement_id IS NOT NULL",
        "CREATE INDEX events_at ON events (at)",
        """CREATE TABLE statements (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,          -- xAPI statement id (uuid5 of the event)
            body TEXT NOT NULL,               -- the statement JSON, frozen
            bytes INTEGER NOT NULL,
            origin TEXT NOT NULL,             -- event, daily, import
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'handed-off', 'invalid', 'conflict')),
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT NOT NULL DEFAULT '',   -- why it is invalid / in conflict
            handoff TEXT NOT NULL DEFAULT '', -- the USB export file that carried it
            created_at TEXT NOT NULL,
            done_at TEXT                      -- delivered, handed off or quarantined
        )""",
        "CREATE INDEX statements_state ON statements (state, seq)",
        # What sync knows of each resource an event named (copied from the catalogue at
        # record time; sync never reads catalog.db): the xAPI activity definition.
        """CREATE TABLE activities (
            resource TEXT PRIMARY KEY,
            source TEXT NOT NULL DEFAULT '',
            source_id TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL DEFAULT '',
            title TEXT NOT NULL DEFAULT '',
            stage TEXT NOT NULL DEFAULT '',
            grade TEXT NOT NULL DEFAULT '',
            subject TEXT NOT NULL DEFAULT '',
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE exports (
            name TEXT PRIMARY KEY,            -- file name on the drive
            sha256 TEXT NOT NULL,
            statements INTEGER NOT NULL,
            directory TEXT NOT NULL,
            exported_at TEXT NOT NULL
        )""",
        """CREATE TABLE imports (
            sha256 TEXT PRIMARY KEY,          -- of the statements file
            name TEXT NOT NULL,
            instance TEXT NOT NULL,           -- the appliance that exported it
            statements INTEGER NOT NULL,
            new INTEGER NOT NULL,             -- not already known here
            imported_at TEXT NOT NULL
        )""",
        # Every retention drop, for the admin page: undelivered > 0 only when the disk
        # was truly full.
        """CREATE TABLE dropped (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            reason TEXT NOT NULL,             -- age, size, disk-full
            events INTEGER NOT NULL,
            undelivered INTEGER NOT NULL,
            statements INTEGER NOT NULL,
            oldest TEXT,
            newest TEXT
        )""",
        # The uploader's last known state (another process, the admin page, reads it).
        "CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ):
        db.execute(sql)


@migrations(name="0003_report_indexes")
def m0003_report_indexes(db: sqlite_utils.Database) -> None:
    """Local reports (sync/reports.py) read the searches of a period (what was searched
    for and not found): with (type, at) that is a range scan of the searches alone, not
    of every event of the period."""
    db.execute("CREATE INDEX events_type_at ON events (type, at)")
