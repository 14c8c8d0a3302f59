"""The admin area: first run without a default password, setup code, CSRF, rate limit, upload."""

from __future__ import annotations

import io
import re

import pytest

LAN = {"REMOTE_ADDR": "192.168.1.50"}  # an environ value only: no traffic leaves the test


def csrf(client, path: str, **kw) -> str:
    page = client.get(path, **kw).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def set_up(client, password="lesson-plan-42", **kw):
    token = csrf(client, "/admin/setup", **kw)
    return client.post("/admin/setup", data={"csrf_token": token, "password": password,
                                             "password_again": password}, **kw)


def test_there_is_no_default_password(client, ctx):
    assert not (ctx.config.home / "admin.json").exists()
    r = client.get("/admin/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/admin/setup")
    r = client.get("/admin/login")
    assert r.status_code == 302


def test_setup_from_the_lan_needs_the_setup_code(app, ctx):
    pupil = app.test_client()
    r = set_up(pupil, environ_base=LAN)
    assert r.status_code == 400
    assert "设置码不对" in r.get_data(as_text=True)
    assert not (ctx.config.home / "admin.json").exists()

    teacher = app.test_client()
    token = csrf(teacher, "/admin/setup", environ_base=LAN)
    r = teacher.post("/admin/setup", environ_base=LAN, data={
        "csrf_token": token, "setup_code": ctx.state["setup_code"],
        "password": "lesson-plan-42", "password_again": "lesson-plan-42"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/admin/")
    assert (ctx.config.home / "admin.json").stat().st_mode & 0o777 == 0o600
    assert "setup_code" not in ctx.state  # one-time
    assert teacher.get("/admin/", environ_base=LAN).status_code == 200


def test_setup_on_the_appliance_itself_needs_no_code_and_happens_once(app, client):
    assert "setup_code" not in client.get("/admin/setup").get_data(as_text=True)
    assert set_up(client).status_code == 302
    other = app.test_client()
    assert other.get("/admin/setup").status_code == 409
    r = other.post("/admin/setup", data={"csrf_token": csrf(other, "/admin/login"),
                                         "password": "x" * 10, "password_again": "x" * 10})
    assert r.status_code == 409


@pytest.mark.parametrize("password, again, message", [
    ("short", "short", "至少需要 8 个字符"), ("long-enough-1", "long-enough-2", "不一致")])
def test_setup_password_rules(client, ctx, password, again, message):
    token = csrf(client, "/admin/setup")
    r = client.post("/admin/setup", data={"csrf_token": token, "password": password,
                                          "password_again": again})
    assert r.status_code == 400 and message in r.get_data(as_text=True)
    assert not (ctx.config.home / "admin.json").exists()


def test_forms_without_a_valid_csrf_token_are_refused(client, ctx):
    for token in (None, "forged"):
        data = {"password": "lesson-plan-42", "password_again": "lesson-plan-42"}
        if token:
            data["csrf_token"] = token
        r = client.post("/admin/setup", data=data)
        assert r.status_code == 400
        assert "表单已过期或来源不明" in r.get_data(as_text=True)
    assert not (ctx.config.home / "admin.json").exists()


def test_login_is_rate_limited_per_address(app, client, ctx):
    set_up(client)
    attacker = app.test_client()
    token = csrf(attacker, "/admin/login", environ_base=LAN)
    for _ in range(ctx.config.login_attempts):
        r = attacker.post("/admin/login", data={"csrf_token": token, "password": "guess"},
                          environ_base=LAN)
        assert r.status_code == 401
    r = attacker.post("/admin/login", data={"csrf_token": token, "password": "lesson-plan-42"},
                      environ_base=LAN)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    # Another address is not locked out.
    teacher = app.test_client()
    token = csrf(teacher, "/admin/login")
    r = teacher.post("/admin/login", data={"csrf_token": token, "password": "lesson-plan-42"})
    assert r.status_code == 302


def test_health_page(client):
    set_up(client)
    page = client.get("/admin/").get_data(as_text=True)
    for label in ("磁盘", "内存", "处理器", "运行时间", "版本", "waitress", "sqlite"):
        assert label in page


def test_upload_a_teachers_file(client, ctx):
    set_up(client)
    token = csrf(client, "/admin/upload")
    r = client.post("/admin/upload", content_type="multipart/form-data", data={
        "csrf_token": token, "title": "我的分数课件", "subject": "数学", "grade": "三年级",
        "file": (io.BytesIO(b"%PDF-1.4 my slides"), "slides.pdf")})
    assert r.status_code == 201
    rid = re.search(r"/r/([0-9a-f]{32})", r.get_data(as_text=True)).group(1)
    item = client.get(f"/api/resources/{rid}").get_json()
    assert item["title"] == "我的分数课件" and item["subject"] == "数学"
    assert item["files"][0]["mime"] == "application/pdf" and item["files"][0]["cached"]
    assert client.get(item["files"][0]["url"]).data == b"%PDF-1.4 my slides"


def test_bad_uploads_store_nothing(client, ctx):
    set_up(client)
    token = csrf(client, "/admin/upload")
    r = client.post("/admin/upload", content_type="multipart/form-data", data={
        "csrf_token": token, "title": "", "file": (io.BytesIO(b"abc"), "a.pdf")})
    assert r.status_code == 400 and "title" in r.get_data(as_text=True)
    r = client.post("/admin/upload", content_type="multipart/form-data",
                    data={"csrf_token": token, "title": "无文件"})
    assert r.status_code == 400 and "请选择要上传的文件" in r.get_data(as_text=True)
    with ctx.cache.catalog() as catalog:
        assert catalog.counts()["resources"] == 0
    assert list(ctx.cache.store.digests()) == []
