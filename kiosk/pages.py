"""Kiosk pages for teachers and pupils: home tiles, taxonomy browsing, search, resources.

Every page is rendered on the server and works without JavaScript (old lab terminals,
strict school browsers); scripts only enhance it (the PDF viewer, usage events).
"""

from __future__ import annotations

import json

from flask import Blueprint, abort, render_template, request

from cache import is_resource_id, taxonomy

from . import catalog, context
from .fetching import resource_fetch_state

bp = Blueprint("pages", __name__)

PAGE_SIZE = 24


def _filters() -> dict[str, str]:
    return {level: request.args.get(level, "").strip() for level in taxonomy.LEVELS
            if request.args.get(level, "").strip()}


@bp.route("/")
def home():
    cat = catalog()
    stages = []
    for stage in cat.facet("stage"):
        stages.append({**stage, "grades": cat.facet("grade", stage=stage["value"])})
    return render_template("home.html", stages=stages, subjects=cat.facet("subject"),
                           counts=cat.counts())


@bp.route("/browse")
def browse():
    filters = _filters()
    cat = catalog()
    level = taxonomy.next_level(filters)
    tiles = cat.facet(level, **filters) if level else []
    page = max(1, request.args.get("page", 1, type=int) or 1)
    results, total = cat.query(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, **filters)
    crumbs = []
    for name in taxonomy.LEVELS:
        if name in filters:
            crumbs.append({"level": name, "value": filters[name],
                           "args": {k: filters[k] for k in taxonomy.LEVELS[
                               :taxonomy.LEVELS.index(name) + 1] if k in filters}})
    return render_template("browse.html", filters=filters, level=level, tiles=tiles,
                           results=results, total=total, page=page, page_size=PAGE_SIZE,
                           crumbs=crumbs)


@bp.route("/search")
def search():
    q = request.args.get("q", "").strip()[:100]
    page = max(1, request.args.get("page", 1, type=int) or 1)
    results, total = (catalog().query(q=q, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE,
                                      **_filters()) if q else ([], 0))
    return render_template("search.html", q=q, results=results, total=total, page=page,
                           page_size=PAGE_SIZE)


@bp.route("/r/<rid>")
def resource(rid: str):
    if not is_resource_id(rid):
        abort(404)
    cat = catalog()
    item = cat.get(rid)
    if item is None:
        abort(404)
    exercises = {}
    for part in [item] + [p for lesson in item["lessons"] for p in lesson["parts"]]:
        for f in part["files"]:
            if f["role"] == "exercise" and f["state"] == "cached":
                exercises[f["id"]] = _load_exercise(cat, f["sha256"])
    fetch = None if item["ready"] else resource_fetch_state(rid)
    return render_template("resource.html", item=item, exercises=exercises, fetch=fetch,
                           display_name=context().config.display_name)


def _load_exercise(cat, digest: str) -> dict | None:
    """An exercise file (our JSON format) for server-side rendering; None if unreadable."""
    try:
        with cat.store.open(digest) as f:
            data = json.loads(f.read(2 * 1024 * 1024))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        return None
    return data
