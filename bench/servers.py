"""The servers bench/serve.py compares, each started on 127.0.0.1 and stopped for sure.

- shuqiao: ``app.py add`` into a fresh home, then ``app.py serve`` with its defaults;
- nginx: a private instance (own prefix, config and pid file) serving Shuqiao's blob
  through a hard link, so both read the same page cache;
- flask: bench/flask_send_file.py, Flask ``send_file`` on stock waitress.

Server output goes to files in the run's temp dir, never to a pipe nobody reads (a full
pipe would stall the server mid-measurement).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable

ALL_SERVERS = ("shuqiao", "nginx", "flask")
SERVER_LABELS = {"shuqiao": "shuqiao", "nginx": "nginx", "flask": "flask-send_file"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(path: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    """Poll a log file for ``pattern``; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        match = re.search(pattern, text)
        if match:
            return match
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {text[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"no {pattern!r} within {timeout:.0f} s")


def probe(port: int, path: str, timeout: float) -> tuple[float | None, str | None]:
    """GET a page on a fresh connection; (seconds to the whole response, error)."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
               "User-Agent: shuqiao-bench-probe\r\n\r\n").encode()
    start = time.perf_counter()
    deadline = start + timeout
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request)
            data = bytearray()
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return None, "timeout"
                s.settimeout(left)
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (socket.timeout, TimeoutError):
        return None, "timeout"
    except OSError as e:
        return None, type(e).__name__
    status = bytes(data[9:12])
    if status != b"200":
        return None, f"status {status.decode(errors='replace') or 'none'}"
    return time.perf_counter() - start, None


class Server:
    """A server under test: a process, its port, its page and its content path."""

    def __init__(self, name: str):
        self.name = name
        self.label = SERVER_LABELS[name]
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.page = "/"
        self.content = ""
        self.pid_file: Path | None = None
        self.info: dict = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        pids = []
        if self.pid_file is not None and self.pid_file.exists():
            try:  # nginx: its own pid file names the master
                pids.append(int(self.pid_file.read_text().strip()))
            except ValueError:
                pass
        pids.append(self.proc.pid)
        family = set(pids)
        for pid in pids:
            try:
                family.update(c.pid for c in psutil.Process(pid).children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        for pid in dict.fromkeys(pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            pass
        for pid in family:  # anything left (a stuck master, orphaned workers)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            print(f"warning: {self.label} (pid {self.proc.pid}) did not exit", file=sys.stderr)
        self.proc = None


def start_shuqiao(tmp: Path, data_file: Path) -> tuple[Server, Path]:
    server = Server("shuqiao")
    home = tmp / "shuqiao-home"
    env = dict(os.environ)
    # Keep the benchmark's settings the appliance's defaults (threads 8, send buffer
    # 128 KiB) unless the caller exported SHUQIAO_* on purpose; only the stop grace
    # is shortened so tearing down does not wait for the full default.
    env.setdefault("SHUQIAO_SHUTDOWN_GRACE_SECONDS", "2")
    env.setdefault("SHUQIAO_LOG_LEVEL", "warning")
    added = subprocess.run([PY, "app.py", "add", str(data_file), "--title", "bench video",
                            "--home", str(home)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    if added.returncode != 0:
        raise RuntimeError(f"app.py add failed: {added.stderr.strip()}")
    rid = added.stdout.strip().splitlines()[-1]
    shown = subprocess.run([PY, "app.py", "config", "--json", "--home", str(home)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=30)
    if shown.returncode == 0:
        config = {row["name"]: row["value"] for row in json.loads(shown.stdout)}
        server.info["settings"] = {k: config.get(k) for k in
                                   ("threads", "send_buffer_bytes", "connection_limit")}
    log_path = tmp / "shuqiao.log"
    with open(log_path, "wb") as out:  # a file, never a pipe nobody reads
        server.proc = subprocess.Popen([PY, "app.py", "serve", "--home", str(home), "--port", "0",
                                        "--no-mdns"], cwd=ROOT, env=env, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    match = wait_for_line(log_path, r"Serving on http://127\.0\.0\.1:(\d+)/", server.proc, 20)
    server.port = int(match.group(1))
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/resources/{rid}",
                                timeout=10) as response:
        resource = json.load(response)
    server.content = resource["files"][0]["url"]
    digest = server.content.rsplit("/", 1)[1]
    blob = home / "blobs" / "sha256" / digest[:2] / digest
    if not blob.is_file():
        raise RuntimeError(f"blob not where expected: {blob}")
    return server, blob


def start_nginx(tmp: Path, blob: Path) -> Server:
    server = Server("nginx")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix = tmp / "nginx"
    (prefix / "html").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    (prefix / "html" / "index.html").write_text(
        "<!doctype html><title>nginx</title><p>a small static page</p>\n")
    try:  # the very same inode as Shuqiao's blob, so both read the same page cache
        os.link(blob, prefix / "html" / "file.bin")
    except OSError:
        os.symlink(blob, prefix / "html" / "file.bin")
    server.port = free_port()
    server.pid_file = prefix / "nginx.pid"
    # As root the workers would drop to "nobody", who cannot read a private temp dir.
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(f"""# One benchmark run; everything lives in this temporary prefix.
{user}
worker_processes {os.cpu_count() or 1};
pid {server.pid_file};
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    types {{ text/html html; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{server.port};
        root {prefix}/html;
    }}
}}
""")
    log_path = tmp / "nginx.log"
    with open(log_path, "wb") as out:
        server.proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf),
                                        "-e", str(prefix / "error.log"), "-g", "daemon off;"],
                                       stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {(prefix / 'error.log').read_text(errors='replace')}"
                               f"{log_path.read_text(errors='replace')}")
        if probe(server.port, "/index.html", 1)[0] is not None:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("nginx did not answer within 10 s")
        time.sleep(0.05)
    server.page, server.content = "/index.html", "/file.bin"
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    server.info["version"] = version.stderr.strip().split("/")[-1]
    server.info["workers"] = os.cpu_count() or 1
    return server


def start_flask(tmp: Path, blob: Path, threads: int) -> Server:
    server = Server("flask")
    log_path = tmp / "flask.log"
    with open(log_path, "wb") as out:
        server.proc = subprocess.Popen([PY, str(BENCH / "flask_send_file.py"), str(blob),
                                        "--threads", str(threads)], cwd=ROOT, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    match = wait_for_line(log_path, r"Serving on http://127\.0\.0\.1:(\d+)/", server.proc, 20)
    server.port = int(match.group(1))
    server.page, server.content = "/", "/content/file.bin"
    server.info["threads"] = threads
    return server
