"""Export and import of signed pack feeds (cache/pack.py): from a directory (a USB drive), from
a real nginx, and from a flaky web server; tampered packs; resume; kill -9 during import."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from cache import Cache, feed, pack
from cache.feed import FeedError, FeedRefused, FeedUnavailable
from cache.sample import load_sample_library

ROOT = Path(__file__).resolve().parent.parent
NGINX = Path("/usr/sbin/nginx")
CJK = re.compile(r"[\u4e00-\u9fff]")
needs_nginx = pytest.mark.skipif(not NGINX.exists(), reason="Debian nginx-light is not installed")


# ------------------------------------------------------------------------- helpers

def new_cache(home: Path) -> Cache:
    home.mkdir(parents=True, exist_ok=True)
    cache = Cache(home)
    cache.migrate()
    return cache


def trusted_for(key) -> dict:
    return feed.trusted_keys({"城关小学": feed.public_key_text(feed.public_bytes(key))})


def import_into(cache: Cache, location, trusted, **options) -> pack.ImportResult:
    with cache.catalog() as catalog:
        return pack.import_feed(catalog, cache.store, location, trusted, **options)


def export_from(cache: Cache, key, directory, **selection) -> pack.ExportResult:
    selection = selection or {"all_cached": True}
    with cache.catalog() as catalog:
        return pack.export(catalog, cache.store, directory, select=pack.Selection(**selection),
                           signing_key=key, name="城关小学")


def assert_nothing_stored(cache: Cache) -> None:
    assert list(cache.store.digests()) == []
    assert list(pack.staging_store(cache.store).digests()) == []
    with cache.catalog() as catalog:
        assert catalog.counts()["resources"] == 0 and catalog.counts()["parts"] == 0
        feeds = catalog.db.execute("SELECT count(*) FROM sources WHERE kind = 'feed'").fetchone()
        assert feeds[0] == 0


def assert_consistent(cache: Cache) -> None:
    """The database is sound, every visible blob is what its name says, every cached file
    has its blob."""
    conn = sqlite3.connect(cache.db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        cached = [r[0] for r in conn.execute(
            "SELECT sha256 FROM files WHERE state = 'cached'").fetchall()]
    finally:
        conn.close()
    for digest in cache.store.digests():
        assert cache.store.verify(digest), digest
    assert all(cache.store.has(d) for d in cached)


def bilingual(error: Exception) -> bool:
    return bool(CJK.search(str(error))) and bool(re.search(r"[A-Za-z]{4,}", str(error)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def origin(tmp_path):
    """Appliance A: the sample library cached, its signing key."""
    cache = new_cache(tmp_path / "a")
    with cache.catalog() as catalog:
        ids = load_sample_library(catalog)
    key = feed.load_signing_key(cache.home)
    return SimpleNamespace(cache=cache, key=key, trusted=trusted_for(key), ids=ids)


@pytest.fixture
def packed(origin, tmp_path):
    """A's whole cache exported to a directory (a USB drive)."""
    directory = tmp_path / "usb" / "shuqiao-pack"
    result = export_from(origin.cache, origin.key, directory)
    return SimpleNamespace(dir=directory, result=result, **vars(origin))


# ------------------------------------------------------------- export and import

def test_usb_round_trip_brings_every_resource_and_byte(packed, tmp_path):
    assert packed.result.resources == 13 and packed.result.blobs == 20
    assert (packed.dir / "README.txt").read_text(encoding="utf-8").startswith("书桥资源包")
    target = new_cache(tmp_path / "b")
    result = import_into(target, packed.dir, packed.trusted)
    assert (result.name, result.signer) == ("城关小学", "城关小学")
    assert result.blobs_fetched == 20 and result.bytes_fetched == packed.result.bytes_total
    with packed.cache.catalog() as a, target.catalog() as b:
        assert b.counts() == a.counts()
        for rid in packed.ids:  # the same ids on both appliances: one lesson, not two
            mine, theirs = a.get(rid), b.get(rid)
            assert theirs["title"] == mine["title"] and theirs["ready"]
            assert [len(x["parts"]) for x in theirs["lessons"]] == \
                   [len(x["parts"]) for x in mine["lessons"]]
            assert theirs["extra"]["feed"] == "城关小学"
        source = b.db.execute("SELECT kind FROM sources WHERE name = 'feed:城关小学'").fetchone()
        assert source == ("feed",)
    assert_consistent(target)
    assert list(pack.staging_store(target.store).digests()) == []
    again = import_into(target, packed.dir, packed.trusted)
    assert again.blobs_present == 20 and again.blobs_fetched == 0


