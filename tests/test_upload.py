"""Uploading to a real LRS (Ralph on loopback): idempotent resends, batches, and an LRS
that is down, slow, failing (5xx), conflicting (409), refusing (422) or misconfigured;
the background Uploader with back-off; sync windows and the shared budget."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime, timedelta

import pytest
from ralph import (FaultyProxy, PASSWORD, event_batch, lrs_settings, make_tls,
                   sample_appliance, start_or_skip)

from sync import xapi
from sync.upload import Uploader, in_window, parse_window, sync_once, upload_lock, SyncError


@pytest.fixture(scope="module")
def lrs(tmp_path_factory):
    server = start_or_skip(tmp_path_factory.mktemp("ralph"))
    yield server
    server.stop()


@pytest.fixture
def proxy(lrs):
    faulty = FaultyProxy(lrs.base)
    yield faulty
    faulty.close()


class Echo(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    def text(self) -> str:
        return "\n".join(self)


def appliance(tmp_path, target, n=0, **settings):
    app, ctx, rids = sample_appliance(tmp_path / "home", **lrs_settings(target, **settings))
    ids = []
    if n:
        r = app.test_client().post("/api/events", json=event_batch(rids, n))
        assert r.status_code == 201
        ids = r.get_json()["ids"]
    return app, ctx, rids, ids


def held(lrs, ctx) -> list[dict]:
    return lrs.statements(xapi.Identity.from_config(ctx.config).appliance_iri)


def expected_ids(ctx, event_ids) -> list[str]:
    identity = xapi.Identity.from_config(ctx.config)
    return sorted(xapi.statement_id(identity, e) for e in event_ids)


def states(ctx) -> dict:
    with ctx.usage.outbox() as outbox:
        return {k: v for k, v in outbox.counts().items() if v}


def assert_exactly_once(lrs, ctx, event_ids) -> None:
    """The LRS holds one statement per recorded event, and its file no line twice."""
    assert sorted(s["id"] for s in held(lrs, ctx)) == expected_ids(ctx, event_ids)
    lines = [s["id"] for s in lrs.stored_lines()]
    assert len(lines) == len(set(lines))


# ------------------------------------------------------------------- resends

def test_idempotent_resend_after_a_lost_acknowledgement(lrs, proxy, tmp_path):
    app, ctx, rids, ids = appliance(tmp_path, proxy, 12)
    echo = Echo()
    assert sync_once(ctx.config, ctx.usage, echo) == 0
    assert states(ctx) == {"delivered": 12, "total": 12}
    assert "delivered 12" in echo.text()
    # The LRS stored them but the acknowledgement never arrived: the state says pending.
    with ctx.usage.outbox() as outbox:
        with outbox.db.atomic():
            outbox.db.execute("UPDATE statements SET state = 'pending'")
            outbox.db.execute("UPDATE events SET state = 'pending'")
    proxy.requests.clear()
    assert sync_once(ctx.config, ctx.usage, echo) == 0
    assert proxy.posts() == [204]        # all already there: a no-op at the LRS
    assert states(ctx) == {"delivered": 12, "total": 12}
    assert_exactly_once(lrs, ctx, ids)


def test_batch_partly_stored_answers_only_the_new_ids(lrs, proxy, tmp_path):
    app, ctx, rids, first = appliance(tmp_path, proxy, 5)
    assert sync_once(ctx.config, ctx.usage, Echo()) == 0
    r = app.test_client().post("/api/events", json=event_batch(rids, 4, terminal="lab-02"))
    second = r.get_json()["ids"]
    with ctx.usage.outbox() as outbox:
        with outbox.db.atomic():   # the first five look unacknowledged again
            outbox.db.execute("UPDATE statements SET state = 'pending'")
            outbox.db.execute("UPDATE events SET state = 'pending'")
    proxy.requests.clear()
    assert sync_once(ctx.config, ctx.usage, Echo()) == 0
    assert proxy.posts() == [200]
    assert states(ctx) == {"delivered": 9, "total": 9}
    assert_exactly_once(lrs, ctx, first + second)


def test_batches_are_bounded_by_count_and_bytes(lrs, proxy, tmp_path):
    app, ctx, rids, ids = appliance(tmp_path, proxy, 30, lrs_batch_max=7)
    assert sync_once(ctx.config, ctx.usage, Echo()) == 0
    assert proxy.posts() == [200] * 5     # 7+7+7+7+2
    app2, ctx2, _, ids2 = appliance(tmp_path / "b", proxy, 10, lrs_batch_max_kb=3)
    proxy.requests.clear()
    with ctx2.usage.outbox() as outbox:
        sizes = [r[0] for r in outbox.db.execute("SELECT bytes FROM statements")]
    assert sync_once(ctx2.config, ctx2.usage, Echo()) == 0
    assert len(proxy.posts()) >= sum(sizes) // 3072   # each request ≤ 3 KB of statements
    assert_exactly_once(lrs, ctx2, ids2)


# ------------------------------------------------------------- a bad link

def test_lrs_down_keeps_everything_pending_until_it_is_back(tmp_path):
    server = start_or_skip(tmp_path / "ralph")
    try:
        app, ctx, rids, ids = appliance(tmp_path, server, 6)
        server.stop()
        echo = Echo()
        assert sync_once(ctx.config, ctx.usage, echo) == 6
        assert "cannot reach the LRS" in echo.text()
        assert states(ctx) == {"pending": 6, "total": 6}
        assert ctx.usage.report()["uploader"]["state"] == "offline"
        server.start()                      # same port, same data
        assert sync_once(ctx.config, ctx.usage, Echo()) == 0
        assert_exactly_once(server, ctx, ids)
    finally:
        server.stop()


def test_slow_lrs_times_out_and_the_resend_is_exact(lrs, proxy, tmp_path):
    app, ctx, rids, ids = appliance(tmp_path, proxy, 8, lrs_timeout_seconds=1)
    proxy.delay = 2.5        # longer than lrs_timeout_seconds: the answer comes too late
    echo = Echo()
    assert sync_once(ctx.config, ctx.usage, echo) == 8
    assert "did not answer in time" in echo.text()
    assert states(ctx) == {"pending": 8, "total": 8}
    proxy.delay = 0
    assert sync_once(ctx.config, ctx.usage, Echo()) == 0
    assert_exactly_once(lrs, ctx, ids)


def test_server_errors_stop_the_pass_and_retry_after_is_honoured(lrs, proxy, tmp_path):
    app, ctx, rids, ids = appliance(tmp_path, proxy, 10, lrs_batch_max=4)
    proxy.fail(503, times=1, after=2, Retry_After=7)   # probe ok, 1st batch ok, 2nd fails
    echo = Echo()
    assert sync_once(ctx.config, ctx.usage, echo) == 6
    assert "HTTP 503" in echo.text()
    assert states(ctx) == {"pending": 6, "delivered": 4, "total": 10}
    uploader = Uploader(ctx.config, ctx.usage, rng=random.Random(1))
    uploader.failures = 1
    assert uploader.backoff_delay(retry_after=7) == 7
    assert sync_once(ctx.config, ctx.usage, Echo()) == 0
    assert_exactly_once(lrs, ctx, ids)


def test_conflicting_statement_is_quarantined_and_the_rest_delivered(lrs, proxy, tmp_path):
    app, ctx, rids, ids = appliance(tmp_path, proxy, 9, lrs_url="")
    sync_once(ctx.config, ctx.usage, Echo())   # no LRS yet: makes the statements only
    with ctx.usage.outbox() as outbox:
        sid, body = outbox.db.execute("SELECT id, body FROM statements ORDER BY seq LIMIT 1"
                                      " OFFSET 4").fetchone()
    # Someone else already stored a different statement under that id.
    import requests
    other = dict(json.loads(body), timestamp="2020-01-01T00:00:00.000+00:00")
    with requests.post(lrs.url + "statements", json=[other], timeout=10,
                       headers={"Authorization": lrs.auth_header,
                                "X-Experience-API-Version": "1.0.3"}) as r:
        assert r.status_code == 200
    ctx.config.values.update(lrs_settings(proxy))
    echo = Echo()
    assert sync_once(ctx.config, ctx.usage, echo) == 0
    assert "1 conflict" in echo.text()
    assert 409 in proxy.posts()
    assert states(ctx) == {"delivered": 8, "conflict": 1, "total": 9}
    with ctx.usage.outbox() as outbox:
        [quarantined] = outbox.quarantined()
    assert quarantined["id"] == sid and "timestamp" in quarantined["error"]
    proxy.requests.clear()
    assert sync_once(ctx.config, ctx.usage, Echo()) == 0   # never retried in a loop
    assert proxy.posts() == []


def test_invalid_statement_is_quarantined_with_the_reason(lrs, proxy, tmp_path):
    app, ctx, rids, ids = appliance(tmp_path, proxy, 7, lrs_url="")
    sync_once(ctx.config, ctx.usage, Echo())
    with ctx.usage.outbox() as outbox, outbox.db.atomic():
        sid, body = outbox.db.execute("SELECT id, body FROM statements ORDER BY seq LIMIT 1"
                                      " OFFSET 2").fetchone()
        broken = json.loads(body)
        del broken["verb"]
        outbox.db.execute("UPDATE statements SET body = ? WHERE id = ?",
                          [xapi.to_json(broken), sid])
    ctx.config.values.update(lrs_settings(proxy))
    echo = Echo()
    assert sync_once(ctx.config, ctx.usage, echo) == 0
    assert 422 in proxy.posts() and "1 invalid" in echo.text()
    assert states(ctx) == {"delivered": 6, "invalid": 1, "total": 7}
    with ctx.usage.outbox() as outbox:
        [quarantined] = outbox.quarantined()
        assert quarantined["id"] == sid and "verb" in quarantined["error"]
        # Put back once fixed (the admin's "retry"): it goes again.
        assert outbox.requeue() == 1
    assert states(ctx)["pending"] == 1


@pytest.mark.parametrize("change, expect", [
    ({"lrs_password": PASSWORD + "x"}, "refused lrs_user / lrs_password"),
    ({"lrs_url": "BASE/nowhere/"}, "does not point at an xAPI LRS"),
])
def test_misconfiguration_is_reported_and_nothing_is_lost(lrs, proxy, tmp_path, change, expect):
    change = {k: v.replace("BASE", lrs.base) for k, v in change.items()}
    app, ctx, rids, ids = appliance(tmp_path, proxy, 3, **change)
    echo = Echo()
    assert sync_once(ctx.config, ctx.usage, echo) == 3
    assert expect in echo.text()
    assert states(ctx) == {"pending": 3, "total": 3}
    assert held(lrs, ctx) == []


def test_https_with_a_private_ca(tmp_path):
    ca, cert, key = make_tls(tmp_path / "tls")
    server = start_or_skip(tmp_path / "ralph", certfile=cert, keyfile=key, ca_file=ca)
    try:
        assert server.url.startswith("https://127.0.0.1:")
        app, ctx, rids, ids = appliance(tmp_path, server, 4)
        echo = Echo()
        assert sync_once(ctx.config, ctx.usage, echo) == 4    # the system CAs do not know it
        assert "certificate cannot be verified" in echo.text()
        ctx.config.values["lrs_ca_file"] = str(ca)
        assert sync_once(ctx.config, ctx.usage, Echo()) == 0
        assert_exactly_once(server, ctx, ids)
    finally:
        server.stop()


# ------------------------------------------------------ windows and budget

def test_sync_window_parsing_and_membership():
    spans = parse_window("18:00-07:00, 12:00-13:00")
    assert spans == [(1080, 420), (720, 780)]
    at = lambda hh, mm: datetime(2026, 11, 27, hh, mm)  # noqa: E731
    assert in_window(spans, at(23, 0)) and in_window(spans, at(6, 59))
    assert in_window(spans, at(12, 30)) and not in_window(spans, at(7, 0))
    assert not in_window(spans, at(13, 0)) and in_window([], at(10, 0))
    with pytest.raises(SyncError, match="not like 18:00-07:00"):
        parse_window("evenings")


def test_nothing_is_sent_outside_the_sync_window(lrs, proxy, tmp_path):
    now = datetime.now()
    start, end = now + timedelta(hours=2), now + timedelta(hours=3)
    window = f"{start:%H:%M}-{end:%H:%M}"
    app, ctx, rids, ids = appliance(tmp_path, proxy, 3, lrs_sync_window=window)
    echo = Echo()
    assert sync_once(ctx.config, ctx.usage, echo) == 3
    assert "outside lrs_sync_window" in echo.text() and proxy.requests == []
    assert sync_once(ctx.config, ctx.usage, Echo(), ignore_window=True) == 0


def test_uploads_share_the_fetch_budget(lrs, proxy, tmp_path):
    budget_module = pytest.importorskip("cache.budget")
    app, ctx, rids, ids = appliance(tmp_path, proxy, 5)
    paused = budget_module.Budget("00:00-24:00=pause")
    echo = Echo()
    assert sync_once(ctx.config, ctx.usage, echo, budget=paused) == 5
    assert "budget is paused" in echo.text()
    assert proxy.posts() == []
    open_budget = budget_module.Budget("")
    assert sync_once(ctx.config, ctx.usage, Echo(), budget=open_budget) == 0
    with ctx.usage.outbox() as outbox:
        sent = outbox.db.execute("SELECT sum(bytes) FROM statements").fetchone()[0]
    assert open_budget.state()["month_used"] == sent


def test_one_uploader_per_home(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with upload_lock(tmp_path) as first:
        with upload_lock(tmp_path) as second:
            assert first and not second
    with upload_lock(tmp_path) as again:
        assert again


# --------------------------------------------------- the background uploader

def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_background_uploader_backs_off_while_down_and_delivers_when_back(tmp_path):
    server = start_or_skip(tmp_path / "ralph")
    server.stop()                                     # down from the start
    app, ctx, rids, ids = appliance(tmp_path, server, 4, lrs_interval_seconds=1,
                                    lrs_retry_max_seconds=2)
    uploader = Uploader(ctx.config, ctx.usage, retry_base=0.2).start()
    try:
        assert wait_for(lambda: uploader.failures >= 3)
        status = uploader.status()
        assert status["state"] == "offline" and status["pending"] == 4
        assert 0 < status["retry_in"] <= 2
        assert ctx.usage.report()["uploader"]["state"] == "offline"
        server.start()
        assert wait_for(lambda: states(ctx).get("delivered") == 4)
        assert wait_for(lambda: uploader.status()["state"] in ("online", "idle"))
        # New events are picked up by the running uploader.
        more = app.test_client().post("/api/events", json=event_batch(rids, 3, "lab-03"))
        uploader.poke()
        assert wait_for(lambda: states(ctx).get("delivered") == 7)
        uploader.stop()
        assert_exactly_once(server, ctx, ids + more.get_json()["ids"])
        assert uploader.failures == 0
    finally:
        uploader.stop()
        server.stop()


def test_backoff_grows_exponentially_with_jitter_up_to_the_ceiling(tmp_path):
    app, ctx, rids, ids = appliance(tmp_path, "http://127.0.0.1:9/xAPI/",
                                    lrs_retry_max_seconds=60)
    uploader = Uploader(ctx.config, ctx.usage, retry_base=5, rng=random.Random(7))
    delays = []
    for failures in range(1, 9):
        uploader.failures = failures
        nominal = min(60, 5 * 2 ** (failures - 1))
        delay = uploader.backoff_delay()
        assert nominal / 2 <= delay <= nominal
        delays.append(delay)
    assert delays[-1] <= 60 and len({round(d, 3) for d in delays[-3:]}) == 3  # jittered


def test_unconfigured_uploader_keeps_events_and_says_so(tmp_path):
    app, ctx, rids, ids = appliance(tmp_path, "", 2, lrs_interval_seconds=1)
    uploader = Uploader(ctx.config, ctx.usage).start()
    try:
        assert wait_for(lambda: uploader.status()["state"] == "unconfigured")
    finally:
        uploader.stop()
    echo = Echo()
    assert sync_once(ctx.config, ctx.usage, echo) == 2
    assert "lrs_url is not set" in echo.text()
