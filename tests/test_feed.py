"""The pack feed format (cache/feed.py): keys, signatures, manifest validation; the manifest
built from a real catalogue (cache/pack.py); and this appliance's feed at /feed/
(kiosk/feed.py) served by the real waitress server."""

from __future__ import annotations

import base64
import json
import re
import stat

import pytest
import requests

from cache import feed, pack
from cache.catalog import resource_id_for
from cache.sample import load_sample_library
from cache.feed import FeedRefused

from conftest import LiveServer

CJK = re.compile(r"[\u4e00-\u9fff]")


def bilingual(error: Exception) -> bool:
    text = str(error)
    return bool(CJK.search(text)) and bool(re.search(r"[A-Za-z]{4,}", text))


@pytest.fixture
def key(tmp_path):
    return feed.load_signing_key(tmp_path / "signer")


def trusted_for(*keys) -> dict:
    return feed.trusted_keys({f"k{i}": feed.public_key_text(feed.public_bytes(k))
                              for i, k in enumerate(keys)})


def minimal_manifest(**changes) -> dict:
    digest = "ab" * 32
    document = {
        "format": "shuqiao-feed", "version": 1, "name": "县教育局",
        "created": "2026-09-01T00:00:00+00:00",
        "resources": [{
            "id": resource_id_for("smartedu", "x1"), "parent": None, "source": "smartedu",
            "source_id": "x1", "kind": "textbook", "title": "数学 三年级 上册",
            "files": [{"role": "source", "name": "a.pdf", "mime": "application/pdf", "size": 3,
                       "sha256": digest, "urls": ["https://r1-ndr.ykt.cbern.com.cn/a.pdf"]}],
        }],
        "blobs": [{"sha256": digest, "size": 3}],
    }
    document.update(changes)
    return document


# ----------------------------------------------------------------------------- keys

def test_signing_key_is_made_once_private_and_stable(tmp_path):
    first = feed.load_signing_key(tmp_path)
    path = tmp_path / feed.SIGNING_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = feed.load_signing_key(tmp_path)
    assert feed.public_bytes(first) == feed.public_bytes(again)
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(FileNotFoundError):
        feed.load_signing_key(tmp_path / "elsewhere", create=False)


def test_public_keys_in_every_accepted_spelling(key):
    raw = feed.public_bytes(key)
    text = feed.public_key_text(raw)
    for spelling in (text, text.rstrip("="), raw.hex(), raw.hex().upper(), "ed25519:" + text,
                     f"  {text}\n"):
        assert feed.parse_public_key(spelling) == raw
    for bad in ("", "not a key!", base64.b64encode(b"x" * 31).decode(), "ab" * 33):
        with pytest.raises(ValueError):
            feed.parse_public_key(bad)


def test_trusted_keys_setting_reports_every_bad_entry_and_trusts_itself(key):
    good = feed.public_key_text(feed.public_bytes(key))
    with pytest.raises(feed.FeedError) as caught:
        feed.trusted_keys({"县局": good, "坏的": "xyz", "short": "ab" * 10})
    assert "坏的" in str(caught.value) and "short" in str(caught.value) and bilingual(caught.value)
    keys = feed.trusted_keys({"县局": good}, own=b"\x01" * 32)
    assert {k.name for k in keys.values()} == {"县局", "本机 this appliance"}
    assert keys[feed.fingerprint(feed.public_bytes(key))].name == "县局"


# ----------------------------------------------------------------------- signatures

