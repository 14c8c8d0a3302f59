"""Curriculum-aware prefetch: which lessons will be taught in the coming weeks, in order.

A school profile says which classes learn which textbook (grade, subject, edition,
volume), when the term runs, and optionally the timetable (which weekday periods a class
has the subject). From it and the order of the lesson packages in the catalogue (the
chapter tree's order), :func:`make_plan` lays the lessons (each 课时 takes one period)
over the term's school days and returns the ones due within the horizon, earliest first,
with the bytes still to fetch. The fetch queue takes them in that order at plan priority,
and :func:`estimate_ready` says when each will be ready under the bandwidth budget.

No peer system plans downloads against a school calendar; this is why a rural teacher
finds next week's lessons already on the appliance.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Callable, Iterable

import sqlite_utils

WEEKDAYS = 5  # Monday–Friday; weekend make-up days are rare enough to ignore
_PERIOD = re.compile(r"^([1-7]):(\d{1,2})$")


class ProfileError(ValueError):
    """A bad school profile value; the message is for the person who typed it."""


@dataclass
class SchoolClass:
    name: str
    grade: str
    subject: str
    edition: str = ""
    volume: str = ""
    stage: str = ""
    periods: list[tuple[int, int]] = field(default_factory=list)  # (weekday 1-7, period)
    lessons_per_week: int = 0  # 0: spread the book evenly over the term

    def slots_on(self, day: date) -> int:
        """How many periods of this subject the class has on ``day``."""
        if self.periods:
            return sum(1 for weekday, _ in self.periods if weekday == day.isoweekday())
        return 1 if day.isoweekday() <= WEEKDAYS else 0


@dataclass
class Term:
    start: date
    end: date
    name: str = ""


@dataclass
class PlanItem:
    needed_by: date
    school_class: str
    resource_id: str
    title: str
    lesson: str  # 课时
    bytes_missing: int
    files_missing: list[int]
    ready_at: datetime | None = None  # filled by estimate_ready


def parse_periods(text: str) -> list[tuple[int, int]]:
    """``"1:2,3:4"`` (Monday 2nd period, Wednesday 4th) → [(1, 2), (3, 4)]."""
    periods = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        match = _PERIOD.match(part)
        if not match:
            raise ProfileError(f"课表格式应为 星期:节次，如 1:2,3:4 / periods look like "
                               f"weekday:period, e.g. 1:2,3:4 (got {part!r})")
        periods.append((int(match.group(1)), int(match.group(2))))
    return sorted(set(periods))


class Profile:
    """The school profile, kept in ``catalog.db`` (tables school_term, school_classes)."""

    def __init__(self, db: sqlite_utils.Database):
        self.db = db

    def set_term(self, start: date, end: date, name: str = "") -> None:
        if end <= start:
            raise ProfileError("学期结束日期必须晚于开始日期 / the term must end after it starts")
        with self.db.atomic():
            self.db.execute("DELETE FROM school_term")
            self.db.execute("INSERT INTO school_term (id, name, start, end) VALUES (1, ?, ?, ?)",
                            [name, start.isoformat(), end.isoformat()])

    def term(self) -> Term | None:
        row = self.db.execute("SELECT name, start, end FROM school_term").fetchone()
        return Term(date.fromisoformat(row[1]), date.fromisoformat(row[2]), row[0]) if row else None

    def save_class(self, cls: SchoolClass) -> None:
        if not cls.name.strip() or not cls.grade.strip() or not cls.subject.strip():
            raise ProfileError("班级名称、年级和学科必填 / a class needs a name, grade and subject")
        if cls.lessons_per_week < 0 or cls.lessons_per_week > 30:
            raise ProfileError("每周课时数应在 0 到 30 之间 / lessons per week must be 0-30")
        self.db.execute(
            "INSERT INTO school_classes (name, stage, grade, subject, edition, volume, periods,"
            " lessons_per_week) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET"
            " stage = excluded.stage, grade = excluded.grade, subject = excluded.subject,"
            " edition = excluded.edition, volume = excluded.volume, periods = excluded.periods,"
            " lessons_per_week = excluded.lessons_per_week",
            [cls.name.strip(), cls.stage, cls.grade, cls.subject, cls.edition, cls.volume,
             json.dumps(cls.periods), cls.lessons_per_week])

    def remove_class(self, name: str) -> bool:
        return self.db.execute("DELETE FROM school_classes WHERE name = ?", [name]).rowcount > 0

    def classes(self) -> list[SchoolClass]:
        rows = self.db.execute(
            "SELECT name, grade, subject, edition, volume, stage, periods, lessons_per_week "
            "FROM school_classes ORDER BY name").fetchall()
        return [SchoolClass(r[0], r[1], r[2], r[3], r[4], r[5],
                            [tuple(p) for p in json.loads(r[6])], r[7]) for r in rows]


def _lessons(db: sqlite_utils.Database, cls: SchoolClass) -> list[dict]:
    """The class's lesson packages in teaching order, one entry per 课时, with missing files."""
    where = ["r.parent_id IS NULL", "r.kind = 'lesson_package'", "r.grade = ?", "r.subject = ?"]
    params: list = [cls.grade, cls.subject]
    for column in ("edition", "volume", "stage"):
        if getattr(cls, column):
            where.append(f"r.{column} = ?")
            params.append(getattr(cls, column))
    packages = db.execute(
        f"SELECT r.id, r.title FROM resources r WHERE {' AND '.join(where)} "
        "ORDER BY r.position, r.rowid", params).fetchall()
    lessons = []
    for rid, title in packages:
        rows = db.execute(
            "SELECT p.lesson, p.lesson_no, f.id, f.state, coalesce(f.size, 0) "
            "FROM resources p JOIN files f ON f.resource_id = p.id "
            "WHERE p.parent_id = ? ORDER BY p.lesson_no, p.position, f.position", [rid]).fetchall()
        by_lesson: dict[int, dict] = {}
        for lesson, number, file_id, state, size in rows:
            entry = by_lesson.setdefault(number, {"resource_id": rid, "title": title,
                                                  "lesson": lesson, "files": [], "bytes": 0})
            if state != "cached":
                entry["files"].append(file_id)
                entry["bytes"] += size
        lessons.extend(by_lesson[n] for n in sorted(by_lesson))
        if not by_lesson:  # a package whose parts are not catalogued yet: one lesson
            lessons.append({"resource_id": rid, "title": title, "lesson": "", "files": [],
                            "bytes": 0})
    return lessons


