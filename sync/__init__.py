"""Usage events: validation, the durable outbox in ``usage.db``, and getting them upstream.

The app talks to this package through :class:`Usage`, which knows where ``usage.db`` is,
applies its migrations and hands each thread its own :class:`~sync.outbox.Outbox`.

Modules: ``events`` (validation), ``outbox`` (the tables), ``xapi`` (events → xAPI
statements), ``lrs`` (HTTP to the LRS), ``upload`` (passes, back-off, windows, the
background :class:`~sync.upload.Uploader`, ``sync_once``), ``aggregate`` (daily mode),
``usb`` (export/import on a drive), ``retention`` (limits and the admin report).
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlite_utils

from . import db
from .events import EVENT_TYPES, EventError, validate_events
from .outbox import Outbox

__all__ = ["Usage", "Outbox", "EventError", "validate_events", "EVENT_TYPES"]


class _Job:
    """One caller's events waiting for the group-commit writer."""

    def __init__(self, events: list[dict], activities: dict[str, dict]):
        self.events, self.activities = events, activities
        self.done = threading.Event()
        self.result: tuple[int, int] = (0, 0)
        self.error: BaseException | None = None


class Usage:
    def __init__(self, home: Path):
        self.home = Path(home)
        self.db_path = self.home / "usage.db"
        self._writer_outbox: Outbox | None = None
        self._finalizer = None
        self._write_lock = threading.Lock()   # one group-commit writer at a time
        self._queue_lock = threading.Lock()
        self._queue: list[_Job] = []

    def migrate(self) -> list[str]:
        return db.migrate(self.db_path)

    @contextmanager
    def outbox(self) -> Iterator[Outbox]:
        self._hold_open()
        outbox = Outbox(db.connect(self.db_path))
        try:
            yield outbox
        finally:
            outbox.db.close()

    def record(self, events: list[dict], activities: dict[str, dict] | None = None
               ) -> tuple[int, int]:
        """Store validated events durably; returns (stored, duplicates). Thread-safe.

        Group commit: while one request's transaction is being fsynced, the requests that
        arrive queue up, and the next writer stores all of them in one transaction with
        one fsync. Each caller still returns only once its own events are on disk. With
        many terminals posting at once this multiplies the events stored per second.
        """
        job = _Job(events, activities or {})
        with self._queue_lock:
            self._queue.append(job)
        with self._write_lock:
            if not job.done.is_set():
                with self._queue_lock:
                    jobs, self._queue = self._queue, []
                try:
                    results = self._writer().record_groups(
                        [(j.events, j.activities) for j in jobs])
                    for j, result in zip(jobs, results):
                        j.result = result
                except BaseException as error:
                    for j in jobs:
                        j.error = error
                for j in jobs:
                    j.done.set()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _writer(self) -> Outbox:
        """The group-commit writer's own connection, kept open (used under _write_lock).

        Keeping it open also means usage.db always has a connection: when the last one
        closes, SQLite checkpoints and deletes the WAL (more fsyncs), which every short-
        lived outbox() connection would otherwise pay.
        """
        if self._writer_outbox is None:
            conn = sqlite3.connect(str(self.db_path), timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._writer_outbox = Outbox(sqlite_utils.Database(conn))
            self._finalizer = weakref.finalize(self, conn.close)
        return self._writer_outbox

    def _hold_open(self) -> None:
        if self._writer_outbox is None and self.db_path.exists():
            with self._write_lock:
                self._writer()

    def close(self) -> None:
        """Close the writer's connection (also done when the object is collected)."""
        with self._write_lock:
            if self._finalizer is not None:
                self._finalizer()
            self._writer_outbox = self._finalizer = None

    def report(self) -> dict:
        """Outbox, retention and uploader numbers for the admin page (see retention.report)."""
        from .retention import report

        with self.outbox() as outbox:
            return report(outbox.db)
