"""Fetching one HLS rendition through the fetch engine (see :mod:`.hls` for the format).

:func:`fetch_rendition` is what :meth:`SmartEduSource.fetch_file` runs for a video file.
It uses the :class:`~cache.sources.base.FetchContext`: ``get_bytes`` for the playlist, the
key handshake and each segment (the politeness gate, the budget and the source's error
rules apply to every request), ``put_bytes`` for the clear segments and the local playlist,
``progress`` after each segment (bytes on the wire against ``requirements.total_size``).

**Mirrors.** The file's URLs are the same playlist on r1/r2/r3; segment names in it are
relative, so each one resolves on any mirror. A segment that fails (5xx, network, bytes
that do not decrypt) is asked from the next mirror.

**Resuming per segment.** After a segment is decrypted and stored, a ``file_parts`` row
maps the segment (its URL resolved on the *first* mirror, so the key does not depend on
which mirror answered) to the clear blob. After a restart or a retry such a segment is not
fetched again, and when every segment is there the key service is not contacted at all.
The engine's :class:`~cache.transfer.FileFetchContext` keeps that table; its
``_part``/``_record`` helpers are used when present (a context without them simply
fetches everything again).

**Renditions.** When the chosen rendition's playlist is not available (404 on every
mirror; some packages refuse per-resolution playlists, §4.4) the nearest other rendition
is tried. Any other failure is the engine's to retry.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar
from urllib.parse import urljoin

from .base import ErrorKind, FetchContext
from .hls import (HlsError, MediaPlaylist, check_totals, check_ts, decrypt_segment,
                  encrypted_size, fetch_key, local_playlist, parse_media_playlist, segment_iv)

log = logging.getLogger("shuqiao.smartedu.hls")

PLAYLIST_LIMIT = 2 * 1024 * 1024
SEGMENT_LIMIT = 64 * 1024 * 1024
KEY_LIMIT = 64 * 1024
KEY_ATTEMPTS = 2        # a refused sign gets one fresh nonce
T = TypeVar("T")


def _transfer_error(kind: ErrorKind, message: str) -> Exception:
    from ..transfer import TransferError

    return TransferError(kind, message)


def _interrupted() -> Exception:
    from ..transfer import Interrupted

    return Interrupted("cancelled")


def _kind(error: Exception) -> ErrorKind | None:
    return getattr(error, "kind", None)


def _stored(ctx: FetchContext, url: str) -> tuple[str, int] | None:
    lookup = getattr(ctx, "_part", None)
    digest = lookup(url) if lookup else None
    if not digest:
        return None
    engine = getattr(ctx, "engine", None)
    return digest, (engine.store.size(digest) if engine is not None else 0)


def _record(ctx: FetchContext, url: str, digest: str, size: int) -> None:
    record = getattr(ctx, "_record", None)
    if record:
        record(url, digest, size)


def _each_mirror(mirrors: list[str], attempt: Callable[[str], T]) -> T:
    """``attempt(url)`` on each mirror in turn until one works. AUTH and NOT_FOUND are
    the same everywhere and end it; a stop (no kind) ends it too."""
    last: Exception | None = None
    for url in mirrors:
        try:
            return attempt(url)
        except Exception as error:  # HlsError or the engine's TransferError
            if _kind(error) in (None, ErrorKind.AUTH, ErrorKind.NOT_FOUND):
                raise
            last = error
    raise last or HlsError("no mirror for this video", ErrorKind.NOT_FOUND)


def fetch_rendition(source, file: dict, ctx: FetchContext) -> str:
    """Fetch, decrypt and store one rendition; returns the local playlist's SHA-256.

    :raises TransferError: with the kind the engine acts on (AUTH holds and alerts, …).
    """
    extra = file.get("extra") or {}
    chosen = dict(extra.get("hls") or {})
    chosen.setdefault("urls", list(file.get("urls") or []))
    candidates = [chosen] + list(extra.get("fallbacks") or [])
    candidates = [c for c in candidates if c.get("urls")]
    if not candidates:
        raise _transfer_error(ErrorKind.NOT_FOUND, "no playlist URL for this video")
    for number, rendition in enumerate(candidates):
        try:
            playlist = _each_mirror(rendition["urls"], lambda url: _read_playlist(ctx, url))
        except Exception as error:
            if _kind(error) is ErrorKind.NOT_FOUND and number + 1 < len(candidates):
                log.info("file %s: %sp unavailable (%s); trying %sp", file.get("id"),
                         rendition.get("height"), error, candidates[number + 1].get("height"))
                continue
            raise _as_transfer_error(error) from None
        try:
            return _store_rendition(ctx, rendition, playlist)
        except Exception as error:
            raise _as_transfer_error(error) from None
    raise _transfer_error(ErrorKind.NOT_FOUND, "no rendition of this video is available")


def _as_transfer_error(error: Exception) -> Exception:
    if isinstance(error, HlsError):
        return _transfer_error(error.kind, str(error))
    return error


def _read_playlist(ctx: FetchContext, url: str) -> tuple[str, MediaPlaylist]:
    body = ctx.get_bytes(url, limit=PLAYLIST_LIMIT)
    if not body.lstrip(b"\xef\xbb\xbf \r\n").startswith(b"#EXTM3U"):
        raise HlsError(f"{url} did not send a playlist", ErrorKind.CORRUPT)
    return url, parse_media_playlist(body.decode("utf-8", "replace"), url)


def _store_rendition(ctx: FetchContext, rendition: dict,
                     read: tuple[str, MediaPlaylist]) -> str:
    playlist_url, playlist = read
    mirrors = [playlist_url] + [m for m in rendition["urls"] if m != playlist_url]
    canonical = rendition["urls"][0]
    total_declared = rendition.get("total_size")
    digests: list[str | None] = []
    wire_bytes = 0
    for segment in playlist.segments:
        stored = _stored(ctx, urljoin(canonical, segment.raw))
        digests.append(stored[0] if stored else None)
        wire_bytes += encrypted_size(stored[1]) if stored and segment.key else \
            (stored[1] if stored else 0)
    ctx.progress(wire_bytes, total_declared)
    keys: dict[str, bytes] = {}

    def key_for(key_uri: str) -> bytes:
        if key_uri not in keys:
            keys[key_uri] = _handshake(ctx, key_uri)
        return keys[key_uri]

    for index, segment in enumerate(playlist.segments):
        if digests[index]:
            continue
        if ctx.cancelled():
            raise _interrupted()

        def fetch_segment(mirror: str, segment=segment) -> tuple[bytes, int]:
            data = ctx.get_bytes(urljoin(mirror, segment.raw), limit=SEGMENT_LIMIT)
            if segment.key is None:
                clear = data
            elif not segment.key.uri:
                raise HlsError("an encrypted segment without a key URI")
            else:
                clear = decrypt_segment(data, key_for(segment.key.uri), segment_iv(segment))
            check_ts(clear)
            return clear, len(data)

        clear, wire = _each_mirror(mirrors, fetch_segment)
        digest = ctx.put_bytes(clear)
        _record(ctx, urljoin(canonical, segment.raw), digest, len(clear))
        digests[index] = digest
        wire_bytes += wire
        ctx.progress(wire_bytes, total_declared)
    check_totals(len(playlist.segments), wire_bytes, rendition.get("count"), total_declared)
    return ctx.put_bytes(local_playlist(playlist, [d for d in digests if d]))


def _handshake(ctx: FetchContext, key_uri: str) -> bytes:
    last: Exception | None = None
    for _ in range(KEY_ATTEMPTS):
        try:
            return fetch_key(key_uri, lambda url: ctx.get_bytes(url, limit=KEY_LIMIT))
        except Exception as error:
            if _kind(error) in (None, ErrorKind.AUTH):
                raise
            last = error
    raise last  # type: ignore[misc]
