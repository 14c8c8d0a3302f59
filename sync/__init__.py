"""Usage events: validation, the durable outbox in ``usage.db``, and (later) uploaders.

The app talks to this package through :class:`Usage`, which knows where ``usage.db`` is,
applies its migrations and hands each thread its own :class:`~sync.outbox.Outbox`.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import db
from .events import EventError, validate_events
from .outbox import Outbox

__all__ = ["Usage", "Outbox", "EventError", "validate_events"]


class Usage:
    def __init__(self, home: Path):
        self.db_path = Path(home) / "usage.db"

    def migrate(self) -> list[str]:
        return db.migrate(self.db_path)

    @contextmanager
    def outbox(self) -> Iterator[Outbox]:
        outbox = Outbox(db.connect(self.db_path))
        try:
            yield outbox
        finally:
            outbox.db.close()