def test_import_of_a_selection_and_of_unknown_ids(packed, tmp_path):
    target = new_cache(tmp_path / "b")
    with packed.cache.catalog() as a:
        package = next(r for r in packed.ids if a.get(r)["kind"] == "lesson_package")
        files = [f["sha256"] for p in [a.get(package)] + [
            part for lesson in a.get(package)["lessons"] for part in lesson["parts"]]
            for f in p["files"]]
    result = import_into(target, packed.dir, packed.trusted, select=[package])
    assert result.resources == 1 + 5 and set(target.store.digests()) == set(files)
    with pytest.raises(FeedError, match="f" * 32):
        import_into(target, packed.dir, packed.trusted, select=["f" * 32])


def test_export_selection_progress_and_reexport_into_the_same_drive(packed):
    calls = []
    with packed.cache.catalog() as catalog:
        result = pack.export(catalog, packed.cache.store, packed.dir,
                             select=pack.Selection(subject="语文"), signing_key=packed.key,
                             name="城关小学", progress=lambda d, t: calls.append((d, t)))
    with packed.cache.catalog() as catalog:  # the 语文 textbook, the 语文 package and its parts
        chinese = catalog.db.execute("SELECT count(*) FROM resources WHERE subject = '语文'"
                                     ).fetchone()[0]
    assert chinese > 2 and result.resources == chinese
    assert result.stale_removed == 20 - result.blobs  # everything else left the drive
    assert result.blobs_kept == result.blobs and result.bytes_written == 0
    assert len(list((packed.dir / "blobs").rglob("*/*/*"))) == result.blobs
    assert calls[-1] == (0, 0)
    with pytest.raises(FeedError) as caught:
        export_from(packed.cache, packed.key, packed.dir, subject="俄语")
    assert caught.value.reason == "nothing_selected" and bilingual(caught.value)
    with pytest.raises(FeedError):
        export_from(packed.cache, packed.key, packed.dir, ids=())  # empty selection

    fresh = packed.dir.parent / "second"
    calls.clear()
    with packed.cache.catalog() as catalog:
        pack.export(catalog, packed.cache.store, fresh, select=pack.Selection(all_cached=True),
                    signing_key=packed.key, name="城关小学",
                    progress=lambda d, t: calls.append((d, t)))
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and calls[-1][0] == calls[-1][1] == packed.result.bytes_total


def test_export_refuses_to_ship_a_blob_that_rotted_in_our_store(packed, tmp_path):
    digest = max(packed.cache.store.digests())
    path = packed.cache.store.path(digest)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(FeedError) as caught:
        export_from(packed.cache, packed.key, tmp_path / "other")
    assert caught.value.reason == "corrupt_store"
    assert not (tmp_path / "other" / feed.MANIFEST_NAME).exists()
    assert not (tmp_path / "other" / feed.blob_path(digest)).exists()


def test_import_progress_and_disk_reserve(packed, tmp_path):
    target = new_cache(tmp_path / "b")
    with pytest.raises(FeedError) as caught:
        import_into(target, packed.dir, packed.trusted, reserve_bytes=10**18)
    assert caught.value.reason == "no_space" and bilingual(caught.value)
    assert_nothing_stored(target)
    calls = []
    import_into(target, packed.dir, packed.trusted, progress=lambda d, t: calls.append((d, t)))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (packed.result.bytes_total, packed.result.bytes_total)


