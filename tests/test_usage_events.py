"""The usage event types of issue 4 at POST /api/events: stored with their fields,
bad input refused with a clear reason and nothing stored (the batch is all or nothing)."""

from __future__ import annotations

import json
import sqlite3

import pytest


@pytest.fixture
def rid(sample_app, ctx):
    with ctx.cache.catalog() as catalog:
        return catalog.query(limit=1)[0][0]["id"]


def rows(ctx):
    conn = sqlite3.connect(ctx.usage.db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY seq")]
    finally:
        conn.close()


def base(rid, kind, **fields):
    event = {"type": kind, "resource": rid, "terminal": "lab-07", "role": "student",
             "at": "2026-11-27T09:15:00+08:00"}
    event.update(fields)
    return {k: v for k, v in event.items() if v is not None}


GOOD = [
    ("doc-open", {"page": 12}, {"page": 12}),
    ("doc-open", {"seconds": 30}, {}),
    ("exercise", {"score": 85}, {"score": 85.0}),
    ("exercise", {"correct": 7, "total": 10}, {"correct": 7, "total": 10, "score": 70.0}),
    ("exercise", {"correct": 2, "total": 3, "score": 66.67, "seconds": 95},
     {"correct": 2, "total": 3, "score": 66.67}),
    ("rating", {"rating": 5}, {"rating": 5}),
    ("rating", {"rating": 2, "comment": "  视频声音太小 \u0041\u030a "},
     {"rating": 2, "comment": "视频声音太小 Å"}),
    ("search", {"query": "分数的意义", "results": 0, "resource": None},
     {"query": "分数的意义", "results": 0}),
    ("search", {"query": "分数", "results": 4}, {"query": "分数", "results": 4}),
    ("fetch-request", {"role": "teacher"}, {}),
    ("view-progress", {"seconds": 30, "duration": 600}, {"duration": 600.0}),
]


@pytest.mark.parametrize("kind, fields, data", GOOD)
def test_each_new_type_is_stored_with_its_fields(client, ctx, rid, kind, fields, data):
    r = client.post("/api/events", json=base(rid, kind, **fields))
    assert r.status_code == 201, r.get_json()
    [row] = rows(ctx)
    assert row["type"] == kind and row["state"] == "pending"
    assert json.loads(row["data"]) == data
    assert row["resource"] == ("" if fields.get("resource", rid) is None else rid)


def test_class_label_is_kept_and_normalised(client, ctx, rid):
    r = client.post("/api/events", json=[base(rid, "doc-open", **{"class": " 三年级（2）班 "}),
                                         base(rid, "doc-open", **{"class": "Grade 3 A"})])
    assert r.status_code == 201
    assert [row["class"] for row in rows(ctx)] == ["三年级(2)班", "Grade 3 A"]


def test_activity_facts_are_copied_from_the_catalogue(client, ctx, rid):
    client.post("/api/events", json=base(rid, "doc-open"))
    with ctx.usage.outbox() as outbox:
        activity = outbox.activity(rid)
    with ctx.cache.catalog() as catalog:
        item = catalog.get(rid)
    assert activity["title"] == item["title"] and activity["kind"] == item["kind"]
    assert activity["source"] == "sample" and activity["source_id"]


BAD = [
    ("doc-open", {"score": 3}, "unknown field(s): score"),
    ("view-start", {"query": "x"}, "unknown field(s): query"),
    ("exercise", {}, "needs score"),
    ("exercise", {"score": 101}, "score must be a number from 0 to 100"),
    ("exercise", {"score": "90"}, "score must be a number"),
    ("exercise", {"correct": 5}, "total must be a whole number"),
    ("exercise", {"correct": 11, "total": 10}, "correct must be a whole number from 0 to total"),
    ("exercise", {"correct": 1, "total": 0}, "total must be a whole number from 1"),
    ("exercise", {"correct": 7, "total": 10, "score": 20}, "does not match"),
    ("rating", {}, "rating must be a whole number from 1 to 5"),
    ("rating", {"rating": 6}, "rating must be a whole number from 1 to 5"),
    ("rating", {"rating": 3.5}, "rating must be a whole number"),
    ("rating", {"rating": True}, "rating must be a whole number"),
    ("rating", {"rating": 4, "comment": "好" * 501}, "comment is longer than 500"),
    ("rating", {"rating": 4, "comment": "a\x00b"}, "control characters"),
    ("rating", {"rating": 4, "comment": 5}, "comment must be text"),
    ("search", {"results": 1}, "query is required"),
    ("search", {"query": "   ", "results": 0}, "query must not be empty"),
    ("search", {"query": "数" * 101, "results": 0}, "longer than 100"),
    ("search", {"query": "数学"}, "results (how many resources"),
    ("search", {"query": "数学", "results": -1}, "results (how many resources"),
    ("doc-open", {"resource": None}, "resource must be a resource id"),
    ("fetch-request", {"resource": "0" * 32}, "unknown resource"),
    ("doc-open", {"page": 0}, "page must be a whole number"),
    ("view-progress", {"seconds": 10, "duration": 0}, "duration (the media's length)"),
    ("doc-open", {"class": "张小明 13812345678"}, "5 or more digits"),
    ("doc-open", {"class": "x" * 33}, "class must be a class label"),
    ("doc-open", {"class": "三年级<script>"}, "class must be a class label"),
    ("doc-open", {"class": ""}, "class must be a class label"),
    ("doc-open", {"class": 3}, "class must be text"),
    ("doc-open", {"role": "parent"}, "role must be student or teacher"),
    ("doc-open", {"terminal": "王芳"}, "pseudonymous id"),
]


@pytest.mark.parametrize("kind, fields, reason", BAD)
def test_bad_events_are_refused_with_a_reason_and_nothing_is_stored(client, ctx, rid, kind,
                                                                    fields, reason):
    good = base(rid, "doc-open")
    bad = base(rid, kind, **fields)
    if "resource" in fields and fields["resource"] is None:
        bad.pop("resource", None)
    r = client.post("/api/events", json=[good, bad])
    assert 400 <= r.status_code < 500
    body = r.get_json()
    assert body["ok"] is False and body["status"] == r.status_code and body["code"]
    assert reason in body["error"], body
    assert rows(ctx) == []


def test_problems_list_every_bad_event_with_its_index(client, ctx, rid):
    r = client.post("/api/events", json=[base(rid, "rating", rating=9), base(rid, "doc-open"),
                                         base(rid, "search", query="", results=0)])
    problems = r.get_json()["problems"]
    assert [p.split(":")[0] for p in problems] == ["event 0", "event 2"]
    assert rows(ctx) == []


def test_new_types_through_the_real_server(live_server, sample_app):
    """The same contract over a real socket (waitress), as terminals post it."""
    import requests

    ctx = sample_app.extensions["shuqiao"]
    with ctx.cache.catalog() as catalog:
        rid = catalog.query(limit=1)[0][0]["id"]
    batch = [base(rid, "search", query="分数", results=0, resource=None),
             base(rid, "rating", rating=4), base(rid, "exercise", correct=3, total=4)]
    with requests.post(live_server.url + "/api/events", json=batch, timeout=10) as r:
        assert r.status_code == 201 and r.json()["stored"] == 3
    with requests.post(live_server.url + "/api/events", json=[base(rid, "rating", rating=0)],
                       timeout=10) as r:
        assert r.status_code == 400 and "rating" in r.json()["error"]
    assert [row["type"] for row in rows(ctx)] == ["search", "rating", "exercise"]


def test_group_commit_from_many_threads_stores_each_event_once(ctx, rid):
    """Concurrent callers share transactions; each still gets its own exact answer."""
    import threading
    import uuid

    from sync.events import validate_events

    shared = str(uuid.uuid4())
    batches = [validate_events([base(rid, "doc-open", id=shared),
                                *[base(rid, "doc-open", terminal=f"t{i}") for _ in range(5)]],
                               100) for i in range(16)]
    results = [None] * 16
    barrier = threading.Barrier(16)

    def post(i):
        barrier.wait()
        results[i] = ctx.usage.record(batches[i])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [(5, 1)] * 15 + [(6, 0)]
    assert len(rows(ctx)) == 16 * 5 + 1
