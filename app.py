"""Shuqiao 书桥: composition root, command line, and serve() wiring.

``create_app`` builds the Flask app from a :class:`settings.Config`: it prepares the home
(directories, migrations, instance id, session key) and hands the kiosk the cache and
usage packages. Nothing heavy happens at import time, so ``shuqiao --help`` and the
server start fast.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import click

import settings
from settings import API_VERSION, VERSION

log = logging.getLogger("shuqiao")


class HomeError(click.ClickException):
    """The home directory cannot be used; the message says why and what to do."""


def prepare_home(home: Path) -> str:
    """Create the home if needed, check it is writable, return the instance id.

    The instance id (in ``instance.json``) identifies this appliance on the LAN (mDNS,
    /api/info) and upstream; it is made once and never changes.
    """
    from cache.store import atomic_write_bytes

    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as error:
        raise HomeError(f"cannot create the home directory {home}: {error.strerror}") from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise HomeError(f"the home directory {home} is not writable by this user")
    instance_file = home / "instance.json"
    if instance_file.is_file():
        return json.loads(instance_file.read_text())["id"]
    instance_id = uuid.uuid4().hex
    atomic_write_bytes(instance_file, json.dumps({"id": instance_id}).encode())
    return instance_id


def open_home(config: settings.Config):
    """Prepare the home and bring both databases up to date; returns (instance id, cache, usage)."""
    from cache import Cache
    from sync import Usage

    instance_id = prepare_home(config.home)
    cache, usage = Cache(config.home), Usage(config.home)
    cache.migrate()
    usage.migrate()
    return instance_id, cache, usage


def _session_key(home: Path) -> bytes:
    from cache.store import atomic_write_bytes

    key_file = home / "session.key"
    if not key_file.is_file():
        atomic_write_bytes(key_file, secrets.token_hex(32).encode(), mode=0o600)
    return key_file.read_bytes().strip()


def create_app(config: settings.Config | None = None):
    """Build the appliance's WSGI app for ``config`` (defaults: settings.load())."""
    from flask import Flask

    from kiosk import KioskContext, init_app
    from kiosk.security import AdminCredentials, new_setup_code

    config = config or settings.load()
    instance_id, cache, usage = open_home(config)

    app = Flask("shuqiao", root_path=str(Path(__file__).parent), static_folder=None)
    app.config.update(
        SECRET_KEY=_session_key(config.home),
        SESSION_COOKIE_NAME="shuqiao_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        # Uploads are the largest bodies; everything else is far smaller.
        MAX_CONTENT_LENGTH=(config.upload_max_mb + 1) * 1024 * 1024,
        JSON_AS_ASCII=False,
    )
    app.json.ensure_ascii = False
    ctx = KioskContext(config=config, cache=cache, usage=usage, instance_id=instance_id,
                       version=VERSION, api_version=API_VERSION)
    if not AdminCredentials(config.home / "admin.json").is_set():
        ctx.state["setup_code"] = new_setup_code()
    init_app(app, ctx)
    return app


# ----------------------------------------------------------------------------- CLI

def _load_config(home, **overrides) -> settings.Config:
    try:
        return settings.load(home=home, overrides=overrides)
    except settings.SettingsError as error:
        raise click.ClickException(str(error)) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


