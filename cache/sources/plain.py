"""A plain HTTP(S) source: no auth, errors judged by status code alone.

What a county mirror on an ordinary static web server or object store is, and what the
fetch engine's tests use. The engine does the transferring (see ``cache/transfer.py``);
this only maps hosts and classifies errors.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from .base import ErrorKind, UpstreamRequest


def map_host(url: str, hosts: dict[str, str]) -> str:
    """Rewrite ``url`` when its host is in ``hosts`` (host → base URL, e.g.
    ``{"r1-ndr.ykt.cbern.com.cn": "http://127.0.0.1:8123"}``); the base's path is
    prefixed to the URL's path."""
    parts = urlsplit(url)
    base = hosts.get(parts.hostname or "")
    if not base:
        return url
    target = urlsplit(base)
    path = target.path.rstrip("/") + parts.path
    return urlunsplit((target.scheme, target.netloc, path, parts.query, parts.fragment))


def classify_by_status(status: int | None, error: Exception | None) -> ErrorKind:
    if status is None:
        return ErrorKind.FAILOVER          # connection refused, reset, timeout
    if status in (408, 425, 429):
        return ErrorKind.RETRY_SAME        # "slow down": same mirror after a pause
    if status in (401, 403, 407):
        return ErrorKind.AUTH
    if status in (404, 410):
        return ErrorKind.NOT_FOUND
    return ErrorKind.FAILOVER              # 5xx and anything else unexpected


class PlainHTTPSource:
    """No auth; ``hosts`` maps upstream host names to other base URLs; optional politeness
    limits (``max_transfers`` at once, ``min_request_interval`` seconds between starts)."""

    def __init__(self, name: str = "plain", hosts: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, max_transfers: int | None = None,
                 min_request_interval: float = 0.0):
        self.name = name
        self.hosts = dict(hosts or {})
        self.headers = dict(headers or {})
        self.max_transfers = max_transfers
        self.min_request_interval = min_request_interval

    def request(self, url: str, method: str = "GET") -> UpstreamRequest:
        return UpstreamRequest(map_host(url, self.hosts), dict(self.headers))

    def classify(self, status: int | None, body: bytes, error: Exception | None) -> ErrorKind:
        return classify_by_status(status, error)

    def fetch_file(self, file: dict, ctx) -> str | None:
        return None