def test_import_attaches_bytes_to_resources_already_catalogued(packed, tmp_path):
    """A lesson this appliance knows from the platform (remote, with an MD5, queued) becomes
    cached in place: same file rows, its upstream URLs kept, its queue rows done."""
    from cache.catalog import FileSpec
    from cache.queue import FetchQueue

    target = new_cache(tmp_path / "b")
    with packed.cache.catalog() as a:
        textbook = a.get(packed.ids[0])
    with target.catalog() as b:
        pdf = next(f for f in textbook["files"] if f["role"] == "source")
        md5 = hashlib.md5(packed.cache.store.path(pdf["sha256"]).read_bytes()).hexdigest()
        b.upsert_resource(source="sample", source_id="math-3a", kind="textbook",
                          title="数学 三年级 上册（平台）", stage="小学", files=[
                              FileSpec(role="source", mime="application/pdf", name="教材.pdf",
                                       size=pdf["size"], md5=md5,
                                       urls=("https://r1-ndr.ykt.cbern.com.cn/x.pdf",))])
        FetchQueue(b.db).enqueue([packed.ids[0]])
        before = b.get(packed.ids[0])["files"]
    import_into(target, packed.dir, packed.trusted)
    with target.catalog() as b:
        after = b.get(packed.ids[0])
        assert after["title"] == "数学 三年级 上册（平台）"  # our metadata stays
        platform = next(f for f in after["files"] if f["role"] == "source")
        assert platform["id"] == before[0]["id"] and platform["state"] == "cached"
        assert platform["sha256"] == pdf["sha256"] and platform["md5"] == md5
        assert platform["urls"] == ["https://r1-ndr.ykt.cbern.com.cn/x.pdf"]
        assert {f["role"] for f in after["files"]} == {"source", "cover"}  # the cover added
        assert b.db.execute("SELECT count(*) FROM fetch_queue").fetchone()[0] == 0
    assert_consistent(target)


def test_files_in_pieces_travel_with_their_pieces(origin, tmp_path):
    """An HLS rendition is a playlist blob plus segment blobs (file_parts): a pack carries
    them all and the receiving appliance knows the pieces."""
    from cache.catalog import FileSpec

    segments = [os.urandom(188 * 50) for _ in range(3)]
    with origin.cache.catalog() as catalog:
        digests = [catalog.store.put_stream(io.BytesIO(s)) for s in segments]
        playlist = "#EXTM3U\n" + "".join(f"#EXTINF:4,\n/content/{d}\n" for d in digests)
        main = catalog.store.put_stream(io.BytesIO(playlist.encode()))
        rid = catalog.upsert_resource(
            source="smartedu", source_id="video-1", kind="video", title="微课视频",
            files=[FileSpec(role="video-720p", mime="application/vnd.apple.mpegurl",
                            size=len(playlist), sha256=main, state="cached",
                            urls=("https://r1-ndr.ykt.cbern.com.cn/v/720p.m3u8",))])
        file_id = catalog.db.execute("SELECT id FROM files WHERE resource_id = ?",
                                     [rid]).fetchone()[0]
        for seq, (digest, data) in enumerate(zip(digests, segments)):
            catalog.db.execute("INSERT INTO file_parts VALUES (?, ?, ?, ?, ?)",
                               [file_id, f"https://x/{seq}.ts", seq, len(data), digest])
        catalog.db.conn.commit()
    export_from(origin.cache, origin.key, tmp_path / "video", ids=(rid,))
    target = new_cache(tmp_path / "b")
    import_into(target, tmp_path / "video", origin.trusted)
    assert set(target.store.digests()) == {main, *digests}
    with target.catalog() as catalog:
        parts = catalog.db.execute("SELECT url, seq, size, sha256 FROM file_parts").fetchall()
        assert sorted(p[3] for p in parts) == sorted(digests)
        assert catalog.get(rid)["ready"]
    # a segment missing on the origin: the video is listed, but without bytes
    origin.cache.store.path(digests[1]).unlink()
    with origin.cache.catalog() as catalog:
        document = pack.build_manifest(catalog, name="x", selection=pack.Selection(ids=(rid,)))
    assert "sha256" not in document["resources"][0]["files"][0] and document["blobs"] == []


# --------------------------------------------------------------------- tampering

def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _resign(packed, mutate, key=None) -> None:
    document = json.loads((packed.dir / feed.MANIFEST_NAME).read_bytes())
    mutate(document)
    body = feed.canonical_bytes(document)
    (packed.dir / feed.MANIFEST_NAME).write_bytes(body)
    (packed.dir / feed.SIGNATURE_NAME).write_bytes(feed.sign(key or packed.key, body))


def _last_blob(packed) -> Path:
    # the blob imported last, so that others were already staged when it fails
    return packed.dir / feed.blob_path(max(json.loads(
        (packed.dir / feed.MANIFEST_NAME).read_bytes())["blobs"],
        key=lambda b: b["sha256"])["sha256"])


