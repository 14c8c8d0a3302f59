"""Fetching the platform's files through the real fetch service and the platform stand-in:
the auth matrix (no token, placeholder vs real MAC on strict objects, expiry and refresh
with rotation, a broken refresh chain), HLS end to end (decrypted segments, a local
playlist that plays with no platform contact, resumed per segment), mirror failover, burst
throttling, and never storing an error body.

Everything is real: the stand-in is an HTTP server on 127.0.0.1, the appliance's home a
real directory with catalog.db and blobs, the fetch service's worker threads real.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cache import Cache
from cache.fetcher import FetchService, sources_by_name
from cache.queue import FetchQueue
from cache.sources import smartedu_auth as auth
from cache.sources.hls import TS_PACKET, parse_media_playlist
from cache.sources.smartedu import from_config
from cache.sources.smartedu_catalog import update
from conftest import make_config
from standin import Standin

PRIVATE = "r1-ndr-private.ykt.cbern.com.cn"


@pytest.fixture(scope="module")
def platform():
    with Standin(small=True) as standin:
        yield standin


@pytest.fixture
def clean_platform(platform):
    platform.faults.reset()
    platform.clear_log()
    yield platform
    platform.faults.reset()


class Appliance:
    """One appliance home synced from the stand-in, and a way to fetch through it."""

    def __init__(self, home: Path, platform: Standin, **settings):
        self.platform = platform
        self.config = make_config(home, smartedu_hosts=platform.hosts, **settings)
        home.mkdir(parents=True)
        self.cache = Cache(home)
        self.cache.migrate()
        with self.cache.catalog() as catalog:
            update(self.config, catalog, echo=lambda line: None)

    def paste(self, text: str | None = None) -> None:
        auth.save_pasted_token(self.config, text or self.platform.token_json())

    def source(self, interval: float = 0.01):
        source = from_config(self.config)
        source.min_request_interval = interval  # the politeness test uses the real 0.2 s
        return source

    def fetch(self, ids, timeout: float = 30, source=None, **options) -> dict:
        """Queue ``ids`` at teacher priority, run the fetch service until every file is
        cached or stuck (held / failed), return {file_id: state}."""
        source = source or self.source()
        options.setdefault("retry_same_delays", (0.05, 0.2))
        service = FetchService(self.cache, sources_by_name({"smartedu": source}), workers=3,
                               poll_seconds=0.05, backoff_base=0.05, backoff_cap=0.5, **options)
        with service:
            service.enqueue(ids)
            deadline = time.monotonic() + timeout
            stuck_since = None
            while time.monotonic() < deadline:
                states = self.states(ids)
                if all(s == "cached" for s in states.values()):
                    break
                # Held or failed for a second: it stays so (a held row the source says may
                # resume goes back to waiting within a poll).
                if all(s in ("cached", "held", "failed") for s in states.values()):
                    stuck_since = stuck_since or time.monotonic()
                    if time.monotonic() - stuck_since > 1.0:
                        break
                else:
                    stuck_since = None
                time.sleep(0.05)
        return self.states(ids)

    def states(self, ids) -> dict:
        with self.cache.catalog() as catalog:
            queue = FetchQueue(catalog.db)
            file_ids, _ = queue.file_ids_for(ids)
            return {f: queue.progress(f)["state"] for f in file_ids}

    def row(self, sql: str, params=()):
        with self.cache.catalog() as catalog:
            return catalog.db.execute(sql, list(params)).fetchall()

    def resource_id(self, source_id: str) -> str:
        return self.row("SELECT id FROM resources WHERE source_id = ?", [source_id])[0][0]

    def files(self, rid: str) -> list[dict]:
        with self.cache.catalog() as catalog:
            resource = catalog.get(rid)
        return resource["files"] + [f for lesson in resource["lessons"]
                                    for part in lesson["parts"] for f in part["files"]]

    def blob(self, digest: str) -> bytes:
        return self.cache.store.path(digest).read_bytes()

    def alerts(self) -> list[str]:
        return [key for (key,) in self.row("SELECT key FROM fetch_alerts")]


@pytest.fixture
def appliance(tmp_path, clean_platform):
    return Appliance(tmp_path / "home", clean_platform)


def _normal_book(platform: Standin):
    strict = platform.catalogue.strict_ids
    return next(b for b in platform.catalogue.textbooks
                if b.has_pdf and b.id not in strict and b.storage == "mirrors"
                and not b.has_audio)


def _strict_book(platform: Standin):
    strict = platform.catalogue.strict_ids
    return next(b for b in platform.catalogue.textbooks if b.id in strict)


def _video_lesson(platform: Standin):
    return next(lesson for lesson in platform.catalogue.lessons.values()
                if not lesson.elite and lesson.videos
                and not any(s.strict for s in lesson.resources))


# ------------------------------------------------------------------------ textbooks

def test_textbook_with_a_real_mac(appliance, clean_platform):
    book = _normal_book(clean_platform)
    appliance.paste()
    rid = appliance.resource_id(book.id)
    states = appliance.fetch([rid])
    assert set(states.values()) == {"cached"}
    pdf = next(f for f in appliance.files(rid) if f["role"] == "source")
    assert appliance.blob(pdf["sha256"]) == clean_platform.file_bytes(book.url)
    assert appliance.blob(pdf["sha256"]).startswith(b"%PDF-")
    private = [e for e in clean_platform.log if e.host.endswith("-private.ykt.cbern.com.cn")]
    assert private and {e.auth for e in private} == {"mac"}
    assert {e.status for e in private} <= {200, 206}


def test_non_ascii_paths_and_cs_path_storage(appliance, clean_platform):
    """A name with Chinese and spaces goes percent-encoded on the wire; a book whose
    ti_storages is empty is found through its expanded cs_path."""
    appliance.paste()
    book = next(b for b in clean_platform.catalogue.textbooks if b.storage == "cs_path")
    rid = appliance.resource_id(book.id)
    pdf = next(f for f in appliance.files(rid) if f["role"] == "source")
    assert pdf["urls"] == [book.url]
    assert appliance.fetch([rid]) and all(
        s == "cached" for s in appliance.states([rid]).values())
    assert appliance.blob(appliance.files(rid)[0]["sha256"]) == clean_platform.file_bytes(book.url)


def test_no_token_holds_with_an_alert_and_stores_nothing(appliance, clean_platform):
    book = _normal_book(clean_platform)
    rid = appliance.resource_id(book.id)
    states = appliance.fetch([rid], timeout=10)
    pdf = next(f for f in appliance.files(rid) if f["role"] == "source")
    assert states[pdf["id"]] == "held"
    assert "auth:smartedu" in appliance.alerts()
    assert auth.token_state(appliance.config)["state"] == "missing"
    statuses = {e.status for e in clean_platform.log if e.host.endswith("-private.ykt.cbern.com.cn")}
    assert statuses == {401}
    # The ~346-byte openresty page was never stored as content.
    assert not any(appliance.cache.store.path(d).read_bytes().startswith(b"<html")
                   for d in appliance.cache.store.digests())
    # The admin pastes a token: held files resume by themselves.
    appliance.paste()
    assert appliance.fetch([rid])[pdf["id"]] == "cached"
    assert "auth:smartedu" not in appliance.alerts()


def test_strict_objects_need_the_real_mac(tmp_path, clean_platform):
    book = _strict_book(clean_platform)
    placeholder = Appliance(tmp_path / "a", clean_platform, smartedu_auth="placeholder")
    placeholder.paste()
    rid = placeholder.resource_id(book.id)
    pdf = next(f for f in placeholder.files(rid) if f["role"] == "source")
    assert placeholder.fetch([rid], timeout=10)[pdf["id"]] == "held"
    refused = [e for e in clean_platform.log if e.path.endswith(".pdf") and e.status == 400]
    assert refused and {e.auth for e in refused} == {"placeholder"}
    state = auth.token_state(placeholder.config)
    assert state["state"] == "needs_login" and "mac" in state["reason"]
    # A normal object is fine with the placeholder (what most objects accept, §3.3); a
    # fresh home, since the alert above holds the whole source.
    normal = _normal_book(clean_platform)
    clean_platform.clear_log()
    other = Appliance(tmp_path / "b", clean_platform, smartedu_auth="placeholder")
    other.paste()
    assert set(other.fetch([other.resource_id(normal.id)]).values()) == {"cached"}
    assert {e.auth for e in clean_platform.log if e.path.endswith(".pdf")} == {"placeholder"}
    # The default (a real MAC) fetches the strict object.
    real = Appliance(tmp_path / "c", clean_platform)
    real.paste()
    assert set(real.fetch([real.resource_id(book.id)]).values()) == {"cached"}
    pdf = next(f for f in real.files(real.resource_id(book.id)) if f["role"] == "source")
    assert real.blob(pdf["sha256"]) == clean_platform.file_bytes(book.url)


def test_expired_token_is_refreshed_and_the_rotation_persists(appliance, clean_platform):
    appliance.paste(clean_platform.token_json(fresh=True))
    first = json.loads(json.loads(auth.token_path(appliance.config).read_text())["value"])
    # The platform expires the token early (its clock, not ours): our copy still says 7 days.
    clean_platform.faults.token_ttl_seconds = 2.0
    time.sleep(2.1)
    book = _normal_book(clean_platform)
    rid = appliance.resource_id(book.id)
    states = appliance.fetch([rid])
    assert set(states.values()) == {"cached"}
    refreshes = [e for e in clean_platform.log if e.host == auth.UC_HOST]
    assert [e.status for e in refreshes] == [201]
    stored = json.loads(json.loads(auth.token_path(appliance.config).read_text())["value"])
    assert stored["refresh_token"] != first["refresh_token"]
    assert stored["access_token"] != first["access_token"]
    assert auth.token_state(appliance.config)["last_refresh"]
    pdf = [e for e in clean_platform.log if e.path.endswith(".pdf")]
    assert [e.status for e in pdf][0] == 401 and pdf[-1].status in (200, 206)
    assert pdf[-1].auth == "mac"
    # Rotation: the old refresh token no longer works upstream, the new one does.
    assert clean_platform.tokens.refresh(first["refresh_token"]) is None


def test_refresh_before_expiry(appliance, clean_platform):
    """A token close to its end is refreshed before any file is asked for."""
    value = json.loads(clean_platform.token_json(fresh=True))
    inner = json.loads(value["value"])
    inner["expires_at"] = auth._format_time(time.time() + 600)
    value["value"] = json.dumps(inner)
    appliance.paste(json.dumps(value))
    rid = appliance.resource_id(_normal_book(clean_platform).id)
    assert set(appliance.fetch([rid]).values()) == {"cached"}
    assert [e.status for e in clean_platform.log if e.host == auth.UC_HOST] == [201]
    assert all(e.status in (200, 206) for e in clean_platform.log if e.path.endswith(".pdf"))


def test_broken_refresh_chain_asks_for_a_login(appliance, clean_platform):
    appliance.paste(clean_platform.token_json(fresh=True))
    clean_platform.revoke_tokens()
    rid = appliance.resource_id(_normal_book(clean_platform).id)
    states = appliance.fetch([rid], timeout=10)
    assert "held" in states.values()
    state = auth.token_state(appliance.config)
    assert state["state"] == "needs_login" and state["alert"]
    assert state["message_zh"] == "需要管理员重新登录平台。"
    assert "auth:smartedu" in appliance.alerts()
    # Logging in again (a fresh paste) lets the held files go.
    appliance.paste(clean_platform.token_json(fresh=True))
    assert set(appliance.fetch([rid]).values()) == {"cached"}


def test_mirror_failover_on_5xx(appliance, clean_platform):
    appliance.paste()
    book = _normal_book(clean_platform)
    clean_platform.faults.fail_5xx_hosts = {PRIVATE}
    clean_platform.faults.fail_5xx_next = 1
    rid = appliance.resource_id(book.id)
    assert set(appliance.fetch([rid]).values()) == {"cached"}
    pdf = [(e.host, e.status) for e in clean_platform.log if e.path.endswith(".pdf")]
    assert pdf[0] == (PRIVATE, 503)
    assert pdf[-1][0] != PRIVATE and pdf[-1][1] in (200, 206)


# ------------------------------------------------------------------------------ HLS

def test_lesson_package_with_hls_end_to_end(appliance, clean_platform):
    appliance.paste()
    lesson = _video_lesson(clean_platform)
    rid = appliance.resource_id(lesson.id)
    states = appliance.fetch([rid], timeout=60)
    assert set(states.values()) == {"cached"}
    videos = [f for f in appliance.files(rid) if f["role"] == "video"]
    assert len(videos) == len(lesson.videos)
    for video, sub in zip(videos, lesson.videos):
        rendition = sub.rendition("href-720p-m3u8")        # the default rendition
        assert video["urls"][0].endswith(rendition.playlist_path)
        text = appliance.blob(video["sha256"]).decode()
        assert "EXT-X-KEY" not in text and "ykt" not in text and "eduyun" not in text
        playlist = parse_media_playlist(text, "http://appliance.lan/")
        assert len(playlist.segments) == rendition.count
        for index, segment in enumerate(playlist.segments):
            digest = segment.raw.removeprefix("/content/")
            assert segment.raw == f"/content/{digest}"
            data = appliance.blob(digest)
            assert len(data) % TS_PACKET == 0
            assert all(data[i] == 0x47 for i in range(0, len(data), TS_PACKET))
            # Exactly the platform's clear bytes.
            assert data == clean_platform.catalogue.sub_resource(sub.id).files(
                clean_platform.catalogue.streams)[rendition.segment_path(index)].body.plaintext()
    pdfs = [f for f in appliance.files(rid) if f["mime"] == "application/pdf"]
    assert pdfs and all(appliance.blob(f["sha256"]).startswith(b"%PDF-") for f in pdfs)
    # Key handshake: one signs + one key request per video, nothing else.
    keys = [e for e in clean_platform.log if e.host == "ndvideo-key.ykt.eduyun.cn"]
    assert len([e for e in keys if e.path.endswith("/signs")]) == len(videos)
    assert all(e.status == 200 for e in keys)


def test_served_video_needs_no_platform(appliance, clean_platform):
    """After the fetch, the kiosk serves the local playlist and its segments; the platform
    (and its key service) hears nothing while terminals play."""
    from app import create_app

    appliance.paste()
    lesson = _video_lesson(clean_platform)
    rid = appliance.resource_id(lesson.id)
    video_ids = [f["id"] for f in appliance.files(rid) if f["role"] == "video"]
    appliance.fetch(video_ids, timeout=60)
    video = next(f for f in appliance.files(rid) if f["role"] == "video")
    clean_platform.settle()
    clean_platform.clear_log()
    client = create_app(appliance.config).test_client()
    response = client.get(f"/content/{video['sha256']}")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    playlist = parse_media_playlist(response.get_data(as_text=True), "http://appliance.lan/")
    for segment in playlist.segments:
        part = client.get(segment.raw)
        assert part.status_code == 200 and part.headers["Content-Type"] == "video/mp2t"
        assert part.get_data()[0] == 0x47
        part.close()
    response.close()
    assert clean_platform.log == []


def test_hls_resumes_per_segment(appliance, clean_platform):
    """Segments stored before a stop are not fetched again; with every segment stored, the
    key service is not contacted at all."""
    appliance.paste()
    lesson = _video_lesson(clean_platform)
    rid = appliance.resource_id(lesson.id)
    video = next(f for f in appliance.files(rid) if f["role"] == "video")
    sub = lesson.videos[0]
    rendition = sub.rendition("href-720p-m3u8")
    # A slow link, and a stop after the first segments are stored.
    clean_platform.faults.rate_limit_bytes_per_s = 60_000
    source = appliance.source()
    service = FetchService(appliance.cache, sources_by_name({"smartedu": source}), workers=1,
                           poll_seconds=0.05)
    with service:
        service.enqueue([video["id"]])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(appliance.row(
                "SELECT 1 FROM file_parts WHERE file_id = ? AND url NOT LIKE 'local:%'",
                [video["id"]])) < 2:
            time.sleep(0.02)
    done_before = {r[0] for r in appliance.row(
        "SELECT url FROM file_parts WHERE file_id = ? AND url NOT LIKE 'local:%'", [video["id"]])}
    assert 2 <= len(done_before) < rendition.count
    clean_platform.faults.rate_limit_bytes_per_s = None
    clean_platform.settle()
    clean_platform.clear_log()
    assert appliance.fetch([video["id"]])[video["id"]] == "cached"
    asked = [e.path for e in clean_platform.log if e.path.endswith(".ts")]
    assert len(asked) == len(set(asked)) == rendition.count - len(done_before)
    assert not {p.rsplit("/", 1)[1] for p in asked} & {u.rsplit("/", 1)[1] for u in done_before}
    # As if a crash came after the last segment but before the file was marked cached.
    with appliance.cache.catalog() as catalog:
        catalog.db.execute("UPDATE files SET state = 'remote', sha256 = NULL WHERE id = ?",
                           [video["id"]])
        catalog.db.conn.commit()
    clean_platform.settle()
    clean_platform.clear_log()
    assert appliance.fetch([video["id"]])[video["id"]] == "cached"
    assert [e.path for e in clean_platform.log if e.path.endswith(".ts")] == []
    assert [e for e in clean_platform.log if e.host == "ndvideo-key.ykt.eduyun.cn"] == []


def test_burst_throttling_is_waited_out(appliance, clean_platform):
    """Bursts answer 400 (empty or InvalidArgument): with a real MAC that is throttling,
    retried on the same mirror after a pause, and every file arrives."""
    appliance.paste()
    lesson = _video_lesson(clean_platform)
    rid = appliance.resource_id(lesson.id)
    # The platform allows fewer request starts than the politeness interval alone gives.
    clean_platform.faults.burst_limit = (3, 1.0)
    source = appliance.source(interval=0.2)
    states = appliance.fetch([rid], timeout=120, source=source, retry_same_delays=(1.0, 3.0))
    assert set(states.values()) == {"cached"}
    bursts = [e for e in clean_platform.log if "burst" in e.fault]
    assert bursts and all(e.status == 400 for e in bursts) and source.bursts >= len(bursts) - 3
    assert auth.token_state(appliance.config)["state"] == "ok"
    assert "auth:smartedu" not in appliance.alerts()


def test_politeness_between_request_starts(appliance, clean_platform):
    """The source declares at least 0.2 s between request starts and 3 at once; the
    engine keeps it across its workers."""
    appliance.paste()
    lesson = _video_lesson(clean_platform)
    rid = appliance.resource_id(lesson.id)
    source = appliance.source(interval=0.2)
    assert source.max_transfers == 3
    clean_platform.clear_log()        # the catalogue sync before is not a transfer
    states = appliance.fetch([rid], timeout=90, source=source)
    assert set(states.values()) == {"cached"}
    starts = sorted(e.time for e in clean_platform.log)
    assert len(starts) > 10
    # The stand-in stamps a request when its handler starts, a little after the client
    # sent it: compare starts five apart (1 s at 0.2 s each) so that jitter cannot add up.
    spans = [b - a for a, b in zip(starts, starts[5:])]
    assert min(spans) >= 0.9, spans


def test_corrupt_bytes_are_fetched_again(appliance, clean_platform):
    appliance.paste()
    book = _normal_book(clean_platform)
    clean_platform.faults.corrupt_next = 1
    rid = appliance.resource_id(book.id)
    assert set(appliance.fetch([rid]).values()) == {"cached"}
    pdf = next(f for f in appliance.files(rid) if f["role"] == "source")
    assert appliance.blob(pdf["sha256"]) == clean_platform.file_bytes(book.url)


def test_an_unavailable_rendition_falls_back_to_the_nearest(tmp_path, clean_platform):
    """The configured rendition (480p here) answers 404 on every mirror: the nearest
    other one is fetched, and checked against its own count and size."""
    appliance = Appliance(tmp_path / "home", clean_platform, smartedu_video_rendition="480p")
    appliance.paste()
    lesson = _video_lesson(clean_platform)
    rid = appliance.resource_id(lesson.id)
    video = next(f for f in appliance.files(rid) if f["role"] == "video")
    sub = lesson.videos[0]
    assert video["urls"][0].endswith(sub.rendition("href-480p-m3u8").playlist_path)
    extra = video["extra"]
    assert [r["height"] for r in extra["fallbacks"]][:2] == [360, 720]
    gone = [url.replace(".m3u8", "-gone.m3u8") for url in extra["hls"]["urls"]]
    extra["hls"]["urls"] = gone
    with appliance.cache.catalog() as catalog:
        catalog.db.execute("UPDATE files SET urls = ?, extra = ? WHERE id = ?",
                           [json.dumps(gone), json.dumps(extra), video["id"]])
        catalog.db.conn.commit()
    assert appliance.fetch([video["id"]])[video["id"]] == "cached"
    text = appliance.blob(appliance.files(rid)[[f["id"] for f in appliance.files(rid)].index(
        video["id"])]["sha256"]).decode()
    assert len(parse_media_playlist(text, "http://x/").segments) == \
        sub.rendition("href-360p-m3u8").count
    asked = [e.path for e in clean_platform.log if e.path.endswith(".m3u8")]
    assert any(p.endswith("-gone.m3u8") for p in asked)
    assert asked[-1].endswith(sub.rendition("href-360p-m3u8").playlist_path)
