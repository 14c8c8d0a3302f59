"""The national platform (国家中小学智慧教育平台) as a source of files.

What this source knows that the fetch engine must not (smartedu-upstream.md §1, §3, §6):

- **Hosts.** Every URL in the platform's JSON is absolute. The ``smartedu_hosts`` setting
  maps a platform host to another base URL (the stand-in in tests, a county mirror, a
  proxy); :class:`HostMap` rewrites every URL we send, including key URIs inside playlists.
  Non-ASCII paths (textbook PDF names) are percent-encoded as UTF-8 on the wire.
- **Auth.** Private buckets (``r*-ndr-private``, ``r*-ndr-doc-private``) need the login
  token: ``X-ND-AUTH`` MAC signed over the URL *actually requested* (after host mapping,
  decoded path) plus ``Authorization: Bearer`` (see :mod:`.smartedu_auth`). JSON hosts,
  public buckets and the HLS key service get no auth header: the key service may restrict
  an IP that sends a fake one (§3.3), and it works without.
- **Errors** (:meth:`SmartEduSource.classify`):

  ======================================  ==================================================
  answer                                  what it means here
  ======================================  ==================================================
  network error, 5xx                      FAILOVER: next mirror (r1/r2/r3 hold the same path)
  400 (XML ``InvalidArgument`` or empty)  RETRY_SAME: burst throttling; the engine waits
                                          (1 s, 3 s…) and retries the *same* mirror with a
                                          fresh signature (§6.3)
  400 ``InvalidArgument`` when we could   the first refusals as above (it may be a burst);
  only send a placeholder MAC             the same object refusing 3 times in a row is a
                                          *strict* object (§3.2, 2026-08): AUTH, as no
                                          retry can help and a token with a ``mac_key``
                                          can. The alert says so.
  401 / 403 (and JSON CS/REQUIRE_SESSION) the token: refresh once and RETRY_SAME; if that
                                          fails, AUTH (an administrator must log in again)
  404 / 410                               NOT_FOUND
  ======================================  ==================================================

  A body that is an error page (the ~346-byte openresty 401 HTML, object-storage XML, a
  session JSON) never becomes content: every file has a magic-bytes check
  (:func:`magic_for`), a declared size and usually an MD5.
- **Politeness.** At most 3 transfers at once and at least 0.2 s between request starts on
  the platform (``max_transfers``, ``min_request_interval``: the engine enforces what a
  source declares), and the back-off on 400 bursts above: after one, *every* request to
  the private hosts pauses a second (:data:`BURST_PAUSE`), not only the refused one.
- **HLS** videos are fetched whole by :meth:`SmartEduSource.fetch_file` (:mod:`.hls_fetch`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from .base import ErrorKind, FetchContext, UpstreamRequest
from . import smartedu_auth as auth

log = logging.getLogger("shuqiao.smartedu")

NAME = "smartedu"
MAX_TRANSFERS = 3
MIN_REQUEST_INTERVAL = 0.2
# After a 400 burst answer, every request to the private hosts waits this long (§6.3: the
# main tool retries after 1 s, then 3 s; the engine's retry delays do the per-file part).
BURST_PAUSE = 1.0
# InvalidArgument refusals of one object, without a real MAC, before it counts as strict.
STRICT_AFTER = 3
# Browser-like headers the platform's own site sends (§3.3); Referer is not known to be
# enforced but costs nothing.
BASE_HEADERS = {
    "User-Agent": ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/124.0 Safari/537.36 Shuqiao/0.1"),
    "Origin": "https://basic.smartedu.cn",
    "Referer": "https://basic.smartedu.cn/",
}
PRIVATE_HOST = re.compile(r"^r\d+-ndr(-doc)?-private\.ykt\.cbern\.com\.cn$")
JSON_HOST = re.compile(r"^(s-file|bdcs-file)-(\d+)\.ykt\.cbern\.com\.cn$")
KEY_HOST = "ndvideo-key.ykt.eduyun.cn"
# Percent-encode everything outside RFC 3986's path characters; keep existing %XX escapes.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def encode_url(url: str) -> str:
    """UTF-8 percent-encoding of a URL's path and query (spaces, Chinese names)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, quote(parts.path, safe=_PATH_SAFE),
                       quote(parts.query, safe=_QUERY_SAFE), ""))


class HostMap:
    """``smartedu_hosts``: platform host → base URL (its path is prefixed to ours)."""

    def __init__(self, hosts: dict[str, str] | None = None):
        self.hosts = {k.lower(): v for k, v in (hosts or {}).items()}

    def map(self, url: str) -> str:
        parts = urlsplit(url)
        base = self.hosts.get((parts.hostname or "").lower())
        if base:
            target = urlsplit(base)
            parts = parts._replace(scheme=target.scheme, netloc=target.netloc,
                                   path=target.path.rstrip("/") + parts.path)
        return encode_url(urlunsplit(parts))


