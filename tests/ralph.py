"""A real xAPI Learning Record Store for tests and benches: Ralph (PyPI ``ralph-malph``).

Ralph pins ``click<8.2.1`` (we run a newer click), so it lives in its own virtualenv,
made once per machine by :func:`ralph_python` under ``.venv/ralph-lrs`` (inside our venv's
folder: ``make clean`` removes it and git ignores it; ``TEST_RALPH_VENV`` moves
it). Creation is guarded by a file lock, so parallel test runs share one install.

:class:`RalphServer` runs ``ralph.api:app`` under uvicorn on 127.0.0.1 (a port the OS
picks), as ``../shared/reference/toolbox.md`` describes:

- the ``fs`` backend, with its default write operation switched to APPEND before the app
  is imported (in Ralph 5.1 every write after the first otherwise answers 500);
- Basic auth from an auth file written by ``ralph auth … -w``;
- optional TLS (``certfile``/``keyfile``) to test HTTPS with a private CA.

It is a real process: tests stop it to see an LRS that is down, and restart it on the
same port and data directory.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
RALPH_REQUIREMENTS = ["ralph-malph[cli,lrs]==5.1.0", "requests>=2.32"]
USER, PASSWORD = "shuqiao-test", "not-a-real-secret-9f1c"

# Runs inside Ralph's venv. Binds first (port 0 → the OS picks), prints the port, then
# serves that very socket, so there is no race for a free port.
_LAUNCHER = r"""
import socket, sys
from ralph.backends.data.base import BaseOperationType
from ralph.backends.lrs.fs import FSLRSBackend
FSLRSBackend.default_operation_type = BaseOperationType.APPEND  # Ralph 5.1 fs defect
import uvicorn
from ralph.api import app
port, certfile, keyfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
print("PORT", sock.getsockname()[1], flush=True)
config = uvicorn.Config(app, log_level="warning", access_log=False,
                        ssl_certfile=certfile or None, ssl_keyfile=keyfile or None)
