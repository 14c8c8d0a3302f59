"""The admin area: first-run password, login, health page, uploading a teacher's file."""

from __future__ import annotations

import functools
import time

from flask import (Blueprint, abort, jsonify, redirect, render_template, request, session,
                   url_for)

from cache import CatalogError
from cache.db import RESOURCE_KINDS
from cache.store import BlobError

from . import catalog, context, health, i18n, language
from .security import (AdminCredentials, FailureLimiter, csrf_token, csrf_valid,
                       is_local_request, setup_code_matches)

bp = Blueprint("admin", __name__, url_prefix="/admin")

SESSION_SECONDS = 12 * 3600
UPLOAD_KINDS = ("document", "video", "audio", "courseware", "lesson_plan", "task_sheet",
                "exercise", "textbook", "image")


def _t(key: str, **values) -> str:
    return i18n.translate(key, language(), **values)


def credentials() -> AdminCredentials:
    return AdminCredentials(context().config.home / "admin.json")


def limiter() -> FailureLimiter:
    state = context().state
    if "login_limiter" not in state:
        state["login_limiter"] = FailureLimiter(context().config.login_attempts)
    return state["login_limiter"]


def logged_in() -> bool:
    return bool(session.get("admin")) and time.time() - session.get("login_at", 0) < SESSION_SECONDS


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not credentials().is_set():
            return redirect(url_for("admin.setup"))
        if not logged_in():
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)
    return wrapped


@bp.before_request
def check_csrf():
    if request.method == "POST" and not csrf_valid():
        abort(400, description=_t("csrf_failed"))


@bp.app_context_processor
def admin_helpers() -> dict:
    return {"csrf_token": csrf_token, "admin_logged_in": logged_in()}


