"""The uploader: pending statements to the LRS, in bounded batches, when the link allows.

Rules that make it exact across crashes and bad links:

- A statement is made (frozen) before it is first sent, and marked delivered only after
  the LRS acknowledged it (200 or 204) — in that order, each step one fsynced transaction.
  A kill -9 between sending and marking just means the batch is sent again, and the LRS
  answers "already stored" (same ids, same bodies). Nothing is lost, nothing doubled.
- A refused batch (409, 400/422, 413) is split in halves until the statement at fault is
  alone; that one is quarantined (``conflict`` or ``invalid``, with the LRS's reason), the
  rest go on. Every split makes the batches smaller, so this always ends.
- Link failures (down, slow, 5xx, wrong password) stop the pass; the background
  :class:`Uploader` waits with exponential back-off and jitter, probing with a small read
  before it sends a big batch again.
- Only one process uploads from a home at a time (a file lock), so the serving process and
  ``shuqiao sync-usage`` never race each other to the LRS.

Sync windows: the setting ``lrs_sync_window`` (``18:00-07:00,12:00-13:00``, local time;
empty = any time) says when uploading may start. To share the fetch engine's bandwidth
budget, pass ``budget=`` any object with ``limit().paused`` and ``consume(nbytes,
should_stop)`` (``cache.budget.Budget`` has both; app.py wires it, sync never imports
cache): uploads then pause while the budget does and count against its rate and quota.
"""

from __future__ import annotations

import fcntl
import logging
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, Protocol

from . import aggregate, retention
from .lrs import LrsClient, Outcome
from .outbox import Outbox, QueuedStatement
from .state import save_state
from .xapi import Identity

log = logging.getLogger(__name__)

Echo = Callable[[str], None]


class SharedBudget(Protocol):
    """What the uploader needs of the fetch engine's budget (``cache.budget.Budget``)."""

    def limit(self): ...  # returns an object with a ``paused`` attribute

    def consume(self, nbytes: int, should_stop: Callable[[], bool]) -> bool: ...


class SyncError(RuntimeError):
    """A setting the uploader needs is unusable; the message says which and why."""


# ----------------------------------------------------------------------- windows

def parse_window(text: str) -> list[tuple[int, int]]:
    """``18:00-07:00, 12:00-13:00`` → [(1080, 420), (720, 780)] (minutes of the day)."""
    spans = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            start, end = (p.strip() for p in part.split("-"))
            spans.append((_minute(start), _minute(end)))
        except ValueError:
            raise SyncError(f"lrs_sync_window: {part!r} is not like 18:00-07:00") from None
    return spans


def _minute(text: str) -> int:
    hours, minutes = text.split(":")
    value = int(hours) * 60 + int(minutes)
    if not 0 <= int(minutes) < 60 or not 0 <= value <= 1440:
        raise ValueError(text)
    return value


def in_window(spans: list[tuple[int, int]], when: datetime | None = None) -> bool:
    if not spans:
        return True
    when = when or datetime.now()
    minute = when.hour * 60 + when.minute
    return any((start <= minute < end) if start < end else (minute >= start or minute < end)
               for start, end in spans)


# ---------------------------------------------------------------------- one pass

@dataclass
class PassResult:
    delivered: int = 0
    invalid: int = 0
    conflict: int = 0
    requests: int = 0
    bytes: int = 0
    failure: Outcome | None = None   # why the pass stopped early (a transient failure)
    pending_left: int = 0
    notes: list[str] = field(default_factory=list)


