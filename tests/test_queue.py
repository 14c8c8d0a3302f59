"""The durable fetch queue: idempotent enqueue, priorities, positions, cancel, alerts,
and request coalescing (many terminals, one upstream fetch)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from cache import Cache, FileSpec, db as catalog_db
from cache.fetcher import FetchService, sources_by_name
from cache.queue import FetchQueue, Priority, QueueError
from faulty_http import FaultyServer, add_resource


@pytest.fixture
def cache(tmp_path):
    cache = Cache(tmp_path)
    cache.migrate()
    return cache


@pytest.fixture
def db(cache):
    database = catalog_db.connect(cache.db_path)
    yield database
    database.close()


def _package(cache, name: str, sizes=(100, 200)) -> str:
    """A lesson package with one part: files on both (URLs need not answer here)."""
    with cache.catalog() as catalog:
        parent = catalog.upsert_resource(
            source="plain", source_id=name, kind="lesson_package", title=name,
            files=[FileSpec(role="cover", mime="image/png", size=sizes[0],
                            urls=(f"http://127.0.0.1:9/{name}.png",))])
        catalog.upsert_resource(
            source="plain", source_id=name + "/part", kind="video", title="微课", parent_id=parent,
            files=[FileSpec(role="video", mime="video/mp4", size=sizes[1],
                            urls=(f"http://127.0.0.1:9/{name}.mp4",))])
    return parent


def _states(db) -> dict:
    return dict(db.execute("SELECT id, state FROM files").fetchall())


def test_enqueue_is_idempotent_and_keeps_the_higher_priority(cache, db):
    rid = _package(cache, "a")
    queue = FetchQueue(db)
    first = queue.enqueue([rid], Priority.BACKGROUND, "plan")
    assert len(first["queued"]) == 2 and first["cached"] == 0
    assert set(_states(db).values()) == {"queued"}
    queue.enqueue([rid], Priority.TEACHER, "terminal-7")
    queue.enqueue([rid], Priority.PLAN, "plan")
    rows = db.execute("SELECT priority, requests, requested_by FROM fetch_queue").fetchall()
    assert rows == [(300, 3, "plan"), (300, 3, "plan")]
    # File ids work too, and the same file named twice is one row.
    file_id = first["queued"][0]
    queue.enqueue([file_id, str(file_id)], Priority.BACKGROUND)
    assert db.execute("SELECT count(*) FROM fetch_queue").fetchone()[0] == 2


def test_unknown_ids_and_cached_files(cache, db):
    rid = _package(cache, "a")
    queue = FetchQueue(db)
    with pytest.raises(QueueError, match="not found"):
        queue.enqueue(["0" * 32, "not-an-id", 99999])
    result = queue.enqueue([rid, "f" * 32])
    assert result["unknown"] == ["f" * 32] and len(result["queued"]) == 2
    db.execute("UPDATE files SET state = 'cached', sha256 = ? WHERE id = ?",
               ["0" * 64, result["queued"][0]])
    db.conn.commit()
    queue.cancel([rid])
    again = queue.enqueue([rid])
    assert again["cached"] == 1 and len(again["queued"]) == 1


def test_order_position_and_eta(cache, db):
    low = _package(cache, "low", (1000, 1000))
    high = _package(cache, "high", (500, 500))
    queue = FetchQueue(db)
    low_files = queue.enqueue([low], Priority.BACKGROUND)["queued"]
    high_files = queue.enqueue([high], Priority.TEACHER)["queued"]
    assert queue.position(high_files[0])["position"] == 1
    second = queue.position(high_files[1], rate=100.0)
    assert second["position"] == 2 and second["bytes_ahead"] == 500
    assert second["eta_seconds"] == pytest.approx(10.0)     # (500 + 500) / 100
    last = queue.position(low_files[1], eta=lambda n: n / 50)
    assert last["position"] == 4 and last["eta_seconds"] == pytest.approx(3000 / 50)
    # Claims follow the same order; a backed-off row is skipped until due.
    claimed = queue.claim()
    assert claimed["id"] == high_files[0] and claimed["source"] == "plain"
    queue.retry_later(high_files[0], 60, "HTTP 503", "failover")
    assert queue.claim()["id"] == high_files[1]
    assert queue.claim()["id"] == low_files[0]
    # An active row counts as ahead of everything.
    assert queue.position(low_files[1])["position"] == 4
    progress = queue.resource_progress(high, eta=lambda n: 1.0)
    assert progress["state"] == "active" and progress["files"] == 2 and progress["bytes_total"] == 1000
    assert progress["errors"] == ["HTTP 503"] and progress["eta_seconds"] == 1.0


def test_cancel_recover_fail_and_retry(cache, db):
    rid = _package(cache, "a")
    queue = FetchQueue(db)
    files = queue.enqueue([rid])["queued"]
    queue.claim()
    assert queue.recover() == 1  # a killed process left it active
    assert db.execute("SELECT count(*) FROM fetch_queue WHERE state = 'active'").fetchone()[0] == 0
    queue.fail(files[0], "HTTP 404 everywhere", "not-found")
    assert queue.progress(files[0])["state"] == "failed"
    assert _states(db)[files[0]] == "remote"
    queue.enqueue([files[0]])  # asking again gives a failed row a fresh start
    assert queue.progress(files[0])["state"] == "waiting" and _states(db)[files[0]] == "queued"
    assert queue.cancel([rid]) == 2
    assert set(_states(db).values()) == {"remote"}
    assert queue.progress(files[0])["state"] == "remote"


def test_alerts_hold_and_release(cache, db):
    rid = _package(cache, "a")
    queue = FetchQueue(db)
    files = queue.enqueue([rid])["queued"]
    queue.claim()
    queue.raise_alert("auth:plain", "auth", "log in again", "plain")
    queue.hold(files[0], "auth:plain", "HTTP 401", "auth")
    # While the source's auth alert is open nothing of that source is claimed.
    assert queue.claim() is None
    assert [a["key"] for a in queue.status()["alerts"]] == ["auth:plain"]
    assert queue.clear_alert("auth:plain") == 1
    assert queue.alerts() == []
    assert {queue.claim()["id"], queue.claim()["id"]} == set(files)


def test_plan_enqueues_through_the_queue(cache, db):
    from cache.plan import enqueue_plan  # the planner's side of the contract

    rid = _package(cache, "a")
    queue = FetchQueue(db)
    file_ids, _ = queue.file_ids_for([rid])
    assert enqueue_plan([type("Item", (), {"files_missing": file_ids})()],
                        lambda files: queue.enqueue(files, Priority.PLAN, "plan")) == 2
    assert {r[0] for r in db.execute("SELECT priority FROM fetch_queue")} == {200}


def test_many_terminals_one_upstream_fetch(tmp_path):
    """Thirty terminals press 获取 on the same lesson while it downloads: one upstream
    request, and every terminal sees the bytes move and the lesson become ready."""
    data = os.urandom(3 * 1024 * 1024)
    with FaultyServer({"/lesson.mp4": data}) as server:
        server.faults.rate = 3 * 1024 * 1024  # about a second: terminals watch it move
        cache = Cache(tmp_path)
        cache.migrate()
        rid = add_resource(cache, server, ["/lesson.mp4"])
        seen: dict[int, list] = {}
        errors = []

        def terminal(n: int) -> None:
            try:
                with cache.catalog() as catalog:
                    queue = FetchQueue(catalog.db)
                    queue.enqueue([rid], Priority.TEACHER, f"terminal-{n}")
                    service.wake()
                    trail = seen.setdefault(n, [])
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        progress = queue.resource_progress(rid)
                        trail.append((progress["state"], progress["bytes_done"]))
                        if progress["state"] == "cached":
                            return
                        time.sleep(0.05)
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        service = FetchService(cache, sources_by_name({}), workers=3, poll_seconds=0.1)
        with service:
            threads = [threading.Thread(target=terminal, args=(n,)) for n in range(30)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(40)
        assert errors == []
        assert [e.path for e in server.log] == ["/lesson.mp4"]
        assert server.body_bytes_sent == len(data)
        for trail in seen.values():
            assert trail[-1] == ("cached", len(data))
        watched = [t for t in seen.values() if any(0 < b < len(data) for _, b in t)]
        assert len(watched) >= 20  # most terminals saw partial progress on the way
        with cache.catalog() as catalog:
            assert catalog.db.execute("SELECT requests FROM fetch_queue").fetchall() == []
            assert catalog.get(rid)["ready"]