def _tamper(packed, how: str, tmp_path: Path) -> None:
    manifest, signature = packed.dir / feed.MANIFEST_NAME, packed.dir / feed.SIGNATURE_NAME
    if how == "changed-blob-byte":
        _flip_a_byte(_last_blob(packed))
    elif how == "truncated-blob":
        path = _last_blob(packed)
        path.write_bytes(path.read_bytes()[:-1])
    elif how == "missing-blob":
        _last_blob(packed).unlink()
    elif how == "extra-blob":
        data = os.urandom(1000)
        digest = hashlib.sha256(data).hexdigest()
        (packed.dir / feed.blob_path(digest)).parent.mkdir(parents=True, exist_ok=True)
        (packed.dir / feed.blob_path(digest)).write_bytes(data)
    elif how == "changed-manifest":
        manifest.write_bytes(manifest.read_bytes().replace("三年级".encode(), "四年级".encode(), 1))
    elif how == "swapped-signature":
        other = feed.canonical_bytes({**json.loads(manifest.read_bytes()), "name": "另一个包"})
        signature.write_bytes(feed.sign(packed.key, other))
    elif how == "unsigned":
        signature.unlink()
    elif how == "unknown-key":
        stranger = feed.load_signing_key(tmp_path / "stranger")
        signature.write_bytes(feed.sign(stranger, manifest.read_bytes()))
    elif how == "half-written-export":
        manifest.unlink()
    elif how == "newer-format":
        _resign(packed, lambda d: d.update(version=feed.VERSION + 1))
    elif how == "path-in-manifest":
        def mutate(document):
            document["resources"][0]["files"][0]["sha256"] = "../../../etc/passwd"
        _resign(packed, mutate)
    elif how == "size-in-manifest":
        def mutate(document):
            document["blobs"][-1]["size"] += 1
            for r in document["resources"]:
                for f in r["files"]:
                    if f.get("sha256") == document["blobs"][-1]["sha256"]:
                        f["size"] += 1
        _resign(packed, mutate)
    else:
        raise AssertionError(how)


