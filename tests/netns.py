"""A throw-away LAN made of Linux network namespaces, for tests.

    with LanNamespaces(["srv", "cli"]) as lan:
        proc = lan.popen("srv", [sys.executable, "-c", "..."])
        lan.run("cli", ["ping", "-c1", lan.addr("srv")])

Every host namespace gets an ``eth0`` plugged into one bridge that lives in its own
namespace, so nothing is attached to the real network card and several test runs
(or helpers) can build their LANs at the same time: names carry the pid and a
counter, and addresses only exist inside the namespaces. The bridge has multicast
snooping off and every host has an explicit multicast route, which is what mDNS needs
(without a default route, multicast sends fail with "network unreachable").

Needs root and ``ip netns``; mark tests with ``requires_netns`` so they skip
elsewhere. Everything is torn down on exit, also when the body raises: processes
started through ``popen`` are killed, then any process still inside one of our
namespaces, then the namespaces themselves.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import pytest

# Namespace names look like "sqt-<pid>-<n>-<role>"; the pid lets a later run sweep
# the leftovers of a run that was killed before it could clean up.
_PREFIX = "sqt"
_NAME_RE = re.compile(rf"^{_PREFIX}-(\d+)-")
_counter = itertools.count()
_IP_TIMEOUT = 10


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT, check=check
    )


@functools.cache
def netns_unavailable_reason() -> str | None:
    """Why namespaces can't be used here, or None when they can (checked once)."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    probe = f"{_PREFIX}-{os.getpid()}-probe-x"
    try:
        _ip("netns", "add", probe)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        return f"'ip netns add' does not work here: {str(detail).strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def netns_available() -> bool:
    return netns_unavailable_reason() is None


