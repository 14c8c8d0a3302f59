"""The transfer engine: resumable, verified, budgeted, polite downloads into the blob store.

One :class:`Engine` serves all workers (see :mod:`cache.fetcher`); each download runs in a
:class:`Job` (one claimed queue row, one worker thread, that thread's SQLite connection).

**Partial data** (:mod:`cache.partial`). Bytes being fetched live in
``blobs/tmp/resume/<name>.partial``, the name derived from the file id (and, for a piece of
a file, a hash of the piece's URL) so a restarted process finds them again. ``BlobStore.clean_temporary`` only removes
``blobs/tmp/*.part`` (the random names of :class:`~cache.store.BlobWriter`), so these
survive a restart; :func:`cache.fetcher.sweep_partials` removes the ones nobody wants.
The row in ``fetch_partials`` records the offset known to be on disk (written at each
checkpoint, after an fsync), the validator (ETag / Last-Modified) and the mirror it came
from.

**Resuming.** ``Range: bytes=<offset>-`` with ``If-Range: <validator>`` when the validator
came from the same mirror. A 206 whose ``Content-Range`` starts at the offset is appended;
a 200 (Range ignored, or If-Range did not match) truncates to 0 and takes the body as the
whole file; a 416 truncates and asks again. After a restart the partial file is truncated
to what is trustworthy. A process killed with -9 cannot tear its file (the bytes it wrote
are in the page cache), only a power cut or a crash of the machine can. So the row keeps
the kernel's boot id: in the same boot every byte on disk is kept; after a reboot only the
fsynced checkpoint is — or all of it when the file has a declared md5/sha256, since the
final check would catch a torn tail anyway.

**Hashing across a resume.** SHA-256 (the blob's name) and MD5 (``ti_md5``) must cover the
whole file. Python's hash objects cannot be saved, so on resume the partial prefix is
re-read from disk and re-hashed: a local disk read (hundreds of MB/s) costs far less than
the link (a few Mbit/s), and it needs no state that could disagree with the bytes. Within
one process a drop-and-resume keeps the live hash objects and re-reads nothing.

**Verification before anything is visible.** Size (``ti_size``), MD5, the declared SHA-256,
magic bytes (``%PDF-`` for PDFs) and an error-page sniff (an HTML/XML/JSON body where a
binary file was expected is never stored). Then the digest is written to the partial's
row, and only then is the file renamed into the store (fsync file, rename, fsync dir):
a crash between the two finds the row and adopts the blob instead of fetching again.

**Errors** are classified by the source (:class:`~cache.sources.base.ErrorKind`):
RETRY_SAME backs off 1 s then 3 s on the same mirror; FAILOVER moves to the next mirror;
a drop after real progress resumes at once on the same mirror; AUTH stops the file;
NOT_FOUND on every mirror gives up; CORRUPT truncates and tries the next mirror. When a
whole round of mirrors has failed, :class:`TransferError` goes up to the worker, which
backs off exponentially with jitter (:func:`backoff_delay`).

**Politeness** (:class:`PolitenessGate`): a source may declare ``max_transfers`` (at most
that many requests in flight to it) and ``min_request_interval`` (seconds between request
starts); the national platform declares 3 and 0.2.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import requests
import sqlite_utils

from database import write_transaction

from .budget import Budget
from .disk import DiskFull, DiskGuard
from .partial import Expect, Partial, looks_like_error_page
from .sources.base import ErrorKind, Source
from .store import BlobStore

log = logging.getLogger("shuqiao.fetch")

CHUNK = 64 * 1024
PROGRESS_SECONDS = 0.5                # live bytes for the watchers
DISK_CHECK_BYTES = 16 * 1024 * 1024   # re-check the reserve while writing
# A drop after at least this much new data is a flaky link, not a bad mirror: resume at
# once on the same mirror without counting a failure.
PROGRESS_MIN = 64 * 1024
ERROR_BODY_LIMIT = 64 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class TransferError(Exception):
    """A file could not be fetched this round; ``kind`` says what to do next."""

    def __init__(self, kind: ErrorKind, message: str, status: int | None = None):
        self.kind = kind
        self.status = status
        super().__init__(message)


class Interrupted(Exception):
    """The service is stopping or the fetch was cancelled: stop at once, keep the partial."""


class _Failed(Exception):
    """One attempt failed; ``progressed`` when it stored new bytes before failing."""

    def __init__(self, kind: ErrorKind, message: str, status: int | None = None,
                 progressed: bool = False):
        self.kind, self.status, self.progressed = kind, status, progressed
        super().__init__(message)


class _Restart(Exception):
    """The partial was truncated (416, a Content-Range that does not fit): ask again."""


def backoff_delay(attempts: int, base: float, cap: float, rng=random) -> float:
    """Exponential back-off with jitter: about base·2^(n-1), spread ±50 %, at most cap."""
    return min(cap, base * 2 ** max(0, attempts - 1)) * rng.uniform(0.5, 1.5)


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text[:200]}"


# ------------------------------------------------------------------------ politeness


class _SourceGate:
    def __init__(self, max_transfers: int | None, interval: float):
        self.slots = threading.BoundedSemaphore(max_transfers) if max_transfers else None
        self.interval = interval
        self.lock = threading.Lock()
        self.next_start = 0.0


class PolitenessGate:
    """Per source: at most ``max_transfers`` requests in flight, ``min_request_interval``
    seconds between request starts (attributes the source declares; absent = no limit)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._gates: dict[str, _SourceGate] = {}

    def _gate(self, source: Source) -> _SourceGate:
        with self._lock:
            gate = self._gates.get(source.name)
            if gate is None:
                gate = self._gates[source.name] = _SourceGate(
                    getattr(source, "max_transfers", None),
                    float(getattr(source, "min_request_interval", 0.0) or 0.0))
            return gate

    @contextmanager
    def slot(self, source: Source, should_stop: Callable[[], bool]) -> Iterator[None]:
        gate = self._gate(source)
        if gate.slots is not None:
            while not gate.slots.acquire(timeout=0.2):
                if should_stop():
                    raise Interrupted("stopping")
        try:
            if gate.interval:
                with gate.lock:
                    now = time.monotonic()
                    start = max(now, gate.next_start)
                    gate.next_start = start + gate.interval
                while (left := start - time.monotonic()) > 0:
                    if should_stop():
                        raise Interrupted("stopping")
                    time.sleep(min(left, 0.1))
            yield
        finally:
            if gate.slots is not None:
                gate.slots.release()