def upstream_host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def is_private(url: str) -> bool:
    return bool(PRIVATE_HOST.match(upstream_host(url)))


def host_kind(url: str) -> str:
    """private (needs the token), key (HLS key service), json (catalogue), public, other."""
    host = upstream_host(url)
    if PRIVATE_HOST.match(host):
        return "private"
    if host == KEY_HOST:
        return "key"
    if JSON_HOST.match(host):
        return "json"
    if host.endswith(".ykt.cbern.com.cn") or host.endswith(".eduyun.cn"):
        return "public"
    return "other"


def magic_for(mime: str, name: str = "") -> bytes | None:
    """The first bytes a file of this type must start with (None: no check)."""
    if mime == "application/pdf":
        return b"%PDF-"
    if mime == "image/jpeg":
        return b"\xff\xd8\xff"
    if mime == "image/png":
        return b"\x89PNG\r\n\x1a\n"
    if mime == "application/vnd.apple.mpegurl":
        return b"#EXTM3U"
    if mime == "video/mp2t":
        return b"\x47"
    return None


_ERROR_MARKERS = (b"<Error>", b"<Code>", b"<html", b"<HTML", b"CS/REQUIRE_SESSION",
                  b"401 Authorization Required")


def looks_like_error_body(body: bytes) -> bool:
    """An object-storage XML error, the openresty 401 page or a session JSON: content
    we must never store, whatever the status code said."""
    head = body[:2048].lstrip()
    return any(marker in head for marker in _ERROR_MARKERS)


def _xml_code(body: bytes) -> str:
    match = re.search(rb"<Code>\s*([A-Za-z]+)\s*</Code>", body[:4096])
    return match.group(1).decode() if match else ""


