"""``catalog.db``: the catalogue's schema, as numbered sqlite-utils migrations.

Applied steps are never edited; a change is a new step. The model follows the national
platform (see ``shared/reference/smartedu-upstream.md``) so that the fetch work only has to
fill it:

- ``resources``: one row per thing a teacher can open. A lesson package (课程包) is a
  resource whose parts (微课视频, 课件, 教学设计, 学习任务单, 课后练习) are resources too,
  linked by ``parent_id`` and grouped per 课时 by ``lesson``/``lesson_no``.
- ``files``: the bytes behind a resource (a PDF, a video rendition, a cover), each with
  its role, MIME type, size, hashes, mirror URLs and state (remote → queued → cached).
  A cached file points at its blob in the content-addressed store by ``sha256``.
- ``resource_tags``: the platform's classification tags (学段/年级/学科/版本/册次 ids),
  kept so incremental catalogue sync can match by tag id.
- ``resources_fts``: the search index (see :mod:`cache.search`).
- ``sources``: configured upstreams and their sync bookmarks (``module_version``).
"""

from __future__ import annotations

from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

import database
from database import execute_script

migrations = Migrations("shuqiao_catalog")

RESOURCE_KINDS = (
    "textbook", "lesson_package", "video", "courseware", "lesson_plan", "task_sheet",
    "exercise", "document", "audio", "image",
)
FILE_STATES = ("remote", "queued", "cached")


@migrations(name="0001_catalogue")
def m0001_catalogue(db: sqlite_utils.Database) -> None:
    execute_script(db, """
        CREATE TABLE resources (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL,            -- 'local', 'sample', 'smartedu', a feed name…
            source_id TEXT NOT NULL,         -- the id upstream (platform contentId…)
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            stage TEXT NOT NULL DEFAULT '',   -- 学段
            grade TEXT NOT NULL DEFAULT '',   -- 年级
            subject TEXT NOT NULL DEFAULT '', -- 学科
            edition TEXT NOT NULL DEFAULT '', -- 版本
            volume TEXT NOT NULL DEFAULT '',  -- 册次
            chapter TEXT NOT NULL DEFAULT '[]',  -- JSON list: chapter path, top first
            chapter_ids TEXT NOT NULL DEFAULT '[]',  -- JSON list of upstream chapter node ids
            lesson TEXT NOT NULL DEFAULT '',  -- 课时 title, e.g. 第一课时
            lesson_no INTEGER NOT NULL DEFAULT 0,
            parent_id TEXT REFERENCES resources(id) ON DELETE CASCADE,
            position INTEGER NOT NULL DEFAULT 0,  -- order among siblings
            upstream_updated TEXT NOT NULL DEFAULT '',  -- upstream update_time
            added_at TEXT NOT NULL,
            extra TEXT NOT NULL DEFAULT '{}',  -- JSON: anything else worth keeping
            UNIQUE (source, source_id)
        );
        CREATE INDEX resources_taxonomy ON resources (stage, grade, subject, edition, volume)
            WHERE parent_id IS NULL;
        CREATE INDEX resources_subject ON resources (subject, grade) WHERE parent_id IS NULL;
        CREATE INDEX resources_parent ON resources (parent_id, lesson_no, position);

        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            resource_id TEXT NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
            role TEXT NOT NULL,           -- source, pdf, video, video-720p, cover, exercise…
            name TEXT NOT NULL DEFAULT '',
            mime TEXT NOT NULL,
            size INTEGER,                 -- bytes, when known
            sha256 TEXT,                  -- known once cached (or declared by a feed)
            md5 TEXT,                     -- as declared upstream (ti_md5)
            state TEXT NOT NULL DEFAULT 'remote' CHECK (state IN ('remote', 'queued', 'cached')),
            urls TEXT NOT NULL DEFAULT '[]',  -- JSON list: upstream mirror URLs
            position INTEGER NOT NULL DEFAULT 0,
            extra TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX files_resource ON files (resource_id, position);
        CREATE INDEX files_sha256 ON files (sha256);

        CREATE TABLE resource_tags (
            resource_id TEXT NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
            dimension TEXT NOT NULL,      -- zxxxd, zxxnj, zxxxk, zxxbb, zxxcc, bkks…
            tag_id TEXT NOT NULL,
            name TEXT NOT NULL,
            PRIMARY KEY (resource_id, dimension, tag_id)
        );
        CREATE INDEX resource_tags_tag ON resource_tags (tag_id);

        CREATE TABLE sources (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            module_versions TEXT NOT NULL DEFAULT '{}',  -- JSON: module -> module_version
            last_sync TEXT
        );

        -- Search index: one row per top-level or part resource, rowid = resources.rowid.
        -- Text is pre-segmented by cache.search so that Chinese works (see there).
        CREATE VIRTUAL TABLE resources_fts USING fts5(
            title, chapter, description,
            tokenize = "unicode61 remove_diacritics 2 tokenchars '_'"
        );
    """)


