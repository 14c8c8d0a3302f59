"""Pack feeds as a source: reading a feed from a directory or over HTTP, and a
:class:`FeedSource` the fetch engine can use for a feed on a county mirror.

Readers are what ``shuqiao import`` (:mod:`cache.pack`) and LAN peers
(:mod:`cache.sources.peer`) both use; a feed on a static web server needs nothing but
plain GETs, and a Range GET to resume a blob after a dropped connection (``If-Range`` with
the server's strong ETag, so a blob that changed under us is fetched again from the start).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from .. import feed
from ..feed import FeedError, FeedRefused, FeedUnavailable, Manifest, TrustedKey
from .. import disk
from ..catalog import Catalog, FileSpec, now_iso
from ..store import CHUNK, BlobStore, BlobWriter
from .base import ErrorKind, UpstreamRequest
from .plain import classify_by_status

USER_AGENT = "shuqiao-feed/1"
CONNECT_TIMEOUT, READ_TIMEOUT = 10, 60
RESUME_ATTEMPTS = 6       # consecutive network failures on one blob before giving up
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Restart(Exception):
    """The current blob must be received again from its first byte."""


def missing_blob(digest: str) -> FeedRefused:
    return FeedRefused("missing_blob", f"资源包缺少文件 {digest}，拒绝导入",
                       f"the feed lacks blob {digest}; refused")


def blob_mismatch(digest: str, detail: str) -> FeedRefused:
    return FeedRefused("blob_mismatch",
                       f"文件 {digest} 与签名清单不符（{detail}）：资源包已被改动，拒绝导入",
                       f"blob {digest} does not match the signed manifest ({detail}): the feed "
                       "was altered; refused")


def unreadable(where: str, error: Exception) -> FeedUnavailable:
    return FeedUnavailable("unavailable",
                           f"无法读取资源包 {where}（{error}）；可以稍后重试，已核对的部分会保留",
                           f"cannot read the feed at {where} ({error}); retry later, verified "
                           "progress is kept")


def _too_large(name: str, size: int | None) -> FeedRefused:
    if name == feed.MANIFEST_NAME:
        return feed.too_large(size)
    return FeedRefused("too_large", f"{name} 太大，拒绝导入", f"{name} is too large; refused")


class FeedReader:
    """Where a feed's files come from: a directory or a base URL."""

    location: str

    def read_small(self, name: str, limit: int) -> bytes | None:
        """A small top-level file read whole (None when absent); refuses above ``limit``."""
        raise NotImplementedError

    def copy_blob(self, digest: str, size: int, writer: BlobWriter,
                  report: Callable[[], None]) -> None:
        """Stream one blob into ``writer`` (which checks size and hash); ``report()`` after
        each chunk. Raises :class:`Restart` when the bytes so far must be discarded."""
        raise NotImplementedError

    def unlisted_blobs(self, listed: set[str]) -> list[str]:
        """Blob files present but not in the manifest (only a directory can tell)."""
        return []

    def blob_url(self, digest: str) -> str | None:
        return None

    def close(self) -> None:
        pass


