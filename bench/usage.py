"""Usage benchmark: events recorded per second through the HTTP API, and upload throughput
to a real LRS (Ralph, the fs backend) in statements per second by batch size.

1. Recording: ``app.py serve`` (real waitress, its default threads) in a subprocess on
   127.0.0.1 with the sample library; a client process of ``--clients`` threads, each with
   its own keep-alive connection, POSTs valid events for ``--seconds``: one event per
   request (what the kiosk page sends) and then ``--batch`` per request. Every 201 counts;
   each event is fsynced in usage.db (WAL, synchronous=FULL) before the answer (group
   commit: concurrent requests share a transaction). The server's CPU per request shows
   the capacity apart from the client, which shares this machine's cores.
2. Upload: for each batch size a fresh Ralph and a fresh home with ``--statements``
   events, timed through ``sync.upload.sync_once`` (statements made, sent, acknowledged,
   marked delivered). Ralph's fs backend reads its whole file on every POST (to find
   existing ids), so small batches pay that many times: the figure is Ralph's as much as
   ours.

    .venv/bin/python bench/usage.py              # about 1 minute
    .venv/bin/python bench/usage.py --quick      # smoke run, ~25 s

Prints figures; never asserts on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHUQIAO_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "serve", "--home",
                                str(home), "--port", "0", "--no-mdns"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=env)
    for line in process.stdout:
        if line.startswith("Serving on "):
            return process, line.split()[2].rstrip("/")
    raise SystemExit("the server did not start")


def record_rate(url: str, rids: list[str], clients: int, seconds: float, per_request: int
                ) -> tuple[float, int, int]:
    """Events stored per second; (rate, events, errors)."""
    from ralph import event_batch

    stop = time.monotonic() + seconds
    counts = [0] * clients
    errors = [0] * clients

    def worker(index: int) -> None:
        body = json.dumps(event_batch(rids, per_request, f"bench-{index}")).encode()
        with requests.Session() as session:
            while time.monotonic() < stop:
                with session.post(url + "/api/events", data=body, timeout=30,
                                  headers={"Content-Type": "application/json"}) as r:
                    if r.status_code == 201:
                        counts[index] += r.json()["stored"] + r.json()["duplicates"]
                    else:
                        errors[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return sum(counts) / elapsed, sum(counts), sum(errors)


def bench_recording(args) -> None:
    from ralph import sample_appliance

    with tempfile.TemporaryDirectory(prefix="shuqiao-bench-usage-") as tmp:
        home = Path(tmp) / "home"
        app, ctx, rids = sample_appliance(home)
        process, url = start_server(home)
        try:
            print(f"recording through {url}/api/events ({args.clients} clients, "
                  f"{args.seconds:.0f} s each):")
            server = psutil.Process(process.pid)
            for per_request in (1, args.batch):
                before = server.cpu_times()
                rate, events, errors = record_rate(url, rids, args.clients, args.seconds,
                                                   per_request)
                after = server.cpu_times()
                cpu = (after.user + after.system - before.user - before.system)
                requests_made = events / per_request
                print(f"  {per_request:>3} event(s)/request: {rate:8.0f} events/s "
                      f"({events} stored, {errors} errors); server CPU "
                      f"{cpu / max(1, requests_made) * 1000:.2f} ms/request, "
                      f"{cpu / max(1, events) * 1000:.3f} ms/event")
        finally:
            process.terminate()
            process.communicate(timeout=30)


def bench_upload(args) -> None:
    from ralph import RalphServer, RalphUnavailable, event_batch, lrs_settings, sample_appliance

    from sync.events import validate_events
    from sync.upload import sync_once

    print(f"upload of {args.statements} statements to Ralph (fs backend), by batch size:")
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="shuqiao-bench-lrs-") as tmp:
            try:
                server = RalphServer(Path(tmp) / "ralph").start()
            except RalphUnavailable as error:
                print(f"  skipped: {error}")
                return
            try:
                app, ctx, rids = sample_appliance(Path(tmp) / "home",
                                                  **lrs_settings(server, lrs_batch_max=size,
                                                                 lrs_batch_max_kb=65536))
                with ctx.usage.outbox() as outbox:
                    for start in range(0, args.statements, 500):
                        n = min(500, args.statements - start)
                        outbox.record(validate_events(event_batch(rids, n, f"t{start}"), 500))
                began = time.monotonic()
                left = sync_once(ctx.config, ctx.usage, echo=lambda _: None)
                elapsed = time.monotonic() - began
                assert left == 0, f"{left} left pending"
                print(f"  batch {size:>4}: {args.statements / elapsed:8.0f} statements/s "
                      f"({elapsed:.2f} s)")
            finally:
                server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--statements", type=int, default=2000)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 10, 50, 200, 500])
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.statements, args.sizes = 2, 400, [10, 200]
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    bench_recording(args)
    bench_upload(args)


if __name__ == "__main__":
    main()