def connect(path: Path) -> sqlite_utils.Database:
    """Open ``catalog.db`` for this thread (never share a connection between threads)."""
    return database.connect(path, synchronous="NORMAL")


def migrate(path: Path) -> list[str]:
    """Create or upgrade ``catalog.db``; returns the names of the steps applied now."""
    return database.migrate(connect(path), migrations)


@migrations(name="0002_fetch_queue")
def m0002_fetch_queue(db: sqlite_utils.Database) -> None:
    """The fetch engine's durable state (see cache/queue.py, cache/transfer.py,
    cache/budget.py and cache/disk.py for what each table is for)."""
    execute_script(db, """
        -- One row per file wanted and not yet cached: that one row is what coalesces any
        -- number of requests for the same file into one upstream fetch.
        CREATE TABLE fetch_queue (
            file_id INTEGER PRIMARY KEY REFERENCES files(id) ON DELETE CASCADE,
            priority INTEGER NOT NULL,          -- 300 teacher, 200 plan, 100 background
            seq INTEGER NOT NULL,               -- arrival order: FIFO within a priority
            state TEXT NOT NULL DEFAULT 'waiting'
                CHECK (state IN ('waiting', 'active', 'held', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_try REAL NOT NULL DEFAULT 0,   -- epoch seconds (back-off)
            last_error TEXT NOT NULL DEFAULT '',
            error_kind TEXT NOT NULL DEFAULT '',
            held_on TEXT NOT NULL DEFAULT '',   -- the alert key a 'held' entry waits for
            bytes_done INTEGER NOT NULL DEFAULT 0,
            bytes_total INTEGER,
            requested_by TEXT NOT NULL DEFAULT '',
            requests INTEGER NOT NULL DEFAULT 1,
            enqueued_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX fetch_queue_order ON fetch_queue (state, priority DESC, seq);

        -- Resumable partial downloads under blobs/tmp/resume/<name>: the offset known to be
        -- on disk (fsynced), the validator for If-Range, and the digest once verified (set
        -- before the rename into the store, so a crash after it never refetches).
        CREATE TABLE fetch_partials (
            name TEXT PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            url TEXT NOT NULL DEFAULT '',       -- '' for the file itself, else a part's URL
            mirror TEXT NOT NULL DEFAULT '',    -- the URL the validator came from
            offset INTEGER NOT NULL DEFAULT 0,
            etag TEXT NOT NULL DEFAULT '',
            last_modified TEXT NOT NULL DEFAULT '',
            total INTEGER,
            verified_sha256 TEXT,
            boot_id TEXT NOT NULL DEFAULT '',   -- the kernel boot the bytes were written in
            updated_at REAL NOT NULL DEFAULT 0
        );
        CREATE INDEX fetch_partials_file ON fetch_partials (file_id);

        -- Blobs that make up a file fetched in pieces (an HLS rendition: key, segments, the
        -- rewritten playlist). A piece done is never fetched again; eviction removes them
        -- with their file.
        CREATE TABLE file_parts (
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            url TEXT NOT NULL,                  -- upstream URL, or 'local:<sha256>'
            seq INTEGER NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            PRIMARY KEY (file_id, url)
        );
        CREATE INDEX file_parts_sha256 ON file_parts (sha256);

        -- Resources the admin (or the prefetch plan) pinned: never evicted.
        CREATE TABLE pins (
            resource_id TEXT PRIMARY KEY REFERENCES resources(id) ON DELETE CASCADE,
            pinned_by TEXT NOT NULL DEFAULT '',
            pinned_at TEXT NOT NULL
        );

        -- Last use of each blob (served or stored), for least-recently-used eviction.
        CREATE TABLE blob_use (
            sha256 TEXT PRIMARY KEY,
            size INTEGER NOT NULL DEFAULT 0,
            last_used REAL NOT NULL
        );
        CREATE INDEX blob_use_lru ON blob_use (last_used);

        -- Bytes fetched per calendar month (metered plans) and extra bytes the admin granted.
        CREATE TABLE budget_months (
            month TEXT PRIMARY KEY,             -- YYYY-MM, local time
            bytes_used INTEGER NOT NULL DEFAULT 0,
            extra_bytes INTEGER NOT NULL DEFAULT 0
        );

        -- Conditions a person must see on the admin page: 'auth:<source>' (log in again),
        -- 'disk' (free space below the reserve), 'storage' (quota full of pinned content).
        CREATE TABLE fetch_alerts (
            key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            message TEXT NOT NULL,
            raised_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        -- Small facts the engine keeps between runs (the measured link rate for ETAs).
        CREATE TABLE fetch_meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );

        INSERT OR IGNORE INTO blob_use (sha256, size, last_used)
            SELECT sha256, max(coalesce(size, 0)), CAST(strftime('%s', 'now') AS REAL)
            FROM files WHERE state = 'cached' AND sha256 IS NOT NULL GROUP BY sha256;
    """)


