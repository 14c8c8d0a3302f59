"""The fetch service: worker threads that take the queue and fetch, and ``shuqiao fetch``.

:class:`FetchService` is started by the serving process (and by ``shuqiao fetch --wait``
when no server runs on that home). It holds ``<home>/fetch.lock`` while it runs so only
one process fetches for a home: the budget and the politeness limits are per appliance,
not per process. A second process finds the lock taken and just watches the queue.

Each worker thread has its own SQLite connection and its own HTTP session. A worker:

1. waits while the budget is paused (a class period, the monthly quota) — it does not
   claim rows it cannot move;
2. claims the next row (highest priority, then oldest; rows backing off are not due yet;
   sources with an open auth alert are skipped);
3. short-cuts when the bytes are already here (a declared SHA-256 in the store, the same
   md5 and size cached for another file, a piece verified before a crash);
4. makes room on disk (reserve, quota, LRU eviction) or raises the 'disk' alert;
5. lets the source take the whole file (``fetch_file``, e.g. HLS) or downloads ``urls``
   with failover, and marks the file cached in one transaction with the queue row gone;
6. on error: back off (exponential, jitter), hold on an alert, or fail (404 everywhere,
   bytes that never verify). No exception ever ends a worker.

``stop()`` is prompt: every wait checks the stop flag at least every 0.2 s and open
responses are closed; partial data is checkpointed, so the next start resumes it.
"""

from __future__ import annotations

import fcntl
import logging
import sys
import threading
import time
from typing import Callable, Iterable, Mapping

import requests

from database import write_transaction

from . import Cache, db as catalog_db, transfer
from .budget import Budget, describe_rate
from .disk import DiskFull, DiskGuard, record_blob
from .queue import FetchQueue, Priority, QueueError
from .sources.base import ErrorKind, Source
from .sources.plain import PlainHTTPSource
from .partial import MAGIC_BY_MIME, Expect, Partial, resume_dir
from .transfer import (Engine, FileFetchContext, Interrupted, Job, TransferError,
                       backoff_delay)

log = logging.getLogger("shuqiao.fetch")

SourcesFor = Callable[[dict], list[Source]]
CORRUPT_ROUNDS = 3          # rounds of bytes that never verify before a file fails
DISK_RETRY_SECONDS = 60.0
RATE_WINDOW_SECONDS = 10.0


class FetchServiceBusy(RuntimeError):
    """Another process is already fetching for this home."""


def sources_by_name(sources: Mapping[str, Source], fallback: Source | None = None) -> SourcesFor:
    """The usual ``sources_for``: the source named like the resource's ``source`` column
    (e.g. 'smartedu'), else ``fallback`` (a plain HTTP source by default)."""
    fallback = fallback or PlainHTTPSource()

    def sources_for(file: dict) -> list[Source]:
        source = sources.get(file.get("source", ""))
        return [source] if source is not None else [fallback]

    return sources_for


class RateMeter:
    """Bytes per second over the last few seconds, across all workers."""

    def __init__(self, window: float = RATE_WINDOW_SECONDS):
        self.window = window
        self._lock = threading.Lock()
        self._buckets: dict[int, int] = {}

    def add(self, nbytes: int) -> None:
        second = int(time.monotonic())
        with self._lock:
            self._buckets[second] = self._buckets.get(second, 0) + nbytes
            if len(self._buckets) > 4 * self.window:
                for old in [s for s in self._buckets if s < second - self.window]:
                    del self._buckets[old]

    def rate(self) -> float:
        now = int(time.monotonic())
        with self._lock:
            recent = sum(n for s, n in self._buckets.items() if now - self.window <= s < now)
        return recent / self.window


def sweep_partials(db, store) -> int:
    """Remove partial downloads nobody wants any more (file cancelled, cached, gone)."""
    removed = 0
    wanted = {r[0] for r in db.execute(
        "SELECT p.name FROM fetch_partials p JOIN fetch_queue q ON q.file_id = p.file_id")}
    with write_transaction(db):
        removed += db.execute("DELETE FROM fetch_partials WHERE name NOT IN "
                              "(SELECT p.name FROM fetch_partials p JOIN fetch_queue q "
                              "ON q.file_id = p.file_id)").rowcount
    directory = resume_dir(store)
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.suffix == ".partial" and entry.stem not in wanted:
                entry.unlink(missing_ok=True)
                removed += 1
    return removed