home_option = click.option("--home", type=click.Path(file_okay=False),
                           help="Data directory (default: SHUQIAO_HOME or the per-user data dir).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, prog_name="shuqiao")
def cli():
    """书桥 Shuqiao: an offline classroom library for the school LAN."""


@cli.command()
@home_option
@click.option("--host", help="Address to listen on (default 127.0.0.1; 0.0.0.0 for the LAN).")
@click.option("--port", type=int, help="Port (default 8080; 0 picks a free port).")
@click.option("--no-mdns", is_flag=True, help="Do not announce the server by mDNS.")
def serve(home, host, port, no_mdns):
    """Serve the library on the LAN until stopped (SIGTERM or Ctrl-C)."""
    config = _load_config(home, host=host, port=port, mdns=False if no_mdns else None)
    run_server(config)


def run_server(config: settings.Config) -> None:
    """Bind, announce, notify systemd, serve; on stop, unregister and close cleanly."""
    from kiosk.server import KioskServer, sd_notify, serve_forever

    _configure_logging(config.log_level)
    app = create_app(config)
    ctx = app.extensions["shuqiao"]
    try:
        server = KioskServer(app, host=config.host, port=config.port, threads=config.threads,
                             connection_limit=config.connection_limit,
                             send_buffer_bytes=config.send_buffer_bytes,
                             grace_seconds=config.shutdown_grace_seconds)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {config.host}:{config.port}: "
                                   f"{error.strerror}") from None
    server.install_signal_handlers()
    announcer = None
    background = _start_fetching(config, ctx)
    uploader = _start_uploader(config, ctx)

    def on_ready() -> None:
        nonlocal announcer
        click.echo(f"Serving on {server.url}")
        code = ctx.state.get("setup_code")
        if code:
            # Printed to the console and the log (journal under systemd): whoever sets
            # the admin password from another machine must be able to read it here.
            message = (f"首次设置码 / first-run setup code: {code}  "
                       f"(open {server.url}admin/setup to set the admin password)")
            click.echo(message)
            log.warning(message)
        sys.stdout.flush()
        if config.mdns:
            try:
                from kiosk.announce import Announcer

                announcer = Announcer(instance_id=ctx.instance_id,
                                      display_name=config.display_name, version=VERSION,
                                      port=server.port, bind_host=config.host,
                                      api_version=API_VERSION)
                announcer.start()
                ctx.state["addresses"] = announcer.addresses
            except Exception:  # the library still works without discovery
                log.exception("mDNS announcement failed; terminals must use the address")
        sd_notify("READY=1")

    try:
        serve_forever(server, on_ready)
    finally:
        if announcer is not None:
            announcer.stop()
        if uploader is not None:
            uploader.stop()
        for part in reversed(background):
            part.stop()
        _flush_blob_use(ctx)
        log.info("stopped")


def fetch_sources(config, instance_id: str | None = None):
    """How a file is fetched: ``sources_for(file) -> [Source…]``, the platform (or a plain
    mirror) for each file's source, and, when peer discovery runs, LAN peers first.

    Returns (sources_for, smartedu source, LanPeers or None).
    """
    from cache.fetcher import sources_by_name
    from cache.sources import smartedu
    from cache.sources.plain import PlainHTTPSource

    platform = smartedu.from_config(config)
    sources_for = sources_by_name({"smartedu": platform}, fallback=PlainHTTPSource())
    peers = None
    if instance_id is not None and config.peer_discovery and config.mdns:
        from cache.sources.peer import LanPeers

        peers = LanPeers.from_config(config, instance_id)
        sources_for = peers.sources_for(sources_for)
    return sources_for, platform, peers


def _start_fetching(config, ctx) -> list:
    """The fetch workers, the platform token's refresh loop and LAN peer discovery."""
    from cache.fetcher import FetchService, FetchServiceBusy
    from cache.sources.smartedu_auth import RefreshLoop

    started = []
    sources_for, platform, peers = fetch_sources(config, ctx.instance_id)
    if peers is not None:
        try:
            started.append(peers.start())
        except Exception:  # content still comes from the WAN without peers
            log.exception("LAN peer discovery failed to start")
            sources_for, platform, _ = fetch_sources(config)
    refresh = RefreshLoop(platform.tokens)
    refresh.start()
    started.append(refresh)
    service = FetchService.from_config(config, ctx.cache, sources_for)
    try:
        service.start()
    except FetchServiceBusy as error:
        log.warning("not fetching: %s", error)
        return started
    started.append(service)
    ctx.state["fetch_service"] = service
    ctx.state["budget"] = service.budget
    return started


def _flush_blob_use(ctx) -> None:
    """Write the last blob-use times (LRU eviction reads them) before exiting."""
    from cache import disk

    with ctx.cache.catalog() as catalog:
        disk.flush_touches(catalog.db)


def _start_uploader(config, ctx):
    """Usage records go upstream in the background whenever an LRS is configured."""
    if not config.lrs_url:
        return None
    from sync.upload import SyncError, Uploader

    try:
        uploader = Uploader(config, ctx.usage, budget=ctx.state.get("budget")).start()
    except SyncError as error:
        log.error("usage upload not started: %s", error)
        return None
    ctx.state["uploader"] = uploader
    return uploader