@migrations(name="0003_school_profile")
def m0003_school_profile(db: sqlite_utils.Database) -> None:
    """The school profile behind curriculum-aware prefetch (see cache/plan.py)."""
    execute_script(db, """
        CREATE TABLE school_term (
            id INTEGER PRIMARY KEY CHECK (id = 1),  -- one current term
            name TEXT NOT NULL DEFAULT '',
            start TEXT NOT NULL,                    -- ISO dates
            end TEXT NOT NULL
        );
        CREATE TABLE school_classes (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,              -- e.g. 三年级一班·数学
            stage TEXT NOT NULL DEFAULT '',
            grade TEXT NOT NULL,
            subject TEXT NOT NULL,
            edition TEXT NOT NULL DEFAULT '',
            volume TEXT NOT NULL DEFAULT '',
            periods TEXT NOT NULL DEFAULT '[]',     -- JSON [[weekday 1-7, period], …]
            lessons_per_week INTEGER NOT NULL DEFAULT 0
        );
    """)


@migrations(name="0004_catalog_version")
def m0004_catalog_version(db: sqlite_utils.Database) -> None:
    """A counter that moves on every change to what is catalogued or cached.

    Readers that cache something derived from the catalogue (the /feed/ manifest) compare
    it instead of guessing from counts: file rows are updated in place, so a count or a
    max(id) can stay the same while a file's content or state changed.
    """
    execute_script(db, """
        CREATE TABLE catalog_version (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
        INSERT INTO catalog_version (id, n) VALUES (1, 0);
        CREATE TRIGGER files_inserted AFTER INSERT ON files
            BEGIN UPDATE catalog_version SET n = n + 1; END;
        CREATE TRIGGER files_updated AFTER UPDATE ON files
            BEGIN UPDATE catalog_version SET n = n + 1; END;
        CREATE TRIGGER files_deleted AFTER DELETE ON files
            BEGIN UPDATE catalog_version SET n = n + 1; END;
        CREATE TRIGGER resources_inserted AFTER INSERT ON resources
            BEGIN UPDATE catalog_version SET n = n + 1; END;
        CREATE TRIGGER resources_updated AFTER UPDATE ON resources
            BEGIN UPDATE catalog_version SET n = n + 1; END;
        CREATE TRIGGER resources_deleted AFTER DELETE ON resources
            BEGIN UPDATE catalog_version SET n = n + 1; END;
    """)