class FetchService:
    """N worker threads fetching the queue under one budget, gate and disk guard."""

    def __init__(self, cache: Cache, sources_for: SourcesFor, *, budget: Budget | None = None,
                 disk: DiskGuard | None = None, workers: int = 3, backoff_base: float = 5.0,
                 backoff_cap: float = 1800.0, retry_same_delays: tuple[float, ...] = (1.0, 3.0),
                 connect_timeout: float = 10.0, read_timeout: float = 30.0,
                 poll_seconds: float = 2.0, disk_retry_seconds: float = DISK_RETRY_SECONDS):
        self.cache = cache
        self.sources_for = sources_for
        self.budget = budget or Budget()
        self.disk = disk or DiskGuard(cache.store, 0)
        self.workers = workers
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.poll_seconds = poll_seconds
        self.disk_retry_seconds = disk_retry_seconds
        self.meter = RateMeter()
        self.engine = Engine(cache.store, self.budget, self.disk,
                             retry_same_delays=retry_same_delays,
                             connect_timeout=connect_timeout, read_timeout=read_timeout,
                             meter=self.meter.add)
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._jobs: dict[int, Job] = {}
        self._jobs_lock = threading.Lock()
        self._lock_file = None

    @classmethod
    def from_config(cls, config, cache: Cache, sources_for: SourcesFor, **kwargs) -> "FetchService":
        kwargs.setdefault("workers", config.fetch_workers)
        return cls(cache, sources_for, budget=Budget.from_config(config),
                   disk=DiskGuard.from_config(config, cache.store), **kwargs)

    # ------------------------------------------------------------- lifecycle

    def start(self) -> "FetchService":
        """Take the home's fetch lock, recover a crashed run's rows, start the workers.

        :raises FetchServiceBusy: another process is fetching for this home.
        """
        self._lock_file = open(self.cache.home / "fetch.lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise FetchServiceBusy("another process is fetching for this home") from None
        db = catalog_db.connect(self.cache.db_path)
        try:
            FetchQueue(db).recover()
            sweep_partials(db, self.cache.store)
            self.budget.load(db)
            self.budget.watch(self.cache.db_path)
        finally:
            db.close()
        self._stop.clear()
        for index in range(self.workers):
            thread = threading.Thread(target=self._worker, name=f"fetch-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop promptly: wake every wait, close open responses, join the workers."""
        self._stop.set()
        self.wake()
        with self._jobs_lock:
            responses = [r for job in self._jobs.values() for r in list(job.responses)]
        for response in responses:
            try:
                response.close()
            except Exception:  # noqa: BLE001 - closing from another thread may complain
                pass
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        if self._lock_file is not None and not self._threads:
            self._lock_file.close()
            self._lock_file = None

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def wake(self) -> None:
        """New work was queued: let idle workers look now rather than at their next poll."""
        with self._wake:
            self._wake.notify_all()

    def __enter__(self) -> "FetchService":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- facade

    def enqueue(self, ids: Iterable[str | int], priority: int = Priority.TEACHER,
                requested_by: str = "") -> dict:
        with self.cache.catalog() as catalog:
            result = FetchQueue(catalog.db).enqueue(ids, priority, requested_by)
        self.wake()
        return result

    def cancel(self, ids: Iterable[str | int]) -> int:
        """Take files off the queue; an active transfer stops within a second; partial
        data of the others is removed now (``FetchQueue.cancel`` alone leaves it to the
        sweep at the next start)."""
        with self.cache.catalog() as catalog:
            queue = FetchQueue(catalog.db)
            file_ids, _ = queue.file_ids_for(list(ids))
            removed = queue.cancel(file_ids)
            with self._jobs_lock:
                idle = [f for f in file_ids if f not in self._jobs]
                for file_id in file_ids:
                    if file_id in self._jobs:
                        self._jobs[file_id].cancelled = True
            for file_id in idle:
                self._discard_partials(catalog.db, file_id)
        return removed

    def rate(self) -> float:
        """Bytes/s fetched over the last seconds (all workers)."""
        return self.meter.rate()

    def eta(self, nbytes: float) -> float | None:
        """Seconds until ``nbytes`` more are fetched: the budget's schedule walked forward at
        the link rate measured now (or last time), None when nothing says how fast."""
        link = self.rate() or self._stored_link_rate()
        return self.budget.estimate_seconds(nbytes, link or None)

    eta_seconds = eta  # the name kiosk/fetching.py looks for

    def _stored_link_rate(self) -> float | None:
        with self.cache.catalog() as catalog:
            row = catalog.db.execute(
                "SELECT value FROM fetch_meta WHERE key = 'link_rate'").fetchone()
        return float(row[0]) if row else None

    def status(self) -> dict:
        """Everything the admin page shows: queue, live transfers, budget, disk, alerts."""
        with self.cache.catalog() as catalog:
            queue = FetchQueue(catalog.db).status()
            disk = self.disk.state(catalog.db)
        with self._jobs_lock:
            live = {fid: job.bytes_done() for fid, job in self._jobs.items()}
        for entry in queue["entries"]:
            if entry["file_id"] in live:
                entry["bytes_done"], total = live[entry["file_id"]]
                entry["bytes_total"] = total or entry["bytes_total"]
        budget = self.budget.state()
        budget["rate_text"] = describe_rate(budget["rate"])
        return {"queue": queue, "rate": self.rate(), "budget": budget, "disk": disk,
                "workers": self.workers, "running": self.running}

    # --------------------------------------------------------------- workers

    def _stopping(self) -> bool:
        return self._stop.is_set()

    def _idle(self, seconds: float) -> None:
        with self._wake:
            if not self._stop.is_set():
                self._wake.wait(seconds)

    def _worker(self) -> None:
        db = catalog_db.connect(self.cache.db_path)
        session = requests.Session()
        queue = FetchQueue(db)
        try:
            while not self._stop.is_set():
                try:
                    if self.budget.paused():
                        self.budget.flush(db)  # sees an admin's grant within a second
                        self._idle(1.0)
                        continue
                    self._release_auth_alerts(queue)
                    file = queue.claim()
                    if file is None:
                        due = queue.next_due()
                        wait = self.poll_seconds if due is None else min(
                            self.poll_seconds, max(0.05, due - time.time()))
                        self._idle(wait)
                        continue
                    self._process(file, db, queue, session)
                except Exception:  # noqa: BLE001 - a worker must survive anything
                    log.exception("fetch worker error")
                    self._idle(1.0)
        finally:
            try:
                self.budget.flush(db)
            except Exception:  # noqa: BLE001
                log.exception("could not record the budget counter")
            session.close()
            db.close()

    def _release_auth_alerts(self, queue: FetchQueue) -> None:
        """A source may say its auth works again (``auth_ok()``, e.g. after the admin pasted
        a new token): clear its alert so its held rows go back to waiting."""
        for alert in queue.alerts():
            if alert["kind"] != "auth":
                continue
            try:
                probe = [s for s in self.sources_for({"source": alert["source"]})
                         if s.name == alert["source"]]
                if probe and getattr(probe[0], "auth_ok", None) and probe[0].auth_ok():
                    queue.clear_alert(alert["key"])
            except Exception:  # noqa: BLE001 - a probe must not stop the worker
                log.exception("asking source %s whether its auth works", alert["source"])

    def _process(self, file: dict, db, queue: FetchQueue, session: requests.Session) -> None:
        file_id = file["id"]

        def report(job: Job) -> bool:
            done, total = job.bytes_done()
            return queue.report_progress(file_id, done, total)

        job = Job(file=file, db=db, session=session, stopping=self._stopping, on_report=report)
        with self._jobs_lock:
            self._jobs[file_id] = job
        try:
            digest = self._fetch(job, queue)
            self._complete(db, file, digest)
            log.info("cached file %s (%s) as %s", file_id, file.get("name"), digest[:12])
        except Interrupted:
            if job.cancelled or not queue.is_wanted(file_id):
                self._discard_partials(db, file_id)
            else:
                queue.retry_later(file_id, 0, "stopped", "", count_attempt=False)
        except DiskFull as error:
            queue.raise_alert(error.key, error.key, str(error))
            queue.retry_later(file_id, self.disk_retry_seconds, str(error), error.key,
                              count_attempt=False)
        except TransferError as error:
            self._failed(queue, file, error, progressed=job.received >= transfer.PROGRESS_MIN)
        except Exception as error:  # noqa: BLE001 - a bug must not lose the row
            log.exception("fetching file %s", file_id)
            self._failed(queue, file, TransferError(ErrorKind.FAILOVER,
                                                    f"{type(error).__name__}: {error}"))
        finally:
            with self._jobs_lock:
                self._jobs.pop(file_id, None)
            rate = self.rate()
            if rate > 0:
                with write_transaction(db):
                    db.execute("INSERT OR REPLACE INTO fetch_meta (key, value) VALUES "
                               "('link_rate', ?)", [str(rate)])

    def _failed(self, queue: FetchQueue, file: dict, error: TransferError,
                progressed: bool = False) -> None:
        file_id, attempts = file["id"], file.get("attempts") or 1
        kind = error.kind
        log.warning("file %s: %s (%s, attempt %s)", file_id, error, kind.value, attempts)
        if kind is ErrorKind.AUTH:
            source = file.get("_source_name") or file.get("source", "")
            key = f"auth:{source}"
            queue.raise_alert(key, "auth", "需要管理员重新登录国家平台账号。 The upstream refused "
                              f"our credentials ({error}); an administrator must log in "
                              "again.", source)
            queue.hold(file_id, key, str(error), kind.value)
        elif kind is ErrorKind.NOT_FOUND or (kind is ErrorKind.CORRUPT
                                             and attempts >= CORRUPT_ROUNDS):
            queue.fail(file_id, str(error), kind.value)
        elif progressed and kind is not ErrorKind.CORRUPT:
            # Bytes moved before it failed: a flaky link, not a dead upstream. Back off
            # briefly and start counting again.
            queue.retry_later(file_id, backoff_delay(1, self.backoff_base, self.backoff_cap),
                              str(error), kind.value, reset_attempts=True)
        else:
            queue.retry_later(file_id, backoff_delay(attempts, self.backoff_base, self.backoff_cap),
                              str(error), kind.value)

    def _fetch(self, job: Job, queue: FetchQueue) -> str:
        file, db, store = job.file, job.db, self.cache.store
        declared = file.get("sha256")
        if declared and store.has(declared):
            return declared
        if file.get("md5"):
            row = db.execute(
                "SELECT sha256 FROM files WHERE md5 = ? AND state = 'cached' AND sha256 IS NOT NULL"
                " AND (size = ? OR ? IS NULL) LIMIT 1",
                [file["md5"], file.get("size"), file.get("size")]).fetchone()
            if row and store.has(row[0]):
                return row[0]  # the same bytes are already here under another file
        partial = Partial(db, store, file["id"])
        if partial.verified and store.has(partial.verified):
            return partial.verified
        # The bytes still to come: a partial already on disk holds the rest of its space.
        size = file.get("size")
        on_disk = partial.path.stat().st_size if partial.path.exists() else 0
        self.disk.make_room(db, max(0, size - on_disk) if size else transfer.DISK_CHECK_BYTES)
        for alert in ("disk", "storage"):
            if any(a["key"] == alert for a in queue.alerts()):
                queue.clear_alert(alert)
        sources = self.sources_for(file)
        last_error: TransferError | None = None
        for source in sources:
            file["_source_name"] = source.name
            try:
                digest = source.fetch_file(file, FileFetchContext(self.engine, job, source))
                if digest:
                    return digest
                expect = Expect(file.get("size"), file.get("md5"), declared,
                                MAGIC_BY_MIME.get(file.get("mime") or ""), file.get("mime"))
                return self.engine.download(job, source, list(file.get("urls") or []),
                                            Partial(db, store, file["id"]), expect)
            except TransferError as error:
                last_error = error  # a LAN peer first, then the WAN: try the next source
        raise last_error or TransferError(ErrorKind.NOT_FOUND, "no source for this file")

    def _complete(self, db, file: dict, digest: str) -> None:
        size = self.cache.store.size(digest)
        with write_transaction(db):
            db.execute("UPDATE files SET state = 'cached', sha256 = ?, size = coalesce(size, ?) "
                       "WHERE id = ?", [digest, size, file["id"]])
            db.execute("DELETE FROM fetch_queue WHERE file_id = ?", [file["id"]])
            record_blob(db, digest, size)
        self._discard_partials(db, file["id"])

    def _discard_partials(self, db, file_id: int) -> None:
        names = [r[0] for r in db.execute("SELECT name FROM fetch_partials WHERE file_id = ?",
                                          [file_id])]
        with write_transaction(db):
            db.execute("DELETE FROM fetch_partials WHERE file_id = ?", [file_id])
        for name in names:
            (resume_dir(self.cache.store) / (name + ".partial")).unlink(missing_ok=True)


# ---------------------------------------------------------------------- the CLI


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else 0
    return "#" * filled + "." * (width - filled)


def fetch_resources(config, ids: list[str], *, wait: bool = False,
                    echo: Callable[[str], None] = print, sources_for: SourcesFor | None = None,
                    stream=None, poll: float = 0.5) -> int:
    """``shuqiao fetch ID… [--wait]``: queue every file of these resources (or file ids) at
    teacher priority. With ``wait``, fetch (or watch the server fetch) with a progress bar
    and return 0 only when every file is cached and verified.

    Exit codes: 0 done (or queued, without wait); 2 an id matches nothing; 7 a file could
    not be fetched (failed, or held until an administrator acts — the message says why).
    """
    stream = stream or sys.stderr
    cache = Cache(config.home)
    catalog_db.migrate(cache.db_path)
    db = catalog_db.connect(cache.db_path)
    service = None
    try:
        queue = FetchQueue(db)
        try:
            result = queue.enqueue(ids, Priority.TEACHER, "cli")
        except QueueError as error:
            echo(str(error))
            return 2
        if result["unknown"]:
            echo("未找到 / not found: " + ", ".join(map(str, result["unknown"])))
            return 2
        file_ids, _ = queue.file_ids_for(ids)
        echo(f"{len(result['queued'])} 个文件已排队，{result['cached']} 个已缓存 / "
             f"{len(result['queued'])} files queued, {result['cached']} already cached")
        if not wait:
            return 0
        service = FetchService.from_config(config, cache, sources_for or sources_by_name({}))
        try:
            service.start()
        except FetchServiceBusy:
            service = None  # the server fetches; we watch the queue
            echo("服务器正在获取 / the running server is fetching; waiting for it")
        return _watch(cache, db, queue, file_ids, service, echo, stream, poll)
    except KeyboardInterrupt:
        return 130
    finally:
        if service is not None:
            service.stop()
        db.close()


def _watch(cache: Cache, db, queue: FetchQueue, file_ids: list[int], service, echo, stream,
           poll) -> int:
    tty = hasattr(stream, "isatty") and stream.isatty()
    last_line = 0.0
    while True:
        progress = [queue.progress(f) for f in file_ids]
        done = sum(p["bytes_done"] or 0 for p in progress)
        total = sum(p["bytes_total"] or 0 for p in progress)
        cached = [p for p in progress if p["state"] == "cached"]
        stuck = [p for p in progress if p["state"] in ("failed", "held")]
        rate = service.rate() if service else 0.0
        line = (f"[{_bar(done, total)}] {done / 1e6:7.1f}/{total / 1e6:.1f} MB "
                f"{len(cached)}/{len(progress)} files {rate / 1e6:5.2f} MB/s")
        if service and service.budget.paused():
            state = service.budget.state()
            line += f" 暂停/paused until {state['until'] or '?'} ({state['reason']})"
        if tty:
            stream.write("\r" + line)
            stream.flush()
        elif time.monotonic() - last_line >= 5:
            stream.write(line + "\n")
            stream.flush()
            last_line = time.monotonic()
        if len(cached) == len(progress):
            stream.write("\n" if tty else line + "\n")
            missing = [f for f in file_ids if not cache.store.has(
                db.execute("SELECT sha256 FROM files WHERE id = ?", [f]).fetchone()[0])]
            if missing:
                echo(f"缓存的文件缺少数据 / cached files without their blob: {missing}")
                return 7
            echo("全部已缓存并校验 / all cached and verified")
            return 0
        if stuck:
            if tty:
                stream.write("\n")
            for p in stuck:
                echo(f"文件 {p['file_id']}: {p['state']} — {p['error']}")
            for alert in queue.alerts():
                echo(alert["message"])
            return 7
        time.sleep(poll)


__all__ = ["FetchService", "FetchServiceBusy", "RateMeter", "fetch_resources",
           "sources_by_name", "sweep_partials"]
