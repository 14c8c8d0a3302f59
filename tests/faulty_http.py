"""A small HTTP file server with switchable faults, for the fetch engine's tests and bench.

Serves ``files`` (path → bytes) on 127.0.0.1:0 with ETag/Last-Modified, single-range
requests and If-Range, and these faults (all off by default, changeable while running):

- ``range``: False → ignore Range and answer 200 with the whole file;
- ``rate``: bytes/s shared by all connections (one token bucket: a thin link);
- ``drops_per_mb``: mean dropped connections per MiB sent (reset with RST mid-body);
- ``drop_after``: {path: [byte offsets]} — end the body there once (a clean close, so the
  client has every byte before it; random drops are resets that lose what was in flight);
- ``stall_after``: {path: offset} — stop sending (keep the socket open) at that offset, once;
- ``corrupt``: {path: count} — flip a byte in the next ``count`` responses of that path;
- ``status``: {path: [codes]} — answer the next requests with these codes (then normal);
- ``burst_limit``: more than this many requests within ``burst_window`` s → 400 XML.

It counts ``body_bytes_sent`` and logs every request (time, path, Range, status), which is
how tests prove that nothing verified is fetched again.
"""

from __future__ import annotations

import email.utils
import hashlib
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEND_CHUNK = 16 * 1024


@dataclass
class Faults:
    range: bool = True
    rate: float | None = None
    drops_per_mb: float = 0.0
    drop_after: dict = field(default_factory=dict)
    stall_after: dict = field(default_factory=dict)
    stall_seconds: float = 30.0
    corrupt: dict = field(default_factory=dict)
    status: dict = field(default_factory=dict)
    burst_limit: int | None = None
    burst_window: float = 1.0
    etag: bool = True


@dataclass
class LogEntry:
    time: float
    path: str
    range: str | None
    status: int
    sent: int = 0


