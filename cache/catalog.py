"""Reading and writing the catalogue (``catalog.db``) and the files behind it.

One :class:`Catalog` wraps one thread's connection. Every read used by a page is an
indexed query (taxonomy index, parent index, FTS); nothing lists all resources to filter
them in Python.
"""

from __future__ import annotations

import json
import mimetypes
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import sqlite_utils

from . import search, taxonomy
from .db import FILE_STATES, RESOURCE_KINDS
from .store import BlobStore

_RESOURCE_ID = re.compile(r"^[0-9a-f]{32}$")
_ID_NAMESPACE = uuid.UUID("6f1c4a52-3d0e-4b8e-9a51-5c1e6e0b7a10")
TEXT_FIELDS = ("title", "description", "stage", "grade", "subject", "edition", "volume")
FILTERS = ("stage", "grade", "subject", "edition", "volume", "kind")


class CatalogError(ValueError):
    """Bad input to the catalogue; the message is meant for the person who gave it."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# Whether a resource (``{rid}``: a placeholder or a column) is ready to open: it and its
# parts have files, and every needed one is cached. Optional files (a cover the platform
# may refuse) never keep a lesson from "ready".
_READY_SQL = """(SELECT count(*) > 0 AND count(*) = coalesce(sum(f.state = 'cached'), 0)
    FROM files f JOIN resources p ON p.id = f.resource_id
    WHERE (p.id = {rid} OR p.parent_id = {rid})
      AND coalesce(json_extract(f.extra, '$.optional'), 0) = 0)"""


def resource_id_for(source: str, source_id: str) -> str:
    """A stable id: the same upstream item always gets the same id, on every appliance."""
    return uuid.uuid5(_ID_NAMESPACE, f"{source}:{source_id}").hex


def is_resource_id(value: str) -> bool:
    return isinstance(value, str) and bool(_RESOURCE_ID.match(value))


@dataclass
class FileSpec:
    """A file to attach to a resource."""

    role: str
    mime: str
    name: str = ""
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    state: str = "remote"
    urls: tuple[str, ...] = ()
    extra: dict | None = None


class Catalog:
    def __init__(self, db: sqlite_utils.Database, store: BlobStore):
        self.db = db
        self.store = store

    # ------------------------------------------------------------------ writes

    def upsert_resource(self, *, source: str, source_id: str, kind: str, title: str,
                        files: Iterable[FileSpec] = (), parent_id: str | None = None,
                        chapter: Iterable[str] = (), chapter_ids: Iterable[str] = (),
                        tags: Iterable[tuple[str, str, str]] = (), extra: dict | None = None,
                        **fields: Any) -> str:
        """Insert or replace one resource (and its files and tags); returns its id.

        Re-running with the same ``source``/``source_id`` updates in place, so catalogue
        syncs and the sample loader are idempotent. Files are replaced as a set.
        """
        if kind not in RESOURCE_KINDS:
            raise CatalogError(f"unknown kind {kind!r}; use one of: {', '.join(RESOURCE_KINDS)}")
        title = (title or "").strip()
        if not title:
            raise CatalogError("a title is required")
        unknown = set(fields) - set(TEXT_FIELDS) - {"lesson", "lesson_no", "position",
                                                   "upstream_updated"}
        if unknown:
            raise CatalogError(f"unknown fields: {', '.join(sorted(unknown))}")
        rid = resource_id_for(source, source_id)
        row = {
            "id": rid, "source": source, "source_id": source_id, "kind": kind,
            "title": title, "parent_id": parent_id,
            "chapter": json.dumps(list(chapter), ensure_ascii=False),
            "chapter_ids": json.dumps(list(chapter_ids)),
            "extra": json.dumps(extra or {}, ensure_ascii=False),
            **{k: ("" if v is None else v) for k, v in fields.items()},
        }
        with self.db.atomic():
            existing = self.db.execute(
                "SELECT rowid, added_at FROM resources WHERE id = ?", [rid]).fetchone()
            row["added_at"] = existing[1] if existing else now_iso()
            columns = ", ".join(row)
            placeholders = ", ".join("?" for _ in row)
            updates = ", ".join(f"{c} = excluded.{c}" for c in row if c != "id")
            self.db.execute(
                f"INSERT INTO resources ({columns}) VALUES ({placeholders}) "
                f"ON CONFLICT(id) DO UPDATE SET {updates}", list(row.values()))
            self._replace_files(rid, list(files))
            self.db.execute("DELETE FROM resource_tags WHERE resource_id = ?", [rid])
            for dimension, tag_id, name in tags:
                self.db.execute(
                    "INSERT OR IGNORE INTO resource_tags VALUES (?, ?, ?, ?)",
                    [rid, dimension, tag_id, name])
            self._reindex(rid, top_level=parent_id is None)
        return rid

    def _replace_files(self, rid: str, specs: list[FileSpec]) -> None:
        """Make the resource's files ``specs``, updating rows in place.

        A re-synced file keeps its row id (queue rows point at it) and, when its content is
        the same (same MD5, or same size when there is no MD5), its sha256 and state: a
        catalogue sync must not forget what is cached or queued. A file whose content
        changed upstream goes back to what the spec says (remote).
        """
        old: dict[tuple, list] = {}
        for row in self.db.execute(
                "SELECT id, role, name, size, md5, sha256, state FROM files "
                "WHERE resource_id = ? ORDER BY position", [rid]).fetchall():
            old.setdefault((row[1], row[2]), []).append(row)
        for position, spec in enumerate(specs):
            rows = old.get((spec.role, spec.name))
            if not rows:
                self._insert_file(rid, position, spec)
                continue
            file_id, _role, _name, size, md5, sha256, state = rows.pop(0)
            if spec.sha256 is None and spec.state == "remote":
                same = md5 == spec.md5 if (md5 or spec.md5) else size == spec.size
                if same:
                    spec = FileSpec(**{**spec.__dict__, "sha256": sha256, "state": state})
                else:
                    # New content upstream: pieces of the old version (HLS segments) must
                    # not be reused under the same URLs.
                    self.db.execute("DELETE FROM file_parts WHERE file_id = ?", [file_id])
                    if state == "queued":
                        # Still wanted: the queue row fetches the new content.
                        spec = FileSpec(**{**spec.__dict__, "state": "queued"})
            if spec.state not in FILE_STATES:
                raise CatalogError(f"unknown file state {spec.state!r}")
            self.db.execute(
                "UPDATE files SET mime = ?, size = ?, sha256 = ?, md5 = ?, state = ?, urls = ?,"
                " position = ?, extra = ? WHERE id = ?",
                [spec.mime, spec.size, spec.sha256, spec.md5, spec.state,
                 json.dumps(list(spec.urls)), position,
                 json.dumps(spec.extra or {}, ensure_ascii=False), file_id])
        for rows in old.values():
            for row in rows:
                self.db.execute("DELETE FROM files WHERE id = ?", [row[0]])

    def _insert_file(self, rid: str, position: int, spec: FileSpec) -> None:
        if spec.state not in FILE_STATES:
            raise CatalogError(f"unknown file state {spec.state!r}")
        self.db.execute(
            "INSERT INTO files (resource_id, role, name, mime, size, sha256, md5, state, urls,"
            " position, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [rid, spec.role, spec.name, spec.mime, spec.size, spec.sha256, spec.md5,
             spec.state, json.dumps(list(spec.urls)), position,
             json.dumps(spec.extra or {}, ensure_ascii=False)])

    def _reindex(self, rid: str, top_level: bool) -> None:
        row = self.db.execute(
            "SELECT rowid, title, chapter, description FROM resources WHERE id = ?",
            [rid]).fetchone()
        self.db.execute("DELETE FROM resources_fts WHERE rowid = ?", [row[0]])
        if not top_level:
            # Parts are titled by their kind (课件, 学习任务单); searching finds packages.
            return
        chapter = " ".join(json.loads(row[2]))
        self.db.execute(
            "INSERT INTO resources_fts (rowid, title, chapter, description) VALUES (?, ?, ?, ?)",
            [row[0], search.index_text(row[1]), search.index_text(chapter),
             search.index_text(row[3])])

    def add_local_file(self, path: Path, *, title: str, kind: str | None = None,
                       **fields: Any) -> str:
        """Add a teacher's own file (``shuqiao add``); returns the new resource id."""
        path = Path(path)
        if not path.is_file():
            raise CatalogError(f"no such file: {path}")
        with open(path, "rb") as stream:
            return self.add_uploaded(stream, name=path.name, title=title, kind=kind, **fields)

    def add_uploaded(self, stream: BinaryIO, *, name: str, title: str, kind: str | None = None,
                     max_bytes: int | None = None, **fields: Any) -> str:
        """Store a teacher's file from a stream (verified, atomic) and catalogue it.

        Checks the cheap things first (title, kind) so bad input stores nothing.
        :raises CatalogError: bad title, kind or fields.
        :raises BlobError: the stream is longer than ``max_bytes``.
        """
        if not (title or "").strip():
            raise CatalogError("a title is required")
        mime = guess_mime(name)
        kind = kind or kind_for_mime(mime)
        if kind not in RESOURCE_KINDS:
            raise CatalogError(f"unknown kind {kind!r}; use one of: {', '.join(RESOURCE_KINDS)}")
        with self.store.writer(max_bytes=max_bytes) as writer:
            while chunk := stream.read(1024 * 1024):
                writer.write(chunk)
            digest = writer.commit()
            size = writer.size
        return self.upsert_resource(
            source="local", source_id=uuid.uuid4().hex, kind=kind, title=title,
            files=[FileSpec(role="source", mime=mime, name=Path(name).name, size=size,
                            sha256=digest, state="cached")],
            **{k: v for k, v in fields.items() if v})

    # ------------------------------------------------------------------- reads

    def get(self, rid: str) -> dict | None:
        """A resource with its files and, for a lesson package, its parts per 课时."""
        row = self._row("SELECT * FROM resources WHERE id = ?", [rid])
        if row is None:
            return None
        resource = self._decorate(row)
        parts = [self._decorate(r) for r in self._rows(
            "SELECT * FROM resources WHERE parent_id = ? ORDER BY lesson_no, position", [rid])]
        lessons: list[dict] = []
        for part in parts:
            if not lessons or lessons[-1]["lesson"] != part["lesson"]:
                lessons.append({"lesson": part["lesson"], "lesson_no": part["lesson_no"],
                                "parts": []})
            lessons[-1]["parts"].append(part)
        resource["lessons"] = lessons
        resource["ready"] = bool(self.db.execute(
            f"SELECT {_READY_SQL.format(rid='?')}", [rid, rid]).fetchone()[0])
        if row["parent_id"]:
            resource["parent"] = self._row(
                "SELECT id, title, kind FROM resources WHERE id = ?", [row["parent_id"]])
        return resource

    def _decorate(self, row: dict) -> dict:
        row = dict(row)
        row["chapter"] = json.loads(row["chapter"])
        row["chapter_ids"] = json.loads(row["chapter_ids"])
        row["extra"] = json.loads(row["extra"])
        row["files"] = [self._file(f) for f in self._rows(
            "SELECT * FROM files WHERE resource_id = ? ORDER BY position", [row["id"]])]
        return row

    @staticmethod
    def _file(row: dict) -> dict:
        row = dict(row)
        row["urls"] = json.loads(row["urls"])
        row["extra"] = json.loads(row["extra"])
        row["content_url"] = f"/content/{row['sha256']}" if row["state"] == "cached" else None
        return row

    def query(self, q: str = "", limit: int = 50, offset: int = 0,
              **filters: str) -> tuple[list[dict], int]:
        """Top-level resources matching a search and/or taxonomy filters, with the total.

        With a query, results are ranked by FTS5's bm25 with the title weighted above the
        chapter path above the description; without one, by taxonomy order and title.
        """
        where = ["r.parent_id IS NULL"]
        params: list[Any] = []
        for name in FILTERS:
            if filters.get(name):
                where.append(f"r.{name} = ?")
                params.append(filters[name])
        match = search.match_query(q) if q else None
        if q and match is None:
            return [], 0
        if match:
            base = ("FROM resources_fts JOIN resources r ON r.rowid = resources_fts.rowid "
                    "WHERE resources_fts MATCH ? AND " + " AND ".join(where))
            params = [match] + params
            order = "bm25(resources_fts, 10.0, 4.0, 1.0), r.title"
        else:
            base = "FROM resources r WHERE " + " AND ".join(where)
            order = "r.stage, r.grade, r.subject, r.edition, r.volume, r.title"
        total = self.db.execute(f"SELECT count(*) {base}", params).fetchone()[0]
        # Cover and readiness come with the page of rows: one statement, not two per row.
        rows = self._rows(
            f"SELECT r.*, {_READY_SQL.format(rid='r.id')} AS ready, (SELECT sha256 FROM files "
            "WHERE resource_id = r.id AND role = 'cover' AND state = 'cached' LIMIT 1) AS cover "
            f"{base} ORDER BY {order} LIMIT ? OFFSET ?", params + [limit, offset])
        return [self._summary(r) for r in rows], total

    @staticmethod
    def _summary(row: dict) -> dict:
        row["chapter"] = json.loads(row["chapter"])
        row.pop("extra", None)
        row.pop("chapter_ids", None)
        cover = row.pop("cover")
        row["cover_url"] = f"/content/{cover}" if cover else None
        row["ready"] = bool(row["ready"])
        return row

    def facet(self, level: str, **filters: str) -> list[dict]:
        """Values of one taxonomy level under the chosen filters, with counts, in order."""
        if level not in taxonomy.LEVELS:
            raise CatalogError(f"unknown level {level!r}")
        where = ["parent_id IS NULL", f"{level} != ''"]
        params = []
        for name in taxonomy.LEVELS:
            if filters.get(name):
                where.append(f"{name} = ?")
                params.append(filters[name])
        rows = self.db.execute(
            f"SELECT {level}, count(*) FROM resources WHERE {' AND '.join(where)} "
            f"GROUP BY {level}", params).fetchall()
        values = [{"value": v, "count": n} for v, n in rows]
        return sorted(values, key=lambda item: taxonomy.sort_key(level, item["value"]))

    def blob_info(self, digest: str) -> dict | None:
        """MIME type and name of a cached blob, from the first file that references it.

        A segment of a cached HLS video is no file of its own: it is a piece of the video
        file (``file_parts``), served as MPEG-TS so the local playlist plays.
        """
        info = self._row(
            "SELECT mime, name FROM files WHERE sha256 = ? AND state = 'cached' LIMIT 1",
            [digest])
        if info is None:
            info = self._row(
                "SELECT 'video/mp2t' AS mime, '' AS name FROM file_parts p "
                "JOIN files f ON f.id = p.file_id WHERE p.sha256 = ? AND f.state = 'cached' "
                "AND f.mime = 'application/vnd.apple.mpegurl' LIMIT 1", [digest])
        return info

    def missing_resources(self, ids: set[str]) -> set[str]:
        """Which of ``ids`` are not in the catalogue (one indexed query)."""
        if not ids:
            return set()
        marks = ", ".join("?" for _ in ids)
        found = {r[0] for r in self.db.execute(
            f"SELECT id FROM resources WHERE id IN ({marks})", list(ids)).fetchall()}
        return set(ids) - found

    def counts(self) -> dict[str, int]:
        one = lambda sql: self.db.execute(sql).fetchone()[0] or 0  # noqa: E731
        return {
            "resources": one("SELECT count(*) FROM resources WHERE parent_id IS NULL"),
            "parts": one("SELECT count(*) FROM resources WHERE parent_id IS NOT NULL"),
            "files": one("SELECT count(*) FROM files"),
            "files_cached": one("SELECT count(*) FROM files WHERE state = 'cached'"),
            "bytes_cached": one("SELECT sum(size) FROM files WHERE state = 'cached'"),
        }

    def cached_digests(self) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT sha256 FROM files WHERE state = 'cached'").fetchall()]

    def _rows(self, sql: str, params: list) -> list[dict]:
        cursor = self.db.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r)) for r in cursor.fetchall()]

    def _row(self, sql: str, params: list) -> dict | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None


_EXTRA_TYPES = {".mp4": "video/mp4", ".m4a": "audio/mp4", ".mp3": "audio/mpeg",
                ".webm": "video/webm", ".json": "application/json", ".m3u8":
                "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}


def guess_mime(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def kind_for_mime(mime: str) -> str:
    if mime.startswith("video/"):
        return "video"
    if mime.startswith("audio/"):
        return "audio"
    if mime.startswith("image/"):
        return "image"
    return "document"
