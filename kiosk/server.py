"""Running the kiosk under waitress, tuned for a classroom, with a graceful stop.

- Connection limit and threads come from settings. Blob responses are streamed by
  waitress's I/O loop (see :mod:`kiosk.content`), so threads only serve pages and API calls.
- Blob bodies leave by ``os.sendfile`` (:class:`SendfileChannel`): the kernel copies file
  pages straight to the socket. Stock waitress reads a send buffer's worth of the file
  into Python for every ``send()`` and a slow client takes only part of it; measured with
  bench/serve.py at 50 clients paced at 2.5 MB/s that cost 1.3-1.5 s of CPU per GB, most
  of it page faults from allocating and freeing those buffers; with sendfile 0.45-0.5.
- ``SO_SNDBUF`` is still pinned on every accepted socket (Linux doubles the value): it
  bounds the kernel memory a stalled viewer holds and the bytes sent per wakeup.
- SIGTERM (systemd stop) and SIGINT stop accepting at once, let in-flight requests finish
  for up to ``grace`` seconds, then close every connection and return, so the caller
  can close databases and unregister mDNS. systemd is told ``STOPPING=1``.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import signal
import socket
import threading
import time
from typing import Callable

from waitress import create_server
from waitress import wasyncore
from waitress.buffers import ReadOnlyFileBasedBuffer
from waitress.channel import HTTPChannel

log = logging.getLogger("shuqiao.server")


# Most bytes handed to one sendfile() call; the socket buffer limits it far earlier on a
# non-blocking socket, this only bounds a pathological case.
SENDFILE_CHUNK = 8 * 1024 * 1024
_DISCONNECTED = frozenset({errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN,
                           errno.ECONNABORTED, errno.EPIPE, errno.EBADF})


class SendfileChannel(HTTPChannel):
    """A waitress channel that sends ``wsgi.file_wrapper`` bodies with ``os.sendfile``.

    This overrides waitress's private ``_flush_some`` (same loop, one more branch), so
    pyproject pins waitress to the tested minor version and tests/test_content.py checks
    bytes and ranges through a real server.
    """

    def _flush_some(self, do_close=True):
        sent = 0
        stop = False
        while True:
            outbuf = self.outbufs[0]
            outbuflen = outbuf.__len__()  # not len(): no OverflowError on 32-bit
            while outbuflen > 0:
                partial = False
                if type(outbuf) is ReadOnlyFileBasedBuffer and _has_fileno(outbuf.file):
                    wanted = min(outbuflen, SENDFILE_CHUNK)
                    num_sent = self._sendfile(outbuf.file, wanted, do_close)
                    partial = 0 < num_sent < wanted
                else:
                    num_sent = self.send(outbuf.get(self.sendbuf_len), do_close=do_close)
                if num_sent:
                    outbuf.skip(num_sent, True)
                    outbuflen -= num_sent
                    sent += num_sent
                    self.total_outbufs_len -= num_sent
                if not num_sent or partial:
                    # The socket is full: trying again now would only fail with EAGAIN.
                    stop = True
                    break
            else:
                if len(self.outbufs) > 1:  # the last outbuf must stay: it is writable
                    done = self.outbufs.pop(0)
                    try:
                        done.close()
                    except Exception:
                        self.logger.exception("Unexpected error when closing an outbuf")
                else:
                    stop = True
            if stop:
                break
        if sent:
            self.last_activity = time.time()
            return True
        return False

    def _sendfile(self, file, count: int, do_close: bool) -> int:
        try:
            return os.sendfile(self.socket.fileno(), file.fileno(), file.tell(), count)
        except BlockingIOError:
            return 0
        except OSError as error:
            if error.errno in _DISCONNECTED:
                if do_close:
                    self.handle_close()
                return 0
            raise


def _has_fileno(file) -> bool:
    try:
        file.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def sd_notify(state: str) -> bool:
    """Send a state line to systemd if it is listening (``NOTIFY_SOCKET``); no library needed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError as error:
        log.warning("could not notify systemd (%s): %s", state, error)
        return False


class KioskServer:
    """A waitress server bound at construction; :meth:`run` blocks until stopped."""

    def __init__(self, app, *, host: str, port: int, threads: int, connection_limit: int,
                 send_buffer_bytes: int, grace_seconds: float):
        self.grace_seconds = grace_seconds
        self._stopping = threading.Event()
        self.server = create_server(
            app, host=host, port=port, threads=threads, connection_limit=connection_limit,
            ident="shuqiao", channel_timeout=120, clear_untrusted_proxy_headers=True,
            # Pages are small; a long lookahead queue only delays shutdown.
            channel_request_lookahead=5,
            # select() fails past 1024 descriptors; a classroom of streams (each holding a
            # socket and an open blob) gets there, poll() has no such limit.
            asyncore_use_poll=True,
        )
        self.server.channel_class = SendfileChannel
        # Applied by waitress to every accepted connection, before it reads SO_SNDBUF.
        self.server.adj.socket_options = list(self.server.adj.socket_options) + [
            (socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)]
        self.host = host
        self.port = self.server.effective_port

    @property
    def url(self) -> str:
        shown = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/"

    def wait_until_answering(self, timeout: float = 10.0) -> bool:
        """Block until ``/healthz`` answers over the real socket (called from another thread)."""
        host = self.url.split("//")[1].rsplit(":", 1)[0].strip("[]")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            try:
                conn = http.client.HTTPConnection(host, self.port, timeout=2)
                conn.request("GET", "/healthz")
                ok = conn.getresponse().status == 200
                conn.close()
                if ok:
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stop()

    def stop(self) -> None:
        """Stop accepting and drain; safe to call from a signal handler or another thread."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        sd_notify("STOPPING=1")
        # Closing the listening socket must happen on the loop thread.
        self.server.trigger.pull_trigger(self._close_listener)
        threading.Thread(target=self._drain, name="shuqiao-drain", daemon=True).start()

    def _close_listener(self) -> None:
        if self.server.accepting:
            self.server.accepting = False
            self.server.del_channel()
            self.server.socket.close()

    def _busy_channels(self) -> int:
        # The loop thread may add or drop channels while we look: retry on that race.
        while True:
            try:
                channels = list(self.server._map.values())
                break
            except RuntimeError:
                continue
        busy = 0
        for channel in channels:
            if getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0):
                busy += 1
        return busy

    def _drain(self) -> None:
        deadline = time.monotonic() + self.grace_seconds
        while time.monotonic() < deadline and self._busy_channels():
            time.sleep(0.05)
        if self._busy_channels():
            log.warning("closing %d connection(s) still busy after %.0f s",
                        self._busy_channels(), self.grace_seconds)
        try:
            self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        except OSError:
            # The loop thread, woken by an earlier pull, already ran our queued close_all
            # (it closes the trigger's pipe) before this pull wrote to it: nothing to do.
            pass

    def run(self) -> None:
        """Serve until :meth:`stop`; then wait for worker threads to finish."""
        try:
            self.server.run()
        finally:
            self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)


def serve_forever(server: KioskServer, on_ready: Callable[[], None] | None = None) -> None:
    """Run ``server`` in this thread; ``on_ready`` runs in a helper thread once it answers."""

    def ready() -> None:
        if server.wait_until_answering() and on_ready is not None:
            on_ready()

    threading.Thread(target=ready, name="shuqiao-ready", daemon=True).start()
    server.run()
