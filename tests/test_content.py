"""/content/<sha256> through a real waitress server: status codes, ranges, caching, safety,
and the rule that a paused viewer never holds a worker thread."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from conftest import LiveServer


@pytest.fixture
def blob_server(app, ctx, tmp_path):
    """A live server with one random 3 MB PDF-typed blob and one HTML blob."""
    data = b"%PDF-1.4\n" + os.urandom(3 * 1024 * 1024)
    pdf = tmp_path / "book.pdf"
    pdf.write_bytes(data)
    html = tmp_path / "page.html"
    html.write_bytes(b"<script>alert(1)</script>")
    with ctx.cache.catalog() as catalog:
        catalog.add_local_file(pdf, title="课本")
        catalog.add_local_file(html, title="网页")
    server = LiveServer(app, threads=4)
    server.data = data
    server.digest = hashlib.sha256(data).hexdigest()
    server.html_digest = hashlib.sha256(html.read_bytes()).hexdigest()
    yield server
    server.stop()


def get(server, path, **headers):
    return requests.get(server.url + path, headers=headers, timeout=10)


def test_full_blob_with_caching_headers(blob_server):
    r = get(blob_server, f"/content/{blob_server.digest}")
    assert r.status_code == 200
    assert r.content == blob_server.data
    assert r.headers["ETag"] == f'"{blob_server.digest}"'
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert r.headers["Content-Type"] == "application/pdf"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert int(r.headers["Content-Length"]) == len(blob_server.data)


@pytest.mark.parametrize("header, start, end", [
    ("bytes=0-99", 0, 99),
    ("bytes=100-", 100, None),          # open-ended
    ("bytes=-500", -500, None),         # suffix
    ("bytes=5-999999999", 5, None),     # end past the blob: clipped
])
def test_single_ranges(blob_server, header, start, end):
    data = blob_server.data
    expected = data[start:] if end is None else data[start:end + 1]
    r = get(blob_server, f"/content/{blob_server.digest}", Range=header)
    assert r.status_code == 206
    assert r.content == expected
    first = start if start >= 0 else len(data) + start
    assert r.headers["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    assert int(r.headers["Content-Length"]) == len(expected)


def test_unsatisfiable_range_is_416(blob_server):
    size = len(blob_server.data)
    r = get(blob_server, f"/content/{blob_server.digest}", Range=f"bytes={size}-")
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{size}"
    assert "not satisfiable" in r.json()["error"]


def test_malformed_or_multiple_ranges_get_the_whole_blob(blob_server):
    for header in ("bytes=abc", "bytes=0-1,5-6", "items=0-5", "bytes=9-3"):
        r = get(blob_server, f"/content/{blob_server.digest}", Range=header)
        assert r.status_code == 200, header
        assert len(r.content) == len(blob_server.data)


def test_conditional_requests(blob_server):
    etag = f'"{blob_server.digest}"'
    r = get(blob_server, f"/content/{blob_server.digest}", **{"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    # If-Range with our ETag: the range applies; with another validator: whole blob.
    r = get(blob_server, f"/content/{blob_server.digest}", Range="bytes=0-9", **{"If-Range": etag})
    assert r.status_code == 206 and r.content == blob_server.data[:10]
    r = get(blob_server, f"/content/{blob_server.digest}", Range="bytes=0-9",
            **{"If-Range": '"somethingelse"'})
    assert r.status_code == 200 and len(r.content) == len(blob_server.data)


def test_head_sends_headers_only(blob_server):
    r = requests.head(f"{blob_server.url}/content/{blob_server.digest}", timeout=10)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(blob_server.data)
    assert r.content == b""


def test_html_from_content_is_never_served_inline(blob_server):
    r = get(blob_server, f"/content/{blob_server.html_digest}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in r.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path, status", [
    ("/content/../../etc/passwd", 404),            # never reaches the handler as a path
    ("/content/..%2F..%2Fetc%2Fpasswd", 404),      # decoded to slashes: no such route
    ("/content/%2e%2e", 400),
    ("/content/" + "A" * 64, 400),                 # upper case is not our digest form
    ("/content/" + "0" * 63, 400),
    ("/content/" + "0" * 64, 404),                 # well-formed but unknown
    ("/content/" + "g" * 64, 400),
])
def test_bad_content_addresses(blob_server, path, status):
    conn = http.client.HTTPConnection(urlsplit(blob_server.url).hostname,
                                      urlsplit(blob_server.url).port, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == status, (path, body)
    if path.startswith("/content/") and response.status == 400:
        assert b"SHA-256" in body


def _paused_viewer(server, digest) -> socket.socket:
    """Ask for the whole blob like a <video> does, read the headers, then stop reading."""
    parts = urlsplit(server.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(f"GET /content/{digest} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-\r\n\r\n".encode())
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 206"), head[:100]
    return sock


def test_forty_paused_viewers_do_not_block_pages(app, ctx, tmp_path):
    """DESIGN.md: with Werkzeug's send_file each paused viewer pins a worker thread, and
    with 4 threads the fifth client gets no answer. Ours must answer pages at once."""
    video = tmp_path / "lesson.mp4"
    with open(video, "wb") as f:
        for _ in range(48):
            f.write(os.urandom(1024 * 1024))
    with ctx.cache.catalog() as catalog:
        rid = catalog.add_local_file(video, title="微课")
        digest = catalog.get(rid)["files"][0]["sha256"]
    server = LiveServer(app, threads=4)
    viewers = []
    try:
        for _ in range(40):
            viewers.append(_paused_viewer(server, digest))
        time.sleep(0.5)  # let every viewer's socket buffers fill up
        for path in ("/", "/api/info", "/healthz"):
            started = time.monotonic()
            r = requests.get(server.url + path, timeout=5)
            elapsed = time.monotonic() - started
            assert r.status_code == 200
            assert elapsed < 1.0, f"{path} took {elapsed:.2f} s with 40 paused viewers"
    finally:
        for sock in viewers:
            sock.close()
        server.stop()


def test_blob_bodies_leave_by_sendfile(blob_server, monkeypatch):
    """The kernel copies blob bytes to the socket: no Python buffer per send (bench/serve.py
    measured 1.3-1.5 s of CPU per GB without it at 50 paced clients, about 0.5 with it)."""
    import kiosk.server

    real_sendfile = os.sendfile
    sent = []

    def counting_sendfile(out_fd, in_fd, offset, count):
        n = real_sendfile(out_fd, in_fd, offset, count)
        sent.append(n)
        return n

    monkeypatch.setattr(kiosk.server.os, "sendfile", counting_sendfile)
    r = get(blob_server, f"/content/{blob_server.digest}", Range="bytes=1000-")
    assert r.status_code == 206 and r.content == blob_server.data[1000:]
    assert sum(sent) == len(blob_server.data) - 1000
