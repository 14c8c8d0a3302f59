"""Local reports (/admin/reports/): the numbers, the SVG charts and the CSV files, from
events recorded through the real POST /api/events on the sample library.

The school lives in Asia/Shanghai (UTC+8) while the events are stored in UTC, so the
tests run in that zone: an event at 07:30 on 2 September in Shanghai is 23:30 UTC on
1 September and must count on the 2nd. The fixed events are in 2025, far from "today",
so the "last 7 / 30 days" presets see only the events the tests record now.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import date

import pytest

from cache.catalog import resource_id_for
from ralph import event_batch
from test_admin import set_up

SVG = "{http://www.w3.org/2000/svg}"
MATH_VIDEO = resource_id_for("sample", "math-3a-fractions-1-video")
MATH_EXERCISE = resource_id_for("sample", "math-3a-fractions-1-exercise")
MATH_BOOK = resource_id_for("sample", "math-3a")
CHINESE_BOOK = resource_id_for("sample", "chinese-4a")
CHINESE_VIDEO = resource_id_for("sample", "chinese-4a-guanchao-1-video")
CHINESE_PACKAGE = resource_id_for("sample", "chinese-4a-guanchao-1")
ENGLISH_BOOK = resource_id_for("sample", "english-7a")
WEEK = {"from": "2025-09-01", "to": "2025-09-07"}


@pytest.fixture(autouse=True)
def shanghai(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def reports_app(sample_app):
    """The app with the reports blueprint (registered here until kiosk/__init__ does)."""
    from kiosk import reports

    if "reports" not in sample_app.blueprints:
        sample_app.register_blueprint(reports.bp)
    return sample_app


@pytest.fixture
def admin(reports_app):
    client = reports_app.test_client()
    assert set_up(client).status_code == 302
    return client


def ev(kind, resource, terminal, role, at, cls=None, **fields):
    event = {"id": str(uuid.uuid4()), "type": kind, "terminal": terminal, "role": role,
             "at": at, **fields}
    if resource:
        event["resource"] = resource
    if cls:
        event["class"] = cls
    return event


def school_week() -> list[dict]:
    """One week of a small school (2025-09-01 … 09-07, Shanghai time), plus an event on
    each side of it. A, B: pupils of 三年级一班; C: a pupil of 四年级二班; T: a teacher."""
    A = dict(terminal="lab-A", role="student", cls="三年级一班")
    B = dict(terminal="lab-B", role="student", cls="三年级一班")
    C = dict(terminal="lab-C", role="student", cls="四年级二班")
    T = dict(terminal="teacher-T", role="teacher")
    d1, d2, d5 = "2025-09-01T{}+08:00", "2025-09-02T{}+08:00", "2025-09-05T{}+08:00"
    return [
        # A watches the fractions video twice (120 s, then 45 s); B once (100 s).
        ev("view-start", MATH_VIDEO, at=d1.format("09:00:00"), seconds=0, **A),
        ev("view-progress", MATH_VIDEO, at=d1.format("09:00:30"), seconds=30, duration=120, **A),
        ev("view-progress", MATH_VIDEO, at=d1.format("09:01:00"), seconds=60, duration=120, **A),
        ev("view-complete", MATH_VIDEO, at=d1.format("09:02:00"), seconds=120, **A),
        ev("view-start", MATH_VIDEO, at=d1.format("10:00:00"), **A),
        ev("view-progress", MATH_VIDEO, at=d1.format("10:00:45"), seconds=45, **A),
        ev("view-start", MATH_VIDEO, at=d1.format("09:00:05"), **B),
        ev("view-complete", MATH_VIDEO, at=d1.format("09:01:45"), seconds=100, **B),
        ev("exercise", MATH_EXERCISE, at=d1.format("09:05:00"), correct=3, total=5, **A),
        ev("exercise", MATH_EXERCISE, at=d1.format("09:06:00"), score=80, **B),
        ev("rating", MATH_VIDEO, at=d1.format("09:03:00"), rating=4, **A),
        ev("rating", MATH_VIDEO, at=d1.format("09:04:00"), rating=3, comment="声音小", **B),
        ev("doc-open", CHINESE_BOOK, at=d1.format("08:00:00"), page=3, **T),
        ev("rating", CHINESE_BOOK, at=d1.format("08:05:00"), rating=5, **T),
        ev("search", CHINESE_PACKAGE, at=d1.format("08:10:00"), query="观潮", results=3, **T),
        ev("search", None, at=d1.format("09:10:00"), query="分数乘法", results=0, **A),
        ev("search", None, at=d1.format("11:00:00"), query="分数 乘法", results=0, **T),
        ev("search", None, at=d1.format("09:20:00"), query="Circle area", results=0, **B),
        ev("search", None, at=d1.format("09:30:00"), query="ｃｉｒｃｌｅ  AREA", results=0, **A),
        # 07:30 in Shanghai on the 2nd is 23:30 UTC on the 1st: it counts on the 2nd.
        ev("doc-open", MATH_BOOK, at=d2.format("07:30:00"), **T),
        ev("fetch-request", ENGLISH_BOOK, at=d2.format("07:35:00"), **T),
        ev("search", None, at=d2.format("07:40:00"), query="分数乘法", results=0, **T),
        ev("doc-open", CHINESE_BOOK, at=d5.format("14:00:00"), **C),
        ev("view-start", CHINESE_VIDEO, at=d5.format("14:05:00"), **C),
        ev("view-complete", CHINESE_VIDEO, at=d5.format("14:08:30"), seconds=210, **C),
        ev("search", None, at=d5.format("14:30:00"), query="分数乘法", results=2, **C),
        ev("search", None, at=d5.format("15:00:00"), query='=1+2,"x"', results=0, **B),
        # Outside the week, on each side.
        ev("doc-open", MATH_BOOK, at="2025-08-31T23:59:00+08:00", **T),
        ev("doc-open", MATH_BOOK, at="2025-09-08T00:00:00+08:00", **A),
    ]


@pytest.fixture
def recorded(reports_app):
    client = reports_app.test_client()
    r = client.post("/api/events", json=school_week())
    assert r.status_code == 201 and r.get_json()["stored"] == 29, r.get_json()
    return reports_app


def usage_db(app):
    return app.extensions["shuqiao"].usage


def rows_of(app, function, start="2025-09-01", end="2025-09-07", **kw):
    from sync import reports

    with usage_db(app).outbox() as outbox:
        return function(outbox.db, reports.parse_period(start, end), **kw)


ZERO = dict(uses=0, views_started=0, views_completed=0, doc_opens=0, minutes=0.0,
            exercises=0, mean_score=None, ratings=0, mean_rating=None, fetch_requests=0,
            terminals=0, searches=0, missing=0)


def test_use_by_day_in_the_schools_time_zone_with_quiet_days_as_zeros(recorded):
    from sync import reports

    days = rows_of(recorded, reports.by_day)
    assert [d["day"] for d in days] == [f"2025-09-0{i}" for i in range(1, 8)]
    assert days[0] == dict(ZERO, day="2025-09-01", uses=6, views_started=3, views_completed=2,
                           doc_opens=1, exercises=2, mean_score=70.0, ratings=3,
                           mean_rating=4.0, searches=5, missing=4, terminals=3,
                           minutes=4.4)  # viewings of 120 + 45 + 100 s, not 30+60+120+…
    assert days[1] == dict(ZERO, day="2025-09-02", uses=1, doc_opens=1, fetch_requests=1,
                           searches=1, missing=1, terminals=1)
    assert days[4] == dict(ZERO, day="2025-09-05", uses=2, doc_opens=1, views_started=1,
                           views_completed=1, minutes=3.5, searches=2, missing=1, terminals=2)
    for quiet in (2, 3, 5, 6):
        assert days[quiet] == dict(ZERO, day=days[quiet]["day"])
    total = rows_of(recorded, reports.total)
    assert total == dict(ZERO, uses=9, views_started=4, views_completed=3, doc_opens=3,
                         exercises=2, mean_score=70.0, ratings=3, mean_rating=4.0,
                         fetch_requests=1, searches=8, missing=6, terminals=4, minutes=7.9)


def test_use_by_subject_grade_resource_class_and_role(recorded):
    from sync import reports

    subjects = rows_of(recorded, reports.by_subject)
    assert [(s["stage"], s["grade"], s["subject"]) for s in subjects] == [
        ("小学", "三年级", "数学"), ("小学", "四年级", "语文"), ("初中", "七年级", "英语")]
    assert subjects[0] == dict(ZERO, stage="小学", grade="三年级", subject="数学", uses=6,
                               views_started=3, views_completed=2, doc_opens=1, exercises=2,
                               mean_score=70.0, ratings=2, mean_rating=3.5, minutes=4.4,
                               terminals=3)
    assert subjects[1] == dict(ZERO, stage="小学", grade="四年级", subject="语文", uses=3,
                               views_started=1, views_completed=1, doc_opens=2, ratings=1,
                               mean_rating=5.0, minutes=3.5, terminals=2)
    assert subjects[2] == dict(ZERO, stage="初中", grade="七年级", subject="英语",
                               fetch_requests=1, terminals=1)

    resources = rows_of(recorded, reports.by_resource)
    # Most used first; the search that opened the 观潮 package is a search, not a use.
    assert [r["resource"] for r in resources] == [MATH_VIDEO, CHINESE_BOOK, MATH_EXERCISE,
                                                  CHINESE_VIDEO, MATH_BOOK, ENGLISH_BOOK]
    video, book, exercise = resources[:3]
    assert (video["title"], video["kind"], video["grade"], video["subject"]) == (
        "微课视频", "video", "三年级", "数学")
    assert (video["uses"], video["minutes"], video["views_completed"], video["ratings"],
            video["mean_rating"], video["terminals"]) == (3, 4.4, 2, 2, 3.5, 2)
    assert (book["uses"], book["doc_opens"], book["mean_rating"]) == (2, 2, 5.0)
    assert (exercise["uses"], exercise["exercises"], exercise["mean_score"]) == (2, 2, 70.0)
    assert resources[-1]["fetch_requests"] == 1 and resources[-1]["uses"] == 0
    assert rows_of(recorded, reports.by_resource, limit=2) == resources[:2]

    classes = rows_of(recorded, reports.by_class)
    assert [(c["class"], c["uses"], c["minutes"], c["searches"], c["missing"], c["terminals"])
            for c in classes] == [("三年级一班", 5, 4.4, 4, 4, 2),
                                  ("四年级二班", 2, 3.5, 1, 0, 1), ("", 2, 0.0, 3, 2, 1)]
    roles = rows_of(recorded, reports.by_role)
    assert [(r["role"], r["uses"], r["minutes"], r["searches"], r["missing"], r["ratings"],
             r["fetch_requests"], r["terminals"]) for r in roles] == [
        ("teacher", 2, 0.0, 3, 2, 1, 1, 1), ("student", 7, 7.9, 5, 4, 2, 0, 3)]


def test_searched_but_missing_grouped_however_it_was_typed(recorded):
    from sync import reports

    missing = rows_of(recorded, reports.missing_searches)
    assert missing == [
        {"query": "分数乘法", "count": 3, "teachers": 2, "terminals": 2,
         "first_at": "2025-09-01 09:10", "last_at": "2025-09-02 07:40",
         "found_at": "2025-09-05 14:30"},   # C found it after it was fetched
        {"query": "ｃｉｒｃｌｅ  AREA", "count": 2, "teachers": 0, "terminals": 2,
         "first_at": "2025-09-01 09:20", "last_at": "2025-09-01 09:30", "found_at": ""},
        {"query": '=1+2,"x"', "count": 1, "teachers": 0, "terminals": 1,
         "first_at": "2025-09-05 15:00", "last_at": "2025-09-05 15:00", "found_at": ""}]
    assert reports.normalise_query("  分数 乘法。") == reports.normalise_query("分数乘法")
    assert rows_of(recorded, reports.missing_searches, "2025-09-02", "2025-09-02") == [
        {"query": "分数乘法", "count": 1, "teachers": 1, "terminals": 1,
         "first_at": "2025-09-02 07:40", "last_at": "2025-09-02 07:40", "found_at": ""}]


def test_the_period_chooses_the_events(recorded):
    from sync import reports

    assert [d["uses"] for d in rows_of(recorded, reports.by_day, "2025-09-02", "2025-09-02")
            ] == [1]
    assert [d["uses"] for d in rows_of(recorded, reports.by_day, "2025-08-31", "2025-08-31")
            ] == [1]
    assert rows_of(recorded, reports.total, "2025-08-31", "2025-09-08")["uses"] == 11
    assert rows_of(recorded, reports.total, "2025-09-09", "2025-12-31") == ZERO
    assert rows_of(recorded, reports.by_resource, "2025-09-09", "2025-12-31") == []


def test_every_report_query_reads_events_through_an_index(recorded):
    """No full scan of ``events``: a school's years of events stay quick to report on."""
    from sync import reports

    statements: list[str] = []
    with usage_db(recorded).outbox() as outbox:
        outbox.db.conn.set_trace_callback(statements.append)
        period = reports.parse_period("2025-09-01", "2025-09-07")
        for name in reports.REPORTS:
            reports.report(outbox.db, name, period)
        reports.total(outbox.db, period)
        outbox.db.conn.set_trace_callback(None)
        reading = [s for s in statements if "FROM events" in s]
        assert len(reading) == len(reports.REPORTS) + 1   # one read each
        for sql in reading:
            plan = [row[3] for row in outbox.db.execute("EXPLAIN QUERY PLAN " + sql)]
            # ``x`` is events in the usage queries, a viewings CTE in the minutes query.
            table = r"(events|x)" if "FROM events x" in sql else r"events"
            scans = [p for p in plan if re.match(rf"SCAN {table}\b", p) and "USING" not in p]
            assert not scans, (sql, plan)
            assert any("events_at" in p or "events_type_at" in p for p in plan), plan

        # The page's Report reads the period's events once for all its usage tables.
        statements.clear()
        outbox.db.conn.set_trace_callback(statements.append)
        with reports.Report(outbox.db, period) as report:
            answers = (report.total(), report.by_day(), report.by_subject(),
                       report.by_resource(), report.by_class(), report.by_role())
        outbox.db.conn.set_trace_callback(None)
        assert len([s for s in statements if "FROM events" in s]) == 1
        assert answers[1] == reports.by_day(outbox.db, period)
        assert answers[3] == reports.by_resource(outbox.db, period)


