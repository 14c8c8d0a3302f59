"""The admin reports page (/admin/reports/): use by day, subject and grade, resource, class
and role, and what was searched for but missing, with SVG charts and CSV downloads.

The numbers come from :mod:`sync.reports` (usage.db only); this module picks the period
(last 7 / 30 days, the school term from the school profile, or dates typed in), draws the
charts (:mod:`kiosk.charts`), names lesson-package parts by their package (a part's own
title, 微课视频, says little alone) and writes the CSV files:

- ``/admin/reports/<name>.csv?from=YYYY-MM-DD&to=YYYY-MM-DD`` (or ``?range=7|30|term``),
  ``name`` one of ``days subjects resources classes roles missing``: every row, UTF-8
  with a byte-order mark so that Excel on Windows shows the Chinese, headers in the
  reader's language, cells quoted by the csv module, and text that Excel would run as a
  formula (a pupil's search for ``=HYPERLINK(…)``) prefixed with ``'``.
- ``/admin/reports/<days|subjects>.svg``: the page's charts as files, for a county report.

A bad period (not a date, from after to, too long, no term set) is a 400 that says why:
on the page with the form to fix it, as plain text for a CSV or SVG.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, timedelta

from flask import Blueprint, Response, abort, render_template, request, url_for

from cache.plan import Profile
from sync import reports
from sync.reports import COLUMNS, Period, ReportError

from . import catalog, charts, context, i18n, language
from .admin import login_required

bp = Blueprint("reports", __name__, url_prefix="/admin/reports")

PRESETS = ("7", "30", "term")
DEFAULT_PRESET = "30"
PAGE_RESOURCES = 30      # the page shows the most used; the CSV has them all
PAGE_MISSING = 30
CHARTS = ("days", "subjects")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _t(key: str, **values) -> str:
    return i18n.translate(key, language(), **values)


def _message(error: ReportError) -> str:
    return _t("rep_err_" + error.code, **error.values)


def term_period() -> Period | None:
    term = Profile(catalog().db).term()
    return Period(term.start, term.end) if term else None


def choose_period(args) -> tuple[str, Period]:
    """(the preset chosen or ``custom``, the period) from the query string."""
    if args.get("from") is not None or args.get("to") is not None:
        end = args.get("to") or reports.today().isoformat()
        return "custom", reports.parse_period(args.get("from", ""), end)
    choice = args.get("range") or DEFAULT_PRESET
    if choice == "term":
        period = term_period()
        if period is None:
            raise ReportError("no_term", "还没有设置学期 / no term set")
        return choice, period
    if choice not in PRESETS:
        raise ReportError("unknown_range", f"range={choice!r}: 7, 30, term", value=choice)
    return choice, reports.last_days(int(choice))


def _period_args(period: Period) -> dict:
    return {"from": period.start.isoformat(), "to": period.end.isoformat()}


# ------------------------------------------------------------------ labels

def role_label(role: str) -> str:
    return _t("rep_role_" + role) if role in ("teacher", "student") else role


def kind_label(kind: str) -> str:
    return _t("kind_" + kind) if ("kind_" + kind) in i18n.MESSAGES else kind


def _packages(ids: list[str]) -> dict[str, str]:
    """The lesson package each part belongs to (id → package title), from the catalogue;
    a resource no longer in it just has no package."""
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        found.update(catalog().db.execute(
            "SELECT r.id, p.title FROM resources r JOIN resources p ON p.id = r.parent_id"
            f" WHERE r.id IN ({', '.join('?' * len(part))})", part).fetchall())
    return found


def _with_packages(rows: list[dict]) -> list[dict]:
    packages = _packages([r["resource"] for r in rows])
    for row in rows:
        row["package"] = packages.get(row["resource"], "")
    return rows


# ------------------------------------------------------------------ charts

def buckets(rows: list[dict], period: Period) -> tuple[str, list[tuple[str, dict]]]:
    """Day rows summed into what a chart can show: days up to two months, then weeks
    (from Monday), then months. Returns (unit, [(label, sums)])."""
    unit = "day" if period.days <= 62 else "week" if period.days <= 62 * 7 else "month"
    grouped: dict[date, dict] = {}
    for row in rows:
        day = date.fromisoformat(row["day"])
        start = (day if unit == "day" else max(period.start, day - timedelta(days=day.weekday()))
                 if unit == "week" else max(period.start, day.replace(day=1)))
        sums = grouped.setdefault(start, defaultdict(float))
        for name in ("views_started", "doc_opens", "exercises", "uses", "minutes"):
            sums[name] += row[name]
    label = (lambda d: f"{d.year}-{d.month:02d}") if unit == "month" else \
        (lambda d: f"{d.month}/{d.day}")
    return unit, [(label(start), sums) for start, sums in sorted(grouped.items())]


def days_chart(rows: list[dict], period: Period) -> str:
    unit, groups = buckets(rows, period)
    series = [(_t("rep_views_started"), [s["views_started"] for _, s in groups]),
              (_t("rep_doc_opens"), [s["doc_opens"] for _, s in groups]),
              (_t("rep_exercises"), [s["exercises"] for _, s in groups])]
    busiest = max(groups, key=lambda g: g[1]["uses"], default=None)
    total = {name: sum(values) for name, values in series}
    desc = _t("rep_days_desc", start=period.start.isoformat(), end=period.end.isoformat(),
              views=charts.number(total[series[0][0]]), docs=charts.number(total[series[1][0]]),
              exercises=charts.number(total[series[2][0]]))
    if busiest and busiest[1]["uses"]:
        desc += _t("rep_days_busiest", label=busiest[0], n=charts.number(busiest[1]["uses"]))
    return charts.column_chart("chart-days", _t("rep_chart_" + unit), desc,
                               [label for label, _ in groups], series,
                               empty_text=_t("rep_no_data"))


def subjects_chart(rows: list[dict]) -> str:
    uses: dict[str, float] = defaultdict(float)
    for row in rows:
        label = i18n.gloss(row["subject"], language()) if row["subject"] else _t("rep_unclassified")
        uses[label] += row["uses"]
    items = sorted(((s, n) for s, n in uses.items() if n), key=lambda i: (-i[1], i[0]))
    separator = "; " if language() == "en" else "；"
    desc = _t("rep_subjects_desc") + separator.join(f"{s} {charts.number(n)}" for s, n in items)
    return charts.bar_chart("chart-subjects", _t("rep_chart_subjects"), desc, items,
                            empty_text=_t("rep_no_data"))


# ------------------------------------------------------------------ views

def _page(status: int = 200, **values):
    values.setdefault("error", None)
    values.setdefault("term", term_period())
    values.setdefault("presets", PRESETS)
    return render_template("admin/reports.html", role_label=role_label, kind_label=kind_label,
                           csv_url=csv_url, svg_url=svg_url, **values), status


@bp.route("/")
@login_required
def page():
    try:
        choice, period = choose_period(request.args)
    except ReportError as error:
        return _page(400, error=_message(error), choice="custom", period=None,
                     form={"from": request.args.get("from", ""),
                           "to": request.args.get("to", "")})
    with context().usage.outbox() as outbox, reports.Report(outbox.db, period) as report:
        days, subjects, resources = report.by_day(), report.by_subject(), report.by_resource()
        data = {
            "total": report.total(), "days": days, "subjects": subjects,
            "resources": _with_packages(resources[:PAGE_RESOURCES]),
            "resource_count": len(resources), "missing": report.missing_searches(),
            "classes": report.by_class(), "roles": report.by_role(),
        }
    return _page(choice=choice, period=period, form=_period_args(period),
                 chart_days=days_chart(days, period), chart_subjects=subjects_chart(subjects),
                 page_missing=PAGE_MISSING, **data)


def _csv_cell(value) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value  # Excel would run it as a formula
    return value


def csv_columns(name: str) -> tuple[str, ...]:
    columns = COLUMNS[name]
    if name == "resources":  # the package a part belongs to, from the catalogue
        return columns[:1] + ("package",) + columns[1:]
    return columns


def csv_text(name: str, rows: list[dict]) -> str:
    """The CSV file's text: a byte-order mark, a header row, one line per row (CRLF)."""
    columns = csv_columns(name)
    out = io.StringIO()
    out.write("\ufeff")  # Excel on Windows reads UTF-8 only with it
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow([_t("rep_col_" + column) for column in columns])
    for row in rows:
        # Roles and kinds as the reader says them (老师, 微课视频); the rest as stored.
        if "role" in row:
            row = {**row, "role": role_label(row["role"])}
        if "kind" in row:
            row = {**row, "kind": kind_label(row["kind"])}
        writer.writerow([_csv_cell(row.get(column)) for column in columns])
    return out.getvalue()


