"""Every kind of bad input the kiosk receives, in one list, against a real waitress server.

Each answers a 4xx with a clear message; nothing is stored and nothing escapes the store.
"""

from __future__ import annotations

import http.client
import json
import re
from urllib.parse import urlsplit

import pytest

from conftest import LiveServer

RID = "0123456789abcdef0123456789abcdef"
OK_EVENT = {"type": "view-start", "terminal": "lab-1", "role": "student",
            "at": "2026-11-27T08:00:00Z"}

# (method, path, headers, body, status, text the answer must contain)
CASES = [
    # Traversal and malformed content addresses
    ("GET", "/content/../../../etc/passwd", {}, None, 404, "not found"),
    ("GET", "/content/..%2f..%2fetc%2fpasswd", {}, None, 404, "not found"),
    ("GET", "/content/%2e%2e%2f%2e%2e%2fcatalog.db", {}, None, 404, "not found"),
    ("GET", "/content/" + "0" * 63 + "/", {}, None, 404, "not found"),
    ("GET", "/content/..", {}, None, 400, "SHA-256"),
    ("GET", "/content/" + "F" * 64, {}, None, 400, "SHA-256"),
    ("GET", "/content/" + "0" * 64 + ".pdf", {}, None, 400, "SHA-256"),
    ("GET", "/content/%00" + "0" * 63, {}, None, 400, "SHA-256"),
    ("GET", "/content/" + "0" * 64, {}, None, 404, "no such content"),
    ("GET", "/static/../catalog.db", {}, None, 404, ""),
    ("GET", "/static/..%2f..%2fapp.py", {}, None, 404, ""),
    # Malformed ids and parameters on the API
    ("GET", "/api/resources/" + RID.upper(), {}, None, 400, "32 lower-case hex"),
    ("GET", "/api/resources/..%2f..", {}, None, 404, "not found"),
    ("GET", "/api/resources/x'%20OR%201=1--", {}, None, 400, "32 lower-case hex"),
    ("GET", "/api/resources/" + RID, {}, None, 404, "no such resource"),
    ("GET", "/api/resources?limit=abc", {}, None, 400, "whole numbers"),
    ("GET", "/api/resources?limit=100000", {}, None, 400, "limit must be"),
    ("GET", "/api/resources?offset=-1", {}, None, 400, "offset"),
    ("GET", "/api/resources?q=" + "%E6%95%B0" * 101, {}, None, 400, "longer than 100"),
    ("GET", "/api/nothing-here", {}, None, 404, "not found"),
    ("DELETE", "/api/resources", {}, None, 405, "not allowed"),
    # Events: malformed and oversized
    ("POST", "/api/events", {"Content-Type": "application/json"}, b"{", 400, "not valid JSON"),
    ("POST", "/api/events", {"Content-Type": "application/json"}, b"\xff\xfe", 400,
     "not valid JSON"),
    ("POST", "/api/events", {"Content-Type": "text/plain"}, b"{}", 415, "application/json"),
    ("POST", "/api/events", {"Content-Type": "application/json"},
     json.dumps({**OK_EVENT, "resource": RID}).encode(), 400, "unknown resource"),
    ("POST", "/api/events", {"Content-Type": "application/json"},
     json.dumps({**OK_EVENT, "resource": "../x"}).encode(), 400, "resource must be"),
    ("POST", "/api/events", {"Content-Type": "application/json"},
     json.dumps([OK_EVENT] * 501).encode(), 400, "too many events"),
    ("POST", "/api/events", {"Content-Type": "application/json"},
     b"[" + b" " * (1024 * 1024 + 10) + b"]", 413, "larger than"),
    ("GET", "/api/events", {}, None, 405, "not allowed"),
    # Admin forms without or with a wrong CSRF token
    ("POST", "/admin/setup", {"Content-Type": "application/x-www-form-urlencoded"},
     b"password=aaaaaaaa1&password_again=aaaaaaaa1", 400, "表单已过期"),
    ("POST", "/admin/login", {"Content-Type": "application/x-www-form-urlencoded"},
     b"password=x&csrf_token=forged", 400, "表单已过期"),
    ("POST", "/admin/upload", {"Content-Type": "application/x-www-form-urlencoded"},
     b"csrf_token=", 400, "表单已过期"),
    ("POST", "/admin/logout", {}, b"", 400, "表单已过期"),
    # Pages
    ("GET", "/r/not-an-id", {}, None, 404, "页面不存在"),
    ("GET", "/r/" + RID, {}, None, 404, "页面不存在"),
    ("GET", "/browse?page=-5&stage=%00", {}, None, 200, ""),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from app import create_app
    from conftest import make_config

    app = create_app(make_config(tmp_path_factory.mktemp("home")))
    live = LiveServer(app)
    yield live
    live.stop()


@pytest.mark.parametrize("method, path, headers, body, status, text", CASES,
                         ids=[f"{c[0]} {c[1][:60]}" for c in CASES])
def test_bad_input_gets_a_clear_4xx(server, method, path, headers, body, status, text):
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read().decode("utf-8", "replace")
    finally:
        conn.close()
    assert response.status == status, answer[:300]
    assert text.lower() in answer.lower(), answer[:300]
    if path.startswith(("/api/", "/content/")) and status >= 400:
        error = json.loads(answer)
        assert set(error) >= {"ok", "error", "code", "status"} and error["ok"] is False
        assert error["status"] == status
    assert not re.search(r"root:x:0:0|SQLite format 3|Traceback", answer)


def test_nothing_was_stored(server):
    ctx = server.app.extensions["shuqiao"]
    with ctx.usage.outbox() as outbox:
        assert outbox.counts()["total"] == 0
    assert not (ctx.config.home / "admin.json").exists()
