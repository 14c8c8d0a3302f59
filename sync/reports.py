"""Local reports for the school: what was used, how much, how well rated, what was missing.

The provincial notice behind the project asks that resource use be tracked and evaluated
(how often, how well rated, how useful, per school and per teacher) and that schools see
what teachers looked for and did not find. These queries answer that from ``usage.db``
alone: ``events`` is the record of what happened and ``activities`` holds the catalogue
facts (title, kind, stage, grade, subject) copied when the events were recorded, so a
report never needs ``catalog.db`` and still names a resource that was deleted since.

Every report covers a :class:`Period` of whole local calendar days (the appliance's time
zone, as the school lives by it). Events carry their time in UTC ISO text (one format, so
text order is time order): the period becomes one UTC range, read through an index
(``events_at``; ``events_type_at`` for the searches, migration 0003).

What the numbers mean (the same in every report, the page and the CSV files):

- ``views_started`` / ``views_completed``: ``view-start`` / ``view-complete`` events.
- ``doc_opens``: ``doc-open`` events (textbook PDF, courseware…).
- ``uses``: ``views_started + doc_opens + exercises``, the headline "how often".
- ``minutes``: minutes watched. Players report the seconds watched *so far* in each
  view event, so summing them would count the same minute many times. A viewing is
  the run of a terminal's view events on one resource from a ``view-start`` to the next
  one; it counts its largest ``seconds``. A viewing belongs to the day it started.
- ``exercises`` and ``mean_score`` (0-100): ``exercise`` events and their mean score.
- ``ratings`` and ``mean_rating`` (1-5).
- ``fetch_requests``: teachers asking for a resource not yet on the appliance.
- ``searches`` and ``missing``: ``search`` events, and those that found nothing.
- ``terminals``: distinct terminals (pseudonymous ids) involved.

Search events count as searches, never as use of the result they name.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, timezone
from typing import Iterable

import sqlite_utils

from cache.taxonomy import sort_key

MAX_DAYS = 3 * 366          # a report over more than about three years is a mistake

# The metric columns of a usage row, in display order (CSV columns follow this order).
USAGE_METRICS = ("uses", "views_started", "views_completed", "doc_opens", "minutes",
                 "exercises", "mean_score", "ratings", "mean_rating", "fetch_requests",
                 "terminals")
SEARCH_METRICS = ("searches", "missing")

# Each report's key columns; the rest are metrics. The kiosk's CSV files use these.
COLUMNS: dict[str, tuple[str, ...]] = {
    "days": ("day",) + USAGE_METRICS + SEARCH_METRICS,
    "subjects": ("stage", "grade", "subject") + USAGE_METRICS,
    "resources": ("resource", "title", "kind", "stage", "grade", "subject") + USAGE_METRICS,
    "classes": ("class",) + USAGE_METRICS + SEARCH_METRICS,
    "roles": ("role",) + USAGE_METRICS + SEARCH_METRICS,
    "missing": ("query", "count", "teachers", "terminals", "first_at", "last_at",
                "found_at"),
}
REPORTS = tuple(COLUMNS)


class ReportError(ValueError):
    """A bad report request. ``code`` and ``values`` let the kiosk say it in the
    reader's language; ``str()`` is the same in Chinese and English."""

    def __init__(self, code: str, message: str, **values):
        self.code, self.values = code, values
        super().__init__(message)


# ------------------------------------------------------------------------ periods

