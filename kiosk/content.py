"""``GET /content/<sha256>``: cached blobs with Range, ETag and immutable caching.

Why this is hand-written rather than Flask's ``send_file``: with a Range request Werkzeug
wraps the file in an iterator, and waitress then needs a worker thread for as long as the
client reads. A browser that has buffered enough video stops reading, so every paused
viewer pins a thread; with a few threads the next pupil gets no answer at all (measured,
see DESIGN.md). Instead we return ``environ["wsgi.file_wrapper"](f)`` on a file already
seeked to the range start, with Content-Length set to the range length: waitress recognises
its own wrapper and streams the bytes from its I/O loop, and the thread is free at once.

Because a blob's name is the SHA-256 of its bytes, the ETag is that digest and the response
never changes: it is cached for a year as ``immutable``.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

from flask import Blueprint, Response, request
from werkzeug.wsgi import wrap_file

from cache import disk, validate_digest

from . import catalog, json_error

bp = Blueprint("content", __name__)

BLOCK_SIZE = 64 * 1024
CACHE_CONTROL = "public, max-age=31536000, immutable"
# Types a browser may show inline on the kiosk origin. Anything else (HTML from a pack,
# SVG with script, unknown bytes) is sent as an attachment of type octet-stream, so it
# can never run as a page of ours.
INLINE_TYPES = re.compile(
    r"^(video/(mp4|webm|ogg|mp2t)|audio/(mpeg|mp4|ogg|wav|webm|aac)|image/(jpeg|png|gif|webp)"
    r"|application/pdf|application/json|text/plain|application/vnd\.apple\.mpegurl)$")
# Applied to every blob: nothing in it may load or run anything. ``sandbox`` would break
# the browsers' built-in PDF viewers, so PDFs get the same policy without it.
CONTENT_CSP = "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single byte range, or None to send the whole blob.

    Supports ``a-b``, open-ended ``a-`` and suffix ``-n`` ranges. Several ranges or a
    malformed header are ignored (RFC 9110 allows answering them with the full 200).
    Raises :class:`Unsatisfiable` when the range lies outside the blob (→ 416).
    """
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # suffix range: the last n bytes
        length = int(last)
        if length == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - length), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # invalid range: ignore it
    if start >= size:
        raise Unsatisfiable()
    return start, end


def _etag_matches(header: str, etag: str) -> bool:
    candidates = [c.strip() for c in header.split(",")]
    return "*" in candidates or etag in candidates or ("W/" + etag) in candidates


@bp.route("/content/<digest>", methods=["GET", "HEAD"])
def blob(digest: str):
    try:
        validate_digest(digest)
    except ValueError:
        return json_error(400, "content address must be a SHA-256 digest: 64 lower-case "
                               "hex characters", "bad_digest")
    cat = catalog()
    info = cat.blob_info(digest)
    try:
        # One open serves the existence check, the size (fstat) and the body.
        f = cat.store.open(digest) if info is not None else None
    except FileNotFoundError:
        f = None
    if f is None:
        return json_error(404, "no such content on this server", "not_found")

    etag = f'"{digest}"'
    mime = info["mime"]
    inline = bool(INLINE_TYPES.match(mime))
    headers = {
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL,
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": CONTENT_CSP + ("" if mime == "application/pdf" else "; sandbox"),
        "Content-Type": mime if inline else "application/octet-stream",
        "Content-Disposition": ("inline" if inline else "attachment")
        + (f"; filename*=UTF-8''{quote(info['name'])}" if info["name"] else ""),
    }
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match and _etag_matches(if_none_match, etag):
        f.close()
        return Response(status=304, headers={k: headers[k] for k in ("ETag", "Cache-Control")})

    try:
        size = os.fstat(f.fileno()).st_size
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if range_header and if_range and if_range.strip() != etag:
            range_header = None  # the client's copy is different: send it all (RFC 9110 13.1.5)
        try:
            byte_range = parse_range(range_header, size)
        except Unsatisfiable:
            f.close()
            response = json_error(416, f"range not satisfiable: this content is {size} bytes",
                                  "range_not_satisfiable")
            response.headers["Content-Range"] = f"bytes */{size}"
            return response
        if byte_range is None:
            status, start, length = 200, 0, size
        else:
            status, start, length = 206, byte_range[0], byte_range[1] - byte_range[0] + 1
            headers["Content-Range"] = f"bytes {start}-{byte_range[1]}/{size}"
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            f.close()
            return Response(status=status, headers=headers)
        f.seek(start)
        # Recently served blobs are the last to be evicted (noted in memory, written in
        # batches, so serving stays cheap).
        disk.touch(cat.db, digest)
        file_wrapper = request.environ.get("wsgi.file_wrapper")
        if file_wrapper is not None:
            # waitress: its ReadOnlyFileBasedBuffer sends Content-Length bytes from the
            # current position, from the I/O loop, and closes the file when done.
            body = file_wrapper(f, BLOCK_SIZE)
        else:
            body = _limited(wrap_file(request.environ, f, BLOCK_SIZE), length)
        return Response(body, status=status, headers=headers, direct_passthrough=True)
    except BaseException:
        f.close()
        raise


def _limited(chunks, length: int):
    """For servers without a file wrapper: stop after ``length`` bytes."""
    remaining = length
    try:
        for chunk in chunks:
            if remaining <= 0:
                break
            yield chunk[:remaining]
            remaining -= len(chunk)
    finally:
        chunks.close()
