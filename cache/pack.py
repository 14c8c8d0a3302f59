"""Moving pack feeds in and out of this appliance: ``shuqiao export`` and ``shuqiao import``.

Export writes a feed (see :mod:`cache.feed` for the layout) into a directory — a USB drive,
or a folder a web server or object store will publish — in an order that makes a half-
written export impossible to mistake for a complete one: the old manifest goes first, then
the blobs (each written to a temporary name, fsynced, renamed), then the signature and,
last of all, ``manifest.json``. No ``manifest.json``, no feed.

Import reads a feed from a directory or an http(s) URL (:mod:`cache.sources.feed`):

1. the manifest and its signature, both size-bounded; the signature is verified against
   the trusted keys *before* the manifest is even parsed;
2. each blob the appliance does not have yet is streamed through a ``BlobWriter`` that
   checks the declared size and SHA-256 as the bytes arrive, into a *staging* store
   (``blobs/import/``) — not the real one;
3. only when every blob has arrived and verified are they renamed into the blob store,
   and then the catalogue entries are written in one transaction.

So a tampered feed (a changed byte, a swapped signature, a missing or unlisted blob) is
refused and leaves nothing behind: what it had staged is deleted. A feed that could not
be read to the end (a dropped link, a kill -9, a pulled drive) keeps its verified staged
blobs, and the next import of it skips them. Blobs already in the store are never read.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import requests

from . import disk, feed
from .catalog import Catalog
from .feed import FeedError, FeedRefused, FeedUnavailable, Manifest, TrustedKey
from .sources.feed import (DirectoryReader, FeedReader, Restart, blob_mismatch,
                           merge_into_catalog, open_feed, read_verified)
from .store import CHUNK, BlobError, BlobStore, atomic_write_bytes, fsync_directory

Progress = Callable[[int, int], None]
"""``progress(done_bytes, total_bytes)``: called as blob bytes move (absolute figures)."""

_RESTART_ATTEMPTS = 3      # times one blob may start over (a server that ignored Range)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

_README = """书桥资源包 / Shuqiao pack
========================

这是一个书桥（Shuqiao）资源包，由 "{name}" 于 {created} 导出。
在另一台书桥上运行：shuqiao import <这个目录>
导入时会先检查签名（manifest.json.sig），再逐字节核对每个文件；被改动过的资源包会被拒绝。
请不要修改、增加或删除 blobs/ 下的文件。

