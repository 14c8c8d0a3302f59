"""Reports benchmark: how long the admin reports take on a big school's usage.db.

Fills a fresh usage.db (through :meth:`sync.outbox.Outbox.record`, in arrival order as on
an appliance) with ``--events`` events spread evenly over the last year: every type, 2,000
resources over six grades and four subjects, 60 terminals, three classes, searches of
3,000 different words of which two in three found nothing. Then times, for the last 7, 30
and 365 days, each report alone (what one CSV download costs) and the page's
:class:`sync.reports.Report` (all seven tables from one read of the events).

Minutes watched come from viewings grouped per terminal and resource; here every view
event picks its resource at random, which makes nearly every event its own viewing: the
worst case for that step.

    .venv/bin/python bench/reports.py                    # 500,000 events, ~40 s
    .venv/bin/python bench/reports.py --events 60000     # a small rural school's year

Prints figures; never asserts on timing.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sync import Usage, reports  # noqa: E402

TYPES = ("view-start", "view-progress", "view-complete", "doc-open", "exercise", "rating",
         "search")


def fill(usage: Usage, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    resources = [uuid.uuid4().hex for _ in range(2000)]
    facts = {rid: {"title": f"资源 {i}", "kind": "video", "stage": "小学",
                   "grade": rng.choice(["一年级", "二年级", "三年级", "四年级", "五年级", "六年级"]),
                   "subject": rng.choice(["语文", "数学", "英语", "科学"])}
             for i, rid in enumerate(resources)}
    now = datetime.now(timezone.utc)
    with usage.outbox() as outbox:
        batch: list[dict] = []
        for i in range(count):
            kind = rng.choice(TYPES)
            rid = rng.choice(resources)
            data: dict = {}
            if kind == "exercise":
                data = {"score": rng.randint(0, 100)}
            elif kind == "rating":
                data = {"rating": rng.randint(1, 5)}
            elif kind == "search":
                data = {"query": f"词{rng.randint(0, 3000)}", "results": rng.choice([0, 0, 3])}
                rid = ""
            at = now - timedelta(seconds=(count - i) * 365 * 86400 / count)
            batch.append({
                "id": str(uuid.uuid4()), "type": kind, "resource": rid,
                "terminal": f"t{rng.randint(0, 59)}", "role": rng.choice(["student", "teacher"]),
                "at": at.isoformat(timespec="milliseconds"), "class": rng.choice(
                    ["三年级一班", "四年级二班", ""]),
                "seconds": float(rng.randint(0, 600)) if kind.startswith("view") else 0.0,
                "data": data})
            if len(batch) == 20000 or i == count - 1:
                named = {e["resource"] for e in batch if e["resource"]}
                outbox.record(batch, {rid: facts[rid] for rid in named})
                batch = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        usage = Usage(Path(home))
        usage.migrate()
        started = time.perf_counter()
        fill(usage, args.events)
        size = (Path(home) / "usage.db").stat().st_size
        print(f"{args.events} events over a year recorded in "
              f"{time.perf_counter() - started:.1f} s; usage.db {size / 1e6:.0f} MB")
        with usage.outbox() as outbox:
            for days in (7, 30, 365):
                period = reports.last_days(days)
                alone = []
                for name in reports.REPORTS:
                    started = time.perf_counter()
                    reports.report(outbox.db, name, period)
                    alone.append(f"{name} {1000 * (time.perf_counter() - started):.0f}")
                started = time.perf_counter()
                with reports.Report(outbox.db, period) as report:
                    report.total(), report.by_day(), report.by_subject(), report.by_resource()
                    report.by_class(), report.by_role(), report.missing_searches()
                page = time.perf_counter() - started
                print(f"last {days:>3} days: page {1000 * page:.0f} ms; "
                      f"one CSV (ms): {', '.join(alone)}")
        usage.close()


if __name__ == "__main__":
    main()
