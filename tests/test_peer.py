"""LAN peers (cache/sources/peer.py): two appliances, two homes, two processes on loopback.

The first is a real ``python app.py serve`` (announcing itself by mDNS on 127.0.0.1 and
publishing its cache at /feed/); the second, in this process, finds it by mDNS and fetches a
lesson from it — through the import path and through the real fetch engine — while the
"platform" is a server that fails the test if it sees a single request.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from pathlib import Path

import pytest
import requests

from cache import Cache, feed
from cache.catalog import FileSpec
from cache.sample import load_sample_library
from cache.sources.peer import (LanPeers, PeerBrowser, PeerDirectory, fetch_from_peers,
                                zeroconf_interfaces)

from conftest import make_config, start_cli_server, stop_cli_server


def test_browsing_follows_where_the_server_listens():
    assert zeroconf_interfaces("127.0.0.1") == ["127.0.0.1"]
    assert zeroconf_interfaces("localhost") == ["127.0.0.1"]
    assert zeroconf_interfaces("::1") == ["127.0.0.1"]
    assert zeroconf_interfaces("192.0.2.7") == ["192.0.2.7"]
    assert zeroconf_interfaces("0.0.0.0") is None and zeroconf_interfaces("") is None


class Upstream:
    """A stand-in for the platform. ``serve`` maps paths to bytes; every request is
    recorded, and anything else is answered 500."""

    def __init__(self, serve: dict[str, bytes] | None = None):
        self.files = serve or {}
        self.seen: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.seen.append(self.path)
                body = outer.files.get(self.path)
                self.send_response(200 if body is not None else 500)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def catalogue_as_the_platform_would(source: Cache, target: Cache, rid: str, upstream: str) -> None:
    """Put resource ``rid`` (and its parts) into ``target`` the way a platform catalogue sync
    leaves it: same ids, files remote with size and MD5 and upstream URLs, no SHA-256."""
    with source.catalog() as a, target.catalog() as b:
        top = a.get(rid)
        rows = [top] + [p for lesson in top["lessons"] for p in lesson["parts"]]
        for row in rows:
            files = [FileSpec(role=f["role"], mime=f["mime"], name=f["name"], size=f["size"],
                              md5=hashlib.md5(source.store.path(f["sha256"]).read_bytes()).hexdigest(),
                              urls=(f"{upstream}/{f['sha256']}",)) for f in row["files"]]
            b.upsert_resource(source=row["source"], source_id=row["source_id"], kind=row["kind"],
                              title=row["title"], parent_id=row["parent_id"], files=files,
                              lesson=row["lesson"], lesson_no=row["lesson_no"],
                              position=row["position"], subject=row["subject"])


def new_cache(home: Path) -> Cache:
    home.mkdir(parents=True, exist_ok=True)
    cache = Cache(home)
    cache.migrate()
    return cache


def wait_until(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture
def first_appliance(tmp_path):
    """Appliance 1: a real `app.py serve` on 127.0.0.1 with the sample library, mDNS on."""
    from app import prepare_home

    home = tmp_path / "first"
    instance_id = prepare_home(home)
    cache = new_cache(home)
    with cache.catalog() as catalog:
        ids = load_sample_library(catalog)
        kinds = {rid: catalog.get(rid)["kind"] for rid in ids}
    key = feed.load_signing_key(home)  # what `shuqiao feed-key` shows the admin
    process, url = start_cli_server(["serve", "--home", str(home), "--host", "127.0.0.1",
                                     "--port", "0"])
    try:
        answer = requests.get(url + "/feed/manifest.json", timeout=10)
        assert answer.status_code == 200, (
            "/feed/ is not served: kiosk.init_app must register kiosk.feed.bp "
            "(app.register_blueprint(feed.bp))")
        yield type("First", (), dict(home=home, cache=cache, url=url, id=instance_id, key=key,
                                     ids=ids, kinds=kinds))
    finally:
        assert stop_cli_server(process) == 0


def test_second_appliance_fetches_a_lesson_from_the_first_without_the_platform(
        first_appliance, tmp_path):
    first = first_appliance
    package = next(r for r, kind in first.kinds.items() if kind == "lesson_package")
    textbook = next(r for r, kind in first.kinds.items() if kind == "textbook")
    platform = Upstream()  # must see nothing
    second = new_cache(tmp_path / "second")
    browser = PeerBrowser(own_instance_id="second", interfaces=["127.0.0.1"])
    browser.start()
    # Only our first appliance: other test runs may announce on this loopback too.
    ours = lambda: [p for p in browser.peers() if p.instance_id == first.id]  # noqa: E731
    trusted = feed.trusted_keys({"first": feed.public_key_text(feed.public_bytes(first.key))})
    directory = PeerDirectory(trusted, ours)
    untrusted = PeerDirectory(feed.trusted_keys({}), ours)
    try:
        found = browser.wait(lambda peers: any(p.instance_id == first.id for p in peers), 10)
        peer = next(p for p in found if p.instance_id == first.id)
        assert peer.base_url == first.url + "/"

        catalogue_as_the_platform_would(first.cache, second, package, platform.url)
        catalogue_as_the_platform_would(first.cache, second, textbook, platform.url)

        # An appliance whose key is not trusted is seen but not used.
        assert untrusted.holders(package) == []
        status = untrusted.status()
        assert status[0]["trusted"] is False
        assert status[0]["key_fingerprint"] == feed.fingerprint(feed.public_bytes(first.key))
        with second.catalog() as catalog:
            result = fetch_from_peers(catalog, second.store, [package], untrusted)
        assert result.not_on_peers == [package] and list(second.store.digests()) == []

        # The lesson package, whole, through the verified import path.
        assert directory.holders(package) == [peer]
        with second.catalog() as catalog:
            result = fetch_from_peers(catalog, second.store, [package], directory)
            assert result.fetched == {package: peer.name} and result.not_on_peers == []
            lesson = catalog.get(package)
            assert lesson["ready"] and len(lesson["lessons"][0]["parts"]) >= 3
            cached = catalog.db.execute("SELECT count(*) FROM files WHERE state = 'cached'"
                                        ).fetchone()[0]
        assert cached == len(list(second.store.digests())) > 5
        assert all(second.store.verify(d) for d in second.store.digests())
        assert platform.seen == []
    finally:
        browser.stop()
        directory.close()
        untrusted.close()
        platform.close()


def test_the_fetch_engine_asks_lan_peers_before_the_platform(first_appliance, tmp_path):
    """The real fetch engine with the peer source first: what the peer holds comes from the
    peer (the platform sees nothing for it); what it lacks comes from the platform."""
    from cache.fetcher import FetchService, sources_by_name
    from cache.queue import FetchQueue
    from cache.sources.plain import PlainHTTPSource

    first = first_appliance
    textbook = next(r for r, kind in first.kinds.items() if kind == "textbook")
    only_upstream = b"%PDF-1.4 only on the platform\n" * 100
    digest = hashlib.sha256(only_upstream).hexdigest()
    platform = Upstream({f"/{digest}": only_upstream})
    second = new_cache(tmp_path / "second")
    catalogue_as_the_platform_would(first.cache, second, textbook, platform.url)
    with second.catalog() as catalog:
        catalog.upsert_resource(source="smartedu", source_id="new-book", kind="textbook",
                                title="只在平台上的书", files=[FileSpec(
                                    role="source", mime="application/pdf", name="new.pdf",
                                    size=len(only_upstream),
                                    md5=hashlib.md5(only_upstream).hexdigest(),
                                    urls=(f"{platform.url}/{digest}",))])
        new_book = catalog.db.execute("SELECT id FROM resources WHERE source_id = 'new-book'"
                                      ).fetchone()[0]
        FetchQueue(catalog.db).enqueue([textbook, new_book])

    # As serve wires it: the settings' trusted keys, browsing where the server listens.
    config = make_config(second.home, host="127.0.0.1", feed_trusted_keys={
        "first": feed.public_key_text(feed.public_bytes(first.key))})
    peers = LanPeers.from_config(config, "second").start()
    try:
        assert peers.browser.wait(lambda found: any(p.instance_id == first.id for p in found), 10)
        sources = peers.sources_for(sources_by_name({}, PlainHTTPSource()))
        with FetchService(second, sources, workers=2, poll_seconds=0.2):
            def all_cached():
                with second.catalog() as catalog:
                    return catalog.counts()["files"] == catalog.counts()["files_cached"]
            assert wait_until(all_cached, 30)
        with second.catalog() as catalog:
            assert catalog.get(textbook)["ready"] and catalog.get(new_book)["ready"]
        assert platform.seen == [f"/{digest}"]  # only the book no peer has
        assert all(second.store.verify(d) for d in second.store.digests())
    finally:
        peers.stop()
        platform.close()