class _Pass:
    """Sends pending statements up to a fixed point of the queue, settling each batch."""

    def __init__(self, outbox: Outbox, client: LrsClient, *, max_count: int, max_bytes: int,
                 budget: SharedBudget | None = None,
                 should_stop: Callable[[], bool] = lambda: False):
        self.outbox, self.client = outbox, client
        self.max_count, self.max_bytes = max_count, max_bytes
        self.budget, self.should_stop = budget, should_stop
        self.result = PassResult()

    def run(self, up_to_seq: int) -> PassResult:
        after = 0
        while not self.should_stop():
            if self.budget is not None and self.budget.limit().paused:
                self.result.notes.append("the shared bandwidth budget is paused")
                break
            batch = self.outbox.pending_batch(self.max_count, self.max_bytes, after, up_to_seq)
            if not batch:
                break
            failure = self._settle(batch)
            if failure is not None:
                self.result.failure = failure
                break
            after = batch[-1].seq
        return self.result

    def _send(self, batch: list[QueuedStatement]) -> Outcome:
        size = sum(s.bytes for s in batch)
        if self.budget is not None and not self.budget.consume(size, self.should_stop):
            return Outcome("offline", detail="stopped while waiting for the bandwidth budget")
        self.result.requests += 1
        self.result.bytes += size
        return self.client.post([s.body for s in batch])

    def _settle(self, batch: list[QueuedStatement]) -> Outcome | None:
        """Send ``batch`` until each statement in it is delivered or quarantined; returns
        the transient failure that stopped it, if any."""
        outcome = self._send(batch)
        ids = [s.id for s in batch]
        if outcome.ok:
            self.outbox.mark(ids, "delivered")
            self.result.delivered += len(ids)
            return None
        if outcome.kind not in ("conflict", "invalid", "too-large"):
            return outcome
        if len(batch) > 1:
            middle = len(batch) // 2
            for half in (batch[:middle], batch[middle:]):
                failure = self._settle(half)
                if failure is not None:
                    return failure
            return None
        return self._quarantine(batch[0], outcome)

    def _quarantine(self, statement: QueuedStatement, outcome: Outcome) -> None:
        if outcome.kind == "conflict":
            reason = _explain_conflict(self.client, statement, outcome)
            state = "conflict"
            self.result.conflict += 1
        else:
            reason = ("larger than the LRS accepts" if outcome.kind == "too-large"
                      else outcome.detail) or outcome.describe()
            state = "invalid"
            self.result.invalid += 1
        log.warning("LRS refused statement %s (%s): %s; quarantined, continuing",
                    statement.id, state, reason)
        self.outbox.mark([statement.id], state, error=f"HTTP {outcome.status}: {reason}")
        return None


def _explain_conflict(client: LrsClient, statement: QueuedStatement, outcome: Outcome) -> str:
    """Which parts differ between ours and the LRS's copy (for the log and admin page)."""
    import json

    theirs = client.get_statement(statement.id)
    if not theirs:
        return outcome.detail or "the LRS holds a different statement with this id"
    ours = json.loads(statement.body)
    differ = sorted(k for k in set(ours) | set(theirs)
                    if k not in ("stored", "authority", "version") and ours.get(k) != theirs.get(k))
    return ("the LRS holds a different statement with this id; differing: "
            + (", ".join(differ) or "(only LRS-normalised fields)"))


# ------------------------------------------------------------------ the lock

@contextmanager
def upload_lock(home: Path, wait: float = 0) -> Iterator[bool]:
    """Hold the home's upload lock; yields False if another process holds it."""
    path = Path(home) / "usage.upload.lock"
    with open(path, "a") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.1)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------- preparing work

def compile_pending(config, outbox: Outbox, identity: Identity) -> int:
    """Turn new events into statements, as the mode says; returns how many were made."""
    if config.lrs_mode == "daily":
        return aggregate.compile_daily(outbox, identity)
    made = 0
    while True:
        n = outbox.compile_events(identity)
        made += n
        if not n:
            return made


def pending_left(config, outbox: Outbox) -> int:
    """Statements waiting for the LRS plus events that could be made into statements now
    (in daily mode, today's events wait for the day to end and are not counted)."""
    queued = outbox.statement_counts()["pending"]
    if config.lrs_mode == "daily":
        return queued + aggregate.compilable(outbox)
    return queued + outbox.uncompiled()