TAMPERING = {
    "changed-blob-byte": "blob_mismatch", "truncated-blob": "blob_mismatch",
    "missing-blob": "missing_blob", "extra-blob": "unlisted_blob",
    "changed-manifest": "bad_signature", "swapped-signature": "bad_signature",
    "unsigned": "unsigned", "unknown-key": "unknown_key", "half-written-export": "no_manifest",
    "newer-format": "newer_format", "path-in-manifest": "bad_manifest",
    "size-in-manifest": "blob_mismatch",
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_a_tampered_pack_is_refused_and_stores_nothing(packed, tmp_path, how):
    _tamper(packed, how, tmp_path)
    target = new_cache(tmp_path / "b")
    with pytest.raises(FeedRefused) as caught:
        import_into(target, packed.dir, packed.trusted)
    assert caught.value.reason == TAMPERING[how]
    assert bilingual(caught.value), str(caught.value)
    assert_nothing_stored(target)


def test_cli_style_message_for_a_tampered_pack(packed, tmp_path):
    _tamper(packed, "changed-blob-byte", tmp_path)
    target = new_cache(tmp_path / "b")
    with pytest.raises(FeedRefused) as caught:
        import_into(target, packed.dir, packed.trusted)
    text = str(caught.value)
    assert "拒绝导入" in text and "refused" in text and "altered" in text
    assert _last_blob(packed).name in text


# ------------------------------------------------------------------ over HTTP

class Nginx:
    """A real nginx serving ``root`` on 127.0.0.1, with its own config, prefix and pid."""

    def __init__(self, root: Path, workdir: Path, limit_rate: str | None = None):
        self.root, self.workdir, self.limit_rate = root, workdir, limit_rate
        self.process = None

    def __enter__(self) -> "Nginx":
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        for attempt in range(3):  # the port may be taken between picking and binding
            self.port = free_port()
            w = self.workdir
            (w / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {w}/access.log;
    client_body_temp_path {w}/tmp/body;
    proxy_temp_path {w}/tmp/proxy;
    fastcgi_temp_path {w}/tmp/fastcgi;
    uwsgi_temp_path {w}/tmp/uwsgi;
    scgi_temp_path {w}/tmp/scgi;
    types {{ application/json json; text/plain txt sig; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        location / {{ {f"limit_rate {self.limit_rate};" if self.limit_rate else ""} }}
    }}
}}
""")
            self.process = subprocess.Popen(
                [str(NGINX), "-p", str(w), "-c", str(w / "nginx.conf"), "-e", str(w / "error.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    self.url = f"http://127.0.0.1:{self.port}"
                    return self
                except OSError:
                    time.sleep(0.05)
            self._stop()
        raise AssertionError("nginx did not start: " + (self.workdir / "error.log").read_text())

    def _stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def __exit__(self, *exc) -> None:
        self._stop()

    def requests(self) -> list[tuple[str, int, str]]:
        """(path, status) per GET in the access log."""
        lines = (self.workdir / "access.log").read_text().splitlines()
        return [(m[1], int(m[2])) for m in
                (re.search(r'"GET (\S+) HTTP/1.1" (\d+)', line) for line in lines) if m]


@needs_nginx
def test_feed_on_a_real_nginx(packed, tmp_path):
    with Nginx(packed.dir.parent, tmp_path / "nginx") as nginx:
        url = f"{nginx.url}/{packed.dir.name}/"
        target = new_cache(tmp_path / "b")
        result = import_into(target, url, packed.trusted)
        assert result.blobs_fetched == 20
        assert_consistent(target)
        seen = nginx.requests()
        assert (f"/{packed.dir.name}/manifest.json", 200) in seen
        assert (f"/{packed.dir.name}/manifest.json.sig", 200) in seen
        assert sum(1 for path, status in seen if "/blobs/sha256/" in path and status == 200) == 20
        # the URL of the manifest file itself works too; nothing is fetched again
        again = import_into(target, url + "manifest.json", packed.trusted)
        assert again.blobs_present == 20 and again.blobs_fetched == 0

        # a tampered blob on the server: refused, nothing stored
        _flip_a_byte(_last_blob(packed))
        other = new_cache(tmp_path / "c")
        with pytest.raises(FeedRefused) as caught:
            import_into(other, url, packed.trusted)
        assert caught.value.reason == "blob_mismatch"
        assert_nothing_stored(other)
        # and a feed that is not there at all
        with pytest.raises(FeedRefused) as caught:
            import_into(other, f"{nginx.url}/nothing-here/", packed.trusted)
        assert caught.value.reason == "no_manifest"


@needs_nginx
def test_a_feed_as_catalogue_upstream_with_files_through_the_fetch_queue(packed, tmp_path):
    """fetch_blobs=False: the catalogue and each file's SHA-256 come from the feed; the bytes
    come later through the real fetch engine, from the feed (FeedSource)."""
    from cache.fetcher import FetchService
    from cache.queue import FetchQueue
    from cache.sources.feed import FeedSource

    with Nginx(packed.dir.parent, tmp_path / "nginx") as nginx:
        source = FeedSource("county", f"{nginx.url}/{packed.dir.name}/", packed.trusted)
        target = new_cache(tmp_path / "b")
        try:
            with target.catalog() as catalog:
                result = source.update_catalog(catalog, target.store)
                assert result.blobs_fetched == 0 and list(target.store.digests()) == []
                rows = catalog.db.execute("SELECT state, sha256 FROM files").fetchall()
                assert {r[0] for r in rows} == {"remote"} and all(r[1] for r in rows)
                digest = rows[0][1]
                assert source.find_blob(digest) == f"{nginx.url}/{packed.dir.name}/" + \
                    feed.blob_path(digest)
                assert source.find_blob("0" * 64) is None
                FetchQueue(catalog.db).enqueue(packed.ids)
            with FetchService(target, lambda file: [source], workers=2, poll_seconds=0.2):
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    with target.catalog() as catalog:
                        if catalog.counts()["files_cached"] == 20:
                            break
                    time.sleep(0.1)
            with target.catalog() as catalog:
                assert catalog.counts()["files_cached"] == 20
            assert_consistent(target)
        finally:
            source.close()


class FlakyFeedServer:
    """A small web server for a feed directory that misbehaves on purpose: it drops the
    connection part-way through the first response for every blob, may ignore Range, and
    may answer 500 for chosen blobs. Counts the blob bytes it sends."""

    def __init__(self, root: Path, drop_after: int | None = None, honour_range: bool = True,
                 broken: set[str] | None = None):
        self.root, self.drop_after, self.honour_range = root, drop_after, honour_range
        self.broken = broken or set()
        self.sent = 0
        self.ranges = 0
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client closing a kept-alive connection is not news

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def handle(self, request) -> None:
        path = self.root / request.path.lstrip("/")
        name = path.name
        if ".." in request.path or not path.is_file() or name in self.broken:
            request.send_response(404 if not path.is_file() else 500)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        data = path.read_bytes()
        start = 0
        match = re.match(r"bytes=(\d+)-$", request.headers.get("Range", ""))
        status = 200
        if match and self.honour_range:
            start, status = int(match[1]), 206
            with self.lock:
                self.ranges += 1
        body = data[start:]
        request.send_response(status)
        request.send_header("Content-Length", str(len(body)))
        request.send_header("ETag", '"' + hashlib.sha256(data).hexdigest()[:16] + '"')
        if status == 206:
            request.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        request.end_headers()
        with self.lock:
            first = name not in self.seen
            self.seen.add(name)
        is_blob = "/blobs/" in request.path
        if is_blob and first and self.drop_after is not None and len(body) > self.drop_after:
            body = body[: self.drop_after]
            request.close_connection = True
        request.wfile.write(body)
        request.wfile.flush()
        if is_blob:
            with self.lock:
                self.sent += len(body)


def test_a_dropped_connection_resumes_the_blob_with_range(packed, tmp_path):
    with FlakyFeedServer(packed.dir, drop_after=20_000) as server:
        target = new_cache(tmp_path / "b")
        result = import_into(target, server.url, packed.trusted)
    assert result.blobs_fetched == 20
    dropped = [b for b in json.loads((packed.dir / "manifest.json").read_bytes())["blobs"]
               if b["size"] > 20_000]
    assert server.ranges == len(dropped) > 5
    assert server.sent == packed.result.bytes_total  # not one byte twice
    assert_consistent(target)


def test_a_server_that_ignores_range_still_gives_a_correct_import(packed, tmp_path):
    with FlakyFeedServer(packed.dir, drop_after=20_000, honour_range=False) as server:
        target = new_cache(tmp_path / "b")
        import_into(target, server.url, packed.trusted)
    assert server.ranges == 0 and server.sent > packed.result.bytes_total
    assert_consistent(target)
    with target.catalog() as catalog:
        assert catalog.counts()["files_cached"] == 20


def test_an_interrupted_import_keeps_verified_blobs_and_resumes(packed, tmp_path, monkeypatch):
    import cache.sources.feed

    monkeypatch.setattr(cache.sources.feed, "RESUME_ATTEMPTS", 1)  # give up on 500 quickly
    broken = max(json.loads((packed.dir / "manifest.json").read_bytes())["blobs"],
                 key=lambda b: b["sha256"])["sha256"]
    target = new_cache(tmp_path / "b")
    with FlakyFeedServer(packed.dir, broken={broken}) as server:
        with pytest.raises(FeedUnavailable) as caught:
            import_into(target, server.url, packed.trusted)
        assert bilingual(caught.value) and "HTTP 500" in str(caught.value)
        # nothing is visible yet: the verified blobs wait in staging
        assert list(target.store.digests()) == []
        assert len(list(pack.staging_store(target.store).digests())) == 19
        with target.catalog() as catalog:
            assert catalog.counts()["resources"] == 0
        server.broken.clear()
        sent_before = server.sent
        result = import_into(target, server.url, packed.trusted)
        assert result.blobs_resumed == 19 and result.blobs_fetched == 1
        assert server.sent - sent_before == target.store.size(broken)
    assert_consistent(target)
    assert list(pack.staging_store(target.store).digests()) == []


# -------------------------------------------------------------- kill -9 loop

IMPORT_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from cache import Cache, feed, pack
cache = Cache(Path(sys.argv[2]))
cache.migrate()
trusted = feed.trusted_keys({"origin": sys.argv[4]})
with cache.catalog() as catalog:
    result = pack.import_feed(catalog, cache.store, sys.argv[3], trusted)
print("done", result.blobs_fetched, flush=True)
"""


