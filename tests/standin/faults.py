"""Mutable fault settings (``Standin.faults``) and the machinery that applies them.

Every attribute can be flipped by a test at any moment from any thread; the server reads
them at the start of each request (and the one-shot ones are consumed under a lock).
Unknown attribute names raise ``AttributeError`` so a typo in a test cannot silently
test nothing.

Which responses a fault touches:
- "file responses": bodies served by the bucket hosts ``r1/r2/r3-ndr``,
  ``r1/r2/r3-ndr-private``, ``r1/r2-ndr-doc-private`` (PDFs, images, audio, playlists,
  TS segments). With ``apply_to_json = True`` also the JSON hosts (s-file-*, bdcs-file-*).
- ``rate_limit_bytes_per_s`` shapes **every** response body on every host: it stands for
  the school's thin WAN link, not for a CDN policy.
"""

from __future__ import annotations

import random
import threading
import time

_DEFAULTS = {
    # Range: True => 206 + Content-Range (416 when unsatisfiable); False => ignore Range, 200.
    "range_supported": True,
    # Bandwidth cap in bytes/s for all bodies (None = unlimited). Token bucket, burst of
    # one chunk (<= 16 KiB), so the long-run rate is the cap within a fraction of a percent.
    "rate_limit_bytes_per_s": None,
    # "global": one bucket shared by all connections (a thin link, the default);
    # "connection": each response gets its own bucket.
    "rate_limit_scope": "global",
    # One-shot: the next file response whose body is longer than N bytes is cut after
    # exactly N body bytes with a TCP reset; then this goes back to None. Bodies <= N
    # pass untouched and leave it armed.
    "drop_after_bytes": None,
    # Random drops: across all file responses, a reset roughly every N body bytes
    # (each gap drawn uniformly from [N/2, 3N/2) with the stand-in's seed).
    "drop_every_bytes": None,
    # One-shot: the next file response longer than N bytes stops sending after N body
    # bytes for stall_seconds (the connection stays open), then sends the rest; then None.
    "stall_after_bytes": None,
    "stall_seconds": 30.0,
    # The next N file response bodies (200/206 with a body) have one byte flipped
    # (XOR 0xFF) in the middle of the bytes served; length and headers unchanged.
    "corrupt_next": 0,
    # The next N requests to the hosts in fail_5xx_hosts (None = every file host) answer
    # fail_5xx_status with an openresty page instead of doing anything else.
    "fail_5xx_next": 0,
    "fail_5xx_hosts": None,
    "fail_5xx_status": 503,
    # (requests, per_seconds): more request starts than that inside the window, per
    # client IP, on the private hosts => 400 (empty-ish body or InvalidArgument XML).
    "burst_limit": None,
    # Access tokens expire this many seconds after issue (checked at use time).
    "token_ttl_seconds": 7 * 24 * 3600.0,
    # The platform's clock runs this many ms ahead of the local one; tokens carry it as
    # "diff". MAC nonces must be within nonce_window_seconds of the platform's clock.
    "clock_offset_ms": 0,
    "nonce_window_seconds": 300.0,
    # Extend drops, stalls, corruption and the default 5xx hosts to the JSON hosts.
    "apply_to_json": False,
}