class SmartEduSource:
    """The platform for the fetch engine (the :class:`~cache.sources.base.Source` protocol).

    Build it with :func:`from_config`. One instance is shared by all fetch threads.
    """

    name = NAME
    max_transfers = MAX_TRANSFERS
    min_request_interval = MIN_REQUEST_INTERVAL

    def __init__(self, hosts: dict[str, str] | None, token_file, auth_mode: str = "auto",
                 rendition: int = 720, post=None):
        self.hosts = HostMap(hosts)
        self.auth_mode = auth_mode
        self.rendition = rendition
        self._post = post or self._default_post
        self.tokens = auth.TokenManager(token_file, self.refresh_url, self._post)
        self._local = threading.local()
        self._pause_lock = threading.Lock()
        self._pause_until = 0.0      # monotonic: private hosts throttled us; all wait
        self._invalid: dict[str, int] = {}   # path → InvalidArgument refusals (unsigned)
        self.bursts = 0

    # -- the Source protocol

    def request(self, url: str, method: str = "GET") -> UpstreamRequest:
        mapped = self.hosts.map(url)
        headers = dict(BASE_HEADERS)
        # classify() runs in the same worker thread right after this request: it needs to
        # know what kind of host answered and what auth we sent.
        self._local.host = host_kind(url)
        self._local.path = urlsplit(url).path
        self._local.mode = "none"
        if self._local.host == "private":
            self._wait_out_burst()
            token = self.tokens.ensure_fresh()
            headers.update(auth.auth_headers(self.auth_mode, token, method, mapped))
            self._local.mode = auth.effective_mode(self.auth_mode, token)
        return UpstreamRequest(mapped, headers)

    def classify(self, status: int | None, body: bytes, error: Exception | None) -> ErrorKind:
        body = body or b""
        if status is None:
            return ErrorKind.FAILOVER
        host = getattr(self._local, "host", "private")
        if host != "private":
            return self._classify_open_host(host, status)
        if status == 400:
            return self._classify_400(body)
        if status in (401, 403) or (status < 300 and b"CS/REQUIRE_SESSION" in body[:4096]):
            if self.tokens.current() is None or self._sent_mode() == "none":
                self.tokens.raise_alert(f"files answered {status} and no token is configured")
                return ErrorKind.AUTH
            verdict = self.tokens.rejected(status, _xml_code(body))
            if verdict == "retry":
                return ErrorKind.RETRY_SAME
            if verdict == "later":
                return ErrorKind.FAILOVER
            return ErrorKind.AUTH
        if status in (404, 410):
            return ErrorKind.NOT_FOUND
        if status in (408, 425, 429):
            return ErrorKind.RETRY_SAME
        if status < 300 and looks_like_error_body(body):
            return ErrorKind.CORRUPT
        return ErrorKind.FAILOVER

    @staticmethod
    def _classify_open_host(host: str, status: int) -> ErrorKind:
        """Hosts we send no token to: a 401/403 there is about the object, not our login.
        The key service answers 403 to a stale nonce (a new handshake fixes it); a public
        bucket's 403 AccessDenied (some 体育 page images, §2.4) is final for that file."""
        if status in (400, 408, 425, 429):
            return ErrorKind.RETRY_SAME
        if host == "key" and status in (401, 403):
            return ErrorKind.FAILOVER
        if status in (401, 403, 404, 410):
            return ErrorKind.NOT_FOUND
        return ErrorKind.FAILOVER

    def _wait_out_burst(self) -> None:
        """After a burst 400 every request to the private hosts waits (not just the one
        refused): the platform counts request starts per client, so one worker retrying
        while the others carry on would keep us over its limit."""
        with self._pause_lock:
            left = self._pause_until - time.monotonic()
        if left > 0:
            time.sleep(min(left, BURST_PAUSE))

    def _note_burst(self) -> None:
        with self._pause_lock:
            self.bursts += 1
            self._pause_until = max(self._pause_until, time.monotonic() + BURST_PAUSE)

    def _classify_400(self, body: bytes) -> ErrorKind:
        """400 is how the platform answers bursts (an almost empty body or XML
        ``InvalidArgument``): wait and retry the same mirror with a fresh signature.

        A *strict* object answers a placeholder MAC (or Bearer alone) with the very same
        400 ``InvalidArgument``, and no retry fixes that: only a real MAC does. The two
        cannot be told apart from one answer, so when we could not sign, the same object
        refusing :data:`STRICT_AFTER` times in a row (over several seconds of back-off)
        is taken to be strict: AUTH, with an alert saying a token with a ``mac_key`` (or
        ``smartedu_auth = mac``) is needed. With a real MAC a 400 is always throttling.
        """
        if _xml_code(body) == "InvalidArgument" and self._sent_mode() in (
                "placeholder", "bearer", "none"):
            path = getattr(self._local, "path", "")
            with self._pause_lock:
                refusals = self._invalid.pop(path, 0) + 1
                self._invalid[path] = refusals
                while len(self._invalid) > 256:
                    self._invalid.pop(next(iter(self._invalid)))
            if refusals >= STRICT_AFTER:
                self.tokens.raise_alert(
                    "a strict object needs a real MAC signature: the token has no mac_key "
                    "(or smartedu_auth is not mac)")
                return ErrorKind.AUTH
        self._note_burst()
        return ErrorKind.RETRY_SAME

    def _sent_mode(self) -> str:
        mode = getattr(self._local, "mode", None)
        return mode if mode is not None else auth.effective_mode(self.auth_mode,
                                                                 self.tokens.current())

    def fetch_file(self, file: dict, ctx: FetchContext) -> str | None:
        if file.get("mime") == "application/vnd.apple.mpegurl" or \
                (file.get("extra") or {}).get("hls"):
            from .hls_fetch import fetch_rendition
            return fetch_rendition(self, file, ctx)
        return None

    def auth_ok(self) -> bool:
        """For the fetch service: True when the token looks usable again (a new one was
        pasted, or a refresh worked), so files held on the auth alert may resume."""
        return self.tokens.current() is not None and not self.tokens.needs_login()

    def magic(self, file: dict) -> bytes | None:
        return magic_for(file.get("mime", ""), file.get("name", ""))

    # -- token refresh over our own HTTP

    def refresh_url(self, refresh_token: str) -> str:
        return self.hosts.map(f"https://{auth.UC_HOST}/v1.1/tokens/"
                              f"{quote(refresh_token, safe='')}/actions/refresh")

    @staticmethod
    def _default_post(url: str) -> tuple[int | None, Any]:
        import requests

        try:
            with requests.post(url, json={}, headers=dict(BASE_HEADERS), timeout=(10, 30)) \
                    as response:
                try:
                    body = response.json()
                except ValueError:
                    body = None
                return response.status_code, body
        except requests.RequestException as error:
            log.warning("smartedu token refresh: %s", error)
            return None, None


def from_config(config) -> SmartEduSource:
    """The source as the settings describe it."""
    rendition = int(str(getattr(config, "smartedu_video_rendition", "720p")).rstrip("p"))
    return SmartEduSource(getattr(config, "smartedu_hosts", {}) or {},
                          auth.token_path(config),
                          getattr(config, "smartedu_auth", "auto"), rendition)