def upload_pending(config, outbox: Outbox, client: LrsClient, *,
                   budget: SharedBudget | None = None,
                   should_stop: Callable[[], bool] = lambda: False,
                   probe: bool = True) -> PassResult:
    """One pass over what is queued now (statements arriving meanwhile wait for the next)."""
    if probe:
        outcome = client.probe()
        if not outcome.ok:
            result = PassResult(failure=outcome)
            result.pending_left = pending_left(config, outbox)
            return result
    up_to = outbox.last_pending_seq()
    result = _Pass(outbox, client, max_count=config.lrs_batch_max,
                   max_bytes=config.lrs_batch_max_kb * 1024, budget=budget,
                   should_stop=should_stop).run(up_to)
    result.pending_left = pending_left(config, outbox)
    return result


def _explain(outcome: Outcome) -> str:
    return {
        "auth": "用户名或密码错误 / the LRS refused lrs_user / lrs_password",
        "not-lrs": "lrs_url 不是 xAPI 接口 / lrs_url does not point at an xAPI LRS",
        "offline": "连不上 / cannot reach the LRS",
        "timeout": "无响应 / the LRS did not answer in time",
        "tls": "证书无法验证 / the LRS certificate cannot be verified (lrs_ca_file)",
        "server": "服务器错误 / the LRS failed",
    }.get(outcome.kind, outcome.kind) + f": {outcome.describe()}"


def sync_once(config, usage, echo: Echo = print, *, budget: SharedBudget | None = None,
              ignore_window: bool = False) -> int:
    """``shuqiao sync-usage --once``: one pass; returns how many are left pending.

    The CLI exits 0 when this returns 0. Quarantined statements (invalid, conflict) are not
    pending: they are reported, and ``Outbox.requeue`` puts them back.
    """
    identity = Identity.from_config(config)
    spans = parse_window(config.lrs_sync_window)
    with usage.outbox() as outbox:
        retention.enforce(outbox.db, config)
        compile_pending(config, outbox, identity)
        if not config.lrs_url:
            left = pending_left(config, outbox)
            echo(f"lrs_url 未设置，{left} 条待上传 / lrs_url is not set: {left} pending "
                 "(use `shuqiao export-usage DIR` to carry them on a USB drive)")
            return left
        if not ignore_window and not in_window(spans):
            left = pending_left(config, outbox)
            echo(f"不在上传时段 {config.lrs_sync_window} / outside lrs_sync_window: "
                 f"{left} pending")
            return left
        with upload_lock(config.home, wait=30) as locked:
            if not locked:
                left = pending_left(config, outbox)
                echo(f"另一个进程正在上传 / another process is uploading: {left} pending")
                return left
            with LrsClient.from_config(config) as client:
                result = upload_pending(config, outbox, client, budget=budget)
        _save_pass(outbox, result)
    _echo_result(echo, result)
    return result.pending_left


def _echo_result(echo: Echo, result: PassResult) -> None:
    echo(f"已送达 {result.delivered} 条，剩余 {result.pending_left} 条 / delivered "
         f"{result.delivered}, {result.pending_left} pending ({result.requests} requests, "
         f"{result.bytes} bytes)")
    if result.invalid or result.conflict:
        echo(f"被拒绝并隔离 / quarantined: {result.invalid} invalid, {result.conflict} conflict")
    for note in result.notes:
        echo(note)
    if result.failure is not None:
        echo(_explain(result.failure))


def _save_pass(outbox: Outbox, result: PassResult, **extra) -> None:
    now = datetime.now().astimezone().isoformat(timespec="seconds")
    state = {"last_attempt": now, "pending": result.pending_left,
             "delivered_last_pass": result.delivered, **extra}
    if result.failure is None:
        state.update(state="online", last_success=now, last_error="")
    else:
        state.update(state=result.failure.kind, last_error=_explain(result.failure))
    save_state(outbox.db, state)


# ------------------------------------------------------- the background uploader