def _plain_error(error: ReportError) -> Response:
    return Response(_message(error) + "\n", 400, mimetype="text/plain")


@bp.route("/<name>.csv")
@login_required
def csv_file(name: str):
    if name not in COLUMNS:
        abort(404)
    try:
        _, period = choose_period(request.args)
    except ReportError as error:
        return _plain_error(error)
    with context().usage.outbox() as outbox:
        rows = reports.report(outbox.db, name, period)
    if name == "resources":
        rows = _with_packages(rows)
    filename = f"shuqiao-{name}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    return Response(csv_text(name, rows).encode("utf-8"), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store"})


@bp.route("/<name>.svg")
@login_required
def svg_file(name: str):
    if name not in CHARTS:
        abort(404)
    try:
        _, period = choose_period(request.args)
    except ReportError as error:
        return _plain_error(error)
    with context().usage.outbox() as outbox:
        chart = (days_chart(reports.by_day(outbox.db, period), period) if name == "days"
                 else subjects_chart(reports.by_subject(outbox.db, period)))
    return Response(str(chart), mimetype="image/svg+xml", headers={"Cache-Control": "no-store"})


def csv_url(name: str, period: Period) -> str:
    return url_for("reports.csv_file", name=name, **_period_args(period))


def svg_url(name: str, period: Period) -> str:
    return url_for("reports.svg_file", name=name, **_period_args(period))