def test_signature_verifies_and_every_kind_of_forgery_is_refused(tmp_path, key):
    other = feed.load_signing_key(tmp_path / "other")
    manifest = feed.canonical_bytes(minimal_manifest())
    signature = feed.sign(key, manifest)
    trusted = trusted_for(key)
    assert feed.verify(manifest, signature, trusted).name == "k0"

    altered = manifest.replace(b"\xe4\xb8\x89", b"\xe5\x9b\x9b")  # 三年级 -> 四年级
    assert altered != manifest
    swapped = feed.sign(key, feed.canonical_bytes(minimal_manifest(name="别的包")))
    cases = {
        "unsigned": (manifest, None),
        "no_manifest": (None, signature),
        "bad_signature": (altered, signature),
        "unknown_key": (manifest, feed.sign(other, manifest)),
        "garbage": (manifest, b"{not json"),
        "swapped": (manifest, swapped),
    }
    expected = {"unsigned": "unsigned", "no_manifest": "no_manifest", "bad_signature":
                "bad_signature", "unknown_key": "unknown_key", "garbage": "bad_signature",
                "swapped": "bad_signature"}
    for case, (body, sig) in cases.items():
        with pytest.raises(FeedRefused) as caught:
            feed.verify(body, sig, trusted)
        assert caught.value.reason == expected[case], case
        assert bilingual(caught.value), case
    with pytest.raises(FeedRefused) as caught:
        feed.verify(manifest, feed.sign(other, manifest), trusted)
    assert feed.fingerprint(feed.public_bytes(other)) in str(caught.value)


# ------------------------------------------------------------------------- manifest

def test_a_valid_manifest_parses():
    manifest = feed.parse(feed.canonical_bytes(minimal_manifest()))
    assert manifest.name == "县教育局" and manifest.blobs == {"ab" * 32: 3}
    assert manifest.resources[0]["files"][0]["sha256"] == "ab" * 32
    assert manifest.total_bytes == 3


def _with_file(**changes) -> dict:
    document = minimal_manifest()
    document["resources"][0]["files"][0].update(changes)
    return document


@pytest.mark.parametrize("document, reason", [
    (minimal_manifest(version=2), "newer_format"),
    (minimal_manifest(version="1"), "bad_manifest"),
    (minimal_manifest(format="something-else"), "bad_manifest"),
    (_with_file(sha256="../../etc/passwd"), "bad_manifest"),
    (_with_file(sha256="AB" * 32), "bad_manifest"),
    (_with_file(sha256="cd" * 32), "bad_manifest"),       # not in the blob list
    (_with_file(size=4), "bad_manifest"),                 # differs from the listed blob
    (_with_file(urls=["file:///etc/passwd"]), "bad_manifest"),
    (_with_file(mime="not a mime"), "bad_manifest"),
    (_with_file(md5="xyz"), "bad_manifest"),
    (_with_file(parts=[{"url": "local:x", "seq": 0, "size": 9, "sha256": "ef" * 32}]),
     "bad_manifest"),                                      # a part whose blob is not listed
    (minimal_manifest(blobs=[{"sha256": "ab" * 32, "size": 3},
                             {"sha256": "cd" * 32, "size": 1}]), "bad_manifest"),  # unused
    (minimal_manifest(blobs=[{"sha256": "ab" * 32, "size": 3}] * 2), "bad_manifest"),
    (minimal_manifest(blobs=[{"sha256": "ab/" * 21 + "a", "size": 3}]), "bad_manifest"),
    (minimal_manifest(name=""), "bad_manifest"),
], ids=["newer", "version-type", "format", "path-as-digest", "upper-hex", "unlisted-blob",
        "size", "file-url", "mime", "md5", "part-blob", "unused-blob", "blob-twice",
        "blob-path", "no-name"])
def test_bad_manifests_are_refused_with_a_clear_message(document, reason):
    with pytest.raises(FeedRefused) as caught:
        feed.parse(feed.canonical_bytes(document))
    assert caught.value.reason == reason
    assert bilingual(caught.value)


def test_resource_ids_and_parent_order_are_checked():
    document = minimal_manifest()
    document["resources"][0]["id"] = resource_id_for("smartedu", "someone-else")
    with pytest.raises(FeedRefused, match="source_id"):
        feed.parse(feed.canonical_bytes(document))
    document = minimal_manifest()
    part = {"id": resource_id_for("smartedu", "p1"), "parent": resource_id_for("smartedu", "x1"),
            "source": "smartedu", "source_id": "p1", "kind": "video", "title": "微课", "files": []}
    document["resources"].insert(0, part)  # the part before its package
    with pytest.raises(FeedRefused, match="parent"):
        feed.parse(feed.canonical_bytes(document))
    document["resources"].reverse()
    assert len(feed.parse(feed.canonical_bytes(document)).resources) == 2