@dataclass(frozen=True)
class Period:
    """Whole local calendar days, ``start`` to ``end`` inclusive."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def each_day(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def utc_bounds(self) -> tuple[str, str]:
        """[from, to) as UTC ISO text in the format ``events.at`` is stored in."""
        return _utc_midnight(self.start), _utc_midnight(self.end + timedelta(days=1))


def _utc_midnight(day: date) -> str:
    local = datetime.combine(day, dtime(0, 0)).astimezone()  # the appliance's zone
    return local.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def today() -> date:
    return datetime.now().astimezone().date()


def _parse_day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise ReportError("not_a_date", f"{name}=“{value}” 不是日期，请写成 2026-09-01 / "
                          f"{name}=“{value}” is not a date; write it as 2026-09-01",
                          name=name, value=value) from None


def parse_period(start: str, end: str) -> Period:
    """``from`` and ``to`` as typed in a form or URL (YYYY-MM-DD) → a Period."""
    period = Period(_parse_day(start, "from"), _parse_day(end, "to"))
    if period.start > period.end:
        raise ReportError("from_after_to", f"开始日期 {period.start} 晚于结束日期 {period.end} / "
                          f"from {period.start} is after to {period.end}",
                          start=period.start.isoformat(), end=period.end.isoformat())
    if period.days > MAX_DAYS:
        raise ReportError("too_long", f"时间段最长 {MAX_DAYS} 天 / a period is at most "
                          f"{MAX_DAYS} days", days=MAX_DAYS)
    return period


def last_days(n: int, until: date | None = None) -> Period:
    """The last ``n`` days, today included."""
    end = until or today()
    return Period(end - timedelta(days=n - 1), end)


# ------------------------------------------------------------------------ usage

# How each report groups events: key columns of the period's extract (see Report).
_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "total": (),
    "days": ("day",),
    "subjects": ("stage", "grade", "subject"),
    "resources": ("resource",),
    "classes": ("class",),
    "roles": ("role",),
}
# Searches are about the catalogue, not one resource: they stay out of these.
_WITHOUT_SEARCHES = ("subjects", "resources")

# The period's events, read once (through events_at) with what the reports need from
# the JSON and the catalogue facts already taken out: every grouping then reads this
# small table instead of reading the events, their JSON and activities again.
_EXTRACT = """
    CREATE TEMP TABLE report_events AS
    SELECT x.seq, x.at, date(x.at, 'localtime') AS day, x.type, x.resource, x.terminal,
           x.class, x.role, coalesce(x.seconds, 0) AS seconds,
           CASE WHEN x.type = 'exercise' THEN json_extract(x.data, '$.score') END AS score,
           CASE WHEN x.type = 'rating' THEN json_extract(x.data, '$.rating') END AS rating,
           CASE WHEN x.type = 'search' THEN json_extract(x.data, '$.results') END AS results,
           coalesce(a.stage, '') AS stage, coalesce(a.grade, '') AS grade,
           coalesce(a.subject, '') AS subject
    FROM events x LEFT JOIN activities a ON a.resource = x.resource
    WHERE x.at >= ? AND x.at < ?"""

# One row per viewing (see the module docstring): the running count of view-start events
# numbers a terminal's viewings of a resource; each counts its largest ``seconds`` and
# belongs to the day (and class, role) it started in.
_VIEWINGS = """
    CREATE TEMP TABLE report_viewings AS
    WITH marked AS (
        SELECT terminal, resource, day, class, role, stage, grade, subject, seconds,
               sum(type = 'view-start') OVER (PARTITION BY terminal, resource
                                              ORDER BY at, seq) AS viewing
        FROM temp.report_events
        WHERE type IN ('view-start', 'view-progress', 'view-complete'))
    SELECT terminal, resource, min(day) AS day, max(class) AS class, max(role) AS role,
           max(stage) AS stage, max(grade) AS grade, max(subject) AS subject,
           max(seconds) AS seconds
    FROM marked GROUP BY terminal, resource, viewing"""

_COUNTS = """
    sum(type = 'view-start'), sum(type = 'view-complete'), sum(type = 'doc-open'),
    sum(type = 'exercise'), avg(score), sum(type = 'rating'), avg(rating),
    sum(type = 'fetch-request'), count(DISTINCT terminal), sum(type = 'search'),
    sum(results = 0)"""
_COUNT_NAMES = ("views_started", "views_completed", "doc_opens", "exercises", "mean_score",
                "ratings", "mean_rating", "fetch_requests", "terminals", "searches",
                "missing")


class Report:
    """The usage reports of one period, from one read of its events.

    The first report asked for extracts the period's events into two temporary tables
    on this connection (dropped by :meth:`close`, or when the connection closes); the
    others group those, so the page reads the events and their JSON once, not seven
    times. Measured by bench/reports.py on 500,000 events over a
    year: the whole page takes 0.15 s for 7 days, 0.6 s for 30 days, 7 s for the year.
    """

    def __init__(self, db: sqlite_utils.Database, period: Period):
        self.db, self.period = db, period
        self._extracted = False

    def __enter__(self) -> "Report":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._extracted:
            self._drop()
            self._extracted = False

    def _drop(self) -> None:
        self.db.execute("DROP TABLE IF EXISTS temp.report_events")
        self.db.execute("DROP TABLE IF EXISTS temp.report_viewings")

    def _extract(self) -> None:
        if self._extracted:
            return
        self._drop()  # one Report at a time per connection: a left-over one is stale
        self.db.execute(_EXTRACT, self.period.utc_bounds())
        self.db.execute(_VIEWINGS)
        self._extracted = True

    def _usage(self, dimension: str) -> dict[tuple, dict]:
        """Usage metrics grouped by ``dimension``: {key tuple: row dict}."""
        self._extract()
        keys = _DIMENSIONS[dimension]
        select = "".join(f"{key}, " for key in keys)
        group = (" GROUP BY " + ", ".join(keys)) if keys else ""
        where = " WHERE type != 'search'" if dimension in _WITHOUT_SEARCHES else ""
        rows: dict[tuple, dict] = {}
        for row in self.db.execute(f"SELECT {select}{_COUNTS} FROM temp.report_events"
                                   f"{where}{group}").fetchall():
            key = tuple(row[:len(keys)])
            counts = dict(zip(_COUNT_NAMES, row[len(keys):]))
            if not keys and not counts["terminals"]:
                continue  # the total of nothing: no row
            rows[key] = {**dict(zip(keys, key)), **counts, "seconds": 0.0}
        for row in self.db.execute(f"SELECT {select}sum(seconds) FROM temp.report_viewings"
                                   f"{group}").fetchall():
            key = tuple(row[:len(keys)])
            if key in rows:  # a viewing's events are events of the same group
                rows[key]["seconds"] = float(row[-1] or 0)
        for row in rows.values():
            _finish(row)
        return rows

    def total(self) -> dict:
        """One row for the whole period (``terminals`` counted once across it)."""
        return self._usage("total").get((), _empty())

    def by_day(self) -> list[dict]:
        """One row per day of the period, days without any event included (as zeros)."""
        rows = self._usage("days")
        return [rows.get((day.isoformat(),)) or _empty(day=day.isoformat())
                for day in self.period.each_day()]

    def by_subject(self) -> list[dict]:
        """One row per (stage, grade, subject), in the platform's order (一年级 before 二年级)."""
        rows = self._usage("subjects").values()
        return sorted(rows, key=lambda r: (sort_key("stage", r["stage"]),
                                           sort_key("grade", r["grade"]),
                                           sort_key("subject", r["subject"])))

    def by_resource(self, limit: int | None = None) -> list[dict]:
        """One row per resource used, most used first (then most minutes, ratings…)."""
        rows = list(self._usage("resources").values())
        facts = _activities(self.db, [r["resource"] for r in rows])
        for row in rows:
            info = facts.get(row["resource"], {})
            for name in ("title", "kind", "stage", "grade", "subject"):
                row[name] = info.get(name, "")
        rows.sort(key=lambda r: (-r["uses"], -r["minutes"], -r["ratings"],
                                 -r["fetch_requests"], r["title"], r["resource"]))
        return rows[:limit] if limit is not None else rows

    def by_class(self) -> list[dict]:
        """One row per class label ('' = no class set, last)."""
        rows = self._usage("classes").values()
        return sorted(rows, key=lambda r: (r["class"] == "", r["class"]))

    def by_role(self) -> list[dict]:
        """Teachers, then students."""
        order = {"teacher": 0, "student": 1}
        return sorted(self._usage("roles").values(),
                      key=lambda r: (order.get(r["role"], 2), r["role"]))

    def missing_searches(self, limit: int | None = None) -> list[dict]:
        return missing_searches(self.db, self.period, limit)