class Faults:
    """Thread-safe fault switches; see the module docstring and ``_DEFAULTS``."""

    __slots__ = tuple(_DEFAULTS) + ("_lock", "_rng", "_drop_counter", "_next_drop",
                                    "_drop_every_seen", "_bucket", "_bucket_rate")

    def __init__(self, seed: int = 1):
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_rng", random.Random(f"faults:{seed}"))
        object.__setattr__(self, "_bucket", None)
        object.__setattr__(self, "_bucket_rate", None)
        self.reset()

    def reset(self) -> None:
        """Back to a healthy platform."""
        with self._lock:
            for name, value in _DEFAULTS.items():
                object.__setattr__(self, name, value)
            object.__setattr__(self, "_drop_counter", 0)
            object.__setattr__(self, "_next_drop", None)
            object.__setattr__(self, "_drop_every_seen", None)

    def __setattr__(self, name, value):
        if name not in _DEFAULTS:
            raise AttributeError(f"Faults has no setting {name!r}; known: {sorted(_DEFAULTS)}")
        if name == "rate_limit_scope" and value not in ("global", "connection"):
            raise ValueError("rate_limit_scope is 'global' or 'connection'")
        if name == "burst_limit" and value is not None:
            requests_, seconds = value
            value = (int(requests_), float(seconds))
        if name == "fail_5xx_hosts" and value is not None:
            value = frozenset([value] if isinstance(value, str) else value)
        with self._lock:
            object.__setattr__(self, name, value)

    def as_dict(self) -> dict:
        out = {name: getattr(self, name) for name in _DEFAULTS}
        if out["fail_5xx_hosts"] is not None:
            out["fail_5xx_hosts"] = sorted(out["fail_5xx_hosts"])
        return out

    def update(self, values: dict) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    # ------------------------------------------------------------ one-shot consumption

    def take_5xx(self, host: str, is_file_host: bool) -> int | None:
        """The status to fail this request with, consuming one from fail_5xx_next."""
        with self._lock:
            if self.fail_5xx_next <= 0:
                return None
            hosts = self.fail_5xx_hosts
            if (hosts is None and not is_file_host) or (hosts is not None and host not in hosts):
                return None
            object.__setattr__(self, "fail_5xx_next", self.fail_5xx_next - 1)
            return int(self.fail_5xx_status)

    def take_corrupt(self) -> bool:
        with self._lock:
            if self.corrupt_next > 0:
                object.__setattr__(self, "corrupt_next", self.corrupt_next - 1)
                return True
            return False

    def take_drop_after(self, body_length: int) -> int | None:
        with self._lock:
            n = self.drop_after_bytes
            if n is not None and body_length > n:
                object.__setattr__(self, "drop_after_bytes", None)
                return int(n)
            return None

    def take_stall(self, body_length: int) -> tuple[int, float] | None:
        with self._lock:
            n = self.stall_after_bytes
            if n is not None and body_length > n:
                object.__setattr__(self, "stall_after_bytes", None)
                return int(n), float(self.stall_seconds)
            return None

    def random_drop_within(self, length: int) -> int | None:
        """With drop_every_bytes set: where (body offset) to cut a body of ``length``
        bytes, or None. Advances the global byte counter by the bytes that will be sent."""
        with self._lock:
            every = self.drop_every_bytes
            if not every:
                object.__setattr__(self, "_next_drop", None)
                return None
            if self._drop_every_seen != every or self._next_drop is None:
                object.__setattr__(self, "_drop_every_seen", every)
                object.__setattr__(self, "_next_drop",
                                   self._drop_counter + self._gap(every))
            start = self._drop_counter
            if self._next_drop < start + length:
                cut = self._next_drop - start
                object.__setattr__(self, "_drop_counter", start + cut)
                object.__setattr__(self, "_next_drop", start + cut + self._gap(every))
                return cut
            object.__setattr__(self, "_drop_counter", start + length)
            return None

    def _gap(self, every: int) -> int:
        return max(1, int(self._rng.uniform(every / 2, every * 3 / 2)))

    def burst_body_kind(self) -> str:
        """§6.4: sometimes an almost empty body, sometimes InvalidArgument XML."""
        with self._lock:
            return "xml" if self._rng.random() < 0.5 else "empty"

    # ----------------------------------------------------------------------- shaping

    def global_bucket(self) -> TokenBucket | None:
        rate = self.rate_limit_bytes_per_s
        with self._lock:
            if not rate:
                return None
            if self._bucket is None or self._bucket_rate != rate:
                object.__setattr__(self, "_bucket", TokenBucket(rate))
                object.__setattr__(self, "_bucket_rate", rate)
            return self._bucket


class TokenBucket:
    """Pacing by reservation: each caller takes its bytes now and waits off any debt, so
    the bytes sent by time t never exceed rate*t + burst, however many senders share it."""

    def __init__(self, rate: float):
        self.rate = float(rate)
        self.burst = float(self.chunk_size(rate))
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    @staticmethod
    def chunk_size(rate: float) -> int:
        # ~50 sends a second, between 1 KiB and 16 KiB: smooth at 10 Mbit/s and at 256 KB/s.
        return int(min(16384, max(1024, rate / 50)))

    def reserve(self, n: int) -> float:
        """Take n bytes; return how long the caller must wait before sending them."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class BurstCounter:
    """Request starts per client IP in a sliding window (for ``burst_limit``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._starts: dict[str, list[float]] = {}

    def over_limit(self, client_ip: str, limit: tuple[int, float] | None) -> bool:
        """Count this request start; True when it is over the limit. Nothing is counted
        while no limit is set, so setting one starts from a clean window."""
        now = time.monotonic()
        with self._lock:
            if limit is None:
                self._starts.clear()
                return False
            starts = self._starts.setdefault(client_ip, [])
            starts.append(now)
            requests_, seconds = limit
            cutoff = now - seconds
            while starts and starts[0] < cutoff:
                starts.pop(0)
            return len(starts) > requests_