class DirectoryReader(FeedReader):
    """A feed on a local file system (a USB drive): paths only from validated digests."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.location = str(self.root)

    def read_small(self, name: str, limit: int) -> bytes | None:
        try:
            with open(self.root / name, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > limit:
                    raise _too_large(name, size)
                return f.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise unreadable(self.location, error) from None

    def copy_blob(self, digest, size, writer, report) -> None:
        try:
            f = open(self.root / feed.blob_path(digest), "rb")
        except FileNotFoundError:
            raise missing_blob(digest) from None
        except OSError as error:
            raise unreadable(self.location, error) from None
        with f:
            actual = os.fstat(f.fileno()).st_size
            if actual != size:
                raise blob_mismatch(digest, f"{actual} bytes, declared {size}")
            try:
                while chunk := f.read(CHUNK):
                    writer.write(chunk)
                    report()
            except OSError as error:
                raise unreadable(self.location, error) from None

    def unlisted_blobs(self, listed: set[str]) -> list[str]:
        base = self.root / "blobs" / "sha256"
        found = []
        if base.is_dir():
            for sub in base.iterdir():
                if sub.is_dir():
                    found += [e.name for e in sub.iterdir()
                              if _HEX64.match(e.name) and e.name not in listed]
        return sorted(found)


def read_bounded(response: requests.Response, name: str, limit: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(name, int(declared))
    body = bytearray()
    for chunk in response.iter_content(CHUNK):
        body += chunk
        if len(body) > limit:
            raise _too_large(name, None)
    return bytes(body)


class HttpReader(FeedReader):
    """A feed on any web server, CDN or object store."""

    def __init__(self, base_url: str, session: requests.Session | None = None,
                 headers: dict[str, str] | None = None):
        self.location = base_url
        self.base = base_url if base_url.endswith("/") else base_url + "/"
        self._own_session = session is None
        self.session = session or requests.Session()
        self.headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                        **(headers or {})}

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def url(self, name: str) -> str:
        return urljoin(self.base, name)

    def blob_url(self, digest: str) -> str:
        return self.url(feed.blob_path(digest))

    def read_small(self, name: str, limit: int) -> bytes | None:
        url = self.url(name)
        try:
            with self.session.get(url, headers=self.headers, stream=True,
                                  timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as response:
                if response.status_code in (404, 410):
                    return None
                if response.status_code != 200:
                    raise FeedUnavailable("http_error", f"{url} 返回 HTTP {response.status_code}",
                                          f"{url} answered HTTP {response.status_code}")
                return read_bounded(response, name, limit)
        except requests.RequestException as error:
            raise unreadable(url, error) from None

    def copy_blob(self, digest, size, writer, report) -> None:
        url = self.blob_url(digest)
        etag = None
        failures = 0
        while True:
            start = writer.size
            headers = dict(self.headers)
            if start:
                headers["Range"] = f"bytes={start}-"
                if etag:  # resume only onto the very same bytes
                    headers["If-Range"] = etag
            try:
                with self.session.get(url, headers=headers, stream=True,
                                      timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as response:
                    status = response.status_code
                    if status in (404, 410):
                        raise missing_blob(digest)
                    if status == 416 or (start and status == 200):
                        raise Restart()  # the server ignored the range: start again
                    if status == 206 and not response.headers.get(
                            "Content-Range", "").startswith(f"bytes {start}-"):
                        raise Restart()
                    if status >= 500:  # a busy or restarting server: worth a few retries
                        raise requests.HTTPError(f"HTTP {status}")
                    if status not in (200, 206):
                        raise FeedUnavailable("http_error", f"{url} 返回 HTTP {status}",
                                              f"{url} answered HTTP {status}")
                    tag = response.headers.get("ETag")
                    etag = tag if tag and not tag.startswith("W/") else None
                    while chunk := response.raw.read1(CHUNK):
                        # read1 hands bytes over as they arrive, so a drop loses none of
                        # them (iter_content discards a chunk cut short) and Range resumes
                        # exactly where the bytes stopped.
                        writer.write(chunk)
                        report()
                if writer.size >= size:
                    return
                raise requests.ConnectionError("the body ended early")
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
                if writer.size > start:
                    failures = 0  # a flaky link, not a dead server: resume at once
                    continue
                failures += 1
                if failures > RESUME_ATTEMPTS:
                    raise unreadable(url, error) from None
                time.sleep(min(8.0, 0.25 * 2 ** failures))


def open_feed(location: str | os.PathLike, session: requests.Session | None = None) -> FeedReader:
    """A reader for a directory path or an http(s) URL (a trailing ``manifest.json`` is
    allowed: people paste the URL of the file they see)."""
    text = str(location)
    if urlsplit(text).scheme in ("http", "https"):
        if text.endswith("/" + feed.MANIFEST_NAME):
            text = text[: -len(feed.MANIFEST_NAME)]
        return HttpReader(text, session)
    path = Path(text).expanduser()
    if path.name == feed.MANIFEST_NAME:
        path = path.parent
    if not path.is_dir():
        raise FeedError("no_feed", f"找不到资源包目录 {path}", f"no such feed directory: {path}")
    return DirectoryReader(path)


def read_verified(reader: FeedReader,
                  trusted: dict[str, TrustedKey]) -> tuple[Manifest, TrustedKey]:
    """Manifest and signature read (size-bounded), the signature verified, *then* the
    manifest parsed and validated.

    Over HTTP a mismatch is read once more before it is believed: a feed being republished
    (an appliance whose cache just changed, a mirror being re-synced) can hand out the new
    manifest and the old signature, or the reverse, to a reader that came in between.
    """
    for attempt in (1, 2):
        manifest_bytes = reader.read_small(feed.MANIFEST_NAME, feed.MAX_MANIFEST_BYTES)
        signature = reader.read_small(feed.SIGNATURE_NAME, feed.MAX_SIGNATURE_BYTES) \
            if manifest_bytes is not None else None
        try:
            signer = feed.verify(manifest_bytes, signature, trusted)
            break
        except FeedRefused as error:
            if error.reason != "bad_signature" or attempt == 2 \
                    or not isinstance(reader, HttpReader):
                raise
            time.sleep(0.5)
    return feed.parse(manifest_bytes), signer


# ------------------------------------------------------------ the catalogue

def _file_spec(entry: dict, store: BlobStore) -> FileSpec:
    digest = entry.get("sha256")
    return FileSpec(role=entry["role"], mime=entry["mime"], name=entry["name"],
                    size=entry["size"], sha256=digest, md5=entry.get("md5"),
                    state="cached" if digest and _all_present(entry, store) else "remote",
                    urls=tuple(entry["urls"]), extra=entry["extra"])


def _all_present(entry: dict, store: BlobStore) -> bool:
    return store.has(entry["sha256"]) and all(store.has(p["sha256"])
                                              for p in entry.get("parts", ()))


def _same_file(local: dict, entry: dict, md5_of: Callable[[str], str | None]) -> bool:
    """Whether a file row here is the file a feed entry describes: the same SHA-256; else
    the same MD5 (the platform declares one; if the feed does not, it is computed from the
    received blob); else the same role and size, or role and name."""
    if local["sha256"] and entry.get("sha256"):
        return local["sha256"] == entry["sha256"]
    size_ok = local["size"] in (None, entry["size"])
    if local["md5"]:
        theirs = entry.get("md5") or (md5_of(entry["sha256"]) if entry.get("sha256") else None)
        if theirs:
            return local["md5"] == theirs and size_ok
    if local["role"] != entry["role"]:
        return False
    return (local["size"] is not None and local["size"] == entry["size"]) or \
        (local["name"] == entry["name"] and size_ok)


def _md5_reader(store: BlobStore) -> Callable[[str], str | None]:
    known: dict[str, str | None] = {}

    def md5_of(digest: str) -> str | None:
        if digest not in known:
            if not store.has(digest):
                known[digest] = None
            else:
                h = hashlib.md5()
                with store.open(digest) as f:
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                known[digest] = h.hexdigest()
        return known[digest]

    return md5_of


def merge_into_catalog(catalog: Catalog, manifest: Manifest) -> None:
    """Write the manifest's entries, all in one transaction.

    Resources keep their original ``source`` and ``source_id`` — so their ids, which
    derive from those, are the same on every appliance, and a lesson that came by USB, from
    a peer or from the platform is one resource, not three. The feed is recorded in the
    resource's ``extra.feed`` and in the ``sources`` table as ``feed:<name>``.

    A resource this appliance does not have is added whole. One it already has keeps its
    metadata and its file rows (their ids may be on the fetch queue); each of its files
    that the feed holds gains the feed's SHA-256 and, when the bytes are here, is cached;
    files of roles it lacks (a cover) are added. Where both have a file of one role that
    does not match (another version of the PDF), ours stays as it is.
    """
    db = catalog.db
    tables = {name for name in ("file_parts", "blob_use", "fetch_queue") if has_table(db, name)}
    md5_of = _md5_reader(catalog.store)
    with db.atomic():
        for entry in manifest.resources:
            if db.execute("SELECT 1 FROM resources WHERE id = ?", [entry["id"]]).fetchone():
                _attach_files(catalog, entry, tables, md5_of)
                continue
            extra = dict(entry["extra"])
            extra.setdefault("feed", manifest.name)
            catalog.upsert_resource(
                source=entry["source"], source_id=entry["source_id"], kind=entry["kind"],
                title=entry["title"], parent_id=entry["parent"], chapter=entry["chapter"],
                chapter_ids=entry["chapter_ids"], tags=entry["tags"], extra=extra,
                files=[_file_spec(f, catalog.store) for f in entry["files"]],
                **{k: entry[k] for k in ("description", "stage", "grade", "subject", "edition",
                                         "volume", "lesson", "lesson_no", "position",
                                         "upstream_updated")})
            ids = [r[0] for r in db.execute("SELECT id FROM files WHERE resource_id = ? "
                                            "ORDER BY position", [entry["id"]]).fetchall()]
            for file_id, item in zip(ids, entry["files"]):
                _record_parts(catalog, file_id, item, tables)
        if "blob_use" in tables:
            for digest, size in manifest.blobs.items():
                if catalog.store.has(digest):
                    disk.record_blob(db, digest, size)
        db.execute("INSERT INTO sources (name, kind, last_sync) VALUES (?, 'feed', ?) "
                   "ON CONFLICT(name) DO UPDATE SET last_sync = excluded.last_sync",
                   ["feed:" + manifest.name, now_iso()])


def _record_parts(catalog: Catalog, file_id: int, item: dict, tables: set[str]) -> None:
    """The pieces of a cached multi-blob file (HLS), so eviction and re-export know them."""
    if "file_parts" in tables and item.get("parts") and _all_present(item, catalog.store):
        for part in item["parts"]:
            catalog.db.execute(
                "INSERT OR IGNORE INTO file_parts (file_id, url, seq, size, sha256) "
                "VALUES (?, ?, ?, ?, ?)",
                [file_id, part["url"], part["seq"], part["size"], part["sha256"]])


def _attach_files(catalog: Catalog, entry: dict, tables: set[str],
                  md5_of: Callable[[str], str | None]) -> None:
    db = catalog.db
    local = _rows(db, "SELECT id, role, name, size, sha256, md5, state FROM files "
                      "WHERE resource_id = ? ORDER BY position", [entry["id"]])
    used: set[int] = set()
    for item in entry["files"]:
        match = next((f for f in local if f["id"] not in used and _same_file(f, item, md5_of)),
                     None)
        digest = item.get("sha256")
        if match is None:
            if any(f["role"] == item["role"] for f in local):
                continue  # our own file of that role is another version: ours stays
            # A file the feed knows and we did not (a cover, a rendition): add it.
            position = db.execute("SELECT coalesce(max(position), -1) + 1 FROM files "
                                  "WHERE resource_id = ?", [entry["id"]]).fetchone()[0]
            # Catalog has no public "add one file" yet; this is its own row writer.
            catalog._insert_file(entry["id"], position, _file_spec(item, catalog.store))
            file_id = db.execute("SELECT max(id) FROM files WHERE resource_id = ?",
                                 [entry["id"]]).fetchone()[0]
            _record_parts(catalog, file_id, item, tables)
            continue
        used.add(match["id"])
        if not digest or match["state"] == "cached":
            continue  # nothing to add, or already cached here (perhaps another rendition)
        cached = _all_present(item, catalog.store)
        db.execute("UPDATE files SET sha256 = ?, size = ?, md5 = coalesce(md5, ?), "
                   "state = CASE WHEN ? THEN 'cached' ELSE state END WHERE id = ?",
                   [digest, item["size"], item.get("md5"), cached, match["id"]])
        if cached:
            _record_parts(catalog, match["id"], item, tables)
            if "fetch_queue" in tables:  # its wait is over (an active fetch ends by itself)
                db.execute("DELETE FROM fetch_queue WHERE file_id = ? AND state != 'active'",
                           [match["id"]])


def _rows(db, sql: str, params: list) -> list[dict]:
    cursor = db.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def has_table(db, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      [name]).fetchone() is not None


class FeedSource:
    """A feed on a web server (a county or provincial mirror) as a source.

    It serves two roles:

    - catalogue upstream: :meth:`update_catalog` imports the feed's signed catalogue
      without moving bytes; every file then carries the SHA-256 the feed declares;
    - blob provider: :meth:`find_blob` answers "where can I get these bytes?" from the
      verified manifest, so the fetch engine can take a file from the feed (or a LAN
      peer, :mod:`cache.sources.peer`) instead of the platform, and :meth:`fetch_file`
      does it through the engine's resumable, budgeted download.
    """

    def __init__(self, name: str, base_url: str, trusted: dict[str, TrustedKey],
                 session: requests.Session | None = None, refresh_seconds: float = 3600):
        self.name = name
        self.reader = HttpReader(base_url, session)
        self.trusted = trusted
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._manifest: Manifest | None = None
        self._loaded = 0.0

    def close(self) -> None:
        self.reader.close()

    # -- the Source interface ------------------------------------------------------
    def request(self, url: str, method: str = "GET") -> UpstreamRequest:
        return UpstreamRequest(url, {"User-Agent": USER_AGENT})

    def classify(self, status: int | None, body: bytes, error: Exception | None) -> ErrorKind:
        return classify_by_status(status, error)

    def fetch_file(self, file: dict, ctx) -> str | None:
        """Fetch a file whose SHA-256 this feed holds; None when it does not."""
        digest = file.get("sha256")
        url = self.find_blob(digest) if digest else None
        if url is None:
            return None
        got = ctx.download(url, expected_size=self.manifest().blobs[digest])
        if got != digest:
            raise FeedRefused("blob_mismatch", f"{url} 的内容与清单不符", f"{url} does not match "
                              "the signed manifest")
        return got

    # -- the feed ------------------------------------------------------------------
    def manifest(self) -> Manifest:
        """The verified manifest, re-read at most every ``refresh_seconds``."""
        with self._lock:
            if self._manifest is None or time.monotonic() - self._loaded > self.refresh_seconds:
                self._manifest, _ = read_verified(self.reader, self.trusted)
                self._loaded = time.monotonic()
            return self._manifest

    def find_blob(self, sha256: str) -> str | None:
        try:
            manifest = self.manifest()
        except FeedError:
            return None
        return self.reader.blob_url(sha256) if sha256 in manifest.blobs else None

    def update_catalog(self, catalog, store, select: list[str] | None = None):
        """Import the feed's catalogue (no bytes); returns :class:`cache.pack.ImportResult`."""
        from ..pack import import_feed

        return import_feed(catalog, store, self.reader, self.trusted, select=select,
                           fetch_blobs=False)
