"""The 获取 (fetch) button on resources that are not on the appliance yet, and the admin's
view of the fetch queue.

A request puts every missing file of the resource (and of its parts) on the queue at teacher
priority; any number of terminals asking for the same thing share one upstream fetch (the
queue keys on the file). Pages poll ``GET /api/resources/<id>/fetch`` every few seconds by
short polling: no long-held connections, waitress threads are precious (DESIGN.md).
"""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, redirect, request, url_for

from cache import is_resource_id
from cache.queue import FetchQueue, Priority, QueueError

from . import catalog, context, i18n, json_error, language
from .security import csrf_valid

bp = Blueprint("fetching", __name__)


def _eta():
    """The running fetch service's ETA estimator (bytes → seconds), if one is running."""
    service = context().state.get("fetch_service")
    return getattr(service, "eta_seconds", None)


def resource_fetch_state(rid: str) -> dict:
    """What the 获取 button shows: state, files, bytes, queue position, ETA, errors."""
    return FetchQueue(catalog().db).resource_progress(rid, eta=_eta())


def _enqueue(rid: str) -> dict:
    queue = FetchQueue(catalog().db)
    queue.enqueue([rid], priority=Priority.TEACHER, requested_by="kiosk")
    return queue.resource_progress(rid, eta=_eta())


@bp.route("/api/resources/<rid>/fetch", methods=["GET", "POST"])
def api_fetch(rid: str):
    if not is_resource_id(rid):
        return json_error(400, "resource id must be 32 lower-case hex characters", "bad_id")
    if catalog().get(rid) is None:
        return json_error(404, "no such resource", "not_found")
    if request.method == "GET":
        return jsonify(resource_fetch_state(rid))
    # Same-origin pages send the session's CSRF token in a header.
    if not csrf_valid(request.headers.get("X-CSRF-Token", "")):
        return json_error(400, i18n.translate("csrf_failed", language()), "csrf")
    try:
        return jsonify(_enqueue(rid)), 202
    except QueueError as error:
        return json_error(400, str(error), "nothing_to_fetch")


@bp.route("/r/<rid>/fetch", methods=["POST"])
def page_fetch(rid: str):
    """The same request from the plain form (pages work without JavaScript)."""
    if not is_resource_id(rid) or catalog().get(rid) is None:
        abort(404)
    if not csrf_valid():
        abort(400, description=i18n.translate("csrf_failed", language()))
    try:
        _enqueue(rid)
    except QueueError as error:
        abort(400, description=str(error))
    return redirect(url_for("pages.resource", rid=rid) + "#fetch")