class _Bucket:
    """The server-side link: one token bucket for every connection."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tokens = 0.0
        self.last = time.monotonic()

    def take(self, n: int, rate: float | None) -> None:
        if not rate:
            return
        with self.lock:
            now = time.monotonic()
            self.tokens = min(rate * 0.05, self.tokens + (now - self.last) * rate)
            self.last = now
            self.tokens -= n
            debt = -self.tokens / rate if self.tokens < 0 else 0.0
        if debt > 0:
            time.sleep(debt)


class FaultyServer:
    def __init__(self, files: dict[str, bytes] | None = None, seed: int = 1):
        self.files: dict[str, bytes] = dict(files or {})
        self.faults = Faults()
        self.log: list[LogEntry] = []
        self.body_bytes_sent = 0
        self.drops = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._bucket = _Bucket()
        self._recent: list[float] = []
        self._mtime = email.utils.formatdate(time.time() - 3600, usegmt=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # Clients killed with -9 and dropped connections are the point here, not news.
        self._server.handle_error = lambda request, client_address: None
        self._server.block_on_close = False
        self.port = self._server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> "FaultyServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> "FaultyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def requests_for(self, path: str, since: float = 0.0) -> list[LogEntry]:
        with self._lock:
            return [e for e in self.log if e.path == path and e.time >= since]

    @staticmethod
    def etag_of(data: bytes) -> str:
        return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'

    # ------------------------------------------------------------------ handler

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self.do_GET(head=True)

            def do_GET(self, head: bool = False) -> None:
                server._serve(self, head)

        return Handler

    def _burst(self) -> bool:
        f = self.faults
        if not f.burst_limit:
            return False
        now = time.monotonic()
        with self._lock:
            self._recent = [t for t in self._recent if now - t < f.burst_window]
            self._recent.append(now)
            return len(self._recent) > f.burst_limit

    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = h.path.split("?")[0]
        entry = LogEntry(time.time(), path, h.headers.get("Range"), 200)
        with self._lock:
            self.log.append(entry)
            queued = self.faults.status.get(path)
            forced = queued.pop(0) if queued else None
        if self._burst():
            forced = 400
        data = self.files.get(path)
        if forced is None and data is None:
            forced = 404
        if forced is not None:
            entry.status = forced
            body = (b"<?xml version='1.0'?><Error><Code>InvalidArgument</Code></Error>"
                    if forced == 400 else b"<html><body>error %d</body></html>" % forced)
            h.send_response(forced)
            h.send_header("Content-Type", "text/html" if forced != 400 else "application/xml")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if not head:
                h.wfile.write(body)
            return
        etag = self.etag_of(data)
        start, end = 0, len(data) - 1
        status = 200
        wanted = h.headers.get("Range")
        if_range = h.headers.get("If-Range")
        if wanted and self.faults.range and (not if_range or if_range in (etag, self._mtime)):
            spec = wanted.replace("bytes=", "").split("-")
            first = int(spec[0]) if spec[0] else None
            if first is not None and first >= len(data):
                entry.status = 416
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            if first is not None:
                start = first
                end = min(int(spec[1]), len(data) - 1) if spec[1] else len(data) - 1
                status = 206
        entry.status = status
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(end - start + 1))
        if self.faults.etag:
            h.send_header("ETag", etag)
            h.send_header("Last-Modified", self._mtime)
        h.send_header("Accept-Ranges", "bytes" if self.faults.range else "none")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        h.end_headers()
        if head:
            return
        body = data[start:end + 1]
        with self._lock:
            corrupting = self.faults.corrupt.get(path, 0) > 0
            if corrupting:
                self.faults.corrupt[path] -= 1
        if corrupting and body:
            spot = len(body) // 2
            body = body[:spot] + bytes([body[spot] ^ 0xFF]) + body[spot + 1:]
        self._send_body(h, path, body, start, entry)

    def _send_body(self, h, path: str, body: bytes, start: int, entry: LogEntry) -> None:
        f = self.faults
        drop_points = sorted(o for o in f.drop_after.get(path, []) if start < o < start + len(body))
        stall_at = f.stall_after.get(path)
        sent = 0
        while sent < len(body):
            chunk = body[sent:sent + SEND_CHUNK]
            position = start + sent
            if drop_points and position + len(chunk) > drop_points[0]:
                cut = drop_points[0] - position
                with self._lock:
                    f.drop_after[path].remove(drop_points[0])
                self._write(h, chunk[:cut], entry)
                return self._drop(h, reset=False)
            if stall_at is not None and position <= stall_at < position + len(chunk):
                with self._lock:
                    f.stall_after.pop(path, None)
                self._write(h, chunk[:stall_at - position], entry)
                time.sleep(f.stall_seconds)
                return self._drop(h)
            self._bucket.take(len(chunk), f.rate)
            if f.drops_per_mb and self._rng.random() < f.drops_per_mb * len(chunk) / 2 ** 20:
                self._write(h, chunk[:self._rng.randrange(len(chunk))], entry)
                return self._drop(h)
            if not self._write(h, chunk, entry):
                return
            sent += len(chunk)

    def _write(self, h, data: bytes, entry: LogEntry) -> bool:
        try:
            h.wfile.write(data)
            h.wfile.flush()
        except OSError:
            h.close_connection = True
            return False
        with self._lock:
            self.body_bytes_sent += len(data)
            entry.sent += len(data)
        return True

    def _drop(self, h, reset: bool = True) -> None:
        """End the connection mid-body. ``reset``: an RST, as a flaky link does, and bytes
        still in the client's socket buffer are lost with it; otherwise a plain close
        (FIN): the client gets every byte sent, then a short body."""
        with self._lock:
            self.drops += 1
        if reset:
            try:
                h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
            except OSError:
                pass
        h.close_connection = True


# ---------------------------------------------------------------- test helpers


def add_resource(cache, server: FaultyServer, paths: list[str], *, source: str = "plain",
                 source_id: str | None = None, with_md5: bool = True, with_size: bool = True,
                 mirrors: list[FaultyServer] | None = None, mime: str | None = None) -> str:
    """Catalogue one resource whose files are ``paths`` on ``server`` (and on ``mirrors``
    after it); returns the resource id."""
    from cache import FileSpec

    specs = []
    for path in paths:
        data = server.files[path]
        kind_mime = mime or ("application/pdf" if path.endswith(".pdf")
                             else "application/octet-stream")
        urls = tuple(s.url(path) for s in [server, *(mirrors or [])])
        specs.append(FileSpec(role="source", mime=kind_mime, name=path.rsplit("/", 1)[-1],
                              size=len(data) if with_size else None,
                              md5=hashlib.md5(data).hexdigest() if with_md5 else None,
                              urls=urls))
    with cache.catalog() as catalog:
        return catalog.upsert_resource(source=source, source_id=source_id or ",".join(paths),
                                       kind="document", title="测试 " + paths[0], files=specs)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something true; raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")


def config_for(home, **overrides):
    """A settings.Config for a home, as the CLI would build it (no environment, no mDNS)."""
    import settings

    overrides.setdefault("mdns", False)
    return settings.load(home=home, overrides=overrides, environ={})
