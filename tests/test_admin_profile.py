"""Admin pages for the school profile and the platform login token."""

from __future__ import annotations

import re

from cache.plan import Profile
from test_admin import set_up


def csrf(client, path):
    return re.search(r'name="csrf_token" value="([^"]+)"',
                     client.get(path).get_data(as_text=True)).group(1)


def test_school_profile_page(client, ctx):
    set_up(client)
    token = csrf(client, "/admin/profile")
    r = client.post("/admin/profile", data={"csrf_token": token, "action": "term",
                                            "start": "2026-09-01", "end": "2027-01-15",
                                            "name": "2026秋"})
    assert r.status_code == 302
    r = client.post("/admin/profile", data={"csrf_token": token, "action": "class",
                                            "name": "三年级一班", "grade": "三年级", "subject": "数学",
                                            "edition": "人教版", "periods": "1:2,3:4"})
    assert r.status_code == 302
    page = client.get("/admin/profile").get_data(as_text=True)
    assert "三年级一班" in page and "2026-09-01" in page
    with ctx.cache.catalog() as catalog:
        school = Profile(catalog.db)
        assert school.classes()[0].periods == [(1, 2), (3, 4)]
    bad = client.post("/admin/profile", data={"csrf_token": token, "action": "class",
                                              "name": "x", "grade": "三年级", "subject": "数学",
                                              "periods": "Monday"})
    assert bad.status_code == 400 and "weekday:period" in bad.get_data(as_text=True)
    bad = client.post("/admin/profile", data={"csrf_token": token, "action": "term",
                                              "start": "2027-01-01", "end": "2026-01-01"})
    assert bad.status_code == 400 and "must end after" in bad.get_data(as_text=True)
    r = client.post("/admin/profile", data={"csrf_token": token, "action": "remove",
                                            "name": "三年级一班"})
    assert r.status_code == 302
    assert "<td>三年级一班</td>" not in client.get("/admin/profile").get_data(as_text=True)


def test_platform_token_page(client, ctx):
    from standin import Standin

    set_up(client)
    page = client.get("/admin/platform").get_data(as_text=True)
    assert "ND_UC_AUTH" in page
    token = csrf(client, "/admin/platform")
    bad = client.post("/admin/platform", data={"csrf_token": token, "token": "not a token"})
    assert bad.status_code == 400
    with Standin(small=True) as platform:
        good = client.post("/admin/platform", data={"csrf_token": token,
                                                     "token": str(platform.token_json())})
    assert good.status_code == 302
    page = client.get("/admin/platform").get_data(as_text=True)
    assert 'class="notice"' in page


def test_platform_token_cli(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT
    from standin import Standin

    home = tmp_path / "home"
    with Standin(small=True) as platform:
        token = str(platform.token_json())
    ok = subprocess.run([sys.executable, str(ROOT / "app.py"), "platform-token", "-", "--home",
                         str(home)], input=token, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, str(ROOT / "app.py"), "platform-token", "-", "--home",
                          str(home)], input="garbage", capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.strip()
