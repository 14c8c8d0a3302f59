"""Shared fixtures: a fresh home per test, the app, and a real waitress server on port 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402

SHARED = ROOT.parent / "shared"
CAPTURED = SHARED / "data" / "smartedu-captured"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """A developer's SHUQIAO_* variables must not change test outcomes."""
    for name in list(os.environ):
        if name.startswith(settings.ENV_PREFIX) or name == "NOTIFY_SOCKET":
            monkeypatch.delenv(name)


def make_config(home: Path, **overrides) -> settings.Config:
    overrides.setdefault("mdns", False)
    return settings.load(home=home, overrides=overrides, environ={})


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def app(home):
    from app import create_app

    return create_app(make_config(home))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def ctx(app):
    return app.extensions["shuqiao"]


@pytest.fixture
def sample_app(app, ctx):
    """The app with the built-in sample library loaded."""
    from cache.sample import load_sample_library

    with ctx.cache.catalog() as catalog:
        load_sample_library(catalog)
    return app


class LiveServer:
    """The real KioskServer (waitress) on 127.0.0.1:0, served from a thread."""

    def __init__(self, app, **options):
        from kiosk.server import KioskServer

        config = app.extensions["shuqiao"].config
        params = dict(host="127.0.0.1", port=0, threads=config.threads,
                      connection_limit=config.connection_limit,
                      send_buffer_bytes=config.send_buffer_bytes, grace_seconds=2)
        params.update(options)
        self.app = app
        self.server = KioskServer(app, **params)
        self.url = self.server.url.rstrip("/")
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        assert self.server.wait_until_answering(10)

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(15)


@pytest.fixture
def live_server(sample_app):
    server = LiveServer(sample_app)
    yield server
    server.stop()


def start_cli_server(args: list[str], env: dict | None = None, timeout: float = 30):
    """Start ``python app.py serve …`` and return (process, base URL) once it serves."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(settings.ENV_PREFIX)}
    full_env.update(env or {})
    full_env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=full_env, cwd=str(ROOT))
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    process.preamble = []  # what it printed before it served
    try:
        for line in process.stdout:
            match = re.match(r"^Serving on (http://\S+/)$", line.strip())
            if match:
                return process, match.group(1).rstrip("/")
            process.preamble.append(line.rstrip("\n"))
    finally:
        timer.cancel()
    process.kill()
    raise AssertionError("server did not start: " + process.stderr.read()[-2000:])


def stop_cli_server(process, sig=None, timeout: float = 20) -> int:
    """Stop a server from :func:`start_cli_server` (SIGTERM), close its pipes, return its code."""
    import signal

    if process.poll() is None:
        process.send_signal(sig or signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    if process.returncode:
        print(f"server exited with {process.returncode}; its stderr:\n{stderr[-3000:]}")
    return process.returncode