def test_the_page_shows_numbers_tables_and_accessible_svg_charts(recorded, admin):
    r = admin.get("/admin/reports/", query_string=WEEK)
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert "2025-09-01 至 2025-09-07，共 7 天" in page
    for heading in ("每日使用", "按学科和年级", "按资源", "搜了但没有的资源", "按班级",
                    "老师和学生"):
        assert heading in page
    assert "几分之一 · 微课视频" in page           # a part is named with its package
    assert "3.5 <small>(2)</small>" in page         # its mean rating, and of how many
    assert "分数乘法" in page and "2025-09-05 14:30" in page

    days = chart(page, "chart-days")
    assert days.get("role") == "img"
    assert days.find(SVG + "title").text == "每天的使用次数"
    desc = days.find(SVG + "desc").text
    assert "播放视频 4 次" in desc and "打开文档 3 次" in desc and "最多的是 9/1，6 次" in desc
    bars = {g.get("data-label"): g for g in days.iter(SVG + "g") if g.get("class") == "bar"}
    assert list(bars) == ["9/1", "9/2", "9/3", "9/4", "9/5", "9/6", "9/7"]
    assert {k: g.get("data-total") for k, g in bars.items()} == {
        "9/1": "6", "9/2": "1", "9/3": "0", "9/4": "0", "9/5": "2", "9/6": "0", "9/7": "0"}
    segments = [(s.get("data-series"), s.get("data-value"))
                for s in bars["9/1"].iter(SVG + "rect")]
    assert segments == [("播放视频", "3"), ("打开文档", "1"), ("做练习", "2")]
    assert [t.text for t in bars["9/1"].iter(SVG + "text")] == ["6", "9/1"]
    assert bars["9/3"].find(SVG + "rect") is None
    heights = [float(s.get("height")) for s in bars["9/1"].iter(SVG + "rect")]
    assert heights[0] == pytest.approx(heights[2] * 1.5, abs=0.2)   # 3 : 2, to scale

    subjects = chart(page, "chart-subjects")
    labelled = [(g.get("data-label"), g.get("data-value")) for g in subjects.iter(SVG + "g")
                if g.get("class") == "bar"]
    assert labelled == [("数学", "6"), ("语文", "3")]
    assert "数学 6；语文 3" in subjects.find(SVG + "desc").text

    r = admin.get("/admin/reports/days.svg", query_string=WEEK)
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    assert ET.fromstring(r.get_data()).find(SVG + "title").text == "每天的使用次数"

    english = admin.get("/admin/reports/", query_string={**WEEK, "lang": "en"})
    assert "Searched for but missing" in english.get_data(as_text=True)
    assert chart(english.get_data(as_text=True), "chart-days").find(
        SVG + "title").text == "Uses per day"