This is a Shuqiao pack exported by "{name}" on {created}.
On another appliance run: shuqiao import <this directory>
Import verifies the signature (manifest.json.sig) first, then every byte of every file;
an altered pack is refused. Do not change, add or remove files under blobs/.
"""


# ------------------------------------------------------------ the selection

@dataclass
class Selection:
    """What to put in a feed: resource ids and/or taxonomy filters, or everything cached.

    Ids and filters add up (union); a part's id selects its whole package. Only
    resources with at least one cached file (in themselves or their parts) go in: a feed
    carries bytes, and the catalogue entries that explain them.
    """

    ids: tuple[str, ...] = ()
    stage: str = ""
    grade: str = ""
    subject: str = ""
    edition: str = ""
    volume: str = ""
    all_cached: bool = False

    def filters(self) -> dict[str, str]:
        return {k: v for k, v in (("stage", self.stage), ("grade", self.grade),
                                  ("subject", self.subject), ("edition", self.edition),
                                  ("volume", self.volume)) if v}

    def is_empty(self) -> bool:
        return not (self.ids or self.filters() or self.all_cached)


def _rows(db, sql: str, params: list) -> list[dict]:
    cursor = db.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _has_table(db, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      [name]).fetchone() is not None


def _top_level_ids(db, selection: Selection) -> list[str]:
    chosen: set[str] = set()
    if selection.ids:
        marks = ", ".join("?" for _ in selection.ids)
        rows = db.execute(f"SELECT id, parent_id FROM resources WHERE id IN ({marks})",
                          list(selection.ids)).fetchall()
        missing = sorted(set(selection.ids) - {r[0] for r in rows})
        if missing:
            raise FeedError("unknown_resource", "资源库里没有这些资源：" + ", ".join(missing),
                            "no such resources in the catalogue: " + ", ".join(missing))
        chosen |= {parent or rid for rid, parent in rows}
    if selection.filters():
        where = " AND ".join(f"{k} = ?" for k in selection.filters())
        chosen |= {r[0] for r in db.execute(
            f"SELECT id FROM resources WHERE parent_id IS NULL AND {where}",
            list(selection.filters().values())).fetchall()}
    cached = {r[0] for r in db.execute(
        "SELECT DISTINCT coalesce(r.parent_id, r.id) FROM files f JOIN resources r "
        "ON r.id = f.resource_id WHERE f.state = 'cached'").fetchall()}
    return sorted(cached if selection.all_cached else chosen & cached)


def _blob_sizes(store: BlobStore) -> Callable[[str], int | None]:
    """Size of a stored blob, or None when it is absent: one stat per blob (plain string
    paths; the national catalogue has tens of thousands of them)."""
    root = os.path.join(str(store.root), "sha256")
    known: dict[str, int | None] = {}

    def size(digest: str) -> int | None:
        if digest not in known:
            if not _HEX64.match(digest):  # a path is made only from a validated digest
                known[digest] = None
                return None
            try:
                known[digest] = os.stat(os.path.join(root, digest[:2], digest)).st_size
            except (FileNotFoundError, NotADirectoryError):
                known[digest] = None
        return known[digest]

    return size


def build_manifest(catalog: Catalog, *, name: str, selection: Selection,
                   created: str | None = None) -> dict:
    """The manifest document for ``selection`` of this catalogue (not yet serialised).

    A file carries ``sha256`` (and its blob is listed) only when it is cached and every
    blob it needs is in the store — for a video fetched in pieces, the playlist and all its
    segments (``parts``). Other files are listed without it, so the reader still learns
    what exists and where upstream it lives.
    """
    db = catalog.db
    with_parts = _has_table(db, "file_parts")
    blob_size = _blob_sizes(catalog.store)
    resources: list[dict] = []
    blobs: dict[str, int] = {}
    family = "r.id = ? OR r.parent_id = ?"  # a package and its parts: one query each below
    for top in _top_level_ids(db, selection):
        rows = _rows(db, "SELECT * FROM resources WHERE id = ?", [top]) + _rows(
            db, "SELECT * FROM resources WHERE parent_id = ? ORDER BY lesson_no, position", [top])
        files_of: dict[str, list[dict]] = {}
        for f in _rows(db, f"SELECT f.* FROM files f JOIN resources r ON r.id = f.resource_id "
                           f"WHERE {family} ORDER BY f.position", [top, top]):
            files_of.setdefault(f["resource_id"], []).append(f)
        tags_of: dict[str, list[list[str]]] = {}
        for t in db.execute(f"SELECT t.resource_id, t.dimension, t.tag_id, t.name FROM "
                            f"resource_tags t JOIN resources r ON r.id = t.resource_id "
                            f"WHERE {family} ORDER BY t.dimension, t.tag_id", [top, top]):
            tags_of.setdefault(t[0], []).append(list(t[1:]))
        parts_of: dict[int, list[dict]] = {}
        if with_parts:
            for part in _rows(db, f"SELECT p.* FROM file_parts p JOIN files f ON f.id = p.file_id "
                                  f"JOIN resources r ON r.id = f.resource_id WHERE {family} "
                                  f"ORDER BY p.seq, p.url", [top, top]):
                parts_of.setdefault(part.pop("file_id"), []).append(part)
        for row in rows:
            files = []
            for f in files_of.get(row["id"], []):
                entry = {"role": f["role"], "name": f["name"], "mime": f["mime"],
                         "size": f["size"], "urls": json.loads(f["urls"]),
                         "extra": json.loads(f["extra"])}
                if f["md5"]:
                    entry["md5"] = f["md5"]
                parts = parts_of.get(f["id"], [])
                digest = f["sha256"]
                if (f["state"] == "cached" and digest and blob_size(digest) is not None
                        and all(blob_size(p["sha256"]) is not None for p in parts)):
                    # Sizes as on disk: that is what a reader will receive.
                    entry["sha256"], entry["size"] = digest, blob_size(digest)
                    blobs[digest] = entry["size"]
                    if parts:
                        entry["parts"] = [dict(p, size=blob_size(p["sha256"])) for p in parts]
                        blobs.update((p["sha256"], p["size"]) for p in entry["parts"])
                files.append(entry)
            resources.append({
                "id": row["id"], "parent": row["parent_id"], "source": row["source"],
                "source_id": row["source_id"], "kind": row["kind"], "title": row["title"],
                **{k: row[k] for k in ("description", "stage", "grade", "subject", "edition",
                                       "volume", "lesson", "upstream_updated")},
                "chapter": json.loads(row["chapter"]),
                "chapter_ids": json.loads(row["chapter_ids"]),
                "lesson_no": row["lesson_no"], "position": row["position"],
                "extra": json.loads(row["extra"]), "tags": tags_of.get(row["id"], []),
                "files": files,
            })
    return {
        "format": feed.FORMAT, "version": feed.VERSION, "name": name,
        "created": created or feed.now_iso(), "resources": resources,
        "blobs": [{"sha256": d, "size": s} for d, s in sorted(blobs.items())],
    }


# ------------------------------------------------------------------- export

@dataclass
class ExportResult:
    directory: Path
    name: str
    resources: int
    blobs: int
    bytes_total: int
    bytes_written: int
    blobs_kept: int       # already in the directory from an earlier export, re-verified
    stale_removed: int    # blob files of an earlier export that this one does not hold


def _file_digest(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def export(catalog: Catalog, store: BlobStore, directory: str | os.PathLike, *,
           select: Selection, signing_key, name: str,
           progress: Progress | None = None) -> ExportResult:
    """Write the selected cached content as a signed feed into ``directory``.

    Re-exporting into the same directory keeps blobs that are already there (after
    re-hashing them) and removes those the new selection does not hold, so the directory
    always is exactly one feed.
    :raises FeedError: nothing selected, no space, a write failed, a corrupt local blob.
    """
    if select.is_empty():
        raise FeedError("nothing_selected", "请选择要导出的资源（编号、分类，或全部已缓存）",
                        "choose what to export (ids, taxonomy filters, or all cached)")
    document = build_manifest(catalog, name=name, selection=select)
    if not document["resources"]:
        raise FeedError("nothing_selected", "所选范围内没有已缓存的资源，没有可导出的内容",
                        "nothing cached matches the selection; nothing to export")
    blobs = {b["sha256"]: b["size"] for b in document["blobs"]}
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
        # The manifest marks a complete feed: take the old one away before anything else.
        for marker in (feed.MANIFEST_NAME, feed.SIGNATURE_NAME):
            (root / marker).unlink(missing_ok=True)
        fsync_directory(root, removable=True)

        kept, to_write = [], []
        for digest, size in sorted(blobs.items()):
            target = root / feed.blob_path(digest)
            if (target.is_file() and target.stat().st_size == size
                    and _file_digest(target) == digest):
                kept.append(digest)
            else:
                to_write.append(digest)
        needed = sum(blobs[d] for d in to_write)
        free = shutil.disk_usage(root).free
        if needed > free:
            raise FeedError("no_space", f"目标空间不足：需要 {needed} 字节，只有 {free} 字节",
                            f"not enough space at the destination: {needed} bytes needed, "
                            f"{free} free")
        done = 0
        for digest in to_write:
            done = _export_blob(store, digest, root, done, needed, progress)
        stale = DirectoryReader(root).unlisted_blobs(set(blobs))
        for digest in stale:
            (root / feed.blob_path(digest)).unlink(missing_ok=True)
        for leftover in (root / "blobs" / "sha256").glob("*/.*.tmp"):
            leftover.unlink(missing_ok=True)

        manifest_bytes = feed.canonical_bytes(document)
        readme = _README.format(name=name, created=document["created"]).encode("utf-8")
        atomic_write_bytes(root / "README.txt", readme, removable=True)
        atomic_write_bytes(root / feed.SIGNATURE_NAME, feed.sign(signing_key, manifest_bytes),
                           removable=True)
        # Last: only now is the directory a feed.
        atomic_write_bytes(root / feed.MANIFEST_NAME, manifest_bytes, removable=True)
    except OSError as error:
        raise FeedError("write_failed", f"写入 {root} 失败（{error}）",
                        f"writing {root} failed ({error})") from None
    if progress:
        progress(needed, needed)
    return ExportResult(directory=root, name=name, resources=len(document["resources"]),
                        blobs=len(blobs), bytes_total=sum(blobs.values()), bytes_written=needed,
                        blobs_kept=len(kept), stale_removed=len(stale))


def _export_blob(store: BlobStore, digest: str, root: Path, done: int, total: int,
                 progress: Progress | None) -> int:
    """Copy one blob into the feed, hashing as it goes: a blob that rotted in our own
    store must not be shipped under its old name."""
    target = root / feed.blob_path(digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{digest}.tmp")
    h = hashlib.sha256()
    try:
        with store.open(digest) as source, open(tmp, "wb") as out:
            while chunk := source.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != digest:
            raise FeedError("corrupt_store", f"本机存储中的文件 {digest} 已损坏，停止导出",
                            f"blob {digest} in this appliance's store is corrupt; export stopped")
        os.replace(tmp, target)
        fsync_directory(target.parent, removable=True)
    finally:
        tmp.unlink(missing_ok=True)
    return done


# ------------------------------------------------------------------- import

@dataclass
class ImportResult:
    name: str
    signer: str
    resources: int
    blobs: int
    blobs_present: int    # already in the store: not read at all
    blobs_resumed: int    # verified in an earlier, interrupted import of this feed
    blobs_fetched: int
    bytes_fetched: int


def staging_store(store: BlobStore) -> BlobStore:
    """Where import keeps verified blobs until the whole feed has verified."""
    return BlobStore(store.root / "import")


@contextmanager
def _import_lock(staging_root: Path) -> Iterator[None]:
    """One import at a time per home (the CLI and the server's peer fetches share it)."""
    staging_root.mkdir(parents=True, exist_ok=True)
    with open(staging_root / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def import_feed(catalog: Catalog, store: BlobStore, location: str | os.PathLike | FeedReader,
                trusted: dict[str, TrustedKey], *, select: list[str] | None = None,
                fetch_blobs: bool = True, progress: Progress | None = None,
                reserve_bytes: int = 0, session: requests.Session | None = None) -> ImportResult:
    """Import a feed from a directory, an http(s) URL or an open reader (module docstring).

    :param trusted: from :func:`cache.feed.trusted_keys`.
    :param select: only these resource ids (a package brings its parts).
    :param fetch_blobs: False writes the catalogue, with each file's declared SHA-256, and
        moves no bytes (a feed used as a catalogue upstream; the bytes come later through
        the fetch queue, from the feed or a LAN peer, matched by SHA-256).
    :param reserve_bytes: free disk space to keep (``disk_reserve_mb``).
    :raises FeedRefused: trust or integrity failure; nothing from the feed is kept.
    :raises FeedUnavailable: could not read; verified progress is kept for the next try.
    :raises FeedError: anything else the person must fix (no space, unknown ids).
    """
    reader = location if isinstance(location, FeedReader) else open_feed(location, session)
    try:
        manifest, signer = read_verified(reader, trusted)
        unlisted = reader.unlisted_blobs(set(manifest.blobs))
        if unlisted:
            raise FeedRefused(
                "unlisted_blob",
                f"资源包里有 {len(unlisted)} 个签名清单中没有的文件（如 {unlisted[0]}）："
                "它被改动过，或混入了别的资源包，拒绝导入",
                f"the pack holds {len(unlisted)} blob file(s) its signed manifest does not list "
                f"(e.g. {unlisted[0]}): it was altered or mixed with another pack; refused")
        if select:
            manifest = manifest.select(select)
        staging = staging_store(store)
        counts = (0, 0, 0, 0)
        with _import_lock(staging.root):
            if fetch_blobs:
                counts = _receive_blobs(manifest, reader, store, staging, progress, reserve_bytes)
            merge_into_catalog(catalog, manifest)
    finally:
        if reader is not location:
            reader.close()
    present, resumed, fetched, fetched_bytes = counts
    return ImportResult(name=manifest.name, signer=signer.name, resources=len(manifest.resources),
                        blobs=len(manifest.blobs), blobs_present=present, blobs_resumed=resumed,
                        blobs_fetched=fetched, bytes_fetched=fetched_bytes)


def _receive_blobs(manifest: Manifest, reader: FeedReader, store: BlobStore, staging: BlobStore,
                   progress: Progress | None, reserve_bytes: int) -> tuple[int, int, int, int]:
    staging.clean_temporary()
    wanted = {d: s for d, s in manifest.blobs.items() if not store.has(d)}
    # Staged blobs of some other feed's unfinished import: drop them, disk is precious.
    for digest in list(staging.digests()):
        if digest not in wanted:
            staging.path(digest).unlink(missing_ok=True)
    resumed = {d for d in wanted if staging.has(d) and staging.size(d) == wanted[d]}
    to_fetch = [d for d in sorted(wanted) if d not in resumed]
    total = sum(wanted[d] for d in to_fetch)
    free = disk.free_bytes(store.root)
    if total > free - reserve_bytes:
        raise FeedError("no_space", f"磁盘空间不足：需要 {total} 字节，保留 {reserve_bytes} 字节后"
                        f"只剩 {max(0, free - reserve_bytes)} 字节",
                        f"not enough disk space: {total} bytes needed, "
                        f"{max(0, free - reserve_bytes)} free above the reserve")
    done = 0
    try:
        for digest in to_fetch:
            done = _receive_one(reader, staging, digest, wanted[digest], done, total, progress)
    except FeedRefused:
        for digest in wanted:  # nothing from a refused feed is kept, staged or not
            staging.path(digest).unlink(missing_ok=True)
        raise
    for digest in sorted(wanted):  # all verified: now, and only now, they become visible
        final = store.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging.path(digest), final)
        fsync_directory(final.parent)
    if progress:
        progress(total, total)
    return len(manifest.blobs) - len(wanted), len(resumed), len(to_fetch), total


def _receive_one(reader: FeedReader, staging: BlobStore, digest: str, size: int, done: int,
                 total: int, progress: Progress | None) -> int:
    for _ in range(_RESTART_ATTEMPTS):
        with staging.writer(digest, size) as writer:
            report = (lambda: progress(done + writer.size, total)) if progress else (lambda: None)
            try:
                reader.copy_blob(digest, size, writer, report)
                writer.commit()
                return done + size
            except Restart:
                continue
            except BlobError as error:
                raise blob_mismatch(digest, str(error)) from None
    raise FeedUnavailable("unavailable", f"{digest} 多次从头重传仍未完成，请稍后再试",
                          f"{digest} had to start over too many times; try again later")


# ------------------------------------------------------ what the CLI calls

_SELECT_KEYS = {"stage": "stage", "学段": "stage", "grade": "grade", "年级": "grade",
                "subject": "subject", "学科": "subject", "edition": "edition", "版本": "edition",
                "volume": "volume", "册次": "volume"}


def parse_select(values: list[str] | tuple[str, ...]) -> Selection:
    """``--select`` values for ``shuqiao export``, adding up: ``all`` (everything cached, the
    default with no ``--select``), a resource id, or taxonomy filters such as
    ``grade=三年级,subject=数学`` (Chinese keys 学段/年级/学科/版本/册次 work too)."""
    if not values:
        return Selection(all_cached=True)
    ids: list[str] = []
    filters: dict[str, str] = {}
    all_cached = False
    for value in values:
        value = value.strip()
        if value.lower() in ("all", "cached", "全部"):
            all_cached = True
        elif "=" in value:
            for item in value.replace("，", ",").split(","):
                key, _, wanted = item.partition("=")
                name = _SELECT_KEYS.get(key.strip().lower()) or _SELECT_KEYS.get(key.strip())
                if name is None or not wanted.strip():
                    raise FeedError("bad_select", f"无法理解 --select {item!r}：可用 "
                                    "学段/年级/学科/版本/册次（stage/grade/…）=值",
                                    f"cannot understand --select {item!r}: use "
                                    "stage/grade/subject/edition/volume=value")
                if filters.get(name, wanted.strip()) != wanted.strip():
                    raise FeedError("bad_select", f"{key} 给了两个不同的值",
                                    f"two values for {key}")
                filters[name] = wanted.strip()
        elif re.fullmatch(r"[0-9a-f]{32}", value):
            ids.append(value)
        else:
            raise FeedError("bad_select", f"无法理解 --select {value!r}：应为 all、资源编号或"
                            " 年级=三年级 这样的分类",
                            f"cannot understand --select {value!r}: use all, a resource id, or "
                            "a filter such as grade=三年级")
    return Selection(ids=tuple(ids), all_cached=all_cached, **filters)


def feed_name_for(config, instance_id: str) -> str:
    """The ``feed_name`` setting, else the display name with a short instance id."""
    return config.feed_name.strip() or f"{config.display_name} ({instance_id[:6]})"


def trusted_keys_for(config) -> dict[str, TrustedKey]:
    """``feed_trusted_keys`` plus this appliance's own key (its own USB backups import)."""
    own = feed.public_bytes(feed.load_signing_key(config.home))
    return feed.trusted_keys(config.feed_trusted_keys, own=own)


def run_export(config, instance_id: str, directory: str | os.PathLike, selection: Selection,
               progress: Progress | None = None) -> ExportResult:
    """``shuqiao export DIR [--select …]``, signed with this appliance's key."""
    from . import Cache

    cache = Cache(config.home)
    with cache.catalog() as catalog:
        return export(catalog, cache.store, directory, select=selection,
                      signing_key=feed.load_signing_key(config.home),
                      name=feed_name_for(config, instance_id), progress=progress)


def run_import(config, location: str, *, select: list[str] | None = None,
               progress: Progress | None = None) -> ImportResult:
    """``shuqiao import DIR|URL``: trusted keys from the settings, the disk reserve kept."""
    from . import Cache

    cache = Cache(config.home)
    trusted = trusted_keys_for(config)
    with cache.catalog() as catalog:
        return import_feed(catalog, cache.store, location, trusted, select=select,
                           progress=progress, reserve_bytes=config.disk_reserve_mb * 1024 * 1024)


def feed_key_lines(config, instance_id: str) -> list[str]:
    """What ``shuqiao feed-key`` prints: this appliance's public key, ready to paste into
    another appliance's ``shuqiao.toml`` (the key is made on first need)."""
    public = feed.public_bytes(feed.load_signing_key(config.home))
    name = feed_name_for(config, instance_id).replace('"', "'")
    return [
        "本机资源包签名公钥 / this appliance's feed signing key (public):",
        f"  {feed.public_key_text(public)}",
        f"指纹 / fingerprint: {feed.fingerprint(public)}",
        "要让另一台书桥信任本机导出的资源包和局域网共享，在它的 shuqiao.toml 中加入：",
        "To let another appliance trust this one's packs and LAN feed, add to its shuqiao.toml:",
        "  [feed_trusted_keys]",
        f'  "{name}" = "{feed.public_key_text(public)}"',
    ]


def describe_import(result: ImportResult) -> str:
    return (f"已导入“{result.name}”（签名：{result.signer}）：{result.resources} 个资源，"
            f"{result.blobs} 个文件，新传输 {result.blobs_fetched} 个"
            f"（{result.bytes_fetched / 1e6:.1f} MB），"
            f"续传 {result.blobs_resumed} 个，已有 {result.blobs_present} 个 / imported "
            f"\"{result.name}\" (signed by {result.signer}): {result.resources} resources, "
            f"{result.blobs} files, {result.blobs_fetched} transferred "
            f"({result.bytes_fetched / 1e6:.1f} MB), {result.blobs_resumed} resumed, "
            f"{result.blobs_present} already here")


def describe_export(result: ExportResult) -> str:
    return (f"已导出“{result.name}”到 {result.directory}：{result.resources} 个资源，"
            f"{result.blobs} 个文件"
            f"（{result.bytes_total / 1e6:.1f} MB，新写入 {result.bytes_written / 1e6:.1f} MB）/ "
            f"exported \"{result.name}\" to {result.directory}: {result.resources} resources, "
            f"{result.blobs} files ({result.bytes_total / 1e6:.1f} MB, "
            f"{result.bytes_written / 1e6:.1f} MB written)")
