"""The JSON API on the LAN: info, health, resources, usage events.

Errors always have the shape ``{"ok": false, "error": …, "code": …, "status": …}``.
"""

from __future__ import annotations

import json
import platform

from flask import Blueprint, jsonify, request

from cache import is_resource_id, taxonomy
from sync import EventError, validate_events

from . import catalog, context, json_error

bp = Blueprint("api", __name__)

MAX_EVENT_BODY = 1024 * 1024
MAX_LIMIT = 200


def info_facts() -> dict:
    """The facts announced by mDNS TXT records, served as JSON too."""
    ctx = context()
    return {
        "name": ctx.config.display_name,
        "product": "shuqiao",
        "version": ctx.version,
        "id": ctx.instance_id,
        "api": ctx.api_version,
        "path": "/",
    }


@bp.route("/api/info")
def info():
    return jsonify(info_facts())


@bp.route("/healthz")
def healthz():
    # Cheap on purpose (load balancers, systemd checks and tests poll it): the database
    # answers a trivial query.
    catalog().db.execute("SELECT 1").fetchone()
    return jsonify({"ok": True, "version": context().version,
                    "python": platform.python_version()})


@bp.route("/api/resources")
def resources():
    args = request.args
    try:
        limit = int(args.get("limit", 50))
        offset = int(args.get("offset", 0))
    except ValueError:
        return json_error(400, "limit and offset must be whole numbers", "bad_parameter")
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        return json_error(400, f"limit must be 1-{MAX_LIMIT} and offset 0 or more",
                          "bad_parameter")
    q = args.get("q", "").strip()
    if len(q) > 100:
        return json_error(400, "q is longer than 100 characters", "bad_parameter")
    filters = {k: args[k] for k in taxonomy.LEVELS + ("kind",) if args.get(k)}
    rows, total = catalog().query(q=q, limit=limit, offset=offset, **filters)
    return jsonify({"total": total, "limit": limit, "offset": offset,
                    "resources": [_public(r) for r in rows]})


@bp.route("/api/resources/<rid>")
def resource(rid: str):
    if not is_resource_id(rid):
        return json_error(400, "resource id must be 32 lower-case hex characters", "bad_id")
    item = catalog().get(rid)
    if item is None:
        return json_error(404, "no such resource", "not_found")
    return jsonify(_public(item))


def _public(item: dict) -> dict:
    """A resource as the API shows it: upstream URLs and internal fields left out."""
    out = {k: item[k] for k in ("id", "kind", "title", "description", "stage", "grade",
                                "subject", "edition", "volume", "chapter", "lesson", "ready")
           if k in item}
    out["url"] = f"/r/{item['id']}"
    if "cover_url" in item:
        out["cover_url"] = item["cover_url"]
    if "files" in item:
        out["files"] = [{"role": f["role"], "mime": f["mime"], "name": f["name"],
                         "size": f["size"], "sha256": f["sha256"] if f["state"] == "cached" else None,
                         "state": f["state"], "cached": f["state"] == "cached",
                         "url": f["content_url"]} for f in item["files"]]
    if "lessons" in item:
        out["lessons"] = [{"lesson": lesson["lesson"],
                           "parts": [_public(p) for p in lesson["parts"]]}
                          for lesson in item["lessons"]]
    return out


@bp.route("/api/events", methods=["POST"])
def events():
    if request.content_length is None and "chunked" not in request.headers.get(
            "Transfer-Encoding", ""):
        return json_error(411, "send a Content-Length header", "length_required")
    if (request.content_length or 0) > MAX_EVENT_BODY:
        return json_error(413, f"body larger than {MAX_EVENT_BODY} bytes; send fewer events "
                               "per request", "too_large")
    raw = request.get_data(cache=False)
    if len(raw) > MAX_EVENT_BODY:
        return json_error(413, f"body larger than {MAX_EVENT_BODY} bytes", "too_large")
    if not request.mimetype == "application/json":
        return json_error(415, "send the events as application/json", "unsupported_media_type")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        return json_error(400, f"body is not valid JSON: {error}", "bad_json")
    ctx = context()
    try:
        batch = validate_events(body, ctx.config.event_batch_max)
    except EventError as error:
        return json_error(400, str(error), "invalid_event", problems=error.problems)
    # A search may name no resource; every other resource must be in the catalogue.
    # What the catalogue says of each goes with the events (their xAPI activity).
    named = {e["resource"] for e in batch if e["resource"]}
    activities = _activities(named)
    unknown = named - set(activities)
    if unknown:
        return json_error(400, "unknown resource(s): " + ", ".join(sorted(unknown)),
                          "unknown_resource")
    stored, duplicates = ctx.usage.record(batch, activities)
    return jsonify({"ok": True, "stored": stored, "duplicates": duplicates,
                    "ids": [e["id"] for e in batch]}), 201


def _activities(ids: set[str]) -> dict[str, dict]:
    """Catalogue facts of the resources events name, in one indexed query."""
    if not ids:
        return {}
    cursor = catalog().db.execute(
        "SELECT id, source, source_id, kind, title, stage, grade, subject FROM resources"
        f" WHERE id IN ({', '.join('?' for _ in ids)})", list(ids))
    names = [d[0] for d in cursor.description]
    return {row[0]: dict(zip(names[1:], row[1:])) for row in cursor.fetchall()}
