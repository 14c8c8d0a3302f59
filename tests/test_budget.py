"""The bandwidth budget: windows, the shared token bucket, the monthly quota, ETAs."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime

import pytest

import settings
from cache import Cache, db as catalog_db
from cache.budget import Budget, grant_extra, parse_rate, parse_windows
from cache.fetcher import FetchService, sources_by_name
from cache.queue import FetchQueue
from faulty_http import FaultyServer, add_resource, wait_until

SCHOOL = "18:00-07:00=unlimited, 07:00-18:00=256KB, mon-fri 08:00-08:45=pause"


def local(y, mo, d, h, mi=0) -> float:
    return datetime(y, mo, d, h, mi).timestamp()


class FakeClock:
    """A clock the budget sleeps on: sleeping advances it, so schedules run instantly."""

    def __init__(self, start: float):
        self.now = start

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# ------------------------------------------------------------------- syntax


def test_windows_parse_and_every_problem_is_reported():
    windows = parse_windows(SCHOOL)
    assert [(w.start, w.end, w.rate) for w in windows] == [
        (18 * 60, 7 * 60, None), (7 * 60, 18 * 60, 256 * 1024), (8 * 60, 8 * 60 + 45, 0.0)]
    assert windows[2].days == frozenset(range(5))
    assert parse_windows("") == [] and parse_windows(" ; ") == []
    assert parse_rate("4Mbit") == 500_000 and parse_rate("2MB/s") == 2 * 1024 * 1024
    assert parse_rate("0") == 0 and parse_rate("Unlimited") is None
    with pytest.raises(ValueError) as info:
        parse_windows("07:00-18:00=fast; 25:00-01:00=1MB; 08:00-08:00=pause; xyz; "
                      "funday 08:00-09:00=pause")
    message = str(info.value)
    for bad in ("'07:00-18:00=fast'", "25:00", "same time", "'xyz'", "funday"):
        assert bad in message


def test_bad_windows_are_a_settings_error_with_its_source(tmp_path):
    with pytest.raises(settings.SettingsError) as info:
        settings.load(home=tmp_path, environ={"SHUQIAO_BUDGET_WINDOWS": "07:00-18:00=lots"})
    assert "env SHUQIAO_BUDGET_WINDOWS" in str(info.value) and "lots" in str(info.value)
    config = settings.load(home=tmp_path, environ={"SHUQIAO_BUDGET_WINDOWS": SCHOOL})
    assert config.budget_windows == SCHOOL


# ----------------------------------------------------------------- schedule


def test_most_restrictive_window_applies_and_days_matter():
    monday = datetime(2026, 3, 2)
    assert monday.weekday() == 0
    budget = Budget(SCHOOL)
    assert budget.limit(local(2026, 3, 2, 8, 30)).paused                       # class period
    assert budget.limit(local(2026, 3, 2, 8, 30)).until == local(2026, 3, 2, 8, 45)
    assert budget.limit(local(2026, 3, 2, 10)).rate == 256 * 1024             # school hours
    assert budget.limit(local(2026, 3, 2, 10)).until == local(2026, 3, 2, 18)
    assert budget.limit(local(2026, 3, 2, 20)).rate is None                  # evening
    assert budget.limit(local(2026, 3, 3, 3)).rate is None                   # past midnight
    assert budget.limit(local(2026, 3, 7, 8, 30)).rate == 256 * 1024         # Saturday
    # Order does not matter: the same windows reversed give the same answers.
    reversed_budget = Budget(",".join(reversed(SCHOOL.split(","))))
    for hour in range(24):
        ts = local(2026, 3, 2, hour, 30)
        assert budget.limit(ts).rate == reversed_budget.limit(ts).rate
    # A window past midnight with a day prefix belongs to the day it starts on.
    friday_night = Budget("fri 22:00-02:00=pause")
    assert friday_night.limit(local(2026, 3, 7, 1)).paused        # Saturday 01:00
    assert not friday_night.limit(local(2026, 3, 8, 1)).paused    # Sunday 01:00


def test_token_bucket_holds_the_rate_across_consumers():
    clock = FakeClock(local(2026, 3, 2, 10))  # 256 KB/s
    budget = Budget(SCHOOL, clock=clock.time, sleep=clock.sleep)
    start, taken = clock.now, 0
    while clock.now - start < 60:
        for _consumer in range(3):  # three transfers interleaved on one bucket
            assert budget.consume(64 * 1024)
            taken += 64 * 1024
    rate = taken / (clock.now - start)
    assert 0.97 * 256 * 1024 <= rate <= 1.03 * 256 * 1024


def test_consume_waits_through_a_pause_and_stops_when_asked():
    clock = FakeClock(local(2026, 3, 2, 8, 40))  # paused until 08:45
    budget = Budget(SCHOOL, clock=clock.time, sleep=clock.sleep)
    assert budget.consume(1000)
    assert clock.now >= local(2026, 3, 2, 8, 45)
    clock.now = local(2026, 3, 2, 8, 40)
    calls = []
    assert budget.consume(1000, should_stop=lambda: calls.append(1) or len(calls) > 3) is False
    assert clock.now < local(2026, 3, 2, 8, 45)


def test_estimate_walks_the_schedule():
    budget = Budget(SCHOOL)
    # Monday 08:30: paused 15 min, then 256 KB/s (link faster): 256 KB·60 s takes 1 min.
    seconds = budget.estimate_seconds(256 * 1024 * 60, link_rate=10e6, start=local(2026, 3, 2, 8, 30))
    assert seconds == pytest.approx(15 * 60 + 60)
    # Unlimited evening: the link decides; without a measured link there is no estimate.
    assert budget.estimate_seconds(10e6, link_rate=1e6, start=local(2026, 3, 2, 20)) == pytest.approx(10)
    assert budget.estimate_seconds(10e6, link_rate=None, start=local(2026, 3, 2, 20)) is None
    # School hours to evening: 17:59 at 256 KB/s for 60 s, then the link's 1 MB/s.
    seconds = budget.estimate_seconds(256 * 1024 * 60 + 1e6 * 10, link_rate=1e6,
                                      start=local(2026, 3, 2, 17, 59))
    assert seconds == pytest.approx(70)


def test_quota_used_up_waits_for_next_month(tmp_path):
    catalog_db.migrate(tmp_path / "catalog.db")
    db = catalog_db.connect(tmp_path / "catalog.db")
    try:
        clock = FakeClock(local(2026, 3, 30, 20))
        budget = Budget("", 10 * 1024 * 1024, clock=clock.time, sleep=clock.sleep)
        budget.load(db)
        budget.consume(10 * 1024 * 1024)
        budget.flush(db)
        limit = budget.limit()
        assert limit.reason == "quota" and limit.until == local(2026, 4, 1, 0)
        # A fresh process reads the durable counter.
        again = Budget("", 10 * 1024 * 1024, clock=clock.time, sleep=clock.sleep)
        again.load(db)
        assert again.limit().reason == "quota"
        assert again.estimate_seconds(1024, link_rate=1e6) == pytest.approx(
            local(2026, 4, 1, 0) - clock.now, abs=1)
        # The admin grants more; the next flush sees it.
        grant_extra(db, 5, ts=clock.now)
        again.flush(db)
        assert again.limit().reason == "unlimited" and again.quota_left() == 5 * 1024 * 1024
        # Next month starts from zero.
        clock.now = local(2026, 4, 2, 9)
        assert again.limit().reason == "unlimited"
        assert again.quota_left() == 10 * 1024 * 1024
    finally:
        db.close()


def test_plan_can_use_rate_at():
    from datetime import timedelta

    budget = Budget(SCHOOL)
    assert budget.rate_at(datetime(2026, 3, 2, 8, 30)) == 0
    assert budget.rate_at(datetime(2026, 3, 2, 9, 0)) == 256 * 1024
    assert budget.rate_at(datetime(2026, 3, 2, 9, 0) + timedelta(hours=10)) is None


# ------------------------------------------------------ real transfers, real budget


@pytest.fixture
def server():
    with FaultyServer({f"/b{i}.bin": os.urandom(600 * 1024) for i in range(3)}) as s:
        yield s


def test_one_budget_caps_all_transfers_together(tmp_path, server):
    cache = Cache(tmp_path)
    cache.migrate()
    rid = add_resource(cache, server, sorted(server.files))
    budget = Budget("00:00-24:00=512KB")
    service = FetchService(cache, sources_by_name({}), budget=budget, workers=3, poll_seconds=0.1)
    with service:
        started = time.monotonic()
        service.enqueue([rid])
        with cache.catalog() as catalog:
            queue = FetchQueue(catalog.db)
            wait_until(lambda: queue.resource_progress(rid)["state"] == "cached", 30)
        elapsed = time.monotonic() - started
    total = sum(len(d) for d in server.files.values())
    # Three transfers at once, one 512 KB/s budget: 1.8 MB cannot arrive much sooner than
    # 3.5 s (a burst of 0.25 s is allowed). Unbudgeted, loopback takes milliseconds.
    assert elapsed >= (total - 512 * 1024 * 0.25) / (512 * 1024) * 0.95
    db = catalog_db.connect(cache.db_path)
    try:
        used = db.execute("SELECT sum(bytes_used) FROM budget_months").fetchone()[0]
    finally:
        db.close()
    assert total <= used <= server.body_bytes_sent + 64 * 1024


def test_quota_pauses_transfers_until_granted(tmp_path, server):
    cache = Cache(tmp_path)
    cache.migrate()
    rid = add_resource(cache, server, ["/b0.bin", "/b1.bin"])
    budget = Budget("", 1024 * 1024)  # 1 MB a month, 1.2 MB wanted
    service = FetchService(cache, sources_by_name({}), budget=budget, workers=1, poll_seconds=0.1)
    with service:
        service.enqueue([rid])
        wait_until(lambda: budget.limit().reason == "quota", 20)
        sent = server.body_bytes_sent
        time.sleep(1.0)
        assert server.body_bytes_sent - sent < 256 * 1024  # at most what was in flight
        with cache.catalog() as catalog:
            assert FetchQueue(catalog.db).resource_progress(rid)["state"] != "cached"
            grant_extra(catalog.db, 1)
            wait_until(lambda: FetchQueue(catalog.db).resource_progress(rid)["state"] == "cached", 20)


def test_paused_budget_sends_no_request(tmp_path, server):
    cache = Cache(tmp_path)
    cache.migrate()
    rid = add_resource(cache, server, ["/b0.bin"])
    service = FetchService(cache, sources_by_name({}), budget=Budget("00:00-24:00=pause"),
                           workers=2, poll_seconds=0.1)
    with service:
        service.enqueue([rid])
        time.sleep(1.0)
        assert server.log == []
        status = service.status()
    assert status["budget"]["reason"] == "pause" and status["budget"]["rate_text"] == "paused"
    assert status["queue"]["counts"]["waiting"] == 1


def test_budget_is_thread_safe_under_real_threads():
    budget = Budget("00:00-24:00=4MB")
    done = []

    def consumer():
        for _ in range(40):
            budget.consume(64 * 1024)
        done.append(1)

    threads = [threading.Thread(target=consumer) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(done) == 4
    # 10 MB at 4 MB/s: at least ~2.4 s whatever the scheduling.
    assert time.monotonic() - started >= (10 * 1024 * 1024 - 1024 * 1024) / (4 * 1024 * 1024)
