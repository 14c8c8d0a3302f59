"""Putting a body on the wire: Range, pacing, and the faults that happen mid-body.

The handler thread writes straight to its socket (one thread per connection), so a slow
reader, a stall or a paced transfer holds only its own thread.

- A **drop** waits (at most 1 s) until the kernel has handed the bytes sent so far to the
  client (``SIOCOUTQ`` reaches 0), then closes with ``SO_LINGER`` 0: the client receives
  exactly the bytes before the cut and then a TCP reset, never a clean end.
- A **stall** stops writing for ``stall_seconds`` with the connection open, then goes on.
- **Corruption** flips one byte (XOR 0xFF) in the middle of the bytes served.
- **Pacing** reserves every chunk from the token bucket(s) before writing it.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass, field

from .content import Body
from .faults import TokenBucket

UNSATISFIABLE = "unsatisfiable"
FAST_CHUNK = 256 * 1024


def parse_range(header: str | None, size: int):
    """``(start, end_exclusive)`` for one satisfiable byte range, ``UNSATISFIABLE``, or
    None to answer the whole body (no header, malformed, or several ranges)."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return UNSATISFIABLE
            return (max(0, size - suffix), size) if size else UNSATISFIABLE
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start < 0 or end <= start:
        return None if end <= start and last else UNSATISFIABLE
    if start >= size:
        return UNSATISFIABLE
    return start, min(end, size)


@dataclass
class Plan:
    """The faults decided for one body, in offsets relative to the first byte sent."""

    drop_at: int | None = None
    stall_at: int | None = None
    stall_seconds: float = 0.0
    corrupt_at: int | None = None
    buckets: list[TokenBucket] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def send_body(sock: socket.socket, body: Body, start: int, end: int, plan: Plan,
              closing: threading.Event, progress) -> str:
    """Write ``body[start:end]``; return "ok", "dropped", "client-gone" or "closing".
    ``progress(n)`` is called with the body bytes written so far."""
    total = end - start
    chunk = min(b.chunk_size(b.rate) for b in plan.buckets) if plan.buckets else FAST_CHUNK
    position, stalled = 0, False
    while position < total:
        if plan.drop_at is not None and position >= plan.drop_at:
            reset(sock)
            return "dropped"
        if plan.stall_at is not None and not stalled and position >= plan.stall_at:
            stalled = True
            if closing.wait(plan.stall_seconds):
                return "closing"
        n = min(chunk, total - position)
        for limit in (plan.drop_at, None if stalled else plan.stall_at):
            if limit is not None and limit > position:
                n = min(n, limit - position)
        data = body.read(start + position, n)
        if plan.corrupt_at is not None and position <= plan.corrupt_at < position + n:
            flipped = bytearray(data)
            flipped[plan.corrupt_at - position] ^= 0xFF
            data = bytes(flipped)
        for bucket in plan.buckets:
            delay = bucket.reserve(n)
            if delay > 0 and closing.wait(delay):
                return "closing"
        try:
            sock.sendall(data)
        except OSError:
            return "client-gone"
        position += n
        progress(position)
    return "ok"


def reset(sock: socket.socket, drain_seconds: float = 1.0) -> None:
    """Cut the connection with a TCP reset once the bytes already written have left."""
    deadline = time.monotonic() + drain_seconds
    buffer = bytearray(4)
    while time.monotonic() < deadline:
        try:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buffer)
        except OSError:
            break
        if struct.unpack("i", buffer)[0] == 0:
            break
        time.sleep(0.002)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
