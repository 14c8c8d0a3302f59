"""The transfer engine against a real HTTP server with faults: resume (Range, If-Range,
200-instead-of-206, 416), verification (size, md5, sha256 across a resume, magic bytes,
error pages), failover, the 400-burst back-off, stalls, AUTH alerts, cancellation, prompt
stop, politeness limits, pieces of a file (FetchContext) and shortcuts that fetch nothing."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

from cache import Cache
from cache.fetcher import FetchService, sources_by_name
from cache.queue import FetchQueue
from cache.sources.base import ErrorKind
from cache.sources.plain import PlainHTTPSource, map_host
from cache.partial import BOOT_ID, Partial, looks_like_error_page, resume_dir
from cache.transfer import backoff_delay
from faulty_http import FaultyServer, add_resource, wait_until

MB = 1024 * 1024


class ThrottledSource(PlainHTTPSource):
    """Like the national platform: 400 means "too many requests", retry the same mirror."""

    def classify(self, status, body, error):
        return ErrorKind.RETRY_SAME if status == 400 else super().classify(status, body, error)


@pytest.fixture
def cache(tmp_path):
    cache = Cache(tmp_path / "home")
    cache.home.mkdir()
    cache.migrate()
    return cache


def service_for(cache, source=None, **options) -> FetchService:
    options.setdefault("workers", 2)
    options.setdefault("poll_seconds", 0.05)
    options.setdefault("backoff_base", 0.05)
    options.setdefault("retry_same_delays", (0.05, 0.1))
    options.setdefault("read_timeout", 5.0)
    return FetchService(cache, sources_by_name({}, source or PlainHTTPSource()), **options)


def wait_state(cache, rid, states=("cached",), timeout=30.0) -> dict:
    def check():
        with cache.catalog() as catalog:
            progress = FetchQueue(catalog.db).resource_progress(rid)
        return progress if progress["state"] in states else None
    return wait_until(check, timeout)


def blobs_verify(cache) -> list[str]:
    digests = list(cache.store.digests())
    assert all(cache.store.verify(d) for d in digests)
    return digests


def file_row(cache, rid) -> dict:
    with cache.catalog() as catalog:
        return catalog.get(rid)["files"][0]


# ------------------------------------------------------------------------ resume


def test_drops_resume_with_range_and_if_range(cache):
    data = os.urandom(4 * MB)
    with FaultyServer({"/a.bin": data}) as server:
        server.faults.drop_after = {"/a.bin": [MB, int(2.5 * MB)]}
        rid = add_resource(cache, server, ["/a.bin"])
        with service_for(cache) as service:
            service.enqueue([rid])
            wait_state(cache, rid)
        requests_seen = server.requests_for("/a.bin")
        assert [r.status for r in requests_seen] == [200, 206, 206]
        # Each resume asks from exactly where the bytes stopped: nothing is fetched twice.
        assert [r.range for r in requests_seen] == [None, f"bytes={MB}-",
                                                    f"bytes={int(2.5 * MB)}-"]
        assert server.body_bytes_sent == len(data)
    assert file_row(cache, rid)["sha256"] == hashlib.sha256(data).hexdigest()
    blobs_verify(cache)


def test_server_without_range_restarts_from_zero(cache):
    data = os.urandom(2 * MB)
    with FaultyServer({"/a.bin": data}) as server:
        server.faults.range = False
        server.faults.drop_after = {"/a.bin": [MB]}
        rid = add_resource(cache, server, ["/a.bin"])
        with service_for(cache) as service:
            service.enqueue([rid])
            wait_state(cache, rid)
        statuses = [r.status for r in server.requests_for("/a.bin")]
        assert statuses == [200, 200]  # the Range was ignored: the second 200 is whole
    assert file_row(cache, rid)["sha256"] == hashlib.sha256(data).hexdigest()
    assert cache.store.verify(file_row(cache, rid)["sha256"])


def _leave_partial(cache, rid, data: bytes, checkpoint: int, mirror: str = "", etag: str = "",
                   boot_id: str = ""):
    """What a killed process leaves: a partial file and its row (offset = last checkpoint,
    boot_id = the boot it was written in; '' stands for an earlier boot)."""
    with cache.catalog() as catalog:
        file_id = catalog.get(rid)["files"][0]["id"]
        FetchQueue(catalog.db).enqueue([file_id])
        directory = resume_dir(cache.store)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{file_id}.partial").write_bytes(data)
        with catalog.db.conn:
            catalog.db.execute(
                "INSERT INTO fetch_partials (name, file_id, offset, mirror, etag, boot_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [str(file_id), file_id, checkpoint, mirror, etag, boot_id])
    return file_id


def test_resume_after_restart_rehashes_the_prefix(cache):
    """sha256 and md5 cover the whole file though half of it came from a previous process."""
    data = os.urandom(3 * MB)
    with FaultyServer({"/a.bin": data}) as server:
        rid = add_resource(cache, server, ["/a.bin"])
        url = server.url("/a.bin")
        # md5 known: bytes past the checkpoint (page cache after kill -9) are kept.
        _leave_partial(cache, rid, data[:MB + 1000], MB, url, FaultyServer.etag_of(data))
        with service_for(cache) as service:
            service.wake()
            wait_state(cache, rid)
        (only,) = server.requests_for("/a.bin")
        assert only.range == f"bytes={MB + 1000}-" and only.status == 206
        assert server.body_bytes_sent == len(data) - MB - 1000
    assert file_row(cache, rid)["sha256"] == hashlib.sha256(data).hexdigest()
    blobs_verify(cache)


def test_same_boot_keeps_every_byte_even_without_a_digest(cache):
    """kill -9 cannot tear a file: in the same boot the bytes past the checkpoint count."""
    data = os.urandom(2 * MB)
    with FaultyServer({"/a.bin": data}) as server:
        rid = add_resource(cache, server, ["/a.bin"], with_md5=False)
        _leave_partial(cache, rid, data[:MB + 5000], MB, server.url("/a.bin"),
                       FaultyServer.etag_of(data), boot_id=BOOT_ID)
        with service_for(cache) as service:
            service.wake()
            wait_state(cache, rid)
        (only,) = server.requests_for("/a.bin")
        assert only.range == f"bytes={MB + 5000}-"
    assert file_row(cache, rid)["sha256"] == hashlib.sha256(data).hexdigest()


def test_after_a_reboot_without_a_digest_only_the_checkpoint_is_trusted(cache):
    data = os.urandom(2 * MB)
    with FaultyServer({"/a.bin": data}) as server:
        rid = add_resource(cache, server, ["/a.bin"], with_md5=False)
        url = server.url("/a.bin")
        torn = data[:MB] + b"\0" * 5000  # a power cut left junk past the checkpoint
        _leave_partial(cache, rid, torn, MB, url, FaultyServer.etag_of(data))
        with service_for(cache) as service:
            service.wake()
            wait_state(cache, rid)
        (only,) = server.requests_for("/a.bin")
        assert only.range == f"bytes={MB}-"
    assert file_row(cache, rid)["sha256"] == hashlib.sha256(data).hexdigest()


def test_if_range_sees_a_new_version_and_416_restarts(cache):
    old, new = os.urandom(MB), os.urandom(MB)
    with FaultyServer({"/a.bin": new, "/b.bin": new}) as server:
        # a.bin: the partial is from an older version (etag differs) → 200, restart at 0.
        rid_a = add_resource(cache, server, ["/a.bin"], with_md5=False, with_size=False)
        _leave_partial(cache, rid_a, old[:500_000], 500_000, server.url("/a.bin"),
                       FaultyServer.etag_of(old))
        # b.bin: a partial longer than the file → 416 → restart at 0.
        rid_b = add_resource(cache, server, ["/b.bin"], with_md5=False, with_size=False)
        _leave_partial(cache, rid_b, new + b"junk", len(new) + 4, server.url("/b.bin"),
                       FaultyServer.etag_of(new))
        with service_for(cache) as service:
            service.wake()
            wait_state(cache, rid_a)
            wait_state(cache, rid_b)
        assert [(r.range, r.status) for r in server.requests_for("/a.bin")] == [
            ("bytes=500000-", 200)]
        assert [r.status for r in server.requests_for("/b.bin")] == [416, 200]
    assert file_row(cache, rid_a)["sha256"] == hashlib.sha256(new).hexdigest()
    assert file_row(cache, rid_b)["sha256"] == hashlib.sha256(new).hexdigest()


def test_complete_partial_is_verified_without_downloading(cache):
    data = os.urandom(MB)
    with FaultyServer({"/a.bin": data}) as server:
        rid = add_resource(cache, server, ["/a.bin"])
        _leave_partial(cache, rid, data, 0)  # every byte there, never checkpointed
        with service_for(cache) as service:
            service.wake()
            wait_state(cache, rid)
        assert server.log == []


def test_verified_before_a_crash_is_adopted(cache):
    """Killed between writing the digest and marking the file cached: no refetch."""
    data = os.urandom(MB)
    digest = hashlib.sha256(data).hexdigest()
    with FaultyServer({"/a.bin": data}) as server:
        rid = add_resource(cache, server, ["/a.bin"])
        file_id = _leave_partial(cache, rid, b"", 0)
        with cache.store.writer() as writer:
            writer.write(data)
            writer.commit()
        with cache.catalog() as catalog, catalog.db.conn:
            catalog.db.execute("UPDATE fetch_partials SET verified_sha256 = ? WHERE file_id = ?",
                               [digest, file_id])
        with service_for(cache) as service:
            service.wake()
            wait_state(cache, rid)
        assert server.log == []
    assert file_row(cache, rid)["sha256"] == digest


def test_same_bytes_already_here_are_not_fetched(cache):
    data = os.urandom(300_000)
    with FaultyServer({"/a.bin": data, "/copy.bin": data}) as server:
        first = add_resource(cache, server, ["/a.bin"])
        with service_for(cache) as service:
            service.enqueue([first])
            wait_state(cache, first)
            second = add_resource(cache, server, ["/copy.bin"])  # same md5 and size
            service.enqueue([second])
            wait_state(cache, second)
        assert [e.path for e in server.log] == ["/a.bin"]


# -------------------------------------------------------------------- verification


def test_corrupt_bytes_are_refetched_and_never_stored(cache):
    data = os.urandom(MB)
    with FaultyServer({"/once.bin": data, "/always.bin": data[::-1]}) as server:
        server.faults.corrupt = {"/once.bin": 1, "/always.bin": 100}
        once = add_resource(cache, server, ["/once.bin"])
        always = add_resource(cache, server, ["/always.bin"])
        with service_for(cache) as service:
            service.enqueue([once, always])
            wait_state(cache, once)
            failed = wait_state(cache, always, ("failed",))
        assert "md5" in failed["errors"][0]
        assert len(server.requests_for("/always.bin")) == 3  # CORRUPT_ROUNDS
    assert blobs_verify(cache) == [hashlib.sha256(data).hexdigest()]
    assert file_row(cache, always)["state"] == "remote"


def test_error_pages_are_never_stored_as_content(cache):
    html = b"<html><head><title>401 Authorization Required</title></head></html>"
    xml = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>"
    with FaultyServer({"/book.pdf": html, "/video.bin": xml}) as server:
        pdf = add_resource(cache, server, ["/book.pdf"], with_md5=False, with_size=False)
        video = add_resource(cache, server, ["/video.bin"], with_md5=False, with_size=False,
                             mime="video/mp4")
        with service_for(cache) as service:
            service.enqueue([pdf, video])
            assert "error page" in wait_state(cache, pdf, ("failed",))["errors"][0]
            assert "error page" in wait_state(cache, video, ("failed",))["errors"][0]
    assert list(cache.store.digests()) == []
    assert looks_like_error_page(b'{"code":"CS/REQUIRE_SESSION"}', "application/pdf")
    assert not looks_like_error_page(b'{"code": 1}', "application/json")
    assert not looks_like_error_page(b"#EXTM3U", "application/vnd.apple.mpegurl")


# -------------------------------------------------------------- errors and mirrors


def test_failover_to_the_next_mirror(cache):
    data = os.urandom(500_000)
    with FaultyServer({"/a.bin": data}) as broken, FaultyServer({"/a.bin": data}) as good:
        broken.faults.status = {"/a.bin": [503] * 100}
        rid = add_resource(cache, broken, ["/a.bin"], mirrors=[good])
        with service_for(cache) as service:
            service.enqueue([rid])
            wait_state(cache, rid)
        assert [r.status for r in broken.log] == [503]
        assert [r.status for r in good.log] == [200]


def test_throttling_400_retries_the_same_mirror(cache):
    data = os.urandom(500_000)
    with FaultyServer({"/a.bin": data}) as first, FaultyServer({"/a.bin": data}) as second:
        first.faults.status = {"/a.bin": [400, 400]}
        rid = add_resource(cache, first, ["/a.bin"], mirrors=[second])
        with service_for(cache, ThrottledSource()) as service:
            service.enqueue([rid])
            wait_state(cache, rid)
        assert [r.status for r in first.log] == [400, 400, 200]
        assert second.log == []
        gaps = [b.time - a.time for a, b in zip(first.log, first.log[1:])]
        assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # the configured 1 s / 3 s, shortened


def test_not_found_everywhere_fails(cache):
    with FaultyServer({}) as a, FaultyServer({}) as b:
        a.files["/gone.bin"] = b"x"  # catalogued, then gone upstream
        rid = add_resource(cache, a, ["/gone.bin"], mirrors=[b])
        del a.files["/gone.bin"]
        with service_for(cache) as service:
            service.enqueue([rid])
            wait_state(cache, rid, ("failed",))
        with cache.catalog() as catalog:
            (entry,) = FetchQueue(catalog.db).status()["entries"]
        assert entry["error_kind"] == "not-found" and entry["attempts"] == 1


def test_5xx_backs_off_and_then_succeeds(cache):
    data = os.urandom(200_000)
    with FaultyServer({"/a.bin": data}) as server:
        server.faults.status = {"/a.bin": [502, 503, 500]}
        rid = add_resource(cache, server, ["/a.bin"])
        with service_for(cache, backoff_base=0.2) as service:
            service.enqueue([rid])
            wait_state(cache, rid)
        times = [r.time for r in server.log]
        assert [r.status for r in server.log] == [502, 503, 500, 200]
        # Exponential back-off: each gap about twice the previous (±50 % jitter).
        assert times[1] - times[0] >= 0.09 and times[3] - times[2] >= 0.35
    delays = [backoff_delay(n, 5, 1800) for n in range(1, 12)]
    assert 2.5 <= delays[0] <= 7.5 and max(delays) <= 1800 * 1.5


def test_auth_refusal_raises_an_alert_and_holds(cache):
    data = os.urandom(100_000)
    with FaultyServer({"/a.bin": data, "/b.bin": data[::-1]}) as server:
        server.faults.status = {"/a.bin": [401]}
        rid = add_resource(cache, server, ["/a.bin", "/b.bin"])
        source = PlainHTTPSource()
        with service_for(cache, source, workers=1) as service:
            service.enqueue([rid])
            wait_state(cache, rid, ("held",))
            with cache.catalog() as catalog:
                queue = FetchQueue(catalog.db)
                (alert,) = queue.alerts()
                assert alert["key"] == "auth:plain" and "log in again" in alert["message"]
                time.sleep(0.3)
                # The other file of that source is not tried while the alert is open.
                assert server.requests_for("/b.bin") == []
                # The source says auth works again (a new token): held rows resume.
                source.auth_ok = lambda: True
                wait_state(cache, rid)
                assert queue.alerts() == []


def test_stall_times_out_and_resumes(cache):
    data = os.urandom(2 * MB)
    with FaultyServer({"/a.bin": data}) as server:
        server.faults.stall_after = {"/a.bin": MB}
        server.faults.stall_seconds = 5
        rid = add_resource(cache, server, ["/a.bin"])
        with service_for(cache, read_timeout=0.5) as service:
            service.enqueue([rid])
            wait_state(cache, rid)
        assert [r.status for r in server.log] == [200, 206]
    assert file_row(cache, rid)["sha256"] == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------- cancel, stop, politeness


def test_cancel_stops_the_transfer_and_removes_partial_data(cache):
    data = os.urandom(4 * MB)
    with FaultyServer({"/a.bin": data, "/b.bin": data[:1000]}) as server:
        server.faults.rate = MB
        rid = add_resource(cache, server, ["/a.bin"])
        other = add_resource(cache, server, ["/b.bin"])
        with service_for(cache, workers=1) as service:
            service.enqueue([rid])
            wait_state(cache, rid, ("active",))
            wait_until(lambda: server.body_bytes_sent > 300_000)
            assert service.cancel([rid]) == 1
            service.enqueue([other])
            wait_state(cache, other)  # the worker is free again
            assert file_row(cache, rid)["state"] == "remote"
            wait_until(lambda: not any(resume_dir(cache.store).glob("*.partial")), 5)
        with cache.catalog() as catalog:
            assert catalog.db.execute("SELECT count(*) FROM fetch_partials").fetchone()[0] == 0
    assert server.body_bytes_sent < 3 * MB


def test_stop_is_prompt_and_the_next_start_resumes(cache):
    data = os.urandom(6 * MB)
    with FaultyServer({"/a.bin": data}) as server:
        server.faults.rate = 2 * MB
        rid = add_resource(cache, server, ["/a.bin"])
        service = service_for(cache).start()
        service.enqueue([rid])
        wait_until(lambda: server.body_bytes_sent > 2 * MB)
        started = time.monotonic()
        service.stop()
        assert time.monotonic() - started < 3.0 and not service.running
        with cache.catalog() as catalog:
            assert FetchQueue(catalog.db).progress(
                catalog.get(rid)["files"][0]["id"])["state"] == "waiting"
        with service_for(cache) as again:
            again.wake()
            wait_state(cache, rid)
        second = server.log[-1]
        assert second.status == 206 and int(second.range[6:-1]) >= MB
    assert file_row(cache, rid)["sha256"] == hashlib.sha256(data).hexdigest()


def test_one_process_fetches_per_home(cache):
    from cache.fetcher import FetchServiceBusy

    with service_for(cache):
        with pytest.raises(FetchServiceBusy):
            service_for(cache).start()
    with service_for(cache):
        pass  # the lock was released


def test_politeness_limits_per_source(cache):
    files = {f"/p{i}.bin": os.urandom(400_000) for i in range(6)}
    with FaultyServer(files) as server:
        server.faults.rate = 2 * MB
        in_flight, peak, lock = [0], [0], threading.Lock()
        original = server._send_body

        def counting(*args):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            try:
                return original(*args)
            finally:
                with lock:
                    in_flight[0] -= 1

        server._send_body = counting
        source = PlainHTTPSource("polite", max_transfers=2, min_request_interval=0.2)
        rid = add_resource(cache, server, sorted(files))
        with service_for(cache, source, workers=5) as service:
            service.enqueue([rid])
            wait_state(cache, rid)
        starts = sorted(e.time for e in server.log)
        assert len(starts) == 6
        # ≥ 0.2 s between request starts as the client sends them; arrival times at the
        # server jitter a little, so: no two nearly together, and 5 gaps span ≥ 1 s.
        assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.12
        assert starts[-1] - starts[0] >= 0.95
        assert peak[0] <= 2


def test_worker_survives_a_broken_source(cache):
    class Broken(PlainHTTPSource):
        def fetch_file(self, file, ctx):
            if file["name"] == "bad.bin":
                raise RuntimeError("adapter bug")
            return None

    with FaultyServer({"/bad.bin": b"x" * 1000, "/ok.bin": b"y" * 1000}) as server:
        bad = add_resource(cache, server, ["/bad.bin"])
        ok = add_resource(cache, server, ["/ok.bin"])
        with service_for(cache, Broken(), workers=1, backoff_base=30) as service:
            service.enqueue([bad, ok])
            wait_state(cache, ok)
            with cache.catalog() as catalog:
                progress = FetchQueue(catalog.db).resource_progress(bad)
        assert progress["state"] == "waiting" and "adapter bug" in progress["errors"][0]


# -------------------------------------------------- files fetched in pieces (HLS)


class PiecesSource(PlainHTTPSource):
    """Takes over a file as a playlist of pieces, as the HLS adapter does: a key read
    whole, N segments downloaded, a rewritten playlist stored."""

    def __init__(self, server: FaultyServer, count: int):
        super().__init__("pieces")
        self.server, self.count = server, count

    def fetch_file(self, file, ctx):
        key = ctx.get_bytes(self.server.url("/key"))
        lines = [f"#EXT-X-KEY:{key.decode()}"]
        for n in range(self.count):
            data = self.server.files[f"/seg{n}.ts"]
            digest = ctx.download(self.server.url(f"/seg{n}.ts"), expected_size=len(data),
                                  expected_md5=hashlib.md5(data).hexdigest())
            lines.append(f"/content/{digest}")
            ctx.progress(n + 1, self.count)
        return ctx.put_bytes("\n".join(lines).encode())


def test_pieces_done_are_never_fetched_again(cache):
    segments = {f"/seg{n}.ts": os.urandom(200_000) for n in range(5)}
    with FaultyServer({"/key": b"k" * 16, "/playlist.m3u8": b"#EXTM3U", **segments}) as server:
        server.faults.status = {"/seg3.ts": [503] * 3}  # one round fails on segment 3
        rid = add_resource(cache, server, ["/playlist.m3u8"], source="pieces",
                           mime="application/vnd.apple.mpegurl", with_md5=False, with_size=False)
        source = PiecesSource(server, 5)
        service = FetchService(cache, sources_by_name({"pieces": source}), workers=1,
                               poll_seconds=0.05, backoff_base=0.05, read_timeout=5)
        with service:
            service.enqueue([rid])
            wait_state(cache, rid)
        for n in range(5):
            assert sum(r.status == 200 for r in server.requests_for(f"/seg{n}.ts")) == 1
        with cache.catalog() as catalog:
            parts = catalog.db.execute("SELECT count(*) FROM file_parts").fetchone()[0]
    assert parts == 6  # five segments and the rewritten playlist
    playlist = cache.store.path(file_row(cache, rid)["sha256"]).read_bytes().decode()
    assert playlist.count("/content/") == 5
    blobs_verify(cache)


def test_host_mapping():
    hosts = {"r1-ndr.ykt.cbern.com.cn": "http://127.0.0.1:8123/mirror/"}
    assert map_host("https://r1-ndr.ykt.cbern.com.cn/edu_product/a.pdf?x=1", hosts) == \
        "http://127.0.0.1:8123/mirror/edu_product/a.pdf?x=1"
    assert map_host("https://other.example/a", hosts) == "https://other.example/a"


def test_partial_names_come_from_the_file(cache):
    with cache.catalog() as catalog:
        a = Partial(catalog.db, cache.store, 7)
        b = Partial(catalog.db, cache.store, 7, "https://x/seg1.ts")
    assert a.path.name == "7.partial" and b.path.name.startswith("7-")
    assert not a.path.name.endswith(".part")  # BlobStore.clean_temporary leaves them alone


# ------------------------------------------------------------ the platform stand-in


def test_against_the_platform_standin(cache):
    """Real platform shapes: absolute URLs on three mirrors mapped through the host map,
    non-ASCII paths, ETag = md5, a reset mid-body, a corrupt body, 5xx on one mirror.
    (The resume paths themselves are pinned down above with exact offsets.)"""
    import json

    from cache import FileSpec
    from standin import Standin

    with Standin(captured_dir=None, small=True) as s:
        books = [b for b in s.catalogue.textbooks
                 if b.has_pdf and not b.strict and b.storage == "mirrors"][:4]
        token = json.loads(json.loads(s.token_json())["value"])["access_token"]
        source = PlainHTTPSource("smartedu", hosts=s.hosts,
                                 headers={"Authorization": f"Bearer {token}"})
        with cache.catalog() as catalog:
            ids = [catalog.upsert_resource(
                source="smartedu", source_id=b.id, kind="textbook", title=b.title,
                files=[FileSpec(role="pdf", mime="application/pdf", size=b.pdf_size,
                                md5=b.pdf.md5, urls=tuple(b.pdf_urls))]) for b in books]
        s.faults.drop_after_bytes = books[0].pdf_size // 2
        s.faults.corrupt_next = 1
        s.faults.fail_5xx_next = 2
        s.faults.fail_5xx_hosts = ["r1-ndr-private.ykt.cbern.com.cn"]
        service = FetchService(cache, sources_by_name({"smartedu": source}), workers=2,
                               poll_seconds=0.05, backoff_base=0.05)
        with service:
            service.enqueue(ids)
            for rid in ids:
                wait_state(cache, rid)
        s.settle()
        pdfs = [e for e in s.log if e.path.endswith(".pdf")]
        faults = ",".join(e.fault for e in pdfs)
        assert "drop" in faults and "corrupt" in faults and "5xx" in faults
        assert any(e.host.startswith(("r2-", "r3-")) for e in pdfs)  # failed over past 503s
        assert {e.auth for e in pdfs if e.status in (200, 206)} == {"bearer"}
    with cache.catalog() as catalog:
        for rid, book in zip(ids, books):
            f = catalog.get(rid)["files"][0]
            assert cache.store.path(f["sha256"]).read_bytes() == s.file_bytes(book.pdf_urls[0])
    blobs_verify(cache)


# ------------------------------------------------------------- shuqiao fetch (CLI)


def test_fetch_resources_exit_codes_and_watching_a_running_server(cache):
    import io

    from cache.fetcher import fetch_resources
    from faulty_http import config_for

    data = os.urandom(500_000)
    with FaultyServer({"/a.bin": data, "/b.bin": data[::-1]}) as server:
        ok = add_resource(cache, server, ["/a.bin"])
        gone = add_resource(cache, server, ["/b.bin"])
        del server.files["/b.bin"]
        config = config_for(cache.home)
        said: list[str] = []
        out = io.StringIO()
        assert fetch_resources(config, ["f" * 32], wait=True, echo=said.append, stream=out) == 2
        assert "not found" in said[-1]
        assert fetch_resources(config, [gone], wait=True, echo=said.append, stream=out) == 7
        assert any("not-found" in line or "404" in line for line in said)
        # Without --wait it only queues; with a server fetching for this home, it watches.
        assert fetch_resources(config, [ok], echo=said.append) == 0
        with cache.catalog() as catalog:
            assert FetchQueue(catalog.db).resource_progress(ok)["state"] == "waiting"
        with service_for(cache):
            assert fetch_resources(config, [ok], wait=True, echo=said.append, stream=out) == 0
        assert "the running server is fetching" in " ".join(said)
        assert said[-1].endswith("all cached and verified")
        assert "1/1 files" in out.getvalue()


def test_bytes_from_a_lan_peer_do_not_count_against_the_wan_budget(tmp_path):
    """A rate cap and a monthly quota are about the metered link, not the school LAN."""
    from cache.budget import Budget

    class LanSource(PlainHTTPSource):
        lan = True

    data = os.urandom(400_000)
    with FaultyServer({"/lesson.bin": data}) as server:
        took = {}
        for name, source in (("wan", PlainHTTPSource()), ("lan", LanSource())):
            (tmp_path / name).mkdir()
            cache = Cache(tmp_path / name)
            cache.migrate()
            rid = add_resource(cache, server, ["/lesson.bin"])
            budget = Budget("00:00-24:00=100KB", monthly_quota_bytes=100 * 1024 * 1024)

            def cached(cache=cache, rid=rid):
                with cache.catalog() as catalog:
                    return FetchQueue(catalog.db).resource_progress(rid)["state"] == "cached"

            started = time.monotonic()
            with FetchService(cache, lambda file, s=source: [s], budget=budget, workers=1,
                              poll_seconds=0.05) as service:
                service.enqueue([rid])
                wait_until(cached, timeout=30)
            took[name] = (time.monotonic() - started, budget.state()["month_used"])
    assert took["wan"][0] > 2.5 and took["wan"][1] >= len(data)   # ~4 s at 100 KB/s
    assert took["lan"][0] < 2.5 and took["lan"][1] == 0