@needs_nginx
def test_kill_9_during_import_never_shows_a_corrupt_blob_and_resumes(tmp_path):
    origin = new_cache(tmp_path / "a")
    with origin.catalog() as catalog:
        for i in range(24):
            catalog.add_uploaded(io.BytesIO(os.urandom(1024 * 1024)), name=f"clip-{i}.bin",
                                 title=f"资源 {i}")
    key = feed.load_signing_key(origin.home)
    export_from(origin, key, tmp_path / "www" / "pack")
    public = feed.public_key_text(feed.public_bytes(key))
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print("seed", seed)
    homes = iter(range(100))
    target = new_cache(tmp_path / f"b{next(homes)}")
    # 24 MB at 12 MB/s: about two seconds of transfer after ~0.4 s of start-up
    with Nginx(tmp_path / "www", tmp_path / "nginx", limit_rate="12m") as nginx:
        url = f"{nginx.url}/pack/"

        def argv():
            return [sys.executable, "-c", IMPORT_SCRIPT, str(ROOT), str(target.home), url, public]

        kills = 0
        for iteration in range(6):
            have = len(set(pack.staging_store(target.store).digests())
                       | set(target.store.digests()))
            process = subprocess.Popen(argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            # aim inside the work left (each blob is 1 MB); sometimes before it starts
            time.sleep(rng.uniform(0.2, 0.35 + (24 - have) / 14))
            process.send_signal(signal.SIGKILL)
            out, err = process.communicate(timeout=10)
            staged = len(list(pack.staging_store(target.store).digests()))
            visible = len(list(target.store.digests()))
            print(f"iteration {iteration}: exit {process.returncode}, staged {staged}, "
                  f"visible {visible}", out.decode().strip(), err.decode()[-300:])
            assert_consistent(target)
            with target.catalog() as catalog:
                # the catalogue is written in one transaction: all of the feed or none of it
                complete = catalog.counts()["resources"] == 24
                assert complete or catalog.counts()["resources"] == 0
                assert complete or catalog.counts()["files_cached"] == 0
            if not complete:
                kills += 1
            else:  # it finished first: start the next round on an empty appliance
                target = new_cache(tmp_path / f"b{next(homes)}")
        assert kills >= 3
        done_before = len(set(pack.staging_store(target.store).digests())
                          | set(target.store.digests()))
        final = subprocess.run(argv(), capture_output=True, timeout=60)
        assert final.returncode == 0, final.stderr.decode()[-2000:]
        # nothing verified before a kill was fetched again
        assert final.stdout.decode().split() == ["done", str(24 - done_before)]
    assert_consistent(target)
    with target.catalog() as catalog:
        assert catalog.counts()["files_cached"] == 24
    assert set(target.store.digests()) == set(origin.store.digests())
    assert list(pack.staging_store(target.store).digests()) == []


# ------------------------------------------------------------ the CLI's functions

def test_select_option_language():
    assert pack.parse_select([]) == pack.Selection(all_cached=True)
    assert pack.parse_select(["all"]).all_cached
    rid = "0123456789abcdef" * 2
    chosen = pack.parse_select([rid, "grade=三年级,subject=数学", "版本=人教版"])
    assert chosen.ids == (rid,) and not chosen.all_cached
    assert chosen.filters() == {"grade": "三年级", "subject": "数学", "edition": "人教版"}
    chinese_keys = pack.parse_select(["学段=小学，册次=上册"])
    assert chinese_keys.filters() == {"stage": "小学", "volume": "上册"}
    for bad in (["colour=red"], ["grade="], ["not-an-id"], ["grade=三年级", "年级=四年级"]):
        with pytest.raises(FeedError) as caught:
            pack.parse_select(bad)
        assert caught.value.reason == "bad_select" and bilingual(caught.value)


def test_export_import_and_feed_key_as_the_cli_runs_them(tmp_path):
    import tomllib

    from app import prepare_home
    from conftest import make_config

    first_id = prepare_home(tmp_path / "a")
    first = new_cache(tmp_path / "a")
    with first.catalog() as catalog:
        load_sample_library(catalog)
    config_a = make_config(tmp_path / "a", feed_name="城关小学")
    usb = tmp_path / "usb"
    exported = pack.run_export(config_a, first_id, usb, pack.parse_select(["学科=数学"]))
    assert exported.name == "城关小学" and "已导出" in pack.describe_export(exported)

    lines = pack.feed_key_lines(config_a, first_id)
    snippet = "\n".join(line.strip() for line in lines[lines.index("  [feed_trusted_keys]"):])
    trusted = tomllib.loads(snippet)["feed_trusted_keys"]
    assert list(trusted) == ["城关小学"]

    second = new_cache(tmp_path / "b")
    (second.home / "shuqiao.toml").write_text(snippet + "\n", encoding="utf-8")  # as pasted
    config_b = make_config(second.home)
    assert config_b.feed_trusted_keys == trusted
    imported = pack.run_import(config_b, str(usb))
    assert imported.signer == "城关小学" and imported.blobs_fetched == exported.blobs
    described = pack.describe_import(imported)
    assert "已导入" in described and "imported" in described

    # this appliance's own USB backup imports back without any setting
    assert pack.run_import(config_a, str(usb)).blobs_present == exported.blobs
    # an appliance that trusts nobody refuses it, naming the key to trust
    third = new_cache(tmp_path / "c")
    with pytest.raises(FeedRefused) as caught:
        pack.run_import(make_config(third.home), str(usb))
    assert caught.value.reason == "unknown_key"
    assert lines[2].split(": ")[1] in str(caught.value)
    assert_nothing_stored(third)


EXPORT_SCRIPT = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from cache import Cache, feed, pack
cache = Cache(Path(sys.argv[2]))
with cache.catalog() as catalog:
    result = pack.export(catalog, cache.store, sys.argv[3], select=pack.Selection(all_cached=True),
                         signing_key=feed.load_signing_key(cache.home), name="城关小学",
                         progress=lambda done, total: time.sleep(0.08))  # a slow USB stick
print("done", result.bytes_written, flush=True)
"""


def test_kill_9_during_export_never_leaves_a_pack_that_imports_as_complete(tmp_path):
    origin = new_cache(tmp_path / "a")
    with origin.catalog() as catalog:
        for i in range(16):
            catalog.add_uploaded(io.BytesIO(os.urandom(512 * 1024)), name=f"doc-{i}.bin",
                                 title=f"资料 {i}")
    key = feed.load_signing_key(origin.home)
    usb = tmp_path / "usb"
    argv = [sys.executable, "-c", EXPORT_SCRIPT, str(ROOT), str(origin.home), str(usb)]
    rng = random.Random()
    outcomes = []
    blobs = 16
    for iteration in range(4):
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 1.1))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        complete = (usb / feed.MANIFEST_NAME).exists()
        outcomes.append((process.returncode, complete))
        target = new_cache(tmp_path / f"b{iteration}")
        if complete:
            assert import_into(target, usb, trusted_for(key)).blobs_fetched == blobs
            assert_consistent(target)
            # new content, so that the next export (over this complete pack) has work to do
            with origin.catalog() as catalog:
                for i in range(8):
                    catalog.add_uploaded(io.BytesIO(os.urandom(512 * 1024)),
                                         name=f"more-{iteration}-{i}.bin", title=f"新资料 {i}")
            blobs += 8
        else:  # killed before the manifest: whatever is on the drive is not a pack
            with pytest.raises(FeedRefused) as caught:
                import_into(target, usb, trusted_for(key))
            assert caught.value.reason == "no_manifest"
            assert_nothing_stored(target)
    print(outcomes)
    assert sum(not complete for _, complete in outcomes) >= 1
    # the next export finishes the job, keeping what the killed ones wrote
    result = export_from(origin, key, usb)
    assert result.blobs == blobs and result.blobs_kept > 0
    target = new_cache(tmp_path / "final")
    assert import_into(target, usb, trusted_for(key)).blobs_fetched == blobs


def test_another_version_of_a_file_we_have_stays_ours(packed, tmp_path):
    from cache.catalog import FileSpec

    target = new_cache(tmp_path / "b")
    with target.catalog() as b:
        b.upsert_resource(source="sample", source_id="math-3a", kind="textbook",
                          title="数学 三年级 上册（新版）", files=[
                              FileSpec(role="source", mime="application/pdf", name="新版.pdf",
                                       size=123, md5="0" * 32,
                                       urls=("https://r1-ndr.ykt.cbern.com.cn/new.pdf",))])
    import_into(target, packed.dir, packed.trusted)
    with target.catalog() as b:
        files = b.get(packed.ids[0])["files"]
    sources = [f for f in files if f["role"] == "source"]
    assert len(sources) == 1 and sources[0]["state"] == "remote" and sources[0]["md5"] == "0" * 32
    assert [f["state"] for f in files if f["role"] == "cover"] == ["cached"]


def test_a_feed_republished_between_manifest_and_signature_is_read_again(packed, tmp_path):
    """A reader that gets the old manifest and the new signature (the feed was republished
    between its two GETs) looks once more instead of calling the feed altered."""
    stale = (packed.dir / feed.MANIFEST_NAME).read_bytes()
    export_from(packed.cache, packed.key, packed.dir, subject="数学")  # republished

    class Republishing(FlakyFeedServer):
        served_stale = False

        def handle(self, request):
            if request.path == "/" + feed.MANIFEST_NAME and not self.served_stale:
                self.served_stale = True
                request.send_response(200)
                request.send_header("Content-Length", str(len(stale)))
                request.end_headers()
                request.wfile.write(stale)
                return
            super().handle(request)

    with Republishing(packed.dir) as server:
        target = new_cache(tmp_path / "b")
        result = import_into(target, server.url, packed.trusted)
        assert server.served_stale and result.resources < packed.result.resources
    assert_consistent(target)
