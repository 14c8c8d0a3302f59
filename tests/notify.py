"""The systemd ``Type=notify`` lifecycle, checked the same way for ``python app.py`` and for
the one-file binary: READY=1 only once it answers, STOPPING=1 on SIGTERM, exit 0."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

SERVING = re.compile(r"Serving on (http://\S+?)/?\s*$")


def wait_for_datagram(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    """Datagrams received until one has the line ``wanted``; fails the test on timeout."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no {wanted} from the app within {timeout} s; got {seen}")
        sock.settimeout(remaining)
        try:
            data = sock.recv(4096).decode()
        except socket.timeout:
            continue
        seen.append(data)
        if wanted in data.splitlines():
            return seen


def check_notify_lifecycle(argv: list[str], env: dict[str, str], *, cwd=None,
                           start_timeout: float = 30) -> float:
    """Run a ``serve`` command under a fake systemd notify socket; returns seconds to first 200.

    READY=1 promises a working server, so the first request after it must succeed; SIGTERM
    (sent to the main process, as systemd's KillMode=mixed does) must bring STOPPING=1 and a
    clean exit.
    """
    # AF_UNIX paths are limited to ~108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="sq-notify-") as short:
        path = str(Path(short) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**env, "NOTIFY_SOCKET": path}, cwd=cwd)
        lines: queue.Queue = queue.Queue()
        seen: list[str] = []
        # Keep draining output so a chatty server never blocks on a full pipe.
        reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout],
                                  daemon=True)
        reader.start()
        try:
            wait_for_datagram(sock, "READY=1", timeout=start_timeout)
            url = None
            while url is None:
                try:
                    line = lines.get(timeout=5)
                except queue.Empty:
                    pytest.fail(f"READY=1 came but no 'Serving on' line: {seen}")
                seen.append(line.rstrip())
                match = SERVING.search(line)
                url = match and match.group(1)
            with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
                assert response.status == 200
            first_200 = time.monotonic() - started
            proc.send_signal(signal.SIGTERM)
            wait_for_datagram(sock, "STOPPING=1", timeout=10)
            assert proc.wait(timeout=30) == 0, seen
            return first_200
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)
            proc.stdout.close()
            sock.close()
