"""Curriculum-aware prefetch: lessons laid over the term, the coming weeks first."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from cache.catalog import FileSpec
from cache.plan import (Profile, ProfileError, SchoolClass, enqueue_plan, estimate_ready,
                        make_plan, parse_periods)

MATH = dict(stage="小学", grade="三年级", subject="数学", edition="人教版", volume="上册")


@pytest.fixture
def catalog(ctx):
    with ctx.cache.catalog() as catalog:
        yield catalog


def add_book(catalog, lessons: int, per_lesson: int = 2, cached_first: int = 0, **taxonomy):
    """A course book: ``lessons`` packages in chapter order, each with one 课时 of files."""
    ids = []
    for n in range(lessons):
        pid = catalog.upsert_resource(source="t", source_id=f"{taxonomy['subject']}-{n}",
                                      kind="lesson_package", title=f"第{n + 1}课", position=n,
                                      **taxonomy)
        for k in range(per_lesson):
            state = "cached" if n < cached_first else "remote"
            catalog.upsert_resource(
                source="t", source_id=f"{taxonomy['subject']}-{n}-{k}", kind="video",
                title="微课视频", parent_id=pid, lesson="第一课时", lesson_no=1, position=k,
                files=[FileSpec(role="video", mime="video/mp4", size=1_000_000, state=state,
                                sha256=("%064x" % (n * 10 + k)) if state == "cached" else None)],
                **taxonomy)
        ids.append(pid)
    return ids


def test_the_next_weeks_lessons_come_first_in_book_order(catalog):
    ids = add_book(catalog, lessons=60, cached_first=1, **MATH)
    profile = Profile(catalog.db)
    profile.set_term(date(2026, 9, 1), date(2027, 1, 15), "2026秋")
    profile.save_class(SchoolClass("三年级一班", **MATH))
    # 2026-09-01 is a Tuesday; about 98 school days for 60 lessons: one every ~1.6 days.
    plan = make_plan(catalog.db, today=date(2026, 9, 1), horizon_days=14)
    assert [item.resource_id for item in plan] == ids[:len(plan)]
    assert 5 <= len(plan) <= 8
    assert plan[0].needed_by == date(2026, 9, 1) and plan[0].bytes_missing == 0  # cached
    assert plan[1].bytes_missing == 2_000_000 and len(plan[1].files_missing) == 2
    assert all(item.needed_by.isoweekday() <= 5 for item in plan)
    later = make_plan(catalog.db, today=date(2026, 11, 2), horizon_days=7)
    assert later and later[0].resource_id not in {item.resource_id for item in plan}


def test_timetable_periods_decide_the_dates(catalog):
    add_book(catalog, lessons=10, **MATH)
    profile = Profile(catalog.db)
    profile.set_term(date(2026, 9, 7), date(2027, 1, 15))  # 2026-09-07 is a Monday
    profile.save_class(SchoolClass("三年级二班", periods=parse_periods("1:2,3:4,5:1"), **MATH))
    plan = make_plan(catalog.db, today=date(2026, 9, 7), horizon_days=7)
    assert [item.needed_by for item in plan] == [date(2026, 9, 7), date(2026, 9, 9),
                                                 date(2026, 9, 11), date(2026, 9, 14)]


def test_two_classes_on_one_book_fetch_it_once(catalog):
    add_book(catalog, lessons=30, **MATH)
    profile = Profile(catalog.db)
    profile.set_term(date(2026, 9, 7), date(2026, 12, 31))
    profile.save_class(SchoolClass("一班", **MATH))
    profile.save_class(SchoolClass("二班", **MATH))
    plan = make_plan(catalog.db, today=date(2026, 9, 7), horizon_days=10)
    files = [f for item in plan for f in item.files_missing]
    assert len(files) == len(set(files))
    assert {item.school_class for item in plan} == {"一班", "二班"}
    queued = []
    assert enqueue_plan(plan, queued.extend) == len(files) and queued == files


def test_ready_times_follow_the_budget(catalog):
    add_book(catalog, lessons=20, **MATH)
    profile = Profile(catalog.db)
    profile.set_term(date(2026, 9, 7), date(2026, 12, 31))
    profile.save_class(SchoolClass("一班", **MATH))
    plan = make_plan(catalog.db, today=date(2026, 9, 7), horizon_days=7)
    start = datetime(2026, 9, 7, 12, 0)

    def night_only(moment: datetime) -> float:  # 1 MB/s from 18:00 to 07:00, paused by day
        return 1_000_000 if moment.hour >= 18 or moment.hour < 7 else 0

    estimate_ready(plan, start, queued_ahead_bytes=0, rate_at=night_only)
    assert plan[0].ready_at is not None and plan[0].ready_at.hour >= 18
    assert all(a.ready_at <= b.ready_at for a, b in zip(plan, plan[1:]))
    estimate_ready(plan, start, queued_ahead_bytes=0, rate_at=lambda moment: 0)
    assert plan[0].ready_at is None  # paused for ever: never ready
    assert plan[-1].ready_at is None or plan[-1].ready_at > start + timedelta(days=300)


def test_bad_profile_input_is_refused_clearly(catalog):
    profile = Profile(catalog.db)
    with pytest.raises(ProfileError, match="must end after"):
        profile.set_term(date(2026, 9, 1), date(2026, 8, 1))
    with pytest.raises(ProfileError, match="weekday:period"):
        parse_periods("Monday 2")
    with pytest.raises(ProfileError, match="name, grade and subject"):
        profile.save_class(SchoolClass("", grade="三年级", subject="数学"))
    with pytest.raises(ProfileError, match="no term set"):
        make_plan(catalog.db, today=date(2026, 9, 1))


def test_profile_cli(tmp_path):
    from test_cli import run

    home = tmp_path / "home"
    assert run("profile", "term", "2026-09-01", "2027-01-15", "--name", "2026秋",
               home=home).returncode == 0
    run("profile", "class", "三年级一班", "--grade", "三年级", "--subject", "数学",
        "--edition", "人教版", "--periods", "1:2,3:4", home=home)
    shown = run("profile", "show", home=home).stdout
    assert "2026-09-01 – 2027-01-15 2026秋" in shown and "三年级一班" in shown and "1:2,3:4" in shown
    bad = run("profile", "class", "x", "--grade", "三年级", "--subject", "数学", "--periods",
              "Mon", home=home, check=False)
    assert bad.returncode == 1 and "weekday:period" in bad.stderr
    bad = run("profile", "term", "2026-13-01", "2027-01-15", home=home, check=False)
    assert bad.returncode == 2 and "is not a date" in bad.stderr
    assert run("profile", "remove-class", "三年级一班", home=home).returncode == 0
    assert "三年级一班" not in run("profile", "show", home=home).stdout


def test_plan_cli_prints_and_queues_the_coming_lessons(tmp_path):
    from datetime import date

    from app import create_app
    from cache.queue import FetchQueue
    from conftest import make_config
    from test_cli import run

    home = tmp_path / "home"
    ctx = create_app(make_config(home)).extensions["shuqiao"]
    with ctx.cache.catalog() as catalog:
        add_book(catalog, lessons=40, **MATH)
    today = date.today()
    run("profile", "term", (today - timedelta(days=3)).isoformat(),
        (today + timedelta(days=120)).isoformat(), home=home)
    run("profile", "class", "三年级一班", "--grade", "三年级", "--subject", "数学", home=home)
    out = run("plan", "--weeks", "2", home=home).stdout
    assert "三年级一班" in out and "第" in out and "lessons" in out and "MB" in out
    with ctx.cache.catalog() as catalog:
        status = FetchQueue(catalog.db).status()
    assert status["counts"]["waiting"] > 0
    assert {e["priority"] for e in status["entries"]} == {200}
