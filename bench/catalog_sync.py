"""Catalogue sync benchmark: time and peak memory of ``shuqiao catalog update`` against the
platform stand-in with the full catalogue (~3,800 e-textbooks, 2,400 course books).

The stand-in runs in this process; the sync runs in a child process (this script with
``--child``) so its peak memory (``ru_maxrss``) is the sync's alone. Three syncs on one
home: the full first one, a second with nothing changed (only the version files should be
fetched), and a third after one book changed upstream.

    .venv/bin/python bench/catalog_sync.py                  # 300 course books with lessons
    .venv/bin/python bench/catalog_sync.py --lesson-books 0     # all 2,400 (stand-in: GBs)
    .venv/bin/python bench/catalog_sync.py --quick          # small stand-in, a smoke run

Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
CAPTURED = ROOT.parent / "shared" / "data" / "smartedu-captured"


def child(home: str, hosts: str) -> None:
    """Run one sync and print a JSON line with its figures."""
    import settings
    from cache import Cache
    from cache.sources.smartedu_catalog import update

    config = settings.load(home=home, overrides={"smartedu_hosts": hosts}, environ={})
    cache = Cache(config.home)
    cache.home.mkdir(parents=True, exist_ok=True)
    cache.migrate()
    started = time.monotonic()
    with cache.catalog() as catalog:
        summary = update(config, catalog, echo=lambda line: None)
        counts = catalog.counts()
    seconds = time.monotonic() - started
    peak_kb = peak_rss_kb()
    print(json.dumps({"seconds": round(seconds, 2), "peak_mb": round(peak_kb / 1024, 1),
                      "requests": summary["requests"], "ok": summary["ok"],
                      "modules": {k: {f: v[f] for f in ("seen", "written", "skipped",
                                                        "unavailable", "unchanged")}
                                  | {"errors": len(v["errors"])}
                                  for k, v in summary["modules"].items()},
                      "counts": counts}))


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that over
    exec from the parent that forked us (the stand-in, hundreds of MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child(home: Path, hosts: dict) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(home), json.dumps(hosts)],
        check=True, capture_output=True, text=True, cwd=str(ROOT)).stdout
    return json.loads(output.strip().splitlines()[-1])


def baseline_mb() -> float:
    """Peak RSS of a child that only imports what the sync imports (the floor)."""
    code = ("import settings, cache, requests, sys; sys.path.insert(0, 'bench'); "
            "from cache.sources import smartedu_catalog; from catalog_sync import peak_rss_kb; "
            "print(peak_rss_kb())")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=str(ROOT)).stdout
    return int(out.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small stand-in (smoke run)")
    parser.add_argument("--lesson-books", type=int, default=300,
                        help="course books that have lessons, 6 each (default 300; every "
                             "course book is synced either way). 0 = all 2,400: the stand-in "
                             "then holds every rendition's segment table, several GB")
    parser.add_argument("--child", nargs=2, metavar=("HOME", "HOSTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from standin import Standin

    captured = CAPTURED if CAPTURED.is_dir() and not args.quick else None
    options = {"captured_dir": captured, "small": args.quick}
    if args.lesson_books and not args.quick:
        options["lesson_books"] = args.lesson_books
    print(f"stand-in: {'captured data' if captured else 'generated'}, "
          f"{'small' if args.quick else 'full'} catalogue")
    with Standin(**options) as standin, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        print(f"import floor (python + modules): {baseline_mb():.1f} MB peak RSS")
        for label in ("first sync (full)", "second sync (nothing changed)"):
            result = run_child(home, standin.hosts)
            _print(label, result)
        book = next(b for b in standin.catalogue.textbooks if b.has_pdf)
        standin.touch_textbook(book.id)
        _print("third sync (one book changed)", run_child(home, standin.hosts))
        db = home / "catalog.db"
        print(f"catalog.db: {db.stat().st_size / 1e6:.1f} MB "
              f"(+ WAL {Path(str(db) + '-wal').stat().st_size / 1e6 if Path(str(db) + '-wal').exists() else 0:.1f} MB)")


def _print(label: str, result: dict) -> None:
    modules = ", ".join(f"{name}: {m['seen']} seen / {m['written']} written / "
                        f"{m['skipped']} unchanged / {m['unavailable']} unavailable"
                        + (" (module unchanged)" if m["unchanged"] else "")
                        + (f" / {m['errors']} errors" if m["errors"] else "")
                        for name, m in result["modules"].items())
    print(f"{label}: {result['seconds']} s, peak RSS {result['peak_mb']} MB, "
          f"{result['requests']} requests; {modules}")
    counts = result["counts"]
    print(f"    catalogue: {counts['resources']} resources, {counts['parts']} parts, "
          f"{counts['files']} files")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
