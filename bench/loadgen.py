"""Load generator for bench/serve.py: N clients fetching one file with ``Range: bytes=0-``.

It runs as its own process so that its CPU is never counted as the server's. Modes:

- ``paused``: read the response headers, then stop reading, like a browser whose video
  element has buffered far enough ahead. The connection stays open.
- ``paced``: read at ``--rate`` bytes/s per client with a token bucket refilled every
  ``--tick`` seconds, like a pupil's terminal behind a real link. The server sees the
  receive window open in small steps, which is what makes it wake up often.
- ``fast``: read as fast as loopback allows.

Paced and fast clients open a new connection when a response ends, so the load stays
constant for the whole window however big the file is.

Protocol with the parent (one line each, on stdin/stdout): once every client has its
headers (or ``--ramp`` seconds have passed) this prints ``{"event": "ready", ...}``.
``go`` zeroes the byte counters; ``stats`` prints the counters since ``go``; ``quit``
(or end of input, or ``--max-seconds``) closes everything and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import sys
import time

HEADER_LIMIT = 64 * 1024
RECV_SIZE = 256 * 1024


class Client:
    __slots__ = ("slot", "sock", "state", "head", "remaining", "allowance", "registered",
                 "retry_at")

    def __init__(self, slot: int):
        self.slot = slot
        self.sock: socket.socket | None = None
        self.state = "idle"  # idle -> head -> body -> (done: reconnect) ; paused after head
        self.head = b""
        self.remaining = 0
        self.allowance = 0.0
        self.registered = False
        self.retry_at = 0.0


class LoadGen:
    def __init__(self, args):
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
                        f"Range: bytes=0-\r\nUser-Agent: shuqiao-bench\r\n\r\n").encode()
        self.clients = [Client(i) for i in range(args.clients)]
        self.buf = bytearray(RECV_SIZE)
        self.view = memoryview(self.buf)
        self.slot_bytes = [0] * args.clients
        self.bytes = 0
        self.errors: dict[str, int] = {}
        self.responses = 0
        self.reconnects = 0
        self.go_at = time.monotonic()

    # -------------------------------------------------------------- connections

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def connect(self, c: Client) -> None:
        try:
            # Loopback completes the handshake in the kernel, so a blocking connect with
            # a short timeout is enough and keeps this simple.
            sock = socket.create_connection((self.args.host, self.args.port), timeout=2)
            sock.sendall(self.request)
            sock.setblocking(False)
        except OSError as e:
            self.error(f"connect: {type(e).__name__}")
            c.state, c.retry_at = "idle", time.monotonic() + 0.5
            return
        c.sock, c.state, c.head, c.remaining, c.allowance = sock, "head", b"", 0, 0.0
        self.sel.register(sock, selectors.EVENT_READ, c)
        c.registered = True

    def close(self, c: Client, retry_delay: float = 0.0) -> None:
        if c.sock is not None:
            if c.registered:
                self.sel.unregister(c.sock)
            c.sock.close()
        c.sock, c.registered, c.state = None, False, "idle"
        c.retry_at = time.monotonic() + retry_delay

    def count(self, c: Client, n: int) -> None:
        self.bytes += n
        self.slot_bytes[c.slot] += n

    # -------------------------------------------------------------- reading

    def read_head(self, c: Client) -> None:
        try:
            # Small reads until the headers end, so no client starts with a big unpaced gulp.
            data = c.sock.recv(16384)
        except BlockingIOError:
            return
        except OSError as e:
            self.error(f"recv: {type(e).__name__}")
            return self.close(c, 0.5)
        if not data:
            self.error("closed before headers")
            return self.close(c, 0.5)
        self.count(c, len(data))
        c.head += data
        end = c.head.find(b"\r\n\r\n")
        if end < 0:
            if len(c.head) > HEADER_LIMIT:
                self.error("headers too long")
                self.close(c, 0.5)
            return
        lines = c.head[:end].decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)[1] if len(lines[0].split(" ")) > 1 else "?"
        if status not in ("200", "206"):
            self.error(f"status {status}")
            return self.close(c, 0.5)
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            self.error("no content-length")
            return self.close(c, 0.5)
        self.responses += 1
        c.remaining = length - (len(c.head) - end - 4)
        c.head = b""
        if self.args.mode == "paused":
            # Stop reading: the kernel buffers fill and the server must stop sending.
            self.sel.unregister(c.sock)
            c.registered, c.state = False, "paused"
        elif self.args.mode == "paced":
            # Paced clients are read from the tick loop, not from the selector.
            self.sel.unregister(c.sock)
            c.registered, c.state = False, "body"
        else:
            c.state = "body"
        if c.remaining <= 0:
            self.finish(c)

    def read_body(self, c: Client, limit: int) -> int:
        try:
            n = c.sock.recv_into(self.view, min(limit, RECV_SIZE, c.remaining))
        except BlockingIOError:
            return 0
        except OSError as e:
            self.error(f"recv: {type(e).__name__}")
            self.close(c, 0.5)
            return 0
        if n == 0:
            self.error("closed mid-body")
            self.close(c, 0.5)
            return 0
        self.count(c, n)
        c.remaining -= n
        if c.remaining <= 0:
            self.finish(c)
        return n

    def finish(self, c: Client) -> None:
        self.reconnects += 1
        self.close(c)
        self.connect(c)

    # -------------------------------------------------------------- control

    def snapshot(self, event: str) -> dict:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        states: dict[str, int] = {}
        for c in self.clients:
            states[c.state] = states.get(c.state, 0) + 1
        elapsed = time.monotonic() - self.go_at
        slots = sorted(self.slot_bytes)
        return {"event": event, "bytes": self.bytes, "seconds": round(elapsed, 4),
                "responses": self.responses, "reconnects": self.reconnects,
                "states": states, "errors": self.errors,
                "slot_bytes_min": slots[0] if slots else 0,
                "slot_bytes_median": slots[len(slots) // 2] if slots else 0,
                "slot_bytes_max": slots[-1] if slots else 0,
                "slots_without_bytes": sum(1 for b in slots if b == 0),
                "client_cpu_s": round(ru.ru_utime + ru.ru_stime, 3)}

    def emit(self, record: dict) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    def command(self, line: str) -> bool:
        """Handle one command from the parent; False means quit."""
        if line == "go":
            self.bytes, self.responses, self.reconnects = 0, 0, 0
            self.slot_bytes = [0] * len(self.clients)
            self.errors = {}
            self.go_at = time.monotonic()
        elif line == "stats":
            self.emit(self.snapshot("stats"))
        elif line in ("quit", ""):
            return False
        return True

    def run(self) -> None:
        args = self.args
        stdin_fd = sys.stdin.fileno()
        os.set_blocking(stdin_fd, False)
        self.sel.register(stdin_fd, selectors.EVENT_READ, None)
        started = time.monotonic()
        hard_stop = started + args.max_seconds
        ready_sent = False
        pending = b""
        for c in self.clients:
            self.connect(c)
        last_tick = time.monotonic()
        rate, tick = args.rate, args.tick
        burst = rate * max(tick * 4, 0.05)
        running = True
        while running:
            now = time.monotonic()
            if now >= hard_stop:
                self.emit({"event": "timeout"})
                break
            if not ready_sent:
                ready = sum(1 for c in self.clients if c.state in ("body", "paused"))
                if ready == len(self.clients) or now - started >= args.ramp:
                    self.emit(self.snapshot("ready") | {"ready_clients": ready,
                                                        "ramp_s": round(now - started, 3)})
                    ready_sent = True
            timeout = max(0.0, last_tick + tick - now) if args.mode == "paced" else 0.05
            for key, _ in self.sel.select(timeout):
                if key.data is None:
                    try:
                        chunk = os.read(stdin_fd, 4096)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        running = False
                        break
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        if not self.command(line.decode().strip() or "noop"):
                            running = False
                    continue
                c: Client = key.data
                if c.state == "head":
                    self.read_head(c)
                elif c.state == "body":
                    self.read_body(c, RECV_SIZE)
            now = time.monotonic()
            for c in self.clients:
                if c.state == "idle" and now >= c.retry_at:
                    self.connect(c)
            if args.mode == "paced" and now - last_tick >= tick:
                dt = now - last_tick
                last_tick = now
                for c in self.clients:
                    if c.state != "body":
                        continue
                    c.allowance = min(c.allowance + rate * dt, burst)
                    while c.allowance >= 1 and c.state == "body":
                        n = self.read_body(c, int(c.allowance))
                        if n <= 0:
                            break
                        c.allowance -= n
        for c in self.clients:
            self.close(c)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--mode", choices=("paused", "paced", "fast"), required=True)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--rate", type=float, default=2.5e6, help="bytes/s per paced client")
    p.add_argument("--tick", type=float, default=0.01, help="token bucket refill period (s)")
    p.add_argument("--ramp", type=float, default=5.0,
                   help="report ready after this long even if some clients have no headers")
    p.add_argument("--max-seconds", type=float, default=120.0, help="hard limit on the run")
    LoadGen(p.parse_args(argv)).run()


if __name__ == "__main__":
    main()