def chart(page: str, chart_id: str) -> ET.Element:
    """The chart's <svg> from the page, parsed as XML (it must be well-formed)."""
    match = re.search(rf'<svg [^>]*id="{chart_id}".*?</svg>', page, re.DOTALL)
    assert match, chart_id
    return ET.fromstring(match.group(0))


def read_csv(client, name, **args) -> tuple[list[str], list[list[str]]]:
    r = client.get(f"/admin/reports/{name}.csv", query_string={**WEEK, **args})
    assert r.status_code == 200 and r.mimetype == "text/csv", r.get_data(as_text=True)
    assert r.headers["Content-Disposition"] == (
        f'attachment; filename="shuqiao-{name}-{WEEK["from"]}-{WEEK["to"]}.csv"')
    raw = r.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")          # the BOM Excel needs
    assert b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")
    header, *rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    return header, rows


def test_csv_files_parse_back_to_the_same_numbers(recorded, admin):
    from sync import reports

    header, rows = read_csv(admin, "days")
    assert header[:3] == ["日期", "使用次数", "播放视频"]
    table = [dict(zip(reports.COLUMNS["days"], row)) for row in rows]
    assert [(t["day"], t["uses"], t["minutes"], t["mean_rating"], t["missing"]) for t in table] \
        == [("2025-09-01", "6", "4.4", "4.0", "4"), ("2025-09-02", "1", "0.0", "", "1"),
            ("2025-09-03", "0", "0.0", "", "0"), ("2025-09-04", "0", "0.0", "", "0"),
            ("2025-09-05", "2", "3.5", "", "1"), ("2025-09-06", "0", "0.0", "", "0"),
            ("2025-09-07", "0", "0.0", "", "0")]

    header, rows = read_csv(admin, "resources")
    assert header[:4] == ["资源编号", "课程包", "资源", "类型"]
    first = dict(zip(header, rows[0]))
    assert (first["资源编号"], first["课程包"], first["资源"], first["类型"], first["使用次数"],
            first["观看分钟"], first["平均评分（1–5）"]) == (
        MATH_VIDEO, "几分之一", "微课视频", "微课视频", "3", "4.4", "3.5")
    assert [row[0] for row in rows] == [r["resource"] for r in rows_of(
        admin.application, reports.by_resource)]

    header, rows = read_csv(admin, "missing")
    assert header == ["搜索词", "次数", "其中老师", "终端数", "第一次", "最近一次", "之后搜到"]
    assert rows[0] == ["分数乘法", "3", "2", "2", "2025-09-01 09:10", "2025-09-02 07:40",
                       "2025-09-05 14:30"]
    # A pupil's search that Excel would run as a formula is made text; quotes and commas
    # are quoted by the csv module and come back intact.
    assert rows[2][0] == "'=1+2,\"x\""

    header, rows = read_csv(admin, "roles", lang="en")
    assert header[:2] == ["Role", "Uses"] and [r[:2] for r in rows] == [
        ["Teacher", "2"], ["Student", "7"]]
    _, rows = read_csv(admin, "subjects")
    assert [r[:4] for r in rows] == [["小学", "三年级", "数学", "6"],
                                     ["小学", "四年级", "语文", "3"],
                                     ["初中", "七年级", "英语", "0"]]
    _, rows = read_csv(admin, "classes")
    assert [r[:2] for r in rows] == [["三年级一班", "5"], ["四年级二班", "2"], ["", "2"]]


