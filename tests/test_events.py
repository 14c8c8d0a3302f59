"""POST /api/events: validated, all-or-nothing, stored once per id, durable."""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest


@pytest.fixture
def rid(ctx, tmp_path):
    f = tmp_path / "v.mp4"
    f.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    with ctx.cache.catalog() as catalog:
        return catalog.add_local_file(f, title="微课")


def event(rid, **fields):
    base = {"type": "view-start", "resource": rid, "terminal": "lab-07", "role": "student",
            "at": "2026-11-27T09:15:00+08:00", "seconds": 0}
    base.update(fields)
    return base


def stored(ctx):
    conn = sqlite3.connect(ctx.usage.db_path)
    try:
        return conn.execute("SELECT id, type, resource, terminal, role, at, seconds FROM events "
                            "ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_one_event_and_an_array(client, ctx, rid):
    r = client.post("/api/events", json=event(rid))
    assert r.status_code == 201 and r.get_json()["stored"] == 1
    batch = [event(rid, type="view-progress", seconds=30.5),
             event(rid, type="view-complete", seconds=61, at="2026-11-27T01:16:01Z")]
    r = client.post("/api/events", json=batch)
    assert r.status_code == 201 and r.get_json()["stored"] == 2
    rows = stored(ctx)
    assert [row[1] for row in rows] == ["view-start", "view-progress", "view-complete"]
    assert rows[0][5] == "2026-11-27T01:15:00.000+00:00"  # normalised to UTC
    assert rows[1][6] == 30.5


def test_resending_the_same_id_stores_it_once(client, ctx, rid):
    e = event(rid, id=str(uuid.uuid4()))
    for _ in range(3):
        r = client.post("/api/events", json=e)
        assert r.status_code == 201
    assert r.get_json() == {"ok": True, "stored": 0, "duplicates": 1, "ids": [e["id"]]}
    assert len(stored(ctx)) == 1


def test_server_assigns_an_id(client, ctx, rid):
    r = client.post("/api/events", json=event(rid))
    assigned = r.get_json()["ids"][0]
    assert str(uuid.UUID(assigned)) == assigned
    assert stored(ctx)[0][0] == assigned


@pytest.mark.parametrize("mutation, reason", [
    ({"type": "view-pause"}, "type must be one of"),
    ({"resource": "../../etc"}, "resource must be a resource id"),
    ({"resource": "0" * 32}, "unknown resource"),
    ({"terminal": "张小明"}, "pseudonymous id"),
    ({"terminal": "x" * 65}, "pseudonymous id"),
    ({"role": "admin"}, "role must be student or teacher"),
    ({"at": "yesterday"}, "not an ISO 8601 time"),
    ({"at": "2026-11-27T09:15:00"}, "no time zone"),
    ({"seconds": -1}, "seconds must be a number"),
    ({"seconds": "12"}, "seconds must be a number"),
    ({"seconds": True}, "seconds must be a number"),
    ({"type": "view-progress", "seconds": None}, "seconds is required"),
    ({"id": "not-a-uuid"}, "id must be a UUID"),
    ({"name": "李华"}, "unknown field(s): name"),
])
def test_bad_events_are_refused_and_nothing_is_stored(client, ctx, rid, mutation, reason):
    good = event(rid)
    bad = event(rid, **mutation)
    if mutation.get("seconds", 0) is None:
        bad.pop("seconds")
    r = client.post("/api/events", json=[good, bad])
    assert r.status_code == 400
    body = r.get_json()
    assert body["ok"] is False and body["status"] == 400
    assert reason in body["error"], body
    assert stored(ctx) == []


@pytest.mark.parametrize("data, content_type, status, reason", [
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"[]", "application/json", 400, "empty"),
    (b'"hello"', "application/json", 400, "JSON object"),
    (b"type=view-start", "application/x-www-form-urlencoded", 415, "application/json"),
    (b"[" + b"1," * 600_000 + b"1]", "application/json", 413, "larger than"),
])
def test_malformed_bodies(client, ctx, data, content_type, status, reason):
    r = client.post("/api/events", data=data, content_type=content_type)
    assert r.status_code == status
    assert reason in r.get_json()["error"]
    assert stored(ctx) == []


def test_too_many_events_in_one_request(client, ctx, rid):
    batch = [event(rid) for _ in range(ctx.config.event_batch_max + 1)]
    r = client.post("/api/events", data=json.dumps(batch), content_type="application/json")
    assert r.status_code == 400 and "too many events" in r.get_json()["error"]


def test_outbox_is_wal_with_full_sync(ctx):
    with ctx.usage.outbox() as outbox:
        assert outbox.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert outbox.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