def test_oversized_manifest_is_refused_before_parsing(monkeypatch):
    monkeypatch.setattr(feed, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(FeedRefused) as caught:
        feed.parse(feed.canonical_bytes(minimal_manifest()))
    assert caught.value.reason == "too_large" and bilingual(caught.value)


# ------------------------------------------------------- the manifest of a catalogue

@pytest.fixture
def sample_cache(ctx):
    with ctx.cache.catalog() as catalog:
        ids = load_sample_library(catalog)
    return ctx.cache, ids


def test_manifest_of_all_cached_round_trips(sample_cache, key):
    cache, ids = sample_cache
    with cache.catalog() as catalog:
        document = pack.build_manifest(catalog, name="城关小学",
                                       selection=pack.Selection(all_cached=True))
        counts = catalog.counts()
    manifest = feed.parse(feed.canonical_bytes(document))
    assert len(manifest.resources) == counts["resources"] + counts["parts"]
    assert {r["id"] for r in manifest.resources if r["parent"] is None} == set(ids)
    assert len(manifest.blobs) == counts["files_cached"]  # the sample has no shared blobs
    for digest, size in manifest.blobs.items():
        assert cache.store.size(digest) == size
    # the same content gives the same bytes (apart from the creation time)
    with cache.catalog() as catalog:
        again = pack.build_manifest(catalog, name="城关小学", created=document["created"],
                                    selection=pack.Selection(all_cached=True))
    assert feed.canonical_bytes(again) == feed.canonical_bytes(document)


def test_selection_by_id_part_and_taxonomy(sample_cache):
    cache, ids = sample_cache
    with cache.catalog() as catalog:
        package = next(r for r in ids if catalog.get(r)["kind"] == "lesson_package")
        parts = [p["id"] for lesson in catalog.get(package)["lessons"] for p in lesson["parts"]]
        by_part = pack.build_manifest(catalog, name="x", selection=pack.Selection(ids=(parts[0],)))
        # a part selects its whole package
        assert {r["id"] for r in by_part["resources"]} == {package, *parts}
        math = pack.build_manifest(catalog, name="x", selection=pack.Selection(subject="数学"))
        assert {r["subject"] for r in math["resources"]} == {"数学"}
        assert len([r for r in math["resources"] if r["parent"] is None]) == 2
        nothing = pack.build_manifest(catalog, name="x", selection=pack.Selection(subject="俄语"))
        assert nothing["resources"] == [] and nothing["blobs"] == []
        with pytest.raises(feed.FeedError, match="f" * 32):
            pack.build_manifest(catalog, name="x", selection=pack.Selection(ids=("f" * 32,)))


def test_uncached_files_are_listed_without_bytes(sample_cache):
    cache, ids = sample_cache
    with cache.catalog() as catalog:
        catalog.db.execute("UPDATE files SET state = 'remote' WHERE role = 'cover'")
        document = pack.build_manifest(catalog, name="x", selection=pack.Selection(all_cached=True))
    files = [f for r in document["resources"] for f in r["files"]]
    covers = [f for f in files if f["role"] == "cover"]
    assert covers and all("sha256" not in f for f in covers)
    assert all("sha256" in f for f in files if f["role"] != "cover")
    feed.parse(feed.canonical_bytes(document))  # still a valid manifest


# -------------------------------------------------------------------- GET /feed/

def _register(app):
    from kiosk import feed as kiosk_feed

    if "feed" not in app.blueprints:  # until kiosk.init_app registers it
        app.register_blueprint(kiosk_feed.bp)
    return app


def test_feed_is_published_signed_and_served_like_content(sample_app, ctx, monkeypatch):
    from kiosk import feed as kiosk_feed

    monkeypatch.setattr(kiosk_feed, "_RECHECK_SECONDS", 0)
    server = LiveServer(_register(sample_app))
    try:
        with requests.Session() as http:
            index = http.get(server.url + "/feed/", timeout=5).json()
            own = feed.public_bytes(feed.load_signing_key(ctx.config.home, create=False))
            assert index["public_key"] == feed.public_key_text(own)
            assert index["fingerprint"] == feed.fingerprint(own)
            assert index["name"].startswith("书桥 Shuqiao (")

            first = http.get(server.url + "/feed/manifest.json", timeout=5)
            signature = http.get(server.url + "/feed/manifest.json.sig", timeout=5)
            assert first.status_code == 200 and first.headers["Content-Type"] == "application/json"
            trusted = feed.trusted_keys({"peer": index["public_key"]})
            assert feed.verify(first.content, signature.content, trusted).name == "peer"
            manifest = feed.parse(first.content)
            assert len(manifest.blobs) == 20

            etag = first.headers["ETag"]
            assert http.get(server.url + "/feed/manifest.json", headers={"If-None-Match": etag},
                            timeout=5).status_code == 304
            head = http.head(server.url + "/feed/manifest.json", timeout=5)
            assert head.status_code == 200
            assert int(head.headers["Content-Length"]) == len(first.content)

            digest, size = max(manifest.blobs.items(), key=lambda item: item[1])
            whole = http.get(f"{server.url}/feed/{feed.blob_path(digest)}", timeout=5)
            assert whole.status_code == 200 and len(whole.content) == size
            assert whole.headers["ETag"] == f'"{digest}"'
            ranged = http.get(f"{server.url}/feed/{feed.blob_path(digest)}",
                              headers={"Range": "bytes=10-19"}, timeout=5)
            assert ranged.status_code == 206 and ranged.content == whole.content[10:20]
            wrong_prefix = f"{server.url}/feed/blobs/sha256/00/{digest}"
            assert http.get(wrong_prefix, timeout=5).status_code == 404
            assert http.get(f"{server.url}/feed/blobs/sha256/ab/{'ab' * 31}",
                            timeout=5).status_code == 400
            assert http.get(f"{server.url}/feed/{feed.blob_path('ab' * 32)}",
                            timeout=5).status_code == 404

            # A new cached file changes the feed (and its ETag).
            with ctx.cache.catalog() as catalog:
                catalog.add_local_file(ctx.config.home / "instance.json", title="新资源")
            second = http.get(server.url + "/feed/manifest.json",
                              headers={"If-None-Match": etag}, timeout=5)
            assert second.status_code == 200 and second.headers["ETag"] != etag
            assert len(feed.parse(second.content).blobs) == 21
    finally:
        server.stop()


def test_feed_of_an_empty_appliance_is_valid(app, ctx):
    client = _register(app).test_client()
    body = client.get("/feed/manifest.json")
    signature = client.get("/feed/manifest.json.sig")
    own = feed.public_bytes(feed.load_signing_key(ctx.config.home, create=False))
    feed.verify(body.data, signature.data, feed.trusted_keys({}, own=own))
    assert feed.parse(body.data).resources == []
    body.close()
    signature.close()


def test_feed_name_setting(tmp_path):
    from app import create_app
    from conftest import make_config

    app = _register(create_app(make_config(tmp_path / "h", feed_name="城关小学资源")))
    response = app.test_client().get("/feed/manifest.json")
    assert json.loads(response.data)["name"] == "城关小学资源"
    response.close()


def test_the_published_manifest_follows_in_place_file_changes(tmp_path):
    """A file updated in place (same row, same count, same size) still changes the feed."""
    import io

    from app import create_app
    from cache.catalog import FileSpec
    from conftest import make_config

    app = create_app(make_config(tmp_path / "home"))
    ctx = app.extensions["shuqiao"]
    with ctx.cache.catalog() as catalog:
        first = catalog.store.put_stream(io.BytesIO(b"%PDF-1 edition one"))
        second = catalog.store.put_stream(io.BytesIO(b"%PDF-1 edition two"))
        catalog.upsert_resource(source="t", source_id="b", kind="textbook", title="课本",
                                files=[FileSpec(role="source", mime="application/pdf", size=18,
                                                sha256=first, state="cached")])
    client = app.test_client()
    assert first in client.get("/feed/manifest.json").get_data(as_text=True)
    with ctx.cache.catalog() as catalog:
        catalog.db.execute("UPDATE files SET sha256 = ?", [second])
    app.extensions["shuqiao"].state["feed_publisher"]._current.checked = -1e9  # recheck now
    manifest = client.get("/feed/manifest.json").get_data(as_text=True)
    assert second in manifest and first not in manifest
