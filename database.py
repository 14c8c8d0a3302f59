"""How a package opens the SQLite file it owns (``catalog.db`` for cache, ``usage.db`` for
sync): one connection per thread, WAL, a busy timeout, migrations with sqlite-utils.

The packages never share a database or import each other; this module is the one piece of
connection discipline they have in common.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlite_utils
from sqlite_utils.migrations import Migrations


def connect(path: Path, *, synchronous: str = "NORMAL") -> sqlite_utils.Database:
    """Open ``path`` for this thread: WAL, foreign keys on, a 30 s busy timeout.

    :param synchronous: NORMAL is durable across application crashes in WAL mode; FULL
        also across power loss (the usage outbox needs that).
    """
    conn = sqlite3.connect(str(path), timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'FULL' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys = ON")
    return sqlite_utils.Database(conn)


def migrate(db: sqlite_utils.Database, migrations: Migrations) -> list[str]:
    """Apply pending migrations, then close ``db``; returns the names applied now."""
    try:
        pending = [m.name for m in migrations.pending(db)]
        migrations.apply(db)
        return pending
    finally:
        db.close()


def execute_script(db: sqlite_utils.Database, script: str) -> None:
    """Run several statements inside the caller's transaction.

    ``sqlite3.executescript`` would COMMIT first, breaking the all-or-nothing migration
    step that sqlite-utils wraps around each migration.
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement: {statement.strip()[:80]}")


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """All-or-nothing writes from several threads or processes: ``BEGIN IMMEDIATE``.

    Two things this avoids: sqlite-utils commits each ``db.execute`` write on its own
    unless a transaction is open (so ``with db.conn:`` is not atomic), and a deferred
    transaction that reads and then writes cannot wait for the write lock (it fails at
    once with "database is locked"); IMMEDIATE takes the lock first, within the busy timeout.
    Nested use joins the open transaction.
    """
    if db.conn.in_transaction:
        yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    else:
        db.conn.execute("COMMIT")