requires_netns = pytest.mark.skipif(
    not netns_available(), reason=netns_unavailable_reason() or "network namespaces available"
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _list_netns() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_pids_in(ns: str) -> None:
    # Only ever called for namespaces this module created, so every process inside
    # was started by a test.
    out = _ip("netns", "pids", ns, check=False).stdout
    for word in out.split():
        try:
            os.kill(int(word), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


def sweep_stale_namespaces() -> None:
    """Delete namespaces left behind by runs whose process no longer exists."""
    for ns in _list_netns():
        m = _NAME_RE.match(ns)
        if m and not _pid_alive(int(m.group(1))):
            _kill_pids_in(ns)
            _ip("netns", "del", ns, check=False)


class LanNamespaces:
    """One bridged IPv4 LAN with a namespace per name in ``names``.

    ``subnet`` holds every host address; hosts get consecutive addresses from
    ``.10`` on, in the order given. Inside each namespace reverse-path filtering is
    off, so a host may also be given addresses from other subnets mid-test (as a DHCP
    renumbering would) and still be heard by the others.
    """

    def __init__(self, names: Sequence[str], subnet: str = "10.213.0.0/24") -> None:
        if len(set(names)) != len(names) or not names:
            raise ValueError("names must be unique and non-empty")
        self.names = list(names)
        self.network = ipaddress.ip_network(subnet)
        self._run_id = f"{_PREFIX}-{os.getpid()}-{next(_counter)}"
        self._bridge_ns = f"{self._run_id}-br"
        self._ns = {name: f"{self._run_id}-{name}" for name in self.names}
        hosts = list(self.network.hosts())
        self._addr = {name: str(hosts[9 + i]) for i, name in enumerate(self.names)}
        self._procs: list[subprocess.Popen] = []
        self._created: list[str] = []

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> LanNamespaces:
        reason = netns_unavailable_reason()
        if reason:
            pytest.skip(reason)
        sweep_stale_namespaces()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _build(self) -> None:
        br = self._bridge_ns
        self._add_ns(br)
        _ip("-n", br, "link", "set", "lo", "up")
        _ip("-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", br, "link", "set", "br0", "up")
        prefix = self.network.prefixlen
        for i, name in enumerate(self.names):
            ns = self._ns[name]
            self._add_ns(ns)
            port = f"p{i}"
            # Created inside the bridge namespace with the peer placed straight into
            # the host namespace: no interface name ever exists in the root
            # namespace, so concurrent runs cannot collide.
            _ip("-n", br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", br, "link", "set", port, "master", "br0", "multicast", "on", "up")
            settings = [f"net.ipv4.conf.{key}.rp_filter=0" for key in ("all", "default", "eth0")]
            self.run(name, ["sysctl", "-qw", *settings], check=True)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{self._addr[name]}/{prefix}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "multicast", "on", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._created.append(ns)

    def close(self) -> None:
        """Kill our processes and delete our namespaces; safe to call twice."""
        for proc in self._procs:
            stop_process(proc)
            reader = getattr(proc, "line_reader", None)
            if reader is not None:
                reader.join(timeout=2)  # it closes stdout once drained
            elif proc.stdout is not None:
                proc.stdout.close()
        self._procs.clear()
        for ns in reversed(self._created):
            _kill_pids_in(ns)
            _ip("netns", "del", ns, check=False)
        self._created.clear()

    # -- queries and commands --------------------------------------------------------
    def ns(self, name: str) -> str:
        """The real namespace name behind a role name."""
        return self._ns[name]

    def addr(self, name: str) -> str:
        """The first IPv4 address of ``name``'s eth0."""
        return self._addr[name]

    def ip(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``ip -n <ns> ARGS`` (e.g. ``lan.ip("srv", "addr", "add", ...)``)."""
        return _ip("-n", self._ns[name], *args, check=check)

    def _argv(self, name: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self._ns[name], *argv]

    def run(self, name: str, argv: Sequence[str], *, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """Run a command inside ``name`` to completion (captures text output)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self._argv(name, argv), timeout=timeout, **kw)

    def popen(self, name: str, argv: Sequence[str], **kw) -> subprocess.Popen:
        """Start a command inside ``name``; it is killed when the LAN is closed.

        stdout is a text pipe unless overridden; use ``LineReader`` to read it with
        timeouts.
        """
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("text", True)
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(self._argv(name, argv), **kw)
        self._procs.append(proc)
        return proc


def stop_process(proc: subprocess.Popen, grace: float = 3.0) -> int | None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; returns the exit code.

    stdout is left open: a LineReader may still be draining it.
    """
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
    for stream in (proc.stderr, proc.stdin):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    return proc.returncode


class LineReader:
    """Reads a process's stdout lines in a thread so tests can wait with a timeout.

    Lines that parse as JSON are kept as objects, others as stripped strings.
    """

    def __init__(self, proc: subprocess.Popen) -> None:
        if proc.stdout is None:
            raise ValueError("process stdout is not a pipe")
        self.proc = proc
        proc.line_reader = self  # type: ignore[attr-defined]  # see LanNamespaces.close
        self.lines: list[object] = []
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for raw in self.proc.stdout:  # type: ignore[union-attr]
                line = raw.strip()
                if not line:
                    continue
                try:
                    item: object = json.loads(line)
                except ValueError:
                    item = line
                self._queue.put(item)
        except (OSError, ValueError):
            pass  # the pipe was closed under us during cleanup
        finally:
            self._queue.put(_EOF)
            try:
                self.proc.stdout.close()  # type: ignore[union-attr]
            except OSError:
                pass

    def join(self, timeout: float | None = None) -> None:
        """Wait until the process's output has been read to the end."""
        self._thread.join(timeout)

    def wait_for(self, predicate: Callable[[object], bool], timeout: float) -> object:
        """Return the first line (seen before or arriving) that satisfies predicate.

        Raises AssertionError on timeout or when the process ends first, naming the
        lines seen so far so a failure explains itself.
        """
        for item in self.lines:
            if predicate(item):
                return item
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s; lines so far: {self.lines!r}")
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if item is _EOF:
                self._queue.put(_EOF)
                raise AssertionError(
                    f"process exited (rc={self.proc.poll()}) before a match; lines: {self.lines!r}"
                )
            self.lines.append(item)
            if predicate(item):
                return item


_EOF = object()


def names_in(names: Iterable[str]) -> list[str]:
    """Namespaces named ``names`` that currently exist (for tests of this module)."""
    existing = set(_list_netns())
    return [n for n in names if n in existing]