uvicorn.Server(config).run(sockets=[sock])
"""


class RalphUnavailable(RuntimeError):
    """Ralph could not be installed here; the message says why (tests skip with it)."""


def venv_dir() -> Path:
    override = os.environ.get("TEST_RALPH_VENV")
    return Path(override) if override else ROOT / ".venv" / "ralph-lrs"


def ralph_python() -> Path:
    """The Python of Ralph's venv, creating and installing it on first use (~1 min)."""
    directory = venv_dir()
    python = directory / "bin" / "python"
    stamp = directory / (".installed-" + "-".join(RALPH_REQUIREMENTS).replace("/", "_")
                         .replace("[", "_").replace("]", "_").replace(",", "_")
                         .replace(">", "").replace("=", "").replace("<", ""))
    if stamp.exists():
        return python
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(str(directory) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return python
        steps = [[sys.executable, "-m", "venv", str(directory)],
                 [str(python), "-m", "pip", "install", "--quiet", *RALPH_REQUIREMENTS]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            if done.returncode:
                raise RalphUnavailable(f"cannot install Ralph ({' '.join(step[-3:])}): "
                                       + (done.stderr or done.stdout)[-800:])
        stamp.touch()
    return python


class RalphServer:
    """One Ralph LRS process serving ``data_dir`` on 127.0.0.1."""

    def __init__(self, data_dir: Path, *, certfile: Path | None = None,
                 keyfile: Path | None = None, ca_file: Path | None = None):
        self.python = ralph_python()
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.certfile, self.keyfile, self.ca_file = certfile, keyfile, ca_file
        self.scheme = "https" if certfile else "http"
        self.auth_file = self.data_dir / "auth.json"
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._stderr = None
        if not self.auth_file.exists():
            self._write_auth_file()

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
        env.update({
            "RALPH_AUTH_FILE": str(self.auth_file),
            "RALPH_APP_DIR": str(self.data_dir / "app"),
            "RALPH_RUNSERVER_BACKEND": "fs",
            "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(self.data_dir / "lrs"),
            "RALPH_RUNSERVER_MAX_SEARCH_HITS_COUNT": "1000",
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def _write_auth_file(self) -> None:
        done = subprocess.run(
            [str(self.python), "-m", "ralph", "auth", "-u", USER, "-p", PASSWORD, "-s", "all",
             "-M", "mailto:shuqiao-test@example.org", "-w"],
            capture_output=True, text=True, env=self._env(), timeout=120)
        if done.returncode or not self.auth_file.exists():
            raise RalphUnavailable("ralph auth failed: " + done.stderr[-800:])

    # ---------------------------------------------------------------- process

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The xAPI endpoint, as the ``lrs_url`` setting takes it."""
        return self.base + "/xAPI/"

    def start(self, timeout: float = 60) -> "RalphServer":
        """Start (or restart, on the same port) and wait until the heartbeat answers."""
        (self.data_dir / "lrs").mkdir(exist_ok=True)
        self._stderr = open(self.data_dir / "stderr.log", "ab")
        self.process = subprocess.Popen(
            [str(self.python), "-c", _LAUNCHER, str(self.port), str(self.certfile or ""),
             str(self.keyfile or "")],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=self._env(),
            cwd=str(self.data_dir))
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError("Ralph did not start: " + self.stderr_tail())
        self.port = int(line.split()[1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with requests.get(self.base + "/__heartbeat__", timeout=2,
                                  verify=str(self.ca_file) if self.ca_file else True) as r:
                    if r.status_code == 200:
                        return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("Ralph did not answer its heartbeat: " + self.stderr_tail())

    def stderr_tail(self) -> str:
        path = self.data_dir / "stderr.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        self.process.stdout.close()
        self.process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> "RalphServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ reading it

    @property
    def auth_header(self) -> str:
        return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def statements(self, home_page: str | None = None) -> list[dict]:
        """Every statement the LRS holds (following ``more``), optionally of one appliance
        (``actor.account.homePage``, or the group account of daily aggregates)."""
        found, url = [], self.base + "/xAPI/statements?limit=1000"
        with requests.Session() as session:
            session.headers.update({"Authorization": self.auth_header,
                                    "X-Experience-API-Version": "1.0.3"})
            verify = str(self.ca_file) if self.ca_file else True
            while url:
                with session.get(url, timeout=30, verify=verify) as response:
                    response.raise_for_status()
                    body = response.json()
                found.extend(body["statements"])
                more = body.get("more")
                url = (self.base + more) if more else None
        if home_page is not None:
            found = [s for s in found
                     if s["actor"].get("account", {}).get("homePage") == home_page]
        return found

    def stored_lines(self) -> list[dict]:
        """The raw lines of the fs backend's file: what is on disk, duplicates included."""
        path = self.data_dir / "lrs" / "fs_lrs.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def start_or_skip(data_dir: Path, **kwargs) -> RalphServer:
    """Start Ralph, or skip the calling test with the reason it cannot be installed."""
    import pytest

    try:
        return RalphServer(data_dir, **kwargs).start()
    except RalphUnavailable as error:
        pytest.skip(f"Ralph (ralph-malph) is not available here: {error}")


class FaultyProxy:
    """An HTTP proxy in front of an LRS that can misbehave on purpose: answer a status
    (``fail(503, times=2)``), be slow (``delay = 3``), or pass requests through. Real
    sockets on 127.0.0.1; counts what it saw in ``requests``."""

    def __init__(self, upstream: str):
        import http.server
        import threading

        self.upstream = upstream.rstrip("/")
        self.delay = 0.0
        self.failures: list[tuple[int, dict]] = []
        self.requests: list[tuple[str, str, int]] = []   # (method, path, status answered)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.delay:
                    time.sleep(proxy.delay)
                planned = proxy.failures.pop(0) if proxy.failures else None
                if planned is not None:
                    status, headers = planned
                    payload = json.dumps({"detail": "injected failure"}).encode()
                    proxy.requests.append((self.command, self.path, status))
                    self.send_response(status)
                    for name, value in {**headers, "Content-Type": "application/json",
                                        "Content-Length": str(len(payload))}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                forward = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                with requests.request(self.command, proxy.upstream + self.path, data=body,
                                      headers=forward, timeout=60) as response:
                    payload = response.content
                    proxy.requests.append((self.command, self.path, response.status_code))
                    self.send_response(response.status_code)
                    for name, value in response.headers.items():
                        if name.lower() not in ("content-length", "connection", "date",
                                                "server", "transfer-encoding"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/xAPI/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(self, status: int, times: int = 1, after: int = 0, **headers) -> None:
        """Answer the next ``times`` requests (after letting ``after`` through) with
        ``status`` and ``headers`` (``Retry_After=7`` → ``Retry-After: 7``)."""
        self.failures.extend([None] * after + [(status, {k.replace("_", "-"): str(v)
                                                         for k, v in headers.items()})] * times)

    def posts(self) -> list[int]:
        return [status for method, path, status in self.requests if method == "POST"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


# ------------------------------------------------------------- test helpers

def lrs_settings(lrs: "RalphServer | FaultyProxy | str", **overrides) -> dict:
    """Settings overrides that point an appliance at ``lrs`` (a server, proxy or URL)."""
    url = lrs if isinstance(lrs, str) else lrs.url
    values = {"lrs_url": url, "lrs_user": USER, "lrs_password": PASSWORD,
              "lrs_timeout_seconds": 10}
    values.update(overrides)
    return values


def sample_appliance(home: Path, **overrides):
    """A real appliance home with the sample library: (app, ctx, [resource ids])."""
    sys.path.insert(0, str(ROOT))
    from app import create_app
    from cache.sample import load_sample_library
    from conftest import make_config

    app = create_app(make_config(home, **overrides))
    ctx = app.extensions["shuqiao"]
    with ctx.cache.catalog() as catalog:
        ids = load_sample_library(catalog)
    return app, ctx, ids


def event_batch(rids: list[str], n: int, terminal: str = "lab-01") -> list[dict]:
    """``n`` varied valid events over the given resources (every type appears)."""
    kinds = [("view-start", {}), ("view-progress", {"seconds": 30, "duration": 120}),
             ("view-complete", {"seconds": 120}), ("doc-open", {"page": 2}),
             ("exercise", {"correct": 3, "total": 5}), ("rating", {"rating": 4}),
             ("search", {"query": "分数", "results": 0}), ("fetch-request", {})]
    events = []
    for i in range(n):
        kind, fields = kinds[i % len(kinds)]
        event = {"type": kind, "resource": rids[i % len(rids)], "terminal": terminal,
                 "role": "teacher" if kind == "fetch-request" else "student",
                 "class": "三年级一班", **fields}
        events.append(event)
    return events


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate for 127.0.0.1 signed by it: (ca, cert, key) files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Shuqiao test county CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


if __name__ == "__main__":
    # `python tests/ralph.py`: make Ralph's venv now (e.g. from the Makefile), print where.
    print(ralph_python())
