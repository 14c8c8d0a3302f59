"""Health of the appliance: one function behind the admin health page and ``shuqiao status``.

``status`` exit codes (documented in the README):

== ===========================================================
0  healthy
3  the home is not initialised (no catalog.db): run serve or demo
4  a database failed its integrity check or cannot be opened
5  free disk space is below ``disk_reserve_mb``
6  a cached file's blob is missing from the store
== ===========================================================
"""

from __future__ import annotations

import platform
import sqlite3
import time
from importlib import metadata

import psutil

EXIT_OK = 0
EXIT_NOT_INITIALISED = 3
EXIT_DATABASE = 4
EXIT_DISK_LOW = 5
EXIT_BLOBS_MISSING = 6


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for package in ("flask", "waitress", "sqlite-utils", "zeroconf", "psutil", "requests"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "?"
    return found


def machine(home, started_at: float | None = None) -> dict:
    """Disk, memory, CPU and uptime, from psutil."""
    disk = psutil.disk_usage(str(home))
    memory = psutil.virtual_memory()
    process = psutil.Process()
    with process.oneshot():
        rss = process.memory_info().rss
        created = process.create_time()
        cpu_times = process.cpu_times()
    return {
        "disk": {"total": disk.total, "used": disk.used, "free": disk.free,
                 "percent": disk.percent},
        "memory": {"total": memory.total, "available": memory.available,
                   "percent": memory.percent, "process_rss": rss},
        "cpu": {"count": psutil.cpu_count(), "percent": psutil.cpu_percent(interval=None),
                "load": list(psutil.getloadavg()),
                "process_seconds": round(cpu_times.user + cpu_times.system, 2)},
        "uptime": {"process_seconds": round(time.time() - (started_at or created)),
                   "system_seconds": round(time.time() - psutil.boot_time())},
    }


def _integrity(path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        conn.close()


def collect(config, cache, usage, *, version: str, instance_id: str | None,
            started_at: float | None = None, deep: bool = True) -> dict:
    """Everything ``status`` reports, with ``exit_code`` and the ``problems`` found.

    Reads only: it never creates the home or a database. ``deep`` also re-checks that
    every cached file's blob exists (a stat per blob, no hashing).
    """
    report = {"version": version, "instance_id": instance_id, "home": str(config.home),
              "problems": [], "exit_code": EXIT_OK}

    def problem(code: int, message: str) -> None:
        report["problems"].append(message)
        if report["exit_code"] == EXIT_OK:
            report["exit_code"] = code

    if not cache.db_path.is_file():
        problem(EXIT_NOT_INITIALISED, f"no catalogue in {config.home}: run `shuqiao serve` "
                                      "or `shuqiao demo` once to initialise it")
        return report
    report["machine"] = machine(config.home, started_at)
    report["versions"] = versions()
    for name, path in (("catalog.db", cache.db_path), ("usage.db", usage.db_path)):
        try:
            result = _integrity(path) if path.is_file() else "missing"
        except sqlite3.Error as error:
            result = str(error)
        report.setdefault("databases", {})[name] = result
        if result != "ok":
            problem(EXIT_DATABASE, f"{name}: {result}")
    if report["exit_code"] == EXIT_DATABASE:
        return report
    with cache.catalog() as catalog:
        report["catalog"] = catalog.counts()
        report["migrations"] = [m for m in cache.applied_migrations()]
        if deep:
            missing = [d for d in catalog.cached_digests() if not cache.store.has(d)]
            report["catalog"]["blobs_missing"] = len(missing)
    with usage.outbox() as outbox:
        report["events"] = outbox.counts()
    free_mb = report["machine"]["disk"]["free"] // (1024 * 1024)
    if free_mb < config.disk_reserve_mb:
        problem(EXIT_DISK_LOW, f"only {free_mb} MB free, below disk_reserve_mb "
                               f"({config.disk_reserve_mb} MB)")
    if deep and report["catalog"]["blobs_missing"]:
        problem(EXIT_BLOBS_MISSING, f"{report['catalog']['blobs_missing']} cached file(s) have "
                                    "no blob in the store")
    return report
