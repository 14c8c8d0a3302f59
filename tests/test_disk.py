"""Disk: the free-space reserve (on a real, small tmpfs), the storage quota with LRU
eviction, pins, content that may never be evicted, and last-use tracking."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess

import pytest

import cache.partial
import cache.transfer
from cache import Cache, FileSpec
from cache import disk
from cache.disk import DiskGuard, evict, free_bytes, pin, storage_used, touch, unpin
from cache.fetcher import FetchService, sources_by_name
from cache.queue import FetchQueue
from faulty_http import FaultyServer, add_resource, wait_until

MB = 1024 * 1024


def service(cache, guard, **options) -> FetchService:
    options.setdefault("workers", 1)
    return FetchService(cache, sources_by_name({}), disk=guard, poll_seconds=0.05,
                        backoff_base=0.05, disk_retry_seconds=0.2, **options)


def progress(cache, rid) -> dict:
    with cache.catalog() as catalog:
        return FetchQueue(catalog.db).resource_progress(rid)


def wait_state(cache, rid, state="cached", timeout=30):
    return wait_until(lambda: progress(cache, rid)["state"] == state, timeout)


def set_last_use(cache, stamps: dict[str, float]) -> None:
    with cache.catalog() as catalog:
        with catalog.db.conn:
            for digest, stamp in stamps.items():
                catalog.db.execute("UPDATE blob_use SET last_used = ? WHERE sha256 = ?",
                                   [stamp, digest])


def digest_of(cache, rid) -> str:
    with cache.catalog() as catalog:
        return catalog.get(rid)["files"][0]["sha256"]


@pytest.fixture
def files():
    return {f"/{name}.bin": os.urandom(MB) for name in "abcdef"}


def test_quota_evicts_least_recently_used_unpinned(tmp_path, files):
    cache = Cache(tmp_path)
    cache.migrate()
    with FaultyServer(files) as server:
        rids = {name: add_resource(cache, server, [f"/{name}.bin"]) for name in "abcdef"}
        guard = DiskGuard(cache.store, 0, quota_bytes=int(3.5 * MB))
        with service(cache, guard) as svc:
            for name in "abc":
                svc.enqueue([rids[name]])
                wait_state(cache, rids[name])
            # Last uses: b is the oldest, then c, then a (served a moment ago).
            set_last_use(cache, {digest_of(cache, rids["a"]): 300,
                                 digest_of(cache, rids["b"]): 100,
                                 digest_of(cache, rids["c"]): 200})
            old_b = digest_of(cache, rids["b"])
            svc.enqueue([rids["d"]])
            wait_state(cache, rids["d"])
            assert progress(cache, rids["b"])["state"] == "remote"
            assert not cache.store.has(old_b)
            assert [progress(cache, rids[n])["state"] for n in "acd"] == ["cached"] * 3
            # Pinned content stays even when it is the oldest.
            with cache.catalog() as catalog:
                assert pin(catalog.db, [rids["c"]], "admin") == 1
            svc.enqueue([rids["e"]])
            wait_state(cache, rids["e"])
            assert progress(cache, rids["c"])["state"] == "cached"
            assert progress(cache, rids["a"])["state"] == "remote"  # next oldest unpinned
            # An evicted file can be fetched again (and is checked against its old sha256).
            svc.enqueue([rids["b"]])
            wait_state(cache, rids["b"])
            assert digest_of(cache, rids["b"]) == old_b
        with cache.catalog() as catalog:
            assert storage_used(catalog.db) <= 3.5 * MB
            assert disk.pinned(catalog.db)[0]["resource_id"] == rids["c"]
            assert unpin(catalog.db, [rids["c"]]) == 1
    for digest in cache.store.digests():
        assert cache.store.verify(digest)


def test_never_evicted_uploads_queued_and_in_progress(tmp_path):
    cache = Cache(tmp_path)
    cache.migrate()
    data = os.urandom(MB)
    shared = hashlib.sha256(data).hexdigest()
    with cache.catalog() as catalog:
        upload = catalog.add_uploaded(io.BytesIO(os.urandom(MB)), name="mine.pdf", title="自编")
        rid = catalog.upsert_resource(
            source="plain", source_id="x", kind="video", title="x",
            files=[FileSpec(role="video", mime="video/mp4", size=MB, sha256=shared,
                            state="cached", urls=("http://127.0.0.1:9/x",))])
        twin = catalog.upsert_resource(
            source="plain", source_id="twin", kind="video", title="twin",
            files=[FileSpec(role="video", mime="video/mp4", size=MB, sha256=shared,
                            urls=("http://127.0.0.1:9/twin",))])
        cache.store.put_stream(io.BytesIO(data))
        FetchQueue(catalog.db).enqueue([twin])  # wants the same bytes
        # Everything is evictable by age; ask for far more than there is.
        freed = evict(catalog.db, cache.store, 100 * MB)
        assert freed == 0
        assert catalog.get(upload)["files"][0]["state"] == "cached"   # no URL: kept
        assert catalog.get(rid)["files"][0]["state"] == "remote"      # evicted…
        assert cache.store.has(shared)                                # …but a queued file needs its blob
        FetchQueue(catalog.db).cancel([twin])
        catalog.db.execute("UPDATE files SET state = 'cached' WHERE resource_id = ?", [rid])
        catalog.db.conn.commit()
        assert evict(catalog.db, cache.store, 1) == MB
        assert not cache.store.has(shared)


def test_touch_is_batched(tmp_path):
    cache = Cache(tmp_path)
    cache.migrate()
    with cache.catalog() as catalog:
        rid = catalog.add_uploaded(io.BytesIO(b"x" * 100), name="a.txt", title="a")
        digest = catalog.get(rid)["files"][0]["sha256"]
        disk.flush_touches(catalog.db)
        last = lambda: catalog.db.execute(  # noqa: E731
            "SELECT last_used FROM blob_use WHERE sha256 = ?", [digest]).fetchone()
        assert last() is None  # uploads made before 0002 are backfilled; this one is new
        assert touch(catalog.db, digest, now=1000.0) is False  # noted, not written yet
        assert last() is None
        assert touch(catalog.db, digest, now=2000.0, force=True) is True
        assert last() == (2000.0,)
        touch(catalog.db, digest, now=1500.0, force=True)  # never goes backwards
        assert last() == (2000.0,)


@pytest.fixture
def small_disk(tmp_path):
    """A real 16 MB file system (tmpfs): the reserve is tested against real free space."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_reserve_is_kept_before_and_during_fetches(small_disk, monkeypatch):
    monkeypatch.setattr(cache.transfer, "DISK_CHECK_BYTES", MB)  # check every MB here
    files = {"/a0.bin": os.urandom(3 * MB), "/a1.bin": os.urandom(3 * MB),
             "/b.bin": os.urandom(3 * MB), "/c.bin": os.urandom(8 * MB),
             "/d.bin": os.urandom(3 * MB)}
    home = small_disk / "home"
    home.mkdir()
    store_cache = Cache(home)
    store_cache.migrate()
    reserve = 6 * MB
    guard = DiskGuard(store_cache.store, reserve)
    alerts = lambda: [a["key"] for a in svc.status()["queue"]["alerts"]]  # noqa: E731
    with FaultyServer(files) as server:
        a = add_resource(store_cache, server, ["/a0.bin", "/a1.bin"])
        b = add_resource(store_cache, server, ["/b.bin"])
        c = add_resource(store_cache, server, ["/c.bin"], with_size=False)
        d = add_resource(store_cache, server, ["/d.bin"])
        with store_cache.catalog() as catalog:
            pin(catalog.db, [a])  # nothing may be evicted to make room
        with service(store_cache, guard) as svc:
            svc.enqueue([a])
            wait_state(store_cache, a)                    # 16 MB - 6 MB: about 10 MB free
            # Size unknown: only the checks while writing can stop it, before the reserve.
            svc.enqueue([c])
            wait_until(lambda: "disk" in alerts(), 20)
            assert free_bytes(home) >= reserve
            assert "disk_reserve_mb" in progress(store_cache, c)["errors"][0]
            # Size known: refused before a byte is fetched.
            svc.cancel([c])
            wait_until(lambda: not any(cache.partial.resume_dir(store_cache.store).glob("*")))
            sent = server.body_bytes_sent
            with store_cache.catalog() as catalog:
                pin(catalog.db, [b])
            svc.enqueue([b])
            wait_state(store_cache, b)                   # fits: 10 - 3 > 6
            svc.enqueue([d])
            wait_until(lambda: "disk" in alerts(), 20)
            assert server.body_bytes_sent == sent + 3 * MB  # b only; nothing of d
            assert progress(store_cache, d)["state"] == "waiting"
            # The admin unpins a: eviction makes room for d and the alert clears.
            with store_cache.catalog() as catalog:
                unpin(catalog.db, [a])
            wait_state(store_cache, d)
            wait_until(lambda: not alerts())
            assert progress(store_cache, a)["files_cached"] == 1
            assert progress(store_cache, b)["state"] == "cached"
        assert free_bytes(home) >= reserve
    for digest in store_cache.store.digests():
        assert store_cache.store.verify(digest)
