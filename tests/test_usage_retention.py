"""Retention of usage.db: age and size limits drop only delivered events; a truly full
disk drops the oldest (counted and reported); retention.report gives the admin numbers."""

from __future__ import annotations

import sqlite3

import pytest
from ralph import event_batch, sample_appliance

from sync import retention, xapi
from sync.outbox import Outbox


@pytest.fixture
def appliance(tmp_path):
    app, ctx, rids = sample_appliance(tmp_path / "home")
    return app.test_client(), ctx, rids


def post(client, rids, n, terminal="lab-01", **extra):
    if extra:   # n events of one type, e.g. ratings with a long comment
        events = [{"resource": rids[i % len(rids)], "terminal": terminal, "role": "student",
                   **extra} for i in range(n)]
    else:
        events = event_batch(rids, n, terminal)
    ids = []
    for start in range(0, n, 500):
        r = client.post("/api/events", json=events[start:start + 500])
        assert r.status_code == 201, r.get_json()
        ids += r.get_json()["ids"]
    return ids


def deliver(ctx, event_ids):
    """As if the LRS acknowledged these events' statements."""
    identity = xapi.Identity.from_config(ctx.config)
    with ctx.usage.outbox() as outbox:
        while outbox.compile_events(identity):
            pass
        outbox.mark([xapi.statement_id(identity, e) for e in event_ids], "delivered")


def age(ctx, event_ids, days):
    with ctx.usage.outbox() as outbox, outbox.db.atomic():
        outbox.db.conn.executemany(
            "UPDATE events SET received_at = datetime('now', ?) || '+00:00' WHERE id = ?",
            [(f"-{days} days", e) for e in event_ids])
        outbox.db.execute("UPDATE statements SET done_at = datetime('now', ?) || '+00:00'"
                          " WHERE state = 'delivered'", [f"-{days} days"])


def counts(ctx):
    with ctx.usage.outbox() as outbox:
        return {k: v for k, v in outbox.counts().items() if v}


def test_age_limit_drops_only_delivered_events(appliance):
    client, ctx, rids = appliance
    old_delivered = post(client, rids, 10)
    old_pending = post(client, rids, 5, "lab-02")
    recent = post(client, rids, 3, "lab-03")
    deliver(ctx, old_delivered + recent)
    age(ctx, old_delivered + old_pending, days=400)
    with ctx.usage.outbox() as outbox:
        dropped = retention.enforce(outbox.db, ctx.config, free_bytes=10 ** 12)
        report = retention.report(outbox.db)
    assert dropped == {"age": 10, "size": 0, "disk-full": 0}
    assert counts(ctx) == {"pending": 5, "delivered": 3, "total": 8}
    assert report["dropped"]["events"] == 10 and report["dropped"]["undelivered"] == 0
    assert report["dropped"]["by_reason"] == {"age": 10}
    assert report["statements"]["delivered"] == 3   # the dropped events' statements went too


def test_size_limit_drops_oldest_delivered_and_keeps_undelivered(appliance):
    client, ctx, rids = appliance
    ctx.config.values["usage_retention_mb"] = 1
    comment = "这节课的视频很清楚" * 50   # ~450 characters: fills usage.db quickly
    delivered = []
    for i in range(10):
        delivered += post(client, rids, 100, f"lab-{i}", type="rating", rating=4,
                          comment=comment)
    deliver(ctx, delivered)
    pending = []
    for i in range(10):
        pending += post(client, rids, 100, f"pc-{i}", type="rating", rating=3, comment=comment)
    with ctx.usage.outbox() as outbox:
        assert retention.db_bytes(outbox.db) > 1024 * 1024
        dropped = retention.enforce(outbox.db, ctx.config, free_bytes=10 ** 12)
        remaining = {r[0] for r in outbox.db.execute("SELECT id FROM events")}
    assert dropped["size"] == 1000 and dropped["age"] == 0
    assert remaining == set(pending)          # above the limit still: undelivered stay


def test_disk_floor_drops_the_oldest_even_undelivered_and_reports_it(appliance):
    client, ctx, rids = appliance
    first = post(client, rids, 40)
    deliver(ctx, first[:10])
    later = post(client, rids, 600, "lab-02")
    with ctx.usage.outbox() as outbox:
        dropped = retention.enforce(outbox.db, ctx.config, free_bytes=1024)  # below the floor
        report = retention.report(outbox.db)
        remaining = [r[0] for r in outbox.db.execute("SELECT id FROM events ORDER BY seq")]
    assert dropped["disk-full"] == 500                 # at least 500 or 10 % per call
    assert remaining == (first + later)[-140:]         # the oldest went first
    assert report["dropped"] == {
        "events": 500, "undelivered": 490, "by_reason": {"disk-full": 500},
        "last": {"at": report["dropped"]["last"]["at"], "reason": "disk-full",
                 "events": 500, "undelivered": 490}}


def test_sqlite_disk_full_while_recording_makes_room_and_records(appliance):
    """A real SQLITE_FULL (the database may not grow): recording still succeeds."""
    client, ctx, rids = appliance
    post(client, rids, 600)
    with ctx.usage.outbox() as outbox:
        pages = outbox.db.execute("PRAGMA page_count").fetchone()[0]
        outbox.db.execute(f"PRAGMA max_page_count = {pages}")
        from sync.events import validate_events

        batch = validate_events(event_batch(rids, 200, "lab-09"), 500)
        with pytest.raises(sqlite3.OperationalError, match="full"):
            with outbox.db.conn:   # proof that the file is really full
                for i in range(5000):
                    outbox.db.execute("INSERT INTO sync_state VALUES (?, ?)", [f"x{i}", "y" * 500])
        stored, duplicates = Outbox(outbox.db).record(batch)
        report = retention.report(outbox.db)
    assert (stored, duplicates) == (200, 0)
    assert report["dropped"]["by_reason"] == {"disk-full": 500}
    assert report["dropped"]["undelivered"] == 500
    assert report["events"]["total"] == 300


def test_report_for_the_admin_page(appliance):
    client, ctx, rids = appliance
    ids = post(client, rids, 4)
    deliver(ctx, ids[:1])
    report = ctx.usage.report()
    assert report["events"]["pending"] == 3 and report["events"]["delivered"] == 1
    assert report["oldest_pending_at"] and report["db_bytes"] > 0 and report["file_bytes"] > 0
    assert report["dropped"]["events"] == 0 and report["last_export"] is None
