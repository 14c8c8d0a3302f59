"""Fetch engine bench: goodput and waste over a thin, droppy link.

    .venv/bin/python bench/fetch.py [--mb 100] [--link-mbps 64] [--drops-per-100mb 10]
                                    [--workers 3] [--faulty]

Against the platform stand-in (``tests/standin``; ``--faulty`` uses the small
``tests/faulty_http.py`` server instead), whose bodies all pass one token bucket (the
school's WAN link) and which resets connections at random. Prints, per scenario:

- **goodput / cap**: bytes stored ÷ (elapsed × the cap). The cap is the link's rate, or the
  appliance's own budget when that is the narrower (target ≥ 0.95);
- **fetched / stored**: body bytes the server sent ÷ bytes stored (target ≤ 1.02 with 10
  drops per 100 MB). A drop is a TCP reset: what was in flight in the socket buffers is
  lost and counts as fetched.

The files are the stand-in's real-size textbook PDFs (4.7–150 MB; enough of them to make
``--mb``), fetched with ``Authorization: Bearer`` (the stand-in serves non-strict objects
to it) through a plain source with the stand-in's host map.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from cache import Cache, FileSpec  # noqa: E402
from cache.budget import Budget  # noqa: E402
from cache.fetcher import FetchService, sources_by_name  # noqa: E402
from cache.queue import FetchQueue  # noqa: E402
from cache.sources.plain import PlainHTTPSource  # noqa: E402

MB = 1024 * 1024


class StandinLink:
    """The stand-in with its textbooks as the upstream."""

    def __init__(self, want_bytes: int):
        from standin import Standin

        self.standin = Standin(captured_dir=None, small=False, lesson_books=1).__enter__()
        books = [b for b in self.standin.catalogue.textbooks
                 if b.has_pdf and not b.strict and b.storage == "mirrors"]
        books.sort(key=lambda b: (b.pdf_size > 30 * MB, b.pdf_size, b.id))
        self.books, total = [], 0
        for book in books:
            if total >= want_bytes:
                break
            self.books.append(book)
            total += book.pdf_size
        token = __import__("json").loads(
            __import__("json").loads(self.standin.token_json())["value"])["access_token"]
        self.source = PlainHTTPSource("smartedu", hosts=self.standin.hosts,
                                      headers={"Authorization": f"Bearer {token}"})

    def specs(self, limit=None):
        for book in self.books[:limit]:
            yield book.id, [FileSpec(role="pdf", mime="application/pdf", name=book.id + ".pdf",
                                     size=book.pdf_size, md5=book.pdf.md5,
                                     urls=tuple(book.pdf_urls))]

    def configure(self, rate: float | None, drop_every: int | None, range_on: bool = True):
        faults = self.standin.faults
        faults.reset()
        faults.rate_limit_bytes_per_s = rate
        faults.drop_every_bytes = drop_every
        faults.range_supported = range_on
        self.standin.clear_log()

    def sent(self) -> tuple[int, int]:
        self.standin.settle()
        entries = [e for e in self.standin.log if ".pdf" in e.path]
        return (sum(e.bytes_sent for e in entries),
                sum("drop" in (e.fault or "") for e in entries))

    def close(self):
        self.standin.__exit__(None, None, None)


class FaultyLink:
    """tests/faulty_http.py serving random files (no stand-in needed)."""

    def __init__(self, want_bytes: int):
        import os

        from faulty_http import FaultyServer

        count = max(1, want_bytes // (5 * MB))
        self.server = FaultyServer({f"/f{n}.pdf": b"%PDF-" + os.urandom(5 * MB - 5)
                                    for n in range(count)}).start()
        self.source = PlainHTTPSource("plain")

    def specs(self, limit=None):
        import hashlib

        for path, data in list(self.server.files.items())[:limit]:
            yield path, [FileSpec(role="pdf", mime="application/pdf", name=path[1:],
                                  size=len(data), md5=hashlib.md5(data).hexdigest(),
                                  urls=(self.server.url(path),))]

    def configure(self, rate, drop_every, range_on=True):
        f = self.server.faults
        f.rate, f.range = rate, range_on
        f.drops_per_mb = (MB / drop_every) if drop_every else 0.0
        self.server.body_bytes_sent = self.server.drops = 0
        self.server.log.clear()

    def sent(self):
        return self.server.body_bytes_sent, self.server.drops

    def close(self):
        self.server.stop()


def run(link, *, rate, drop_every, budget_rate, workers, range_on=True, limit=None) -> dict:
    link.configure(rate, drop_every, range_on)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(Path(tmp))
        cache.migrate()
        ids = []
        with cache.catalog() as catalog:
            for source_id, files in link.specs(limit):
                ids.append(catalog.upsert_resource(source=link.source.name, source_id=source_id,
                                                   kind="textbook", title=source_id, files=files))
        windows = f"00:00-24:00={int(budget_rate)}B" if budget_rate else ""
        service = FetchService(cache, sources_by_name({link.source.name: link.source}),
                               budget=Budget(windows), workers=workers, poll_seconds=0.05,
                               backoff_base=0.5)
        with service:
            started = time.monotonic()
            with cache.catalog() as catalog:
                queue = FetchQueue(catalog.db)
                queue.enqueue(ids)
                service.wake()
                while True:
                    states = [queue.resource_progress(r)["state"] for r in ids]
                    if all(s == "cached" for s in states):
                        break
                    if any(s == "failed" for s in states):
                        raise SystemExit(f"a fetch failed: {queue.status()['entries'][:3]}")
                    time.sleep(0.02)
            elapsed = time.monotonic() - started
        stored = sum(cache.store.size(d) for d in cache.store.digests())
        assert all(cache.store.verify(d) for d in cache.store.digests())
    sent, drops = link.sent()
    caps = [c for c in (rate, budget_rate) if c]
    cap = min(caps) if caps else None
    return {"stored": stored, "elapsed": elapsed, "sent": sent, "drops": drops,
            "goodput": stored / elapsed, "share": (stored / elapsed / cap) if cap else None,
            "ratio": sent / stored}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=100, help="MB to fetch per scenario")
    parser.add_argument("--link-mbps", type=float, default=64.0,
                        help="link cap in Mbit/s (64 keeps a 100 MB run near 13 s)")
    parser.add_argument("--drops-per-100mb", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--faulty", action="store_true", help="use tests/faulty_http.py")
    args = parser.parse_args()
    link_rate = args.link_mbps * 1e6 / 8
    drop_every = int(100 * MB / args.drops_per_100mb) if args.drops_per_100mb else None
    link = FaultyLink(args.mb * MB) if args.faulty else StandinLink(args.mb * MB)
    scenarios = [
        ("link cap, no drops", dict(rate=link_rate, drop_every=None, budget_rate=None)),
        (f"link cap, {args.drops_per_100mb:g} drops/100 MB",
         dict(rate=link_rate, drop_every=drop_every, budget_rate=None)),
        (f"budget {link_rate / 2 / MB:.1f} MB/s < link, drops",
         dict(rate=link_rate, drop_every=drop_every, budget_rate=link_rate / 2)),
        ("link cap, drops, 1 worker",
         dict(rate=link_rate, drop_every=drop_every, budget_rate=None, workers=1)),
        ("link cap, drops, no Range (restarts)",
         dict(rate=link_rate, drop_every=drop_every, budget_rate=None, range_on=False)),
    ]
    upstream = "faulty_http" if args.faulty else "stand-in"
    print(f"fetch bench: {upstream}, {args.mb} MB per scenario, link {args.link_mbps:g} Mbit/s "
          f"({link_rate / MB:.2f} MB/s), {args.workers} workers\n")
    print(f"{'scenario':40} {'stored MB':>9} {'s':>6} {'MB/s':>6} {'drops':>5} "
          f"{'goodput/cap':>11} {'fetched/stored':>14}")
    try:
        # Warm up (first connections, threads, the stand-in's first bodies): not measured.
        run(link, rate=link_rate, drop_every=None, budget_rate=None, workers=args.workers,
            limit=2)
        for name, options in scenarios:
            options.setdefault("workers", args.workers)
            r = run(link, **options)
            share = f"{r['share']:.3f}" if r["share"] else "-"
            print(f"{name:40} {r['stored'] / MB:9.1f} {r['elapsed']:6.1f} "
                  f"{r['goodput'] / MB:6.2f} {r['drops']:5d} {share:>11} {r['ratio']:14.4f}",
                  flush=True)
    finally:
        link.close()
    print("\ntargets: goodput/cap >= 0.95; fetched/stored <= 1.02 with 10 drops per 100 MB")


if __name__ == "__main__":
    main()
