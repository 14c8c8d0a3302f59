"""`shuqiao sync-usage --once` and the USB commands, as an IT teacher runs them, against a
real Ralph LRS."""

from __future__ import annotations

import ralph
from test_cli import run


def _env(lrs, **extra):
    values = ralph.lrs_settings(lrs, **extra)
    return {f"SHUQIAO_{k.upper()}": str(v) for k, v in values.items()}


def test_sync_usage_once_and_the_usb_path(tmp_path):
    lrs = ralph.start_or_skip(tmp_path / "lrs")
    try:
        school, county = tmp_path / "school", tmp_path / "county"
        app, ctx, ids = ralph.sample_appliance(school)
        client = app.test_client()
        assert client.post("/api/events", json=ralph.event_batch(ids, 12)).status_code == 201

        # No link: the school's records go to a USB drive…
        unreachable = {"SHUQIAO_LRS_URL": "http://127.0.0.1:9/xAPI/"}
        offline = run("sync-usage", "--once", home=school, check=False, env=unreachable)
        assert offline.returncode == 1
        (tmp_path / "usb").mkdir()  # the mounted drive
        run("export-usage", str(tmp_path / "usb"), home=school)
        # …and the county office forwards them, twice without duplicates.
        run("import-usage", str(tmp_path / "usb"), home=county, env=_env(lrs))
        run("import-usage", str(tmp_path / "usb"), home=county, env=_env(lrs))
        assert len(lrs.statements()) == 12
        # A later event at the school uploads directly; handed-off ones are not resent.
        assert client.post("/api/events", json=ralph.event_batch(ids, 1)).status_code == 201
        done = run("sync-usage", "--once", home=school, env=_env(lrs))
        assert done.returncode == 0
        statements = lrs.statements()
        assert len(statements) == 13 and len({s["id"] for s in statements}) == 13
    finally:
        lrs.stop()