def _finish(row: dict) -> None:
    """Derived and rounded numbers, the same on the page and in the CSV."""
    for name in ("views_started", "views_completed", "doc_opens", "exercises", "ratings",
                 "fetch_requests", "terminals", "searches", "missing"):
        row[name] = int(row.get(name) or 0)
    row["uses"] = row["views_started"] + row["doc_opens"] + row["exercises"]
    row["minutes"] = round(row.pop("seconds", 0.0) / 60, 1)
    for name in ("mean_score", "mean_rating"):
        row[name] = round(row[name], 2) if row.get(name) is not None else None


def _empty(**keys) -> dict:
    row = {**keys, **{name: 0 for name in _COUNT_NAMES}, "mean_score": None,
           "mean_rating": None, "seconds": 0.0}
    _finish(row)
    return row


def _activities(db: sqlite_utils.Database, ids: Iterable[str]) -> dict[str, dict]:
    ids = list(ids)
    found: dict[str, dict] = {}
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        cursor = db.execute("SELECT resource, title, kind, stage, grade, subject FROM activities"
                            f" WHERE resource IN ({', '.join('?' * len(part))})", part)
        for row in cursor.fetchall():
            found[row[0]] = dict(zip(("title", "kind", "stage", "grade", "subject"), row[1:]))
    return found


