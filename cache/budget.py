"""The bandwidth budget: how fast the appliance may pull from upstream, and how much.

Three rules, set by the IT teacher (settings ``budget_windows`` and ``monthly_quota_mb``):

- **Time-of-day windows** cap the rate, e.g. unlimited at night, 256 KB/s in school hours,
  nothing during class periods::

      18:00-07:00=unlimited, 07:00-18:00=256KB, mon-fri 08:00-08:45=pause

  Where windows overlap, the most restrictive one applies (pause < any rate < unlimited),
  so the order they are written in does not matter. Outside every window there is no cap.
  A window that ends before it starts runs past midnight; a day prefix (``mon-fri``,
  ``sat``) names the day the window *starts* on. Rates: ``unlimited``, ``pause`` (or 0),
  or a number with ``B``, ``KB``, ``MB`` (×1024) or ``kbit``, ``Mbit`` (×1000 bits), an
  optional ``/s``. Windows are separated by commas, semicolons or new lines.
- **A monthly byte quota** for metered plans, counted durably in ``catalog.db``
  (``budget_months``). When it is used up, transfers pause until the next calendar month
  or until the admin grants more (:func:`grant_extra`).
- **One token bucket shared by every transfer**: the rate is the sum over all workers, not
  per transfer. Consumers take tokens as they read (allowing a small debt) and then sleep
  the debt off, which holds the long-run rate exactly at the cap whatever the number of
  consumers (the bench checks goodput ≥ 0.95 of the cap).

Everything here is pure apart from :meth:`Budget.load` / :meth:`Budget.flush` (SQLite)
and takes an injectable clock, so the schedule can be tested without waiting.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator

import sqlite_utils

from database import write_transaction

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_WEEK = 7 * 24 * 60
# How much a consumer may take ahead of the rate after an idle spell: enough to keep a
# socket busy, small enough that a cap is a cap within a fraction of a second.
BURST_SECONDS = 0.25
MIN_BURST_BYTES = 64 * 1024

_WINDOW = re.compile(
    r"^(?:(?P<days>[a-z]{3}(?:-[a-z]{3})?)\s+)?"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*=\s*(?P<rate>.+)$")
_RATE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>b|kb|mb|gb|kib|mib|kbit|mbit)?(?:/s)?$")
_UNITS = {None: 1, "b": 1, "kb": 1024, "kib": 1024, "mb": 1024 ** 2, "mib": 1024 ** 2,
          "gb": 1024 ** 3, "kbit": 1000 / 8, "mbit": 1000 ** 2 / 8}


@dataclass(frozen=True)
class Window:
    """One rule: from ``start`` to ``end`` (minutes of the day) the rate is ``rate``."""

    start: int            # minute of day, 0..1439
    end: int              # minute of day, 1..1440; end <= start: runs past midnight
    rate: float | None    # bytes/s; None = unlimited; 0 = paused
    days: frozenset[int]  # weekdays (0 = Monday) the window starts on
    text: str

    def covers(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        # Past midnight: the evening part on a listed day, the morning part the day after.
        return ((weekday in self.days and minute >= self.start)
                or ((weekday - 1) % 7 in self.days and minute < self.end))


def _restrictiveness(rate: float | None) -> float:
    return float("inf") if rate is None else rate


def parse_rate(text: str) -> float | None:
    """``unlimited`` → None, ``pause`` → 0, ``256KB`` → 262144.0 (bytes/s)."""
    word = text.strip().lower().replace(" ", "")
    if word in ("unlimited", "none", "max"):
        return None
    if word in ("pause", "paused", "stop", "off"):
        return 0.0
    match = _RATE.match(word)
    if not match:
        raise ValueError(f"rate {text.strip()!r} is not understood; write e.g. unlimited, "
                         "pause, 256KB, 2MB or 4Mbit")
    return float(match["n"]) * _UNITS[match["unit"]]


def _parse_minute(text: str, allow_24: bool) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise ValueError(f"{text} is not a time of day (00:00–23:59)")
    return hours * 60 + minutes


def _parse_days(text: str | None) -> frozenset[int]:
    if not text:
        return frozenset(range(7))
    names = text.split("-")
    for name in names:
        if name not in DAY_NAMES:
            raise ValueError(f"{name!r} is not a day; use {', '.join(DAY_NAMES)}")
    first, last = DAY_NAMES.index(names[0]), DAY_NAMES.index(names[-1])
    return frozenset((first + i) % 7 for i in range((last - first) % 7 + 1))


def parse_windows(text: str) -> list[Window]:
    """Parse the ``budget_windows`` setting, reporting every bad window at once.

    :raises ValueError: with one line per problem, each quoting the window it is about.
    """
    windows, problems = [], []
    for raw in re.split(r"[,;\n]", text or ""):
        part = raw.strip()
        if not part:
            continue
        match = _WINDOW.match(part.lower())
        if not match:
            problems.append(f"{part!r}: write windows as [days ]HH:MM-HH:MM=RATE, "
                            "e.g. 07:00-18:00=256KB or mon-fri 08:00-08:45=pause")
            continue
        try:
            start = _parse_minute(match["start"], allow_24=False)
            end = _parse_minute(match["end"], allow_24=True)
            if start == end:
                raise ValueError("starts and ends at the same time")
            windows.append(Window(start, end, parse_rate(match["rate"]),
                                  _parse_days(match["days"]), part))
        except ValueError as error:
            problems.append(f"{part!r}: {error}")
    if problems:
        raise ValueError("; ".join(problems))
    return windows


def month_key(ts: float) -> str:
    return time.strftime("%Y-%m", time.localtime(ts))


def next_month_start(ts: float) -> float:
    t = time.localtime(ts)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return time.mktime((year, month, 1, 0, 0, 0, 0, 0, -1))


@dataclass
class Limit:
    """What the budget allows right now and why; ``until`` is when that may change."""

    rate: float | None      # bytes/s; None = unlimited; 0 = paused
    reason: str             # 'unlimited', 'window', 'pause', 'quota'
    until: float | None     # epoch seconds of the next change, None = not within a week
    window: str = ""        # the window's text, for the admin page

    @property
    def paused(self) -> bool:
        return self.rate == 0


class Budget:
    """The schedule, the monthly counter and the shared token bucket (thread-safe)."""

    def __init__(self, windows: list[Window] | str = (), monthly_quota_bytes: int = 0, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] | None = None):
        self.windows = parse_windows(windows) if isinstance(windows, str) else list(windows)
        self.monthly_quota = int(monthly_quota_bytes)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._week = self._build_week()
        self._tokens = 0.0
        self._last_refill = clock()
        self._month = month_key(clock())
        self._month_used = 0      # bytes this month as of the last load/flush, plus pending
        self._month_extra = 0     # extra bytes the admin granted this month
        self._pending = 0         # counted here, not yet written to catalog.db
        self._pending_month = self._month
        self._db_path = None      # set by watch(): re-read grants while the quota pauses
        self._last_refresh = 0.0

    @classmethod
    def from_config(cls, config, **kwargs) -> "Budget":
        return cls(config.budget_windows, config.monthly_quota_mb * 1024 * 1024, **kwargs)

    # ------------------------------------------------------------------ schedule

    def _build_week(self) -> list[tuple[float | None, str]]:
        """(rate, window text) for every minute of the week, computed once."""
        week = []
        for minute in range(MINUTES_PER_WEEK):
            weekday, of_day = divmod(minute, 1440)
            best: Window | None = None
            for window in self.windows:
                if window.covers(weekday, of_day) and (
                        best is None or _restrictiveness(window.rate) < _restrictiveness(best.rate)):
                    best = window
            week.append((best.rate, best.text) if best else (None, ""))
        return week

    @staticmethod
    def _week_minute(ts: float) -> int:
        t = time.localtime(ts)
        return t.tm_wday * 1440 + t.tm_hour * 60 + t.tm_min

    def window_rate(self, ts: float) -> tuple[float | None, str]:
        """The windows' cap at ``ts`` (ignoring the quota): (bytes/s or None, window text)."""
        return self._week[self._week_minute(ts)]

    def rate_at(self, when: datetime) -> float | None:
        """The windows' cap at a local datetime (for :func:`cache.plan.estimate_ready`)."""
        return self.window_rate(when.timestamp())[0]

    def _next_change(self, ts: float) -> float | None:
        # Walk the week table from this minute (a DST shift moves the answer by an hour
        # at most twice a year, which an estimate can live with).
        here = self._week_minute(ts)
        current = self._week[here][0]
        minute_start = ts - (ts % 60)
        for step in range(1, MINUTES_PER_WEEK + 1):
            if self._week[(here + step) % MINUTES_PER_WEEK][0] != current:
                return minute_start + 60 * step
        return None

    def segments(self, start: float, horizon: float) -> Iterator[tuple[float, float, float | None]]:
        """(from, to, rate) pieces of the schedule from ``start`` for ``horizon`` seconds."""
        end = start + horizon
        t = start
        while t < end:
            rate = self.window_rate(t)[0]
            change = self._next_change(t)
            stop = end if change is None else min(change, end)
            yield t, stop, rate
            t = stop

    # ---------------------------------------------------------------- the limit

    def quota_left(self) -> int | None:
        """Bytes left this month, or None when there is no quota."""
        if not self.monthly_quota:
            return None
        with self._lock:
            self._roll_month(self._clock())
            return max(0, self.monthly_quota + self._month_extra - self._month_used)

    def paused(self) -> bool:
        """Cheap: is nothing allowed right now (a pause window or the quota)?"""
        return self.quota_left() == 0 or self.window_rate(self._clock())[0] == 0

    def limit(self, ts: float | None = None) -> Limit:
        ts = self._clock() if ts is None else ts
        left = self.quota_left()
        if left == 0:
            return Limit(0.0, "quota", next_month_start(ts))
        rate, text = self.window_rate(ts)
        reason = "unlimited" if rate is None else ("pause" if rate == 0 else "window")
        return Limit(rate, reason, self._next_change(ts), text)

    def state(self) -> dict:
        """For the admin page and ``shuqiao status``."""
        now = self._clock()
        limit = self.limit(now)
        with self._lock:
            used, extra = self._month_used, self._month_extra
        return {
            "rate": limit.rate, "reason": limit.reason, "window": limit.window,
            "until": (datetime.fromtimestamp(limit.until).isoformat(timespec="minutes")
                      if limit.until else None),
            "month": self._month, "month_used": used,
            "month_quota": (self.monthly_quota + extra) if self.monthly_quota else None,
            "windows": [w.text for w in self.windows],
        }

    # ---------------------------------------------------------- token bucket

    def consume(self, nbytes: int, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Account for ``nbytes`` just read and wait until the budget allows more.

        Blocks while paused (window or quota). Returns False as soon as ``should_stop()``
        says so (the service stopping, the fetch cancelled), True otherwise.
        """
        while True:
            with self._lock:
                now = self._clock()
                self._roll_month(now)
                quota_done = (self.monthly_quota
                              and self._month_used >= self.monthly_quota + self._month_extra)
                rate = 0.0 if quota_done else self.window_rate(now)[0]
                if rate != 0:
                    self._count(nbytes)
                    debt = self._take(now, rate, nbytes)
                    break
            # Paused: wait in short slices so a new window, a grant or a stop is seen soon.
            if quota_done:
                self._refresh_from_disk()
            if not self._wait(1.0, should_stop):
                return False
        return self._wait(debt, should_stop) if debt > 0 else not should_stop()

    def _take(self, now: float, rate: float | None, nbytes: int) -> float:
        """Take tokens (may go into debt); returns the seconds the debt needs to clear."""
        if rate is None:
            self._tokens, self._last_refill = 0.0, now
            return 0.0
        capacity = max(rate * BURST_SECONDS, MIN_BURST_BYTES)
        self._tokens = min(capacity, self._tokens + (now - self._last_refill) * rate)
        self._last_refill = now
        self._tokens -= nbytes
        return -self._tokens / rate if self._tokens < 0 else 0.0

    def _wait(self, seconds: float, should_stop: Callable[[], bool]) -> bool:
        deadline = self._clock() + seconds
        while True:
            if should_stop():
                return False
            left = deadline - self._clock()
            if left <= 0:
                return True
            (self._sleep or time.sleep)(min(left, 0.2))

    def _count(self, nbytes: int) -> None:
        self._month_used += nbytes
        self._pending += nbytes

    def _roll_month(self, now: float) -> None:
        month = month_key(now)
        if month != self._month:
            # Bytes still pending belong to the old month; flush() writes them there.
            self._month, self._month_used, self._month_extra = month, 0, 0

    # ------------------------------------------------------------- durability

    def watch(self, db_path) -> None:
        """Let a transfer paused by the quota re-read ``catalog.db`` itself (every few
        seconds, on its own short-lived connection) so an admin's grant resumes it."""
        self._db_path = db_path

    def _refresh_from_disk(self) -> None:
        if self._db_path is None or self._clock() - self._last_refresh < 2.0:
            return
        self._last_refresh = self._clock()
        from .db import connect

        db = connect(self._db_path)
        try:
            self.flush(db)
        finally:
            db.close()

    def load(self, db: sqlite_utils.Database) -> None:
        """Read this month's counter (and any grant) from ``catalog.db``."""
        with self._lock:
            self._roll_month(self._clock())
            row = db.execute("SELECT bytes_used, extra_bytes FROM budget_months WHERE month = ?",
                             [self._month]).fetchone()
            used, extra = row if row else (0, 0)
            self._month_used = used + (self._pending if self._pending_month == self._month else 0)
            self._month_extra = extra

    def flush(self, db: sqlite_utils.Database) -> None:
        """Add the bytes counted since the last flush to ``catalog.db`` and re-read grants.

        Called by the workers every few seconds; a kill -9 loses at most that much
        counting (the counter then under-reads by a few seconds of transfer).
        """
        with self._lock:
            pending, month = self._pending, self._pending_month
            self._pending, self._pending_month = 0, self._month
        if pending:
            with write_transaction(db):
                db.execute(
                    "INSERT INTO budget_months (month, bytes_used) VALUES (?, ?) "
                    "ON CONFLICT(month) DO UPDATE SET bytes_used = bytes_used + excluded.bytes_used",
                    [month, pending])
        self.load(db)

    # ------------------------------------------------------------------ ETA

    def estimate_seconds(self, nbytes: float, link_rate: float | None,
                         start: float | None = None, horizon_days: int = 400) -> float | None:
        """Seconds until ``nbytes`` more have been fetched, walking the schedule and the
        quota forward; ``link_rate`` is what the link really gives (measured). None when
        unknown (no cap and no measurement) or beyond the horizon."""
        start = self._clock() if start is None else start
        if nbytes <= 0:
            return 0.0
        quota_left = self.quota_left()
        remaining = float(nbytes)
        t = start
        end = start + horizon_days * 86400
        while t < end:
            month_end = next_month_start(t)
            for seg_start, seg_end, cap in self.segments(t, min(month_end, end) - t):
                rate = cap if link_rate is None else (link_rate if cap is None else min(cap, link_rate))
                if rate is None:
                    return None
                if rate <= 0:
                    continue
                can = rate * (seg_end - seg_start)
                if quota_left is not None:
                    can = min(can, quota_left)
                if can >= remaining:
                    return seg_start + remaining / rate - start
                remaining -= can
                if quota_left is not None:
                    quota_left -= can
                    if quota_left <= 0:
                        break
            t = month_end
            if quota_left is not None:
                quota_left = self.monthly_quota  # a new month, a fresh quota
        return None


def grant_extra(db: sqlite_utils.Database, extra_mb: int, ts: float | None = None) -> None:
    """The admin raises this month's quota by ``extra_mb`` (the running budget sees it at
    its next flush, within seconds)."""
    if extra_mb <= 0:
        raise ValueError("extra_mb must be positive")
    month = month_key(time.time() if ts is None else ts)
    with write_transaction(db):
        db.execute(
            "INSERT INTO budget_months (month, extra_bytes) VALUES (?, ?) "
            "ON CONFLICT(month) DO UPDATE SET extra_bytes = extra_bytes + excluded.extra_bytes",
            [month, extra_mb * 1024 * 1024])


def describe_rate(rate: float | None) -> str:
    if rate is None:
        return "unlimited"
    if rate == 0:
        return "paused"
    return f"{rate / 1024:.0f} KB/s" if rate < 1024 * 1024 else f"{rate / 1024 / 1024:.1f} MB/s"


__all__ = ["Budget", "Limit", "Window", "describe_rate", "grant_extra", "parse_rate",
           "parse_windows"]
