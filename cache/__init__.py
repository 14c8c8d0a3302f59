"""Catalogue, sources, fetch queue, transfers and the blob store.

The app talks to this package through :class:`Cache`: it knows where ``catalog.db`` and
the blobs live, applies migrations at start, and hands each thread its own
:class:`~cache.catalog.Catalog` (SQLite connections are never shared between threads).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import db
from .catalog import Catalog, CatalogError, FileSpec, is_resource_id
from .store import BlobStore, validate_digest

__all__ = ["Cache", "Catalog", "CatalogError", "FileSpec", "BlobStore", "is_resource_id",
           "validate_digest"]


class Cache:
    def __init__(self, home: Path):
        self.home = Path(home)
        self.db_path = self.home / "catalog.db"
        self.store = BlobStore(self.home / "blobs")

    def migrate(self) -> list[str]:
        """Create or upgrade ``catalog.db``; clear partial blob files left by a crash."""
        self.store.clean_temporary()
        return db.migrate(self.db_path)

    def applied_migrations(self) -> list[str]:
        conn = db.connect(self.db_path)
        try:
            return [m.name for m in db.migrations.applied(conn)]
        finally:
            conn.close()

    def open_catalog(self) -> Catalog:
        """A catalogue on a new connection; the caller closes ``catalog.db.close()``."""
        return Catalog(db.connect(self.db_path), self.store)

    @contextmanager
    def catalog(self) -> Iterator[Catalog]:
        catalog = self.open_catalog()
        try:
            yield catalog
        finally:
            catalog.db.close()