@cli.command()
@home_option
@click.option("--port", type=int, default=None, help="Port (default 8080; 0 picks a free port).")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--no-mdns", is_flag=True, help="Do not announce the server by mDNS.")
def demo(home, port, host, no_mdns):
    """Serve the built-in sample library (in a temporary home unless --home is given)."""
    import tempfile

    from cache.sample import load_sample_library

    temporary = None
    if home is None:
        temporary = tempfile.TemporaryDirectory(prefix="shuqiao-demo-")
        home = temporary.name
    config = _load_config(home, host=host, port=port, mdns=False if no_mdns else None)
    _, cache, _ = open_home(config)
    with cache.catalog() as catalog:
        ids = load_sample_library(catalog)
    click.echo(f"Sample library: {len(ids)} resources in {config.home}")
    try:
        run_server(config)
    finally:
        if temporary is not None:
            temporary.cleanup()


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--title", required=True, help="Title shown on the kiosk.")
@click.option("--stage", default="", help="学段, e.g. 小学.")
@click.option("--grade", default="", help="年级, e.g. 三年级.")
@click.option("--subject", default="", help="学科, e.g. 数学.")
@click.option("--edition", default="", help="版本, e.g. 人教版.")
@click.option("--volume", default="", help="册次, e.g. 上册.")
@click.option("--chapter", multiple=True, help="Chapter path, top first (repeat the option).")
@click.option("--kind", default=None, help="textbook, video, document, exercise, audio… "
                                           "(default: from the file type).")
@home_option
def add(file, title, stage, grade, subject, edition, volume, chapter, kind, home):
    """Add a local file (a teacher's own material) and print its resource id."""
    from cache import CatalogError

    config = _load_config(home)
    _, cache, _ = open_home(config)
    with cache.catalog() as catalog:
        try:
            rid = catalog.add_local_file(Path(file), title=title, kind=kind, stage=stage,
                                         grade=grade, subject=subject, edition=edition,
                                         volume=volume, chapter=list(chapter))
        except CatalogError as error:
            raise click.ClickException(str(error)) from None
    click.echo(rid)


@cli.command()
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def status(home, as_json):
    """Report health and counts; the exit code says what is wrong (0 = healthy)."""
    from cache import Cache
    from kiosk import health
    from sync import Usage

    config = _load_config(home)
    instance_file = config.home / "instance.json"
    instance_id = (json.loads(instance_file.read_text())["id"]
                   if instance_file.is_file() else None)
    report = health.collect(config, Cache(config.home), Usage(config.home), version=VERSION,
                            instance_id=instance_id)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        click.echo(f"shuqiao {VERSION}  home {report['home']}")
        if "catalog" in report:
            c = report["catalog"]
            click.echo(f"resources {c['resources']} (+{c['parts']} parts), files "
                       f"{c['files_cached']}/{c['files']} cached, "
                       f"{(c['bytes_cached'] or 0) / 1e6:.1f} MB")
            e = report["events"]
            click.echo(f"usage events {e['total']} ({e['pending']} pending)")
            d = report["machine"]["disk"]
            click.echo(f"disk {d['free'] / 1e9:.1f} GB free of {d['total'] / 1e9:.1f} GB")
        for message in report["problems"]:
            click.echo(f"problem: {message}", err=True)
        click.echo("healthy" if report["exit_code"] == 0 else "NOT healthy")
    sys.exit(report["exit_code"])


@cli.group()
def catalog():
    """The catalogue of resources the configured sources offer."""


@catalog.command("update")
@click.option("--source", "source_name", type=click.Choice(["smartedu"]), default="smartedu",
              show_default=True, help="Which source to sync.")
@home_option
def catalog_update(source_name, home):
    """Sync catalogue metadata (not the files) from the configured sources, incrementally."""
    from cache.sources import smartedu_catalog

    config = _load_config(home)
    open_home(config)
    sys.exit(smartedu_catalog.run_update(config, echo=click.echo))


@cli.command()
@click.argument("ids", nargs=-1, required=True)
@click.option("--wait", is_flag=True, help="Fetch now with a progress bar; exit 0 only when "
                                           "every file is cached and verified.")
@home_option
def fetch(ids, wait, home):
    """Queue every file of these resources at teacher priority (exit codes: README)."""
    from cache.fetcher import fetch_resources

    config = _load_config(home)
    open_home(config)
    sources_for, _, _ = fetch_sources(config)
    sys.exit(fetch_resources(config, list(ids), wait=wait, echo=click.echo,
                             sources_for=sources_for))


@cli.command()
@click.option("--weeks", type=click.IntRange(1, 26), default=3, show_default=True,
              help="How far ahead to plan.")
@click.option("--queue/--no-queue", default=True, show_default=True,
              help="Put the plan's missing files on the fetch queue (plan priority).")