def test_presets_last_days_and_the_school_term(reports_app, admin):
    ctx = reports_app.extensions["shuqiao"]
    client = reports_app.test_client()
    assert client.post("/api/events", json=event_batch([MATH_VIDEO, CHINESE_BOOK], 16)
                       ).status_code == 201   # now: two of each type
    assert client.post("/api/events", json=school_week()).status_code == 201
    for preset in ("7", "30"):
        page = admin.get("/admin/reports/", query_string={"range": preset}).get_data(
            as_text=True)
        assert 'aria-current="page">最近 ' + preset + " 天" in page
        assert total_uses(page) == 6   # view-start, doc-open, exercise × 2; not 2025's
    page = admin.get("/admin/reports/").get_data(as_text=True)
    assert 'aria-current="page">最近 30 天' in page   # the default
    assert 'class="range disabled"' in page            # no term set yet
    r = admin.get("/admin/reports/", query_string={"range": "term"})
    assert r.status_code == 400 and "还没有设置学期日期" in r.get_data(as_text=True)

    from cache.plan import Profile

    with ctx.cache.catalog() as catalog:
        Profile(catalog.db).set_term(date(2025, 9, 1), date(2026, 1, 16), "2025 秋")
    page = admin.get("/admin/reports/", query_string={"range": "term"}).get_data(as_text=True)
    assert "2025-09-01 至 2026-01-16，共 138 天" in page
    assert total_uses(page) == 10   # the week's 9 and the doc-open on 8 September
    days = chart(page, "chart-days")
    assert days.find(SVG + "title").text == "每周的使用次数（从周一算起）"
    weeks = [g.get("data-label") for g in days.iter(SVG + "g") if g.get("class") == "bar"]
    assert weeks[:3] == ["9/1", "9/8", "9/15"] and len(weeks) == 20