# ------------------------------------------------------------------------------ jobs


@dataclass
class Job:
    """One claimed file being fetched by one worker."""

    file: dict
    db: sqlite_utils.Database
    session: requests.Session
    stopping: Callable[[], bool]
    on_report: Callable[["Job"], bool] = lambda job: True  # False: cancelled
    cancelled: bool = False
    done_before: int = 0            # bytes of finished pieces (a file fetched in parts)
    current: int = 0                # bytes in the partial now being written
    total: int | None = None
    explicit: tuple[int, int | None] | None = None  # what the source reported itself
    received: int = 0               # body bytes received during this claim
    responses: set = field(default_factory=set)
    _last_report: float = 0.0
    _last_disk_check: int = 0

    @property
    def file_id(self) -> int:
        return self.file["id"]

    def should_stop(self) -> bool:
        return self.cancelled or self.stopping()

    def bytes_done(self) -> tuple[int, int | None]:
        if self.explicit is not None:
            return self.explicit
        return self.done_before + self.current, self.total

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_report >= PROGRESS_SECONDS:
            self._last_report = now
            if not self.on_report(self):
                self.cancelled = True


class Engine:
    """Downloads for every worker: the shared budget, politeness gate and disk guard."""

    def __init__(self, store: BlobStore, budget: Budget, disk: DiskGuard, *,
                 retry_same_delays: tuple[float, ...] = (1.0, 3.0),
                 connect_timeout: float = 10.0, read_timeout: float = 30.0,
                 meter: Callable[[int], None] = lambda n: None):
        self.store, self.budget, self.disk = store, budget, disk
        self.gate = PolitenessGate()
        self.retry_same_delays = retry_same_delays
        self.timeouts = (connect_timeout, read_timeout)
        self.meter = meter

    # -------------------------------------------------------------- one file

    def download(self, job: Job, source: Source, mirrors: list[str], partial: Partial,
                 expect: Expect) -> str:
        """Fetch into ``partial`` from ``mirrors`` until verified; publish; return SHA-256.

        :raises TransferError: a whole round of mirrors failed (or AUTH / NOT_FOUND).
        :raises Interrupted: stopping or cancelled (the partial is checkpointed).
        """
        if not mirrors:
            raise TransferError(ErrorKind.NOT_FOUND, "no upstream URL for this file")
        if partial.verified and self.store.has(partial.verified):
            return partial.verified  # verified and published before a crash
        partial.open(trust_tail=expect.strong)
        try:
            return self._download_loop(job, source, mirrors, partial, expect)
        except Interrupted:
            partial.checkpoint(force=True)
            raise
        finally:
            partial.close()

    def _download_loop(self, job, source, mirrors, partial, expect) -> str:
        index = same_retries = failed = corrupt = restarts = 0
        not_found: set[int] = set()
        while True:
            if job.should_stop():
                raise Interrupted("stopping")
            url = mirrors[index]
            try:
                if expect.size is None or partial.size < expect.size:
                    self._attempt(job, source, url, partial, expect)
                digest, problems = partial.verify(expect)
                if problems:
                    raise _Failed(ErrorKind.CORRUPT, "verification failed: " + "; ".join(problems))
                partial.publish(digest)
                return digest
            except _Restart:
                restarts += 1
                if restarts > 3:
                    raise TransferError(ErrorKind.FAILOVER, "the server keeps refusing our range")
                continue
            except _Failed as f:
                log.info("file %s from %s: %s", job.file_id, url, f)
                if f.kind is ErrorKind.AUTH:
                    raise TransferError(ErrorKind.AUTH, str(f), f.status) from None
                if f.progressed:
                    same_retries = failed = 0
                    continue
                if f.kind is ErrorKind.RETRY_SAME and same_retries < len(self.retry_same_delays):
                    self._sleep(job, self.retry_same_delays[same_retries])
                    same_retries += 1
                    continue
                if f.kind is ErrorKind.CORRUPT:
                    partial.reset()
                    corrupt += 1
                if f.kind is ErrorKind.NOT_FOUND:
                    not_found.add(index)
                same_retries = 0
                failed += 1
                index = (index + 1) % len(mirrors)
                if failed >= len(mirrors):
                    if len(not_found) == len(mirrors):
                        raise TransferError(ErrorKind.NOT_FOUND, str(f), f.status) from None
                    kind = ErrorKind.CORRUPT if corrupt == failed else (
                        ErrorKind.FAILOVER if f.kind is ErrorKind.NOT_FOUND else f.kind)
                    raise TransferError(kind, str(f), f.status) from None

    def _sleep(self, job: Job, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if job.should_stop():
                raise Interrupted("stopping")
            time.sleep(min(left, 0.1))

    def _attempt(self, job: Job, source: Source, url: str, partial: Partial,
                 expect: Expect) -> None:
        """One request; returns when the partial holds all the body's bytes."""
        offset = partial.size
        headers = {"Accept-Encoding": "identity"}
        if offset:
            validator = partial.validator(url)
            if validator:
                headers["If-Range"] = validator
            elif not expect.strong:
                # Without a validator or a digest we could splice two versions of a file.
                partial.reset()
                offset = 0
            if offset:
                headers["Range"] = f"bytes={offset}-"
        with self.gate.slot(source, job.should_stop):
            upstream = source.request(url)  # per attempt: a MAC covers the URL sent now
            try:
                response = job.session.get(upstream.url, headers={**upstream.headers, **headers},
                                           stream=True, timeout=self.timeouts)
            except requests.RequestException as error:
                raise _Failed(source.classify(None, b"", error), _describe(error)) from None
            job.responses.add(response)
            try:
                self._receive(job, source, url, response, partial, expect, offset)
            finally:
                job.responses.discard(response)
                response.close()

    def _receive(self, job, source, url, response, partial, expect, offset) -> None:
        status = response.status_code
        if status == 416 and offset:
            match = re.match(r"^bytes \*/(\d+)$", response.headers.get("Content-Range", ""))
            if match and int(match[1]) == offset:
                return  # we already had every byte (a crash before verifying): verify now
            partial.reset()
            raise _Restart()
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            total = int(match[3]) if match and match[3] != "*" else None
            if (not match or int(match[1]) != offset
                    or (expect.size is not None and total is not None and total != expect.size)):
                partial.reset()
                raise _Restart()
            job.total = expect.size or total
        elif status == 200:
            if offset:
                partial.reset()  # Range ignored, or If-Range saw a new version: from 0
            length = response.headers.get("Content-Length")
            if length is not None and expect.size is not None and int(length) != expect.size:
                # Not the file we expect (an error page sent as 200, another version):
                # do not spend the link on it.
                raise _Failed(ErrorKind.CORRUPT,
                              f"HTTP 200 with {length} bytes, expected {expect.size}", status)
            job.total = expect.size or (int(length) if length is not None else None)
        else:
            body = b""
            try:
                body = response.raw.read(ERROR_BODY_LIMIT)
            except Exception:  # noqa: BLE001 - the status is what matters
                pass
            self._charge(source, len(body), job)
            raise _Failed(source.classify(status, body, None), f"HTTP {status} from {url}", status)
        partial.remember_validator(url, response.headers.get("ETag"),
                                   response.headers.get("Last-Modified"))
        start = partial.size
        head_checked = start > 0
        try:
            for chunk in response.iter_content(CHUNK):
                partial.write(chunk)
                self.meter(len(chunk))
                job.received += len(chunk)
                if not head_checked and partial.size >= 16:
                    head_checked = True
                    head = partial.head(64)
                    if (expect.magic and not head.startswith(expect.magic)) or \
                            looks_like_error_page(head, expect.mime):
                        partial.reset()
                        raise _Failed(ErrorKind.CORRUPT, f"{url} sent an error page or the "
                                      "wrong kind of file", status)
                if expect.size is not None and partial.size > expect.size:
                    partial.reset()
                    raise _Failed(ErrorKind.CORRUPT, f"more bytes than the expected {expect.size}")
                if not self._charge(source, len(chunk), job):
                    raise Interrupted("stopping")
                self._tick(job, partial)
                if job.should_stop():
                    raise Interrupted("stopping")
        except (_Failed, Interrupted, DiskFull):
            raise
        except Exception as error:  # noqa: BLE001 - drops surface as many exception types
            # (a reset, a timeout, urllib3's protocol errors, a response closed by stop()).
            if job.should_stop():
                raise Interrupted("stopping") from None
            progressed = partial.size - start >= PROGRESS_MIN
            raise _Failed(source.classify(None, b"", error), _describe(error),
                          progressed=progressed) from None
        if expect.size is not None and partial.size < expect.size:
            raise _Failed(ErrorKind.FAILOVER, f"{url} ended after {partial.size} bytes",
                          progressed=partial.size - start >= PROGRESS_MIN)

    def _charge(self, source: Source, nbytes: int, job: Job) -> bool:
        """Count bytes against the budget and wait while it says so; False when stopping.

        Bytes from a LAN peer (``source.lan``) never cross the metered link: they are not
        counted against the monthly quota or held back by the rate windows.
        """
        if getattr(source, "lan", False):
            return not job.should_stop()
        return self.budget.consume(nbytes, job.should_stop)

    def _tick(self, job: Job, partial: Partial) -> None:
        """Per chunk: progress for the watchers, checkpoints, the disk reserve."""
        job.current = partial.size
        if partial.checkpoint():
            self.budget.flush(job.db)
        job.report()
        if partial.size - job._last_disk_check >= DISK_CHECK_BYTES:
            job._last_disk_check = partial.size
            total = job.total
            # Room for the rest, or (size unknown) at least until the next check: the
            # reserve is kept, not just noticed once it has been crossed.
            self.disk.check_running(job.db, (total - partial.size) if total
                                    else DISK_CHECK_BYTES)

    # ------------------------------------------------------------ small reads

    def get_bytes(self, job: Job, source: Source, url: str, limit: int) -> bytes:
        """A small response read whole (playlist, key, JSON), with the same error rules."""
        same_retries = failures = 0
        while True:
            if job.should_stop():
                raise Interrupted("stopping")
            try:
                with self.gate.slot(source, job.should_stop):
                    upstream = source.request(url)
                    with job.session.get(upstream.url, headers=upstream.headers, stream=True,
                                         timeout=self.timeouts) as response:
                        body = response.raw.read(limit + 1, decode_content=True)
                        self._charge(source, len(body), job)
                        self.meter(len(body))
                        status = response.status_code
                if status == 200 and len(body) <= limit:
                    return body
                if status == 200:
                    raise TransferError(ErrorKind.CORRUPT, f"{url}: more than {limit} bytes")
                kind, message = source.classify(status, body, None), f"HTTP {status} from {url}"
            except (requests.RequestException, OSError) as error:
                status, kind, message = None, source.classify(None, b"", error), _describe(error)
            if kind in (ErrorKind.AUTH, ErrorKind.NOT_FOUND, ErrorKind.CORRUPT):
                raise TransferError(kind, message, status)
            if kind is ErrorKind.RETRY_SAME and same_retries < len(self.retry_same_delays):
                self._sleep(job, self.retry_same_delays[same_retries])
                same_retries += 1
                continue
            failures += 1
            if failures >= 3:
                raise TransferError(kind, message, status)
            self._sleep(job, 0.5 * failures)


# ------------------------------------------------------------- what sources get


class FileFetchContext:
    """The :class:`~cache.sources.base.FetchContext` a source gets in ``fetch_file``.

    Every piece it downloads or stores is recorded in ``file_parts``: a piece done before a
    crash is returned from there without a request ("nothing verified is fetched again").
    """

    def __init__(self, engine: Engine, job: Job, source: Source):
        self.engine, self.job, self.source = engine, job, source
        self.db = job.db

    # Beyond the FetchContext protocol, for sources that store pieces their own way (the
    # HLS fetcher stores decrypted segments with put_bytes, under the upstream URL):
    # ``stored_piece(url)`` → digest of a piece already done, or None;
    # ``record_piece(url, digest, size)`` → remember a piece as done for this file.

    def stored_piece(self, url: str) -> str | None:
        return self._part(url)

    def record_piece(self, url: str, digest: str, size: int) -> None:
        self._record(url, digest, size)

    def _part(self, url: str) -> str | None:
        row = self.db.execute("SELECT sha256, size FROM file_parts WHERE file_id = ? AND url = ?",
                              [self.job.file_id, url]).fetchone()
        if row and self.engine.store.has(row[0]):
            self.job.done_before += row[1]
            return row[0]
        return None

    def _record(self, url: str, digest: str, size: int, partial: Partial | None = None) -> None:
        from .disk import record_blob

        with write_transaction(self.db):
            seq = self.db.execute("SELECT coalesce(max(seq), 0) + 1 FROM file_parts "
                                  "WHERE file_id = ?", [self.job.file_id]).fetchone()[0]
            self.db.execute("INSERT OR REPLACE INTO file_parts (file_id, url, seq, size, sha256) "
                            "VALUES (?, ?, ?, ?, ?)", [self.job.file_id, url, seq, size, digest])
            record_blob(self.db, digest, size)
            if partial is not None:
                self.db.execute("DELETE FROM fetch_partials WHERE name = ?", [partial.name])

    def download(self, url: str, *, expected_size: int | None = None,
                 expected_md5: str | None = None, magic: bytes | None = None) -> str:
        done = self._part(url)
        if done:
            return done
        partial = Partial(self.db, self.engine.store, self.job.file_id, url)
        digest = self.engine.download(self.job, self.source, [url], partial,
                                      Expect(expected_size, expected_md5, None, magic))
        size = self.engine.store.size(digest)
        self._record(url, digest, size, partial)
        self.job.done_before += size
        self.job.current = 0
        return digest

    def get_bytes(self, url: str, *, limit: int = 4 * 1024 * 1024) -> bytes:
        return self.engine.get_bytes(self.job, self.source, url, limit)

    def put_bytes(self, data: bytes) -> str:
        with self.engine.store.writer(expected_size=len(data)) as writer:
            writer.write(data)
            digest = writer.commit()
        self._record(f"local:{digest}", digest, len(data))
        return digest

    def progress(self, done: int, total: int | None) -> None:
        self.job.explicit = (done, total)
        self.job.report()
        if self.job.should_stop():
            raise Interrupted("stopping")

    def cancelled(self) -> bool:
        self.job.report()
        return self.job.should_stop()