@home_option
def plan(weeks, queue, home):
    """Print the prefetch plan: which lessons are due, how big, and when they will be ready."""
    from datetime import date, datetime

    from cache.budget import Budget
    from cache.plan import ProfileError, enqueue_plan, estimate_ready, make_plan
    from cache.queue import FetchQueue, Priority
    from kiosk import filesize

    config = _load_config(home)
    _, cache, _ = open_home(config)
    with cache.catalog() as catalog:
        try:
            items = make_plan(catalog.db, today=date.today(), horizon_days=weeks * 7)
        except ProfileError as error:
            raise click.ClickException(str(error)) from None
        fetch_queue = FetchQueue(catalog.db)
        ahead = sum(e["bytes_total"] or 0 for e in fetch_queue.status()["entries"])
        estimate_ready(items, datetime.now(), ahead, Budget.from_config(config).rate_at)
        if queue:
            enqueue_plan(items, lambda ids: fetch_queue.enqueue(ids, Priority.PLAN, "plan"))
    if not items:
        click.echo(f"未来 {weeks} 周没有排课 / nothing due in the next {weeks} weeks")
        return
    click.echo(f"{'日期 date':<12} {'班级 class':<14} {'课 lesson':<28} {'待下载 to fetch':>16}  "
               f"就绪 ready")
    for item in items:
        ready = ("已就绪 ready" if not item.bytes_missing else
                 item.ready_at.strftime("%m-%d %H:%M") if item.ready_at else "—")
        late = " ⚠ late" if item.ready_at and item.ready_at.date() > item.needed_by else ""
        click.echo(f"{item.needed_by.isoformat():<12} {item.school_class:<14} "
                   f"{(item.title + ' ' + item.lesson)[:28]:<28} "
                   f"{filesize(item.bytes_missing):>16}  {ready}{late}")
    total = sum(item.bytes_missing for item in items)
    click.echo(f"共 {len(items)} 课时，待下载 {filesize(total)} / {len(items)} lessons, "
               f"{filesize(total)} to fetch")


@cli.command("platform-token")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@home_option
def platform_token(source, home):
    """Store the national platform's login token pasted into SOURCE (a file, or - for stdin).

    The CLI twin of the admin page /admin/platform; prints the token's state.
    """
    from cache.sources import smartedu_auth

    config = _load_config(home)
    open_home(config)
    try:
        state = smartedu_auth.save_pasted_token(config, source.read())
    except smartedu_auth.TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{state['message_zh']} / {state['message_en']}")


@cli.command("sync-usage")
@click.option("--once", is_flag=True, help="One pass; exit 0 only when nothing is left pending.")
@home_option
def sync_usage(once, home):
    """Upload pending usage records to the Learning Record Store (lrs_url)."""
    from sync.upload import SyncError, Uploader, sync_once
    from sync.xapi import IdentityError

    config = _load_config(home)
    _, _, usage = open_home(config)
    try:
        if once:
            left = sync_once(config, usage, click.echo)
            sys.exit(0 if left == 0 else 1)
        uploader = Uploader(config, usage).start()
    except (SyncError, IdentityError) as error:
        raise click.ClickException(str(error)) from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        uploader.stop()


@cli.command("export-usage")
@click.argument("directory", type=click.Path(file_okay=False))
@home_option
def export_usage(directory, home):
    """Write undelivered usage records to DIRECTORY (a USB drive) for a connected appliance."""
    from sync.usb import UsbError, export_usage as export
    from sync.xapi import IdentityError

    config = _load_config(home)
    _, _, usage = open_home(config)
    try:
        export(config, usage, directory, click.echo)
    except (UsbError, IdentityError) as error:
        raise click.ClickException(str(error)) from None


@cli.command("import-usage")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@home_option
def import_usage(directory, home):
    """Forward usage records brought on a USB drive to this appliance's LRS (idempotent)."""
    from sync.usb import UsbError, import_usage as forward
    from sync.xapi import IdentityError

    config = _load_config(home)
    _, _, usage = open_home(config)
    try:
        result = forward(config, usage, directory, click.echo)
    except (UsbError, IdentityError) as error:
        raise click.ClickException(str(error)) from None
    sys.exit(0 if getattr(result, "pending_left", 0) == 0 else 1)


@contextmanager
def _progress_bar(label: str):
    """A click progress bar fed by ``progress(done_bytes, total_bytes)`` callbacks."""
    with click.progressbar(length=1, label=label, show_pos=False, show_percent=True,
                           file=sys.stderr) as bar:
        def update(done: int, total: int | None) -> None:
            bar.length = max(total or 1, 1)
            bar.update(max(0, done - bar.pos))
        yield update


@cli.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--select", multiple=True, help="all, a resource id, or filters such as "
              "grade=三年级,subject=数学 (repeatable; default: everything cached).")
