"""The interface between the fetch engine and a source (see the package docstring)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class ErrorKind(enum.Enum):
    """What the fetch engine should do after an upstream answered badly."""

    RETRY_SAME = "retry-same"   # throttled (the platform's 400 bursts): back off, same mirror
    FAILOVER = "failover"       # 5xx, network error, stall: try the next mirror, back off
    AUTH = "auth"               # 401/403: a person must log in again; stop, alert the admin
    NOT_FOUND = "not-found"     # 404 on every mirror: give up on this file
    CORRUPT = "corrupt"         # bytes did not verify (size, md5, magic, error page as body)


@dataclass
class UpstreamRequest:
    """One HTTP request as the source wants it sent (URL already host-mapped)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


class FetchContext(Protocol):
    """What the fetch engine offers a source that takes over a whole file (``fetch_file``)."""

    def download(self, url: str, *, expected_size: int | None = None,
                 expected_md5: str | None = None, magic: bytes | None = None) -> str:
        """Resumable, verified, budgeted download of one upstream URL into the blob store;
        returns the blob's SHA-256. Raises ``cache.transfer.TransferError`` (with an
        ``ErrorKind``) when it cannot."""

    def get_bytes(self, url: str, *, limit: int = 4 * 1024 * 1024) -> bytes:
        """A small upstream response (a playlist, a key, JSON) read whole, politely."""

    def put_bytes(self, data: bytes) -> str:
        """Store bytes made locally (a rewritten playlist) as a blob; returns its SHA-256."""

    def progress(self, done: int, total: int | None) -> None:
        """Report bytes done so far for this file (queue page, CLI progress bar)."""

    def cancelled(self) -> bool:
        """True when the admin cancelled this fetch; stop at the next safe point."""


class Source(Protocol):
    name: str

    def request(self, url: str, method: str = "GET") -> UpstreamRequest:
        """Map the URL's host (settings) and add this source's auth headers. Called for
        every attempt, so a signature (the platform's MAC) covers the URL actually sent."""

    def classify(self, status: int | None, body: bytes, error: Exception | None) -> ErrorKind:
        """Decide what an error answer (or a network error when status is None) means."""

    def fetch_file(self, file: dict, ctx: FetchContext) -> str | None:
        """Take over fetching a whole file (e.g. an HLS rendition) and return the SHA-256 of
        the blob that stands for it; return None to let the engine download ``file['urls']``
        itself."""
