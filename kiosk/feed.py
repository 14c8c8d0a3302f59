"""``/feed/``: this appliance's cache published as a signed pack feed.

Other appliances on the LAN (found by mDNS, see ``cache/sources/peer.py``) read it exactly
as they read a feed on a USB drive or a county web server, because the URL layout is the
feed's directory layout (``cache/feed.py``):

- ``GET /feed/manifest.json`` — every cached resource, signed by this appliance's key;
- ``GET /feed/manifest.json.sig`` — the detached Ed25519 signature;
- ``GET /feed/blobs/sha256/<ab>/<sha256>`` — the blobs, served by ``/content``'s own
  function (Range, ETag, streamed off the worker threads);
- ``GET /feed/`` — a small JSON index: feed name, public key and its fingerprint.

The manifest is built on first request and rebuilt only when the set of cached files
changes (checked with one cheap query, at most every few seconds); it carries an ETag so a
peer's periodic refresh costs a 304.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from flask import Blueprint, Response, jsonify, request

from cache import feed, pack

from . import catalog, content, context, json_error

bp = Blueprint("feed", __name__, url_prefix="/feed")

_RECHECK_SECONDS = 3.0


@dataclass
class _Published:
    fingerprint: int
    manifest: bytes
    signature: bytes
    etag: str
    checked: float


class Publisher:
    """Builds and caches the signed manifest of everything cached here."""

    def __init__(self, home, name: str):
        self.home = home
        self.name = name
        self._lock = threading.Lock()
        self._current: _Published | None = None
        self._key = None

    @staticmethod
    def _fingerprint(cat) -> int:
        # Moves on every write to resources or files (triggers, migration 0004).
        return cat.db.execute("SELECT n FROM catalog_version").fetchone()[0]

    def public_key(self) -> bytes:
        with self._lock:
            return feed.public_bytes(self._signing_key())

    def _signing_key(self):
        if self._key is None:
            self._key = feed.load_signing_key(self.home)
        return self._key

    def current(self, cat) -> _Published:
        with self._lock:
            now = time.monotonic()
            published = self._current
            if published and now - published.checked < _RECHECK_SECONDS:
                return published
            fingerprint = self._fingerprint(cat)
            if published and published.fingerprint == fingerprint:
                published.checked = now
                return published
            document = pack.build_manifest(cat, name=self.name,
                                           selection=pack.Selection(all_cached=True))
            manifest = feed.canonical_bytes(document)
            signature = feed.sign(self._signing_key(), manifest)
            etag = '"' + hashlib.sha256(manifest).hexdigest() + '"'
            self._current = _Published(fingerprint, manifest, signature, etag, now)
            return self._current


_publisher_lock = threading.Lock()


def publisher() -> Publisher:
    ctx = context()
    with _publisher_lock:
        if "feed_publisher" not in ctx.state:
            ctx.state["feed_publisher"] = Publisher(
                ctx.config.home, pack.feed_name_for(ctx.config, ctx.instance_id))
        return ctx.state["feed_publisher"]


def _small(body: bytes, etag: str, mime: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if_none_match = request.headers.get("If-None-Match", "")
    if etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status=304, headers=headers)
    response = Response(b"" if request.method == "HEAD" else body, mimetype=mime, headers=headers)
    response.headers["Content-Length"] = str(len(body))
    return response


@bp.route("/", methods=["GET"])
def index():
    pub = publisher()
    key = pub.public_key()
    return jsonify({"format": feed.FORMAT, "name": pub.name, "manifest": feed.MANIFEST_NAME,
                    "signature": feed.SIGNATURE_NAME, "public_key": feed.public_key_text(key),
                    "fingerprint": feed.fingerprint(key)})


@bp.route("/manifest.json", methods=["GET", "HEAD"])
def manifest():
    published = publisher().current(catalog())
    return _small(published.manifest, published.etag, "application/json")


@bp.route("/manifest.json.sig", methods=["GET", "HEAD"])
def signature():
    published = publisher().current(catalog())
    # The signature's ETag follows the manifest it signs.
    return _small(published.signature, published.etag[:-1] + '-sig"', "application/json")


@bp.route("/blobs/sha256/<prefix>/<digest>", methods=["GET", "HEAD"])
def blob(prefix: str, digest: str):
    if prefix != digest[:2]:
        return json_error(404, "no such content on this server", "not_found")
    return content.blob(digest)  # validates the digest, serves only cached blobs
