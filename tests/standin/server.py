"""The stand-in's public face, :class:`Standin`, and its HTTP server.

One ``ThreadingHTTPServer`` on 127.0.0.1 (a thread per connection, HTTP/1.1 keep-alive)
serves every platform host under ``/<host>/…``; requests are answered by
:class:`standin.handler.Handler`. See the package docstring for the routes, the signing
rule and the fault semantics.
"""

from __future__ import annotations

import socket
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

from . import auth
from .catalogue import Catalogue
from .common import ALL_HOSTS
from .content import FileEntry
from .faults import BurstCounter, Faults
from .handler import Handler, LogEntry

__all__ = ["LogEntry", "Standin"]


class Standin:
    """A faithful stand-in of the national platform on 127.0.0.1 (see package docstring)."""

    def __init__(self, captured_dir: str | Path | None = None, seed: int = 1, small: bool = True,
                 *, lesson_books: int | None = None, lessons_per_book: int | None = None,
                 host: str = "127.0.0.1", port: int = 0):
        self.seed, self.small = seed, small
        self.catalogue = Catalogue(seed, small, Path(captured_dir) if captured_dir else None,
                                   lesson_books, lessons_per_book)
        self.faults = Faults(seed)
        self.log: list[LogEntry] = []
        self.tokens = auth.TokenStore(seed, lambda: self.faults.token_ttl_seconds,
                                      lambda: self.faults.clock_offset_ms)
        self.token = self.tokens.issue()          # the admin's login
        self._bursts = BurstCounter()
        self._closing = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition()
        self._server = _Server((host, port), Handler)
        self._server.standin = self
        self.port = self._server.server_address[1]
        self.base_url = f"http://{host}:{self.port}"
        self.hosts = {name: f"{self.base_url}/{name}" for name in ALL_HOSTS}
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="standin-accept", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API

    def token_json(self, fresh: bool = False) -> str:
        """The login token JSON an admin pastes: the localStorage value of
        ``ND_UC_AUTH-{sdp-app-id}&ncet-xedu&token``. ``fresh=True`` logs in again."""
        if fresh:
            self.token = self.tokens.issue()
        return self.tokens.local_storage_value(self.token)

    def url(self, platform_url: str) -> str:
        """The stand-in URL for an absolute platform URL (the host mapping the adapter does)."""
        parts = urlsplit(platform_url)
        base = self.hosts[parts.hostname]
        return base + parts.path + (f"?{parts.query}" if parts.query else "")

    def nd_auth(self, url: str, method: str = "GET", token: auth.Token | None = None,
                nonce: str | None = None) -> str:
        """A valid ``X-ND-AUTH`` for a URL on this stand-in (mapped, as actually sent)."""
        token = token or self.token
        return auth.nd_auth_header(url, method, token.access_token, token.mac_key,
                                   self.faults.clock_offset_ms, nonce)

    def file_bytes(self, url: str) -> bytes:
        """The exact bytes a file URL serves (platform URL or stand-in URL)."""
        entry = self.file_entry(url)
        if entry is None:
            raise KeyError(url)
        return entry.body.all_bytes()

    def file_entry(self, url: str) -> FileEntry | None:
        for name, base in self.hosts.items():
            if url.startswith(base + "/"):
                url = f"https://{name}" + url[len(base):]
                break
        parts = urlsplit(url)
        path = unquote_to_bytes(parts.path).decode("utf-8")
        return self.catalogue.file(path)

    def touch_textbook(self, book_id: str):
        """Publish a new edition of a textbook: new file and md5, newer update_time, new
        module_version. Returns the Textbook."""
        return self.catalogue.touch_textbook(book_id)

    def revoke_tokens(self) -> None:
        """Every token dies (refresh chain broken): a person must log in again."""
        self.tokens.revoke_all()

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being answered (log entries are then final)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def clear_log(self) -> None:
        self.log.clear()

    def requests_to(self, host: str | None = None, path_contains: str = "") -> list[LogEntry]:
        return [e for e in list(self.log)
                if (host is None or e.host == host) and path_contains in e.path]

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------- for the handler

    def _begin(self) -> None:
        with self._idle:
            self._in_flight += 1

    def _end(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = False      # server_close joins them: nothing outlives close()
    block_on_close = True
    request_queue_size = 128
    standin: Standin

    def __init__(self, address, handler):
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every handler blocked reading a kept-alive connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