def _start_session() -> None:
    session.clear()
    session["admin"] = True
    session["login_at"] = time.time()
    session.permanent = False
    csrf_token()


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    if credentials().is_set():
        return render_template("admin/message.html", message=_t("already_set_up")), 409
    local = is_local_request()
    error = None
    if request.method == "POST":
        key = "setup:" + (request.remote_addr or "?")
        wait = limiter().retry_after(key)
        if wait:
            return render_template("admin/setup.html", local=local,
                                   error=_t("login_locked", minutes=wait // 60 + 1)), 429
        password = request.form.get("password", "")
        if not local and not setup_code_matches(request.form.get("setup_code", ""),
                                                context().state.get("setup_code")):
            limiter().fail(key)
            error = _t("setup_code_wrong")
        elif len(password) < 8:
            error = _t("password_short")
        elif password != request.form.get("password_again", ""):
            error = _t("password_mismatch")
        else:
            credentials().set(password)
            context().state.pop("setup_code", None)  # one-time: spent
            _start_session()
            return redirect(url_for("admin.dashboard"))
        return render_template("admin/setup.html", local=local, error=error), 400
    return render_template("admin/setup.html", local=local, error=None)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not credentials().is_set():
        return redirect(url_for("admin.setup"))
    if request.method == "POST":
        key = "login:" + (request.remote_addr or "?")
        wait = limiter().retry_after(key)
        if wait:
            response = render_template("admin/login.html",
                                       error=_t("login_locked", minutes=wait // 60 + 1))
            return response, 429, {"Retry-After": str(wait)}
        if credentials().check(request.form.get("password", "")):
            limiter().reset(key)
            _start_session()
            target = request.args.get("next", "")
            # Only our own admin pages: never an open redirect.
            return redirect(target if target.startswith("/admin/") else url_for("admin.dashboard"))
        limiter().fail(key)
        return render_template("admin/login.html", error=_t("login_failed")), 401
    return render_template("admin/login.html", error=None)


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for("pages.home"))


@bp.route("/")
@login_required
def dashboard():
    ctx = context()
    report = health.collect(ctx.config, ctx.cache, ctx.usage, version=ctx.version,
                            instance_id=ctx.instance_id, started_at=ctx.started_at, deep=False)
    return render_template("admin/dashboard.html", report=report, usage=ctx.usage.report(),
                           addresses=ctx.state.get("addresses", []))


def queue_report() -> dict:
    """The fetch queue page's facts: queue, alerts, budget, disk, platform login."""
    from cache.queue import FetchQueue
    from cache.sources import smartedu_auth

    ctx = context()
    report = FetchQueue(catalog().db).status()  # entries name their lesson package too
    service = ctx.state.get("fetch_service")
    budget = getattr(service, "budget", None)
    report["budget"] = budget.state() if budget is not None else None
    report["rate"] = service.rate() if service is not None and hasattr(service, "rate") else None
    report["disk"] = health.machine(ctx.config.home)["disk"]
    report["token"] = smartedu_auth.token_state(ctx.config)
    return report


@bp.route("/queue")
@login_required
def queue():
    return render_template("admin/queue.html", report=queue_report())


@bp.route("/queue.json")
@login_required
def queue_json():
    return jsonify(queue_report())


@bp.route("/platform", methods=["GET", "POST"])
@login_required
def platform():
    """Paste the national platform's login token (the admin logs in there by hand, once)."""
    from cache.sources import smartedu_auth

    config = context().config
    error = None
    if request.method == "POST":
        try:
            smartedu_auth.save_pasted_token(config, request.form.get("token", ""))
        except smartedu_auth.TokenError as problem:
            error = str(problem)
        else:
            return redirect(url_for("admin.platform"))
    status = 400 if error else 200
    return render_template("admin/platform.html", token=smartedu_auth.token_state(config),
                           error=error), status


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile():
    """The school profile (term, classes, timetable) behind curriculum-aware prefetch."""
    from datetime import date

    from cache.plan import Profile, ProfileError, SchoolClass, parse_periods

    school = Profile(catalog().db)
    error = None
    if request.method == "POST":
        form = request.form
        try:
            action = form.get("action")
            if action == "term":
                try:
                    start, end = (date.fromisoformat(form.get("start", "")),
                                  date.fromisoformat(form.get("end", "")))
                except ValueError:
                    raise ProfileError("日期格式应为 2026-09-01 / dates look like 2026-09-01")
                school.set_term(start, end, form.get("name", "").strip())
            elif action == "class":
                school.save_class(SchoolClass(
                    form.get("name", "").strip(), form.get("grade", "").strip(),
                    form.get("subject", "").strip(), form.get("edition", "").strip(),
                    form.get("volume", "").strip(), form.get("stage", "").strip(),
                    parse_periods(form.get("periods", "")),
                    int(form.get("per_week") or 0)))
            elif action == "remove":
                school.remove_class(form.get("name", ""))
            else:
                raise ProfileError("unknown action")
        except (ProfileError, ValueError) as problem:
            error = str(problem)
        else:
            return redirect(url_for("admin.profile"))
    return render_template("admin/profile.html", term=school.term(), classes=school.classes(),
                           error=error), 400 if error else 200


@bp.route("/upload", methods=["GET", "POST"])
@login_required
def upload():
    ctx = context()
    form = request.form
    if request.method == "GET":
        return render_template("admin/upload.html", kinds=UPLOAD_KINDS, error=None, done=None)

    def fail(message: str, status: int = 400):
        return render_template("admin/upload.html", kinds=UPLOAD_KINDS, error=message,
                               done=None), status

    uploaded = request.files.get("file")
    if uploaded is None or not uploaded.filename:
        return fail(_t("upload_no_file"))
    kind = form.get("kind") or None
    if kind is not None and kind not in RESOURCE_KINDS:
        return fail(f"unknown kind {kind!r}")
    free_mb = health.machine(ctx.config.home)["disk"]["free"] // (1024 * 1024)
    if free_mb < ctx.config.disk_reserve_mb:
        return fail(_t("disk_low"), 507)
    cat = catalog()
    try:
        rid = cat.add_uploaded(
            uploaded.stream, name=uploaded.filename, title=form.get("title", ""), kind=kind,
            max_bytes=ctx.config.upload_max_mb * 1024 * 1024,
            **{k: form.get(k, "").strip() for k in ("stage", "grade", "subject", "edition",
                                                      "volume", "description")})
    except BlobError:
        return fail(_t("upload_too_big", mb=ctx.config.upload_max_mb), 413)
    except CatalogError as error:
        return fail(str(error))
    item = cat.get(rid)
    return render_template("admin/upload.html", kinds=UPLOAD_KINDS, error=None, done=item), 201
