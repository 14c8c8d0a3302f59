"""The command-line contract: serve, demo, add, status, config (exact names and outputs)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import ROOT, start_cli_server, stop_cli_server


def run(*args, home=None, check=True, env=None):
    full = [sys.executable, str(ROOT / "app.py"), *args]
    if home is not None:
        full += ["--home", str(home)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHUQIAO_")}
    environment.update(env or {})
    result = subprocess.run(full, capture_output=True, text=True, timeout=60, env=environment)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_help_lists_every_command():
    out = run("--help").stdout
    for command in ("serve", "demo", "add", "status", "config"):
        assert command in out


def test_add_prints_the_new_id_and_the_kiosk_serves_it(tmp_path):
    home = tmp_path / "home"
    pdf = tmp_path / "分数练习.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + b"x" * 5000)
    result = run("add", str(pdf), "--title", "分数练习", "--stage", "小学", "--grade", "三年级",
                 "--subject", "数学", "--chapter", "第八单元 分数的初步认识", "--chapter",
                 "几分之一", "--kind", "exercise", home=home)
    rid = result.stdout.strip()
    assert len(rid) == 32 and all(c in "0123456789abcdef" for c in rid)
    process, url = start_cli_server(["serve", "--home", str(home), "--port", "0", "--no-mdns"])
    try:
        item = requests.get(f"{url}/api/resources/{rid}", timeout=5).json()
        assert item["title"] == "分数练习" and item["kind"] == "exercise"
        assert item["chapter"] == ["第八单元 分数的初步认识", "几分之一"]
        data = requests.get(url + item["files"][0]["url"], timeout=5).content
        assert data == pdf.read_bytes()
    finally:
        stop_cli_server(process)


def test_add_refuses_bad_input_clearly(tmp_path):
    home = tmp_path / "home"
    f = tmp_path / "a.pdf"
    f.write_bytes(b"%PDF")
    result = run("add", str(f), "--title", "  ", home=home, check=False)
    assert result.returncode == 1 and "a title is required" in result.stderr
    result = run("add", str(f), "--title", "x", "--kind", "poster", home=home, check=False)
    assert result.returncode == 1 and "unknown kind 'poster'" in result.stderr
    result = run("add", str(tmp_path / "missing.pdf"), "--title", "x", home=home, check=False)
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_status_exit_codes(tmp_path):
    home = tmp_path / "home"
    result = run("status", home=home, check=False)
    assert result.returncode == 3 and "run `shuqiao serve`" in result.stderr
    assert not home.exists(), "status must not create the home"
    f = tmp_path / "a.pdf"
    f.write_bytes(b"%PDF-1.4 x")
    run("add", str(f), "--title", "课本", home=home)
    result = run("status", "--json", home=home, check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 0, report["problems"]
    assert report["catalog"]["resources"] == 1 and report["databases"]["catalog.db"] == "ok"
    # A reserve larger than the disk: low disk.
    result = run("status", home=home, check=False, env={"SHUQIAO_DISK_RESERVE_MB": "99999999"})
    assert result.returncode == 5 and "below disk_reserve_mb" in result.stderr
    # A cached file whose blob vanished.
    blob = next((home / "blobs" / "sha256").rglob("*"), None)
    for path in (home / "blobs" / "sha256").rglob("*"):
        if path.is_file():
            path.unlink()
    result = run("status", home=home, check=False)
    assert result.returncode == 6 and "no blob" in result.stderr
    # A corrupt catalogue.
    (home / "catalog.db").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(str(home / "catalog.db") + suffix).unlink(missing_ok=True)
    result = run("status", home=home, check=False)
    assert result.returncode == 4 and "catalog.db" in result.stderr
    assert blob is not None


def test_config_prints_values_and_sources(tmp_path):
    (tmp_path / "shuqiao.toml").write_text("threads = 6\n")
    result = run("config", home=tmp_path, env={"SHUQIAO_PORT": "9001"})
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "6" in lines["threads"] and "shuqiao.toml" in lines["threads"]
    assert "9001" in lines["port"] and "env SHUQIAO_PORT" in lines["port"]
    result = run("config", home=tmp_path, env={"SHUQIAO_PORT": "x", "SHUQIAO_THREADS": "-1"},
                 check=False)
    assert result.returncode == 1
    assert "SHUQIAO_PORT" in result.stderr and "SHUQIAO_THREADS" in result.stderr


def test_serve_prints_its_url_and_answers_at_once(tmp_path):
    started = time.monotonic()
    process, url = start_cli_server(["serve", "--home", str(tmp_path), "--port", "0",
                                     "--no-mdns"])
    try:
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 10
        info = requests.get(url + "/api/info", timeout=5).json()
        assert info["version"] and len(info["id"]) == 32
    finally:
        assert stop_cli_server(process) == 0


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port), "--no-mdns", home=tmp_path, check=False)
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_sigterm_lets_an_inflight_download_finish(tmp_path):
    big = tmp_path / "lesson.mp4"
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    home = tmp_path / "home"
    rid = run("add", str(big), "--title", "长视频", home=home).stdout.strip()
    process, url = start_cli_server(["serve", "--home", str(home), "--port", "0", "--no-mdns"])
    try:
        item = requests.get(f"{url}/api/resources/{rid}", timeout=5).json()
        response = requests.get(url + item["files"][0]["url"], stream=True, timeout=10)
        digest = hashlib.sha256()
        chunks = response.iter_content(256 * 1024)
        digest.update(next(chunks))
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/healthz", timeout=2)  # no longer accepting
        for chunk in chunks:  # ...but the download in flight completes
            digest.update(chunk)
        response.close()
        assert digest.hexdigest() == item["files"][0]["sha256"]
        assert stop_cli_server(process) == 0
    finally:
        stop_cli_server(process)