@home_option
def export_pack(directory, select, home):
    """Write a signed pack feed of cached content to DIRECTORY (a USB drive, a web root)."""
    from cache import pack
    from cache.feed import FeedError

    config = _load_config(home)
    instance_id, _, _ = open_home(config)
    try:
        with _progress_bar("导出 / exporting") as progress:
            result = pack.run_export(config, instance_id, directory,
                                     pack.parse_select(select), progress=progress)
    except (FeedError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(pack.describe_export(result))


@cli.command("import")
@click.argument("location")
@home_option
def import_pack(location, home):
    """Import a signed pack feed from a directory (USB drive) or an http(s) URL.

    Every byte is checked against the signed manifest while it streams; a tampered feed is
    refused and nothing from it is stored.
    """
    from cache import pack
    from cache.feed import FeedError

    config = _load_config(home)
    open_home(config)
    try:
        with _progress_bar("导入 / importing") as progress:
            result = pack.run_import(config, location, progress=progress)
    except FeedError as error:
        raise click.ClickException(str(error)) from None
    click.echo(pack.describe_import(result))


@cli.command("feed-key")
@home_option
def feed_key(home):
    """Print this appliance's public feed-signing key, for other schools to trust."""
    from cache import pack

    config = _load_config(home)
    instance_id, _, _ = open_home(config)
    for line in pack.feed_key_lines(config, instance_id):
        click.echo(line)


@cli.group()
def profile():
    """The school profile (term, classes, timetable) behind curriculum-aware prefetch."""


@contextmanager
def _school_profile(home):
    """The school profile on a fresh connection; profile errors become clear CLI errors."""
    from cache.plan import Profile, ProfileError

    config = _load_config(home)
    _, cache, _ = open_home(config)
    with cache.catalog() as catalog:
        try:
            yield Profile(catalog.db)
        except ProfileError as error:
            raise click.ClickException(str(error)) from None


def _date(value: str):
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-09-01") from None


@profile.command("term")
@click.argument("start")
@click.argument("end")
@click.option("--name", default="", help="e.g. 2026秋季学期.")
@home_option
def profile_term(start, end, name, home):
    """Set the current term's first and last day (YYYY-MM-DD)."""
    with _school_profile(home) as school:
        school.set_term(_date(start), _date(end), name)
    click.echo(f"term {start} – {end} {name}".rstrip())


@profile.command("class")
@click.argument("name")
@click.option("--grade", required=True, help="年级, e.g. 三年级.")
@click.option("--subject", required=True, help="学科, e.g. 数学.")
@click.option("--edition", default="", help="版本, e.g. 人教版.")
@click.option("--volume", default="", help="册次, e.g. 上册.")
@click.option("--stage", default="", help="学段, e.g. 小学.")
@click.option("--periods", default="", help="Timetable: weekday:period pairs, e.g. 1:2,3:4.")
@click.option("--per-week", type=int, default=0, help="Lessons a week when there is no "
                                                       "timetable (0: spread over the term).")
@home_option
def profile_class(name, grade, subject, edition, volume, stage, periods, per_week, home):
    """Add or change a class: which textbook it learns and when."""
    from cache.plan import SchoolClass, parse_periods

    with _school_profile(home) as school:
        school.save_class(SchoolClass(name, grade, subject, edition, volume, stage,
                                      parse_periods(periods), per_week))
    click.echo(f"class {name}: {grade} {subject} {edition} {volume}".rstrip())


@profile.command("remove-class")
@click.argument("name")
@home_option
def profile_remove_class(name, home):
    """Remove a class from the profile."""
    with _school_profile(home) as school:
        if not school.remove_class(name):
            raise click.ClickException(f"no class named {name!r}")


@profile.command("show")
@home_option
def profile_show(home):
    """Print the term and the classes."""
    with _school_profile(home) as school:
        term = school.term()
        click.echo(f"term: {term.start} – {term.end} {term.name}".rstrip() if term
                   else "term: (not set)")
        for c in school.classes():
            when = (",".join(f"{d}:{p}" for d, p in c.periods) if c.periods
                    else f"{c.lessons_per_week}/week" if c.lessons_per_week else "spread")
            click.echo(f"class {c.name}: {c.stage} {c.grade} {c.subject} {c.edition} "
                       f"{c.volume} ({when})")


@cli.command("config")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show_config(home, as_json):
    """Print the effective settings and where each value came from."""
    config = _load_config(home)
    rows = config.describe()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        click.echo(f"{row['name']:<{width}}  {row['value']!s:<24}  ({row['source']})")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
