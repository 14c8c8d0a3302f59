"""Admin security: the password (no default), first-run setup code, login rate limit, CSRF.

- There is no default password. The first visit to the admin area sets it; that page is
  accepted only from the appliance itself (loopback) or with a one-time setup code that
  ``serve`` prints to its console and log, so a pupil who reaches the page first on the
  LAN cannot claim the appliance.
- Failed logins (and failed setup codes) are counted per client address; past the limit
  that address is refused for the rest of the 15-minute window.
- Every admin form carries a CSRF token bound to the session.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import threading
import time
from pathlib import Path

from flask import request, session
from werkzeug.security import check_password_hash, generate_password_hash

from cache.store import atomic_write_bytes

MIN_PASSWORD_LENGTH = 8
WINDOW_SECONDS = 15 * 60


class AdminCredentials:
    """The admin password hash, kept in ``admin.json`` in the home (mode 0600)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def is_set(self) -> bool:
        return self.path.is_file()

    def set(self, password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
        record = {"password_hash": generate_password_hash(password), "set_at": time.time()}
        atomic_write_bytes(self.path, json.dumps(record).encode(), mode=0o600)

    def check(self, password: str) -> bool:
        if not self.is_set():
            return False
        record = json.loads(self.path.read_text())
        return check_password_hash(record["password_hash"], password)


def new_setup_code() -> str:
    """Eight digits in two groups, easy to read off a console and type on a phone."""
    digits = f"{secrets.randbelow(10 ** 8):08d}"
    return f"{digits[:4]}-{digits[4:]}"


def setup_code_matches(given: str, expected: str | None) -> bool:
    if not expected:
        return False
    normalised = "".join(ch for ch in given if ch.isdigit())
    return hmac.compare_digest(normalised, expected.replace("-", ""))


def is_local_request() -> bool:
    """True when the request comes from the appliance itself."""
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


class FailureLimiter:
    """Counts failures per key in a sliding window; thread-safe, memory-bounded."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS, max_keys: int = 10000):
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again (0 when allowed now)."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(key, now)
            if len(times) < self.limit:
                return 0
            return int(times[-self.limit] + self.window - now) + 1

    def fail(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= self.max_keys:
                for old in list(self._failures)[: self.max_keys // 10]:
                    self._failures.pop(old, None)
            self._recent(key, now)
            self._failures.setdefault(key, []).append(now)

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_valid(given: str | None = None) -> bool:
    """The session's token came back: in the form field, or ``given`` (a request header)."""
    expected = session.get("csrf")
    given = request.form.get("csrf_token", "") if given is None else given
    return bool(expected) and hmac.compare_digest(expected, given)