def _schedule(cls: SchoolClass, term: Term, count: int) -> list[date]:
    """The date each of ``count`` lessons is taught, from the term start."""
    days = []
    day = term.start
    while day <= term.end:
        days.extend([day] * cls.slots_on(day))
        day += timedelta(days=1)
    if not days or not count:
        return []
    if cls.periods or cls.lessons_per_week:
        if cls.lessons_per_week and not cls.periods:
            # n lessons a week: the first n school days of each week.
            days = [d for d in days if _nth_school_day(d) < cls.lessons_per_week]
        return days[:count]
    # No timetable: spread the book evenly over the term's school days.
    step = len(days) / count
    return [days[min(int(i * step), len(days) - 1)] for i in range(count)]


def _nth_school_day(day: date) -> int:
    return day.isoweekday() - 1


def make_plan(db: sqlite_utils.Database, today: date, horizon_days: int = 21) -> list[PlanItem]:
    """Lessons due from ``today`` to ``today + horizon_days``, earliest first (then by class).

    Lessons already taught (dated before today) are not planned; lessons already on the
    appliance are listed with nothing missing, so the plan shows what is ready too.
    """
    profile = Profile(db)
    term = profile.term()
    if term is None:
        raise ProfileError("还没有设置学期日期：shuqiao profile term 开始日期 结束日期 / "
                           "no term set: shuqiao profile term START END")
    horizon = today + timedelta(days=horizon_days)
    items = []
    for cls in profile.classes():
        lessons = _lessons(db, cls)
        for when, lesson in zip(_schedule(cls, term, len(lessons)), lessons):
            if today <= when <= horizon:
                items.append(PlanItem(when, cls.name, lesson["resource_id"], lesson["title"],
                                      lesson["lesson"], lesson["bytes"], lesson["files"]))
    items.sort(key=lambda item: (item.needed_by, item.school_class))
    return _without_repeats(items)


def _without_repeats(items: Iterable[PlanItem]) -> list[PlanItem]:
    """Two classes on the same book need its files once: the earlier date carries them."""
    seen: set[int] = set()
    result = []
    for item in items:
        fresh = [f for f in item.files_missing if f not in seen]
        if len(fresh) != len(item.files_missing):
            share = item.bytes_missing * len(fresh) // max(1, len(item.files_missing))
            item.files_missing, item.bytes_missing = fresh, share
        seen.update(fresh)
        result.append(item)
    return result


def estimate_ready(items: list[PlanItem], start: datetime, queued_ahead_bytes: int,
                   rate_at: Callable[[datetime], float | None],
                   step: timedelta = timedelta(minutes=15)) -> None:
    """Fill ``ready_at`` by walking the budget forward: ``rate_at(t)`` is bytes/s allowed at
    ``t`` (None = unlimited by the budget, 0 = paused). Gives up after a year (ready_at None)."""
    backlog = queued_ahead_bytes
    clock = start
    limit = start + timedelta(days=366)
    unlimited_rate = 10 * 1024 * 1024  # a link's realistic ceiling when the budget says "no cap"
    for item in items:
        backlog += item.bytes_missing
        while backlog > 0 and clock < limit:
            rate = rate_at(clock)
            rate = unlimited_rate if rate is None else rate
            backlog -= rate * step.total_seconds()
            clock += step
        item.ready_at = clock if backlog <= 0 else None


def enqueue_plan(items: list[PlanItem], enqueue: Callable[[list[int]], object]) -> int:
    """Put the plan's missing files on the fetch queue, in plan order; returns how many."""
    files = [f for item in items for f in item.files_missing]
    if files:
        enqueue(files)
    return len(files)
