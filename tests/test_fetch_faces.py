"""The kiosk's face of fetching: the 获取 button, queue position and progress, shared by
every terminal that asks for the same thing."""

from __future__ import annotations

import re

import pytest

from cache.catalog import FileSpec
from cache.queue import FetchQueue


@pytest.fixture
def remote_package(ctx):
    with ctx.cache.catalog() as catalog:
        pid = catalog.upsert_resource(source="t", source_id="pkg", kind="lesson_package",
                                      title="几分之一", stage="小学", grade="三年级", subject="数学")
        for n in range(2):
            catalog.upsert_resource(
                source="t", source_id=f"p{n}", kind="task_sheet", title="学习任务单",
                parent_id=pid, lesson="第一课时", lesson_no=1, position=n,
                files=[FileSpec(role="pdf", mime="application/pdf", size=1000 * (n + 1),
                                urls=(f"https://r1-ndr-private.ykt.cbern.com.cn/{n}.pdf",))])
    return pid


def token(client, path):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)


def test_uncached_resource_offers_fetch_and_shows_the_queue(client, ctx, remote_package):
    page = client.get(f"/r/{remote_package}").get_data(as_text=True)
    assert 'class="button fetch-button">获取</button>' in page
    assert client.post(f"/r/{remote_package}/fetch").status_code == 400  # no CSRF token
    r = client.post(f"/r/{remote_package}/fetch",
                    data={"csrf_token": token(client, f"/r/{remote_package}")})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/r/{remote_package}#fetch")
    page = client.get(f"/r/{remote_package}").get_data(as_text=True)
    assert "排队中：第 1 位" in page and "<progress" in page and "获取</button>" not in page
    state = client.get(f"/api/resources/{remote_package}/fetch").get_json()
    assert state["state"] == "waiting" and state["files"] == 2 and state["bytes_total"] == 3000
    with ctx.cache.catalog() as catalog:
        assert FetchQueue(catalog.db).status()["counts"]["waiting"] == 2


def test_many_terminals_asking_share_one_queue_entry_per_file(app, ctx, remote_package):
    for _ in range(5):
        terminal = app.test_client()
        csrf = token(terminal, f"/r/{remote_package}")
        r = terminal.post(f"/api/resources/{remote_package}/fetch",
                          headers={"X-CSRF-Token": csrf})
        assert r.status_code == 202 and r.get_json()["state"] == "waiting"
    with ctx.cache.catalog() as catalog:
        rows = catalog.db.execute("SELECT file_id, requests FROM fetch_queue").fetchall()
    assert len(rows) == 2 and all(requests == 5 for _, requests in rows)


def test_fetch_api_refuses_bad_input(client, remote_package):
    assert client.post(f"/api/resources/{remote_package}/fetch").status_code == 400
    assert client.get("/api/resources/XYZ/fetch").get_json()["code"] == "bad_id"
    assert client.get("/api/resources/" + "0" * 32 + "/fetch").status_code == 404


def test_admin_queue_page(client, ctx, remote_package):
    from test_admin import set_up

    set_up(client)
    csrf = token(client, f"/r/{remote_package}")
    r = client.post(f"/api/resources/{remote_package}/fetch", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 202, r.get_json()
    page = client.get("/admin/queue").get_data(as_text=True)
    assert "下载队列" in page and "几分之一" in page and "<progress" in page
    assert "国家平台登录" in page and "磁盘" in page
    live = client.get("/admin/queue.json").get_json()
    assert live["counts"]["waiting"] == 2 and len(live["entries"]) == 2
    assert live["token"]["state"] in ("missing", "needs_login")
