"""Reading the platform's public catalogue JSON: mirrors, retries, streaming arrays.

The catalogue lives on static JSON hosts (``s-file-1/2/3``, ``bdcs-file-1/2``) that mirror
each other (smartedu-upstream.md §1, §6.3): on a network error or a 5xx we try the same path
on the next mirror; a 404 (or 403) is the truth on every mirror and is answered as None.
Part files are several MB of one JSON array; :func:`iter_json_array` yields its elements
one at a time from the response stream, so a sync never holds a whole part in memory.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

import requests

from .smartedu import BASE_HEADERS, JSON_HOST, HostMap

log = logging.getLogger("shuqiao.smartedu.json")

CHUNK = 64 * 1024
MIRROR_COUNT = {"s-file": 3, "bdcs-file": 2}


class UpstreamUnavailable(Exception):
    """Every mirror failed (network, 5xx, bad JSON) after the retries."""


def iter_json_array(chunks: Iterable[bytes]) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array read from byte chunks.

    Decodes one element at a time with ``raw_decode``; an element is only accepted once
    the separator after it (``,`` or ``]``) has arrived, so a number cut by a chunk
    boundary is never mistaken for a whole one.
    """
    decoder = json.JSONDecoder()
    buffer = ""
    pending = b""
    started = False
    finished = False
    chunks = iter(chunks)

    def more() -> bool:
        nonlocal buffer, pending
        for chunk in chunks:
            if not chunk:
                continue
            data = pending + chunk
            # Keep an incomplete UTF-8 sequence for the next chunk.
            cut = len(data)
            for back in range(1, min(4, len(data)) + 1):
                byte = data[-back]
                if byte & 0xC0 == 0x80:
                    continue
                if byte >= 0xC0:
                    need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
                    if back < need:
                        cut = len(data) - back
                break
            buffer += data[:cut].decode("utf-8")
            pending = data[cut:]
            return True
        if pending:
            raise ValueError("the JSON stream ends inside a UTF-8 character")
        return False

    position = 0
    while True:
        while position < len(buffer) and buffer[position] in " \t\r\n\ufeff":
            position += 1
        if position >= len(buffer):
            buffer, position = "", 0
            if not more():
                break
            continue
        char = buffer[position]
        if not started:
            if char != "[":
                raise ValueError("the JSON document is not an array")
            started = True
            position += 1
            continue
        if char == "]":
            finished = True
            break
        if char == ",":
            position += 1
            continue
        try:
            value, end = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError:
            buffer, position = buffer[position:], 0
            if not more():
                raise ValueError("the JSON array is cut short") from None
            continue
        rest = end
        while rest < len(buffer) and buffer[rest] in " \t\r\n":
            rest += 1
        if rest >= len(buffer):  # the separator has not arrived: the element may be cut
            buffer, position = buffer[position:], 0
            if not more():
                raise ValueError("the JSON array is cut short") from None
            continue
        yield value
        buffer, position = buffer[rest:], 0
    if not finished:
        raise ValueError("the JSON array is cut short")


def mirrors_of(url: str) -> list[str]:
    """The same path on every mirror of a JSON host, starting with the one given."""
    parts = urlsplit(url)
    match = JSON_HOST.match(parts.hostname or "")
    if not match:
        return [url]
    family, number = match.group(1), int(match.group(2))
    count = max(MIRROR_COUNT.get(family, 1), number)
    order = [number] + [n for n in range(1, count + 1) if n != number]
    return [urlunsplit(parts._replace(netloc=f"{family}-{n}.ykt.cbern.com.cn"))
            for n in order]


def _drain(response: requests.Response, limit: int = 64 * 1024) -> None:
    try:
        for _ in response.iter_content(limit):
            break
    except requests.RequestException:
        pass


class JsonClient:
    """GETs for catalogue JSON with mirror failover and retries; counts its requests.

    Thread-safe: each thread has its own ``requests.Session``; :meth:`close` closes them all.
    """

    def __init__(self, hosts: HostMap, attempts: int = 2, backoff: float = 0.5,
                 timeout: tuple[float, float] = (10, 60)):
        self.hosts = hosts
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.requests = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(BASE_HEADERS)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    @contextmanager
    def _open(self, url: str) -> Iterator[requests.Response | None]:
        """A streaming response from the first mirror that answers, None on 404/403."""
        problems = []
        for attempt in range(self.attempts):
            for mirror in mirrors_of(url):
                target = self.hosts.map(mirror)
                with self._lock:
                    self.requests += 1
                try:
                    response = self._session().get(target, stream=True, timeout=self.timeout)
                except requests.RequestException as error:
                    problems.append(f"{target}: {type(error).__name__}")
                    continue
                with response:
                    if response.status_code == 200:
                        yield response
                        return
                    _drain(response)  # an error page: read it so the connection is reused
                    if response.status_code in (403, 404, 410):
                        yield None
                        return
                    problems.append(f"{target}: HTTP {response.status_code}")
            if attempt + 1 < self.attempts:
                time.sleep(self.backoff * (2 ** attempt))
        raise UpstreamUnavailable("; ".join(problems[-3:]) or url)

    def get(self, url: str) -> Any | None:
        """Parsed JSON, or None when the platform says there is no such document."""
        last: Exception | None = None
        for _ in range(self.attempts):
            try:
                with self._open(url) as response:
                    if response is None:
                        return None
                    return json.loads(response.content)
            except (ValueError, requests.RequestException) as error:
                last = error  # a body cut by a dropped connection: fetch it again
        raise UpstreamUnavailable(f"{url}: {last}")

    def iter_array(self, url: str, missing_ok: bool = True) -> Iterator[Any]:
        """The elements of a JSON array document, streamed. A connection dropped midway is
        resumed from the start on a mirror, skipping the elements already yielded.

        :param missing_ok: a 404 is an empty list (a course book without lessons); when
            False it is :class:`UpstreamUnavailable` (a catalogue part the version file
            lists must exist: the catalogue is being republished, try again later).
        """
        done = 0
        for _ in range(self.attempts + 1):
            try:
                with self._open(url) as response:
                    if response is None:
                        if not missing_ok:
                            raise UpstreamUnavailable(f"{url}: not found")
                        return
                    for index, element in enumerate(
                            iter_json_array(response.iter_content(CHUNK))):
                        if index >= done:
                            done += 1
                            yield element
                    return
            except (ValueError, requests.RequestException) as error:
                log.warning("re-reading %s after: %s", url, error)
        raise UpstreamUnavailable(f"{url}: the array could not be read whole")
