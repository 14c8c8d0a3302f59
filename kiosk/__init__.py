"""The web UI and HTTP API on the LAN, content serving and the mDNS announcement.

:func:`init_app` wires the kiosk into a Flask app built by ``app.create_app``: the
per-request catalogue connection, language choice, error pages in one shape per audience
(JSON for ``/api`` and ``/content``, friendly pages for people) and the security headers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, current_app, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from cache import Cache, Catalog
from sync import Usage

from . import i18n

# Pages: everything from our own origin, nothing inline, nothing from the internet.
# 'wasm-unsafe-eval' lets pdf.js decode JPEG 2000 images in WebAssembly (its worker obeys
# the CSP of its own response, which is this one); it does not allow JavaScript eval.
# media-src blob: is how hls.js hands Media Source Extensions buffers to <video>.
PAGE_CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
            "img-src 'self' data:; media-src 'self' blob:; font-src 'self'; connect-src 'self'; "
            "worker-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'self'")


@dataclass
class KioskContext:
    """What the kiosk needs from the composition root (``app.create_app``)."""

    config: Any  # settings.Config
    cache: Cache
    usage: Usage
    instance_id: str
    version: str
    api_version: str
    started_at: float = field(default_factory=time.time)
    state: dict = field(default_factory=dict)  # runtime facts: setup code, mDNS addresses…


def context() -> KioskContext:
    return current_app.extensions["shuqiao"]


def catalog() -> Catalog:
    """This request's catalogue (one connection per request, closed at teardown)."""
    if "catalog" not in g:
        g.catalog = context().cache.open_catalog()
    return g.catalog


def language() -> str:
    lang = request.args.get("lang") or request.cookies.get("lang")
    return lang if lang in i18n.LANGUAGES else context().config.language


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/content/", "/healthz", "/feed/"))


def json_error(status: int, message: str, code: str, **extra):
    """The one JSON error shape: ``{ok, error, code, status}`` (plus details, if any)."""
    response = jsonify({"ok": False, "error": message, "code": code, "status": status, **extra})
    response.status_code = status
    return response


def filesize(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def duration(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return (f"{days}d " if days else "") + f"{hours}h {minutes:02d}m"


def duration_short(seconds: float) -> str:
    """An ETA as a person says it: 3 分钟 / 2 小时 / 1 天 (English: 3 min, 2 h, 1 d)."""
    lang = language()
    seconds = max(0, int(seconds))
    for size, zh, en in ((86400, "天", "d"), (3600, "小时", "h"), (60, "分钟", "min")):
        if seconds >= size:
            n = round(seconds / size)
            return f"{n} {zh}" if lang != "en" else f"{n} {en}"
    return "1 分钟" if lang != "en" else "1 min"


def pager_args(args, page: int) -> str:
    """The current query string with ``page`` replaced (for pager links)."""
    return urlencode([(k, v) for k, v in args.items(multi=True) if k != "page"] + [("page", page)])


def lang_args(args, lang: str) -> str:
    """The current query string with ``lang`` replaced: switching language stays on the page."""
    return urlencode([(k, v) for k, v in args.items(multi=True) if k != "lang"] + [("lang", lang)])


def init_app(app: Flask, ctx: KioskContext) -> None:
    from . import admin, api, content, feed, fetching, pages, reports

    app.extensions["shuqiao"] = ctx
    app.template_folder = str(Path(__file__).parent / "templates")
    app.static_folder = str(Path(__file__).parent / "static")
    app.add_url_rule("/static/<path:filename>", endpoint="static",
                     view_func=app.send_static_file)
    # Browsers ask for /favicon.ico on their own; old ones ignore the SVG <link>.
    app.add_url_rule("/favicon.ico", endpoint="favicon",
                     view_func=lambda: app.send_static_file("favicon.svg"))
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(content.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(fetching.bp)
    app.register_blueprint(feed.bp)
    app.register_blueprint(reports.bp)

    @app.teardown_appcontext
    def close_catalog(exc) -> None:
        catalog_ = g.pop("catalog", None)
        if catalog_ is not None:
            catalog_.db.close()

    @app.context_processor
    def template_helpers() -> dict:
        lang = language()
        return {
            "lang": lang,
            "_": lambda key, **values: i18n.translate(key, lang, **values),
            "gloss": lambda value: i18n.gloss(value, lang),
            "ctx": context(),
            "other_lang": "en" if lang == "zh-CN" else "zh-CN",
        }

    app.add_template_filter(filesize)
    app.add_template_filter(duration)
    app.add_template_filter(pager_args)
    app.add_template_filter(duration_short)
    app.add_template_filter(lang_args)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if not request.path.startswith("/content/"):
            response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
            response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        if "lang" in request.args and request.args["lang"] in i18n.LANGUAGES:
            response.set_cookie("lang", request.args["lang"], max_age=365 * 86400,
                                samesite="Lax", httponly=True)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if wants_json():
            return json_error(error.code or 500, error.description or error.name,
                              error.name.lower().replace(" ", "_"))
        lang = language()
        if error.code == 404:
            title, message = (i18n.translate("page_not_found", lang),
                              i18n.translate("page_not_found_help", lang))
        else:
            title, message = i18n.translate("error_title", lang), error.description
        return render_template("error.html", title=title, message=message,
                               status=error.code), error.code