# One report alone (a CSV file): the same numbers as the page's Report gives.
def total(db: sqlite_utils.Database, period: Period) -> dict:
    with Report(db, period) as r:
        return r.total()


def by_day(db: sqlite_utils.Database, period: Period) -> list[dict]:
    with Report(db, period) as r:
        return r.by_day()


def by_subject(db: sqlite_utils.Database, period: Period) -> list[dict]:
    with Report(db, period) as r:
        return r.by_subject()


def by_resource(db: sqlite_utils.Database, period: Period, limit: int | None = None
                ) -> list[dict]:
    with Report(db, period) as r:
        return r.by_resource(limit)


def by_class(db: sqlite_utils.Database, period: Period) -> list[dict]:
    with Report(db, period) as r:
        return r.by_class()


def by_role(db: sqlite_utils.Database, period: Period) -> list[dict]:
    with Report(db, period) as r:
        return r.by_role()

# ---------------------------------------------------------------- missing searches

def normalise_query(text: str) -> str:
    """The form searches are grouped by: full-width letters folded (NFKC), case folded,
    punctuation around it and spaces inside it dropped (分数 乘法 = 分数乘法; Circle area =
    ｃｉｒｃｌｅ AREA), so one need is counted once however it was typed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = folded.strip("".join(c for c in set(folded)
                                  if unicodedata.category(c).startswith(("P", "Z", "S"))))
    return "".join(folded.split())


def local_time(iso: str | None) -> str:
    """A stored UTC time as the school reads it: local ``YYYY-MM-DD HH:MM``."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def missing_searches(db: sqlite_utils.Database, period: Period, limit: int | None = None
                     ) -> list[dict]:
    """Searches that found nothing, grouped by :func:`normalise_query`, most asked first.

    Each row: ``query`` (its most common spelling), ``count``, ``teachers`` (how many of
    them by teachers), ``terminals``, ``first_at``/``last_at`` (local time) and
    ``found_at``: when the same query last found something after it was last missing,
    in the period ('' = still missing as far as the period tells).
    """
    groups: dict[str, dict] = {}
    found_last: dict[str, str] = {}
    cursor = db.execute(
        "SELECT json_extract(data, '$.query'), json_extract(data, '$.results'), at, role,"
        " terminal FROM events WHERE type = 'search' AND at >= ? AND at < ? ORDER BY at",
        period.utc_bounds())
    for query, results, at, role, terminal in cursor:
        if not query:
            continue
        key = normalise_query(query) or query
        if results:
            found_last[key] = at
            continue
        group = groups.setdefault(key, {"spellings": defaultdict(int), "count": 0,
                                        "teachers": 0, "terminals": set(), "first_at": at,
                                        "last_at": at, "spelled_at": {}})
        group["spellings"][query] += 1
        group["spelled_at"][query] = at
        group["count"] += 1
        group["teachers"] += role == "teacher"
        group["terminals"].add(terminal)
        group["last_at"] = at
    rows = []
    for key, group in groups.items():
        spelling = max(group["spellings"],
                       key=lambda q: (group["spellings"][q], group["spelled_at"][q]))
        found = found_last.get(key)
        rows.append({"query": spelling, "count": group["count"], "teachers": group["teachers"],
                     "terminals": len(group["terminals"]),
                     "first_at": local_time(group["first_at"]),
                     "last_at": local_time(group["last_at"]),
                     "found_at": local_time(found) if found and found > group["last_at"] else "",
                     "_last": group["last_at"]})
    # Most asked first; among equals, teachers' needs first, then the most recent.
    rows.sort(key=lambda r: (r["_last"], r["query"]), reverse=True)
    rows.sort(key=lambda r: (-r["count"], -r["teachers"]))
    for row in rows:
        del row["_last"]
    return rows[:limit] if limit is not None else rows


def report(db: sqlite_utils.Database, name: str, period: Period) -> list[dict]:
    """The rows of one named report (see :data:`COLUMNS`), every row, for the CSV files."""
    if name not in COLUMNS:
        raise ReportError("unknown_report", f"没有这个报告 / no report named {name!r}",
                          name=name)
    return {"days": by_day, "subjects": by_subject, "resources": by_resource,
            "classes": by_class, "roles": by_role, "missing": missing_searches}[name](db, period)