def total_uses(page: str) -> int:
    return int(re.search(r"<dt>使用次数</dt><dd>(\d+)</dd>", page).group(1))


@pytest.mark.parametrize("args, status, message", [
    ({"from": "2025-09-07", "to": "2025-09-01"}, 400,
     "开始日期 2025-09-07 晚于结束日期 2025-09-01"),
    ({"from": "yesterday", "to": "2025-09-01"}, 400, "from=“yesterday” 不是日期"),
    ({"from": "2025-09-01", "to": "2025-13-01"}, 400, "to=“2025-13-01” 不是日期"),
    ({"from": "", "to": "2025-09-01"}, 400, "from=“” 不是日期"),
    ({"from": "2019-01-01", "to": "2025-09-01"}, 400, "时间段最长 1098 天"),
    ({"range": "99"}, 400, "range=“99” 不认识"),
])
def test_bad_periods_get_a_clear_400(recorded, admin, args, status, message):
    r = admin.get("/admin/reports/", query_string=args)
    assert r.status_code == status and message in r.get_data(as_text=True)
    assert 'name="from"' in r.get_data(as_text=True)   # the form is there to fix it
    for suffix in ("days.csv", "missing.csv", "days.svg"):
        r = admin.get("/admin/reports/" + suffix, query_string=args)
        assert r.status_code == status and r.mimetype == "text/plain"
        assert message in r.get_data(as_text=True)
    english = admin.get("/admin/reports/days.csv", query_string={**args, "lang": "en"})
    assert english.status_code == 400
    assert not any(0x2E80 <= ord(c) < 0xFF00 for c in english.get_data(as_text=True))