class Uploader:
    """Uploads in the background of the serving process: ``start()``, ``stop()``.

    Each round: retention, make statements from new events, and (inside the sync window,
    when the budget is not paused) one pass. After a failure it waits
    ``min(lrs_retry_max_seconds, retry_base * 2**(failures-1))``, half of it jittered, and
    honours Retry-After; otherwise it waits ``lrs_interval_seconds`` or until
    :meth:`poke`. :meth:`status` is for the admin page (also saved in usage.db).
    """

    def __init__(self, config, usage, *, budget: SharedBudget | None = None,
                 retry_base: float = 5.0, rng: random.Random | None = None):
        self.config, self.usage, self.budget = config, usage, budget
        self.retry_base = retry_base
        self.rng = rng or random.Random()
        self.spans = parse_window(config.lrs_sync_window)  # bad windows fail at start
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0
        self.passes = 0
        self._status: dict = {"state": "starting"}

    # -------------------------------------------------------------- control

    def start(self) -> "Uploader":
        self._thread = threading.Thread(target=self._run, name="usage-uploader", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def poke(self) -> None:
        """Look for work now (e.g. after a USB import or when the link came back)."""
        self._wake.set()

    def status(self) -> dict:
        return dict(self._status, failures=self.failures, passes=self.passes)

    def backoff_delay(self, retry_after: float | None = None) -> float:
        ceiling = float(self.config.lrs_retry_max_seconds)
        delay = min(ceiling, self.retry_base * 2 ** max(0, self.failures - 1))
        delay = delay / 2 + self.rng.uniform(0, delay / 2)   # "equal jitter"
        return min(ceiling, max(delay, retry_after or 0))

    # ----------------------------------------------------------------- loop

    def _run(self) -> None:
        identity = None
        while not self._stop.is_set():
            try:
                if identity is None:
                    identity = Identity.from_config(self.config)
                wait = self._round(identity)
            except Exception:  # keep the thread alive whatever happens; say so loudly
                log.exception("usage uploader round failed")
                self.failures += 1
                wait = self.backoff_delay()
            self._wake.wait(wait)
            self._wake.clear()

    def _round(self, identity: Identity) -> float:
        config = self.config
        with self.usage.outbox() as outbox:
            retention.enforce(outbox.db, config)
            compile_pending(config, outbox, identity)
            if not config.lrs_url:
                self._status = {"state": "unconfigured",
                                "pending": pending_left(config, outbox)}
                return float(config.lrs_interval_seconds)
            if not in_window(self.spans):
                self._status = {"state": "window", "pending": pending_left(config, outbox)}
                return min(60.0, float(config.lrs_interval_seconds))
            if outbox.statement_counts()["pending"] == 0:
                self._status = {"state": "idle", "pending": 0}
                return float(config.lrs_interval_seconds)
            with upload_lock(config.home) as locked:
                if not locked:
                    return float(config.lrs_interval_seconds)
                with LrsClient.from_config(config) as client:
                    # After a failure, probe with a small read before a big batch.
                    result = upload_pending(config, outbox, client, budget=self.budget,
                                            should_stop=self._stop.is_set,
                                            probe=self.failures > 0 or self.passes == 0)
            self.passes += 1
            if result.failure is not None and not self._stop.is_set():
                self.failures += 1
                delay = self.backoff_delay(result.failure.retry_after)
                _save_pass(outbox, result, next_try_seconds=round(delay, 1),
                           failures=self.failures)
                self._status = {"state": result.failure.kind, "pending": result.pending_left,
                                "error": _explain(result.failure), "retry_in": round(delay, 1)}
                log.warning("usage upload: %s; retrying in %.0f s", _explain(result.failure),
                            delay)
                return delay
            self.failures = 0
            _save_pass(outbox, result)
            self._status = {"state": "online", "pending": result.pending_left,
                            "delivered_last_pass": result.delivered}
            # More waiting than one pass takes (a burst during the pass): go again soon.
            return 0.0 if result.pending_left and result.delivered else float(
                config.lrs_interval_seconds)
