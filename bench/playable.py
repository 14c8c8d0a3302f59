"""From a teacher's 获取 to a playable lesson video, over a 10 Mbit/s link.

    .venv/bin/python bench/playable.py [--link-mbps 10]

A fresh appliance syncs the 课程教学 catalogue of the platform stand-in (``tests/standin``,
realistic sizes: a 720p micro-lesson is ~45 MB of AES-128 HLS), the token is pasted, and a
teacher asks for one lesson's video at teacher priority. Printed: seconds until the
rendition is cached (key handshake, every segment decrypted, the local playlist written) —
i.e. until a terminal can play it with no platform contact — next to the pure transfer
time of its bytes at the link rate, so the overhead is visible.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import settings  # noqa: E402
from cache import Cache  # noqa: E402
from cache.fetcher import FetchService, sources_by_name  # noqa: E402
from cache.queue import FetchQueue  # noqa: E402
from cache.sources import smartedu, smartedu_auth  # noqa: E402
from cache.sources.smartedu_catalog import update  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--link-mbps", type=float, default=10.0)
    args = parser.parse_args()
    from standin import Standin

    with Standin(captured_dir=None, small=False, lesson_books=1) as platform, \
            tempfile.TemporaryDirectory(prefix="shuqiao-bench-") as home:
        config = settings.load(home=home, environ={}, overrides={
            "smartedu_hosts": platform.hosts, "smartedu_modules": "national_lesson",
            "mdns": False})
        cache = Cache(Path(home))
        cache.migrate()
        started = time.monotonic()
        with cache.catalog() as catalog:
            update(config, catalog, echo=lambda line: None)
        synced = time.monotonic() - started
        smartedu_auth.save_pasted_token(config, platform.token_json())
        lesson = next(l for l in platform.catalogue.lessons.values()
                      if not l.elite and l.videos and not any(s.strict for s in l.resources))
        video = lesson.videos[0]
        rendition = video.rendition("href-720p-m3u8")
        with cache.catalog() as catalog:
            file_id = catalog.db.execute(
                "SELECT f.id FROM files f JOIN resources r ON r.id = f.resource_id "
                "JOIN resources p ON p.id = r.parent_id WHERE p.source_id = ? "
                "AND f.role = 'video' ORDER BY r.position LIMIT 1", [lesson.id]).fetchone()[0]
        platform.faults.rate_limit_bytes_per_s = int(args.link_mbps * 1e6 / 8)
        source = smartedu.from_config(config)
        with FetchService(cache, sources_by_name({"smartedu": source}), workers=3) as service:
            asked = time.monotonic()
            service.enqueue([file_id])
            while True:
                with cache.catalog() as catalog:
                    state = FetchQueue(catalog.db).progress(file_id)["state"]
                if state == "cached":
                    break
                if state in ("failed", "held"):
                    sys.exit(f"the fetch stopped: {state}")
                time.sleep(0.2)
            playable = time.monotonic() - asked
        size = rendition.total_size
        ideal = size * 8 / (args.link_mbps * 1e6)
        print(f"catalogue sync (课程教学, {len(platform.catalogue.lessons)} lessons): "
              f"{synced:.1f} s")
        print(f"{'link':>10} {'video (720p)':>14} {'request → playable':>20} "
              f"{'bytes at link rate':>20} {'overhead':>9}")
        print(f"{args.link_mbps:>6.0f} Mb/s {size / 1e6:>11.1f} MB {playable:>18.1f} s "
              f"{ideal:>18.1f} s {playable / ideal - 1:>8.1%}")


if __name__ == "__main__":
    main()