def test_unknown_reports_are_404(admin):
    assert admin.get("/admin/reports/secrets.csv").status_code == 404
    assert admin.get("/admin/reports/resources.svg").status_code == 404


def test_reports_need_the_admin_login(reports_app, admin):
    pupil = reports_app.test_client()
    for path in ("/admin/reports/", "/admin/reports/days.csv?from=2025-09-01&to=2025-09-07",
                 "/admin/reports/missing.csv", "/admin/reports/subjects.svg"):
        r = pupil.get(path)
        assert r.status_code == 302 and "/admin/login" in r.headers["Location"], path
    nav = admin.get("/admin/").get_data(as_text=True)
    assert '<a href="/admin/reports/">使用报告</a>' in nav


def test_an_empty_usage_db_still_makes_a_page_and_files(admin):
    page = admin.get("/admin/reports/", query_string=WEEK).get_data(as_text=True)
    assert "这段时间没有使用记录。" in page and "这段时间里每次搜索都有结果。" in page
    assert chart(page, "chart-days").find(SVG + "desc").text.startswith("2025-09-01 至")
    header, rows = read_csv(admin, "missing")
    assert rows == [] and header[0] == "搜索词"
    _, rows = read_csv(admin, "days")
    assert len(rows) == 7


def test_usage_db_has_the_report_index(reports_app):
    conn = sqlite3.connect(usage_db(reports_app).db_path)
    try:
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(events)")}
    finally:
        conn.close()
    assert {"events_at", "events_type_at"} <= indexes
