"""Daily-aggregate mode (``lrs_mode = "daily"``): one statement per resource, class and day.

For links too thin for raw events (a school with a few hundred KB a day over a metered
mobile link), events are summed per (day, resource, class) and only the sums go upstream:
typically a few dozen statements a day instead of thousands.

- The day is the appliance's local calendar day of the event's time (``at``).
- An event is aggregated once the appliance *received* it on an earlier day than today,
  so a day's statement is made after the day ends, whatever a terminal's clock says.
- An event that arrives after its day was aggregated (a terminal that was offline) makes
  a further statement for that day. Statement ids are uuid5 of the appliance, day,
  resource, class and the ids of the events summed, so each is stable (resends are
  no-ops) and never collides with an earlier one.
- The actor is the class as an identified Group (account homePage = the appliance IRI,
  name ``class:<label>``, or ``school`` when no class was set). No terminal ids go
  upstream in this mode.
- The summary is in ``result.extensions[<base>/xapi/extensions/daily]``:
  ``day, events, terminals, by_type, by_role, seconds`` (viewing time: per terminal the
  largest ``seconds`` of its view events, summed), ``completions, doc_opens,
  fetch_requests``, ``exercise {attempts, mean_score}``, ``rating {count, mean,
  histogram}``, ``comments`` (up to 20) and ``searches [{query, count, results}]`` (results:
  the most any of them found; 0 = searched but missing).

Events linked to a daily statement follow its state (delivered, handed-off…) like raw ones.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter, defaultdict
from datetime import date, datetime, time as dtime, timezone

from . import xapi
from .outbox import ACTIVITY_FIELDS, Outbox

MAX_COMMENTS = 20
MAX_QUERIES = 50


def local_day(iso_time: str) -> date:
    return datetime.fromisoformat(iso_time).astimezone().date()


def _rows(outbox: Outbox, today: date) -> list[dict]:
    # received_at is UTC ISO text in one format, so text order is time order.
    midnight = datetime.combine(today, dtime(0, 0)).astimezone(timezone.utc)
    cursor = outbox.db.execute(
        "SELECT e.*, a.source, a.source_id, a.kind, a.title, a.stage, a.grade, a.subject"
        " FROM events e LEFT JOIN activities a ON a.resource = e.resource"
        " WHERE e.statement_id IS NULL AND e.state = 'pending' AND e.received_at < ?"
        " ORDER BY e.seq", [midnight.isoformat(timespec="milliseconds")])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def compilable(outbox: Outbox, today: date | None = None) -> int:
    """Events that would be aggregated now (received before today)."""
    return len(_rows(outbox, today or datetime.now().astimezone().date()))


def summarise(day: date, events: list[dict]) -> dict:
    by_type = Counter(e["type"] for e in events)
    by_role = Counter(e["role"] for e in events)
    watched: dict[str, float] = defaultdict(float)
    scores, ratings, comments = [], Counter(), []
    searches: dict[str, dict] = {}
    for event in events:
        data = json.loads(event["data"] or "{}")
        if event["type"].startswith("view-"):
            watched[event["terminal"]] = max(watched[event["terminal"]],
                                             float(event["seconds"] or 0))
        elif event["type"] == "exercise":
            scores.append(data["score"])
        elif event["type"] == "rating":
            ratings[data["rating"]] += 1
            if data.get("comment") and len(comments) < MAX_COMMENTS:
                comments.append(data["comment"])
        elif event["type"] == "search":
            entry = searches.setdefault(data["query"], {"query": data["query"], "count": 0,
                                                        "results": 0})
            entry["count"] += 1
            entry["results"] = max(entry["results"], data["results"])
    summary = {
        "day": day.isoformat(), "events": len(events),
        "terminals": len({e["terminal"] for e in events}),
        "by_type": dict(sorted(by_type.items())), "by_role": dict(sorted(by_role.items())),
        "seconds": round(sum(watched.values()), 2),
        "completions": by_type.get("view-complete", 0),
        "doc_opens": by_type.get("doc-open", 0),
        "fetch_requests": by_type.get("fetch-request", 0),
    }
    if scores:
        summary["exercise"] = {"attempts": len(scores),
                               "mean_score": round(sum(scores) / len(scores), 2)}
    if ratings:
        count = sum(ratings.values())
        summary["rating"] = {"count": count,
                             "mean": round(sum(k * v for k, v in ratings.items()) / count, 2),
                             "histogram": {str(k): ratings[k] for k in sorted(ratings)}}
    if comments:
        summary["comments"] = comments
    if searches:
        ordered = sorted(searches.values(), key=lambda s: (-s["count"], s["query"]))
        summary["searches"] = ordered[:MAX_QUERIES]
    return summary


def daily_statement(identity: xapi.Identity, day: date, resource: str, class_label: str,
                    events: list[dict], info: dict | None) -> dict:
    digest = hashlib.sha256("\n".join(sorted(e["id"] for e in events)).encode()).hexdigest()
    sid = uuid.uuid5(xapi.NAMESPACE, f"{identity.instance_id}:daily:{day.isoformat()}:"
                                     f"{resource}:{class_label}:{digest[:32]}")
    summary = summarise(day, events)
    obj = (xapi.resource_activity(identity, resource, info) if resource
           else xapi.search_activity(identity))
    result = {"extensions": {identity.extension("daily"): summary}}
    if summary["seconds"]:
        result["duration"] = xapi.iso_duration(summary["seconds"])
    day_start = datetime.combine(day, dtime(0, 0)).astimezone()
    return {
        "id": str(sid),
        "actor": {"objectType": "Group",
                  "name": class_label or "全校 / whole school",
                  "account": {"homePage": identity.appliance_iri,
                              "name": f"class:{class_label}" if class_label else "school"}},
        "verb": xapi.verb("daily"),
        "object": obj,
        "result": result,
        "context": xapi.context(identity, class_label=class_label,
                                extra={identity.extension("day"): day.isoformat()}),
        "timestamp": day_start.isoformat(timespec="milliseconds"),
    }


def compile_daily(outbox: Outbox, identity: xapi.Identity, today: date | None = None) -> int:
    """Aggregate every event received before ``today``; returns statements made."""
    today = today or datetime.now().astimezone().date()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    infos: dict[str, dict] = {}
    for row in _rows(outbox, today):
        groups[(local_day(row["at"]), row["resource"], row["class"])].append(row)
        if row["resource"] and row.get("kind") is not None:
            infos[row["resource"]] = {k: row[k] for k in ACTIVITY_FIELDS if row.get(k)}
    statements, links = [], []
    for (day, resource, class_label), events in sorted(groups.items()):
        statement = daily_statement(identity, day, resource, class_label, events,
                                    infos.get(resource))
        statements.append((statement["id"], xapi.to_json(statement), "daily"))
        links.extend((statement["id"], e["id"]) for e in events)
    if statements:
        outbox.add_statements(statements, links)
    return len(statements)
