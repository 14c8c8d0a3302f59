"""Serving benchmark: page latency and server CPU per GB under classroom video load.

One run, side by side, for each server (Shuqiao, nginx on the same file, and Flask
``send_file`` on stock waitress as the "before" reference) and each scenario:

- no load,
- paused viewers (headers read, then no more reads, like a browser that buffered ahead),
- clients paced at 2.5 MB/s each (about a gigabit link shared by a classroom),
- clients reading as fast as loopback allows.

The servers are started by bench/servers.py. The load runs in a separate process
(bench/loadgen.py) so its CPU is not the server's.
While it runs, this process fetches the server's page with a fresh connection every
``--probe-interval`` seconds, on a fixed schedule (open loop: a stalled server cannot
hide its stall by slowing the probe down), and records latency. Server CPU is the
user+system time of the server process and its children (nginx workers) across the window.

Scenarios are the outer loop and servers the inner one, so the noise of a shared
two-core machine falls on every server alike. Numbers are for comparison within a run;
there are no timed assertions anywhere.

    .venv/bin/python bench/serve.py            # full run, about 3 minutes
    .venv/bin/python bench/serve.py --quick    # smoke run, under 30 s
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import math
import os
import platform
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from servers import (ALL_SERVERS, BENCH, PY, ROOT, SERVER_LABELS, Server, probe, start_flask,
                     start_nginx, start_shuqiao)

# The targets for Shuqiao, and reference figures measured on this kind of
# machine at 50 paced clients (docs: toolbox.md, "Waitress and ranged files").
TARGET_P95_MS = 100.0
TARGET_CPU_S_PER_GB = 1.5
REFERENCE_S_PER_GB = {"nginx": 0.12, "Kolibri": 3.5, "Flask send_file, stock waitress": 4.1}

SCENARIOS = ("idle", "paused", "paced", "fast")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ helpers

def cpu_sample(pid: int) -> tuple[float, float, int]:
    """(user s, system s, minor page faults) of a process and all its descendants (nginx workers)."""
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return math.nan, math.nan, 0
    user = system = 0.0
    faults = 0
    for p in procs:
        try:
            t = p.cpu_times()
            user, system = user + t.user, system + t.system
            faults += _minor_faults(p.pid)
        except psutil.NoSuchProcess:
            pass
    return user, system, faults


def _minor_faults(pid: int) -> int:
    # Field 10 of /proc/PID/stat; psutil does not expose it. Linux only, 0 elsewhere.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return 0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile; failures are +inf, so they count as slow, not as absent."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


# ------------------------------------------------------------------ one measurement

class LoadProcess:
    """bench/loadgen.py as a child, driven line by line with bounded waits."""

    def __init__(self, server: Server, mode: str, clients: int, args):
        cmd = [PY, str(BENCH / "loadgen.py"), "--port", str(server.port), "--path",
               server.content, "--mode", mode, "--clients", str(clients),
               "--rate", str(args.rate_mb * 1e6), "--ramp", str(args.ramp),
               "--max-seconds", str(args.ramp + args.window + args.probe_timeout + 30)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def read(self, timeout: float) -> dict:
        if not self.sel.select(timeout):
            raise RuntimeError(f"load generator silent for {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited: {self.proc.stderr.read()[-2000:]}")
        return json.loads(line)

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("quit")
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.sel.close()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass


def wait_answering(server: Server, limit: float) -> bool:
    """Before each measurement: the previous load's connections must have drained."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if probe(server.port, server.page, 2)[0] is not None:
            return True
        time.sleep(0.2)
    return False


def wait_quiet(servers: list[Server], limit: float) -> list[str]:
    """Wait until no server uses more than ~5 % of a core; returns the ones still busy.

    A thread-per-download server keeps working after its clients have gone (queued
    requests still run and fill output buffers), and that work must not land on the next
    server's measurement.
    """
    deadline = time.monotonic() + limit
    busy = [s.label for s in servers]
    while busy and time.monotonic() < deadline:
        before = {s.label: sum(cpu_sample(s.pid)[:2]) for s in servers}
        time.sleep(0.3)
        busy = [s.label for s in servers if sum(cpu_sample(s.pid)[:2]) - before[s.label] > 0.015]
    return busy


def measure(server: Server, scenario: str, args) -> dict:
    clients = {"idle": 0, "paused": args.paused, "paced": args.clients,
               "fast": args.clients}[scenario]
    result: dict = {"clients": clients}
    if not wait_answering(server, 30):
        result["note"] = "not answering before the run"
    load = None
    try:
        if clients:
            load = LoadProcess(server, scenario, clients, args)
            ready = load.read(args.ramp + 10)
            result["ramp_s"] = ready.get("ramp_s")
            result["ready_clients"] = ready.get("ready_clients")
        cpu0 = cpu_sample(server.pid)
        t0 = time.monotonic()
        if load:
            load.send("go")
        latencies: list[float] = []
        errors: dict[str, int] = {}
        workers = int(args.probe_timeout / args.probe_interval) + 8
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = []
            tick = 0
            while True:
                due = t0 + tick * args.probe_interval
                if due >= t0 + args.window:
                    break
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                futures.append(pool.submit(probe, server.port, server.page, args.probe_timeout))
                tick += 1
            left = t0 + args.window - time.monotonic()
            if left > 0:
                time.sleep(left)
            cpu1 = cpu_sample(server.pid)
            window = time.monotonic() - t0
            stats = None
            if load:
                load.send("stats")
                stats = load.read(10)
            # Every probe ends by its own timeout; this wait is bounded by it.
            done, not_done = concurrent.futures.wait(futures, timeout=args.probe_timeout + 5)
            for f in not_done:
                errors["unfinished"] = errors.get("unfinished", 0) + 1
            for f in done:
                latency, error = f.result()
                if error:
                    errors[error] = errors.get(error, 0) + 1
                else:
                    latencies.append(latency)
    finally:
        if load:
            load.close()
    ok = sorted(latencies)
    all_ = ok + [math.inf] * sum(errors.values())
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    cpu = user + system
    result.update({
        "window_s": round(window, 3),
        "probes": len(all_),
        "probe_failures": sum(errors.values()),
        "probe_errors": errors,
        "p50_ms": percentile(all_, 0.50) * 1000,
        "p95_ms": percentile(all_, 0.95) * 1000,
        "max_ms": (all_[-1] if all_ else math.nan) * 1000,
        "server_cpu_s": round(cpu, 3),
        "server_cpu_pct_of_core": round(100 * cpu / window, 1),
        "server_user_s": round(user, 3),
        "server_system_s": round(system, 3),
        "server_minor_faults_per_s": round((cpu1[2] - cpu0[2]) / window),
    })
    if stats:
        gb = stats["bytes"] / 1e9
        result.update({
            "bytes": stats["bytes"],
            "mb_per_s": round(stats["bytes"] / 1e6 / max(stats["seconds"], 1e-9), 1),
            "cpu_s_per_gb": round(cpu / gb, 3) if gb > 0.01 else None,
            "clients_with_bytes": clients - stats["slots_without_bytes"],
            "slot_mb_min": round(stats["slot_bytes_min"] / 1e6, 2),
            "slot_mb_median": round(stats["slot_bytes_median"] / 1e6, 2),
            "responses_completed": stats["reconnects"],
            "load_errors": stats["errors"],
            "loadgen_cpu_s": stats["client_cpu_s"],
        })
    return result


# ------------------------------------------------------------------ report

def fmt_ms(value: float, timeout: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return f">{timeout:g}s"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def cells(r: dict | None, scenario: str, timeout: float) -> list[str]:
    if r is None:
        return ["n/a", "", "", "", ""]
    if "error" in r:
        return ["error", "", "", "", ""]
    lat = "/".join(fmt_ms(r[k], timeout) for k in ("p50_ms", "p95_ms", "max_ms"))
    fail = f"{r['probe_failures']}/{r['probes']}"
    if scenario in ("idle", "paused") or r.get("cpu_s_per_gb") is None:
        cpu = f"{r['server_cpu_s']:.2f} s"
    else:
        cpu = f"{r['cpu_s_per_gb']:.2f} s/GB"
    rate = f"{r['mb_per_s']:.0f}" if "mb_per_s" in r else "-"
    if scenario == "paused":  # they read their headers before the window, then nothing
        got = f"{r.get('ready_clients', 0)}/{r['clients']}"
    else:
        got = f"{r['clients_with_bytes']}/{r['clients']}" if "clients_with_bytes" in r else "-"
    return [lat, fail, cpu, rate, got]


def table(results: dict, servers: list[str], labels: dict, timeout: float) -> str:
    """Scenarios as rows, one group of columns per server, the server's name over its group."""
    sub = ["p50/p95/max ms", "fail", "CPU", "MB/s", "got"]
    body = [[labels[sc]] + [c for s in servers
                            for c in cells(results.get(sc, {}).get(s), sc, timeout)]
            for sc in SCENARIOS]
    names = ["scenario"] + [c for s in servers for c in [SERVER_LABELS[s]] + [""] * (len(sub) - 1)]
    heads = [""] + sub * len(servers)
    widths = [max(len(r[i]) for r in [names, heads] + body) for i in range(len(heads))]

    def line(row: list[str], align) -> str:
        groups = [row[0].ljust(widths[0])]
        for g in range(len(servers)):
            first = 1 + g * len(sub)
            groups.append(" ".join(align(row[i], widths[i]) for i in range(first, first + len(sub))))
        return " | ".join(groups).rstrip()

    lines = [line(names, str.ljust), line(heads, str.rjust)]
    lines += [line(r, str.rjust) for r in body]
    lines.insert(2, "-" * max(map(len, lines)))
    return "\n".join(lines)


def verdicts(results: dict, timeout: float) -> list[dict]:
    out = []
    sq = {s: results.get(s, {}).get("shuqiao") for s in SCENARIOS}

    def add(what: str, value, ok: bool | None, shown: str) -> None:
        out.append({"target": what, "value": value,
                    "verdict": "n/a" if ok is None else ("PASS" if ok else "MISS"),
                    "shown": shown})

    for scenario, what in (("paused", "page p95 < 100 ms with paused viewers"),
                           ("paced", "page p95 < 100 ms with paced clients")):
        r = sq[scenario]
        if r is None or "p95_ms" not in r:
            add(what, None, None, "-")
        else:
            add(what, r["p95_ms"], r["p95_ms"] < TARGET_P95_MS,
                fmt_ms(r["p95_ms"], timeout) + " ms")
    r = sq["paced"]
    value = r.get("cpu_s_per_gb") if r else None
    add("server CPU <= 1.5 s/GB at paced clients", value,
        None if value is None else value <= TARGET_CPU_S_PER_GB,
        "-" if value is None else f"{value:.3f} s/GB")
    return out


# ------------------------------------------------------------------ main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size-mb", type=int, default=200, help="size of the random test file")
    p.add_argument("--window", type=float, default=10.0,
                   help="seconds measured per server and scenario")
    p.add_argument("--clients", type=int, default=50, help="clients in the paced and fast runs")
    p.add_argument("--paused", type=int, default=40, help="paused viewers")
    p.add_argument("--rate-mb", type=float, default=2.5, help="MB/s per paced client")
    p.add_argument("--servers", default="shuqiao,nginx,flask",
                   help="comma-separated: " + ",".join(ALL_SERVERS))
    p.add_argument("--flask-threads", type=int, default=8,
                   help="waitress threads for the Flask reference (same as Shuqiao's default, "
                        "so only the file path and the socket buffer differ)")
    p.add_argument("--probe-interval", type=float, default=0.1)
    p.add_argument("--probe-timeout", type=float, default=5.0)
    p.add_argument("--ramp", type=float, default=5.0,
                   help="longest wait for all clients to have their headers")
    p.add_argument("--quiet-limit", type=float, default=30.0,
                   help="longest wait, before each measurement, for every server to go idle")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 20 MB, 1 s windows, 10 clients, 8 paused, 1 s probe timeout")
    p.add_argument("--results-dir", default=str(BENCH / "results"))
    if p.parse_known_args(argv)[0].quick:  # new defaults; options given explicitly still win
        p.set_defaults(size_mb=20, window=1.0, clients=10, paused=8, probe_timeout=1.0,
                       ramp=1.0, quiet_limit=5.0)
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.servers) - set(ALL_SERVERS)
    if unknown or not args.servers:
        p.error(f"--servers takes {','.join(ALL_SERVERS)}; got {','.join(unknown) or 'nothing'}")
    return args


def plain_json(value):
    """inf (a failed probe) and nan (no probes) are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value


def effective_sndbuf(requested: int) -> int:
    """What getsockopt returns after setting SO_SNDBUF (Linux doubles it); waitress reads this."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, requested)
        return s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)


def _terminate(signum, frame):
    raise KeyboardInterrupt  # so the finally blocks stop every server and remove the temp dir


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tmp = Path(tempfile.mkdtemp(prefix="shuqiao-bench-"))
    servers: dict[str, Server] = {}
    results: dict = {s: {} for s in SCENARIOS}
    labels = {"idle": "no load",
              "paused": f"{args.paused} paused viewers",
              "paced": f"{args.clients} paced {args.rate_mb:g} MB/s",
              "fast": f"{args.clients} unpaced"}
    start_errors: dict[str, str] = {}
    try:
        log(f"writing a {args.size_mb} MB random file, starting {', '.join(args.servers)}")
        data_file = tmp / "video.bin"
        with open(data_file, "wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(1024 * 1024))
        # Shuqiao is always started: the other servers serve its blob (the same inode).
        try:
            servers["shuqiao"], blob = start_shuqiao(tmp, data_file)
            data_file.unlink()  # the blob is a copy; don't hold the bytes twice
        except Exception as e:
            start_errors["shuqiao"] = str(e)
            blob = data_file
        for name in args.servers:
            if name == "shuqiao":
                continue
            try:
                servers[name] = (start_nginx(tmp, blob) if name == "nginx"
                                 else start_flask(tmp, blob, args.flask_threads))
            except Exception as e:
                start_errors[name] = str(e)
        if "shuqiao" not in args.servers and "shuqiao" in servers:
            servers.pop("shuqiao").stop()  # only needed to make the blob
        for name, error in start_errors.items():
            log(f"{SERVER_LABELS[name]} did not start: {error}")
        log(f"ready after {time.monotonic() - started:.1f} s")
        with open(blob, "rb") as f:  # warm the page cache once, for every server alike
            while f.read(8 * 1024 * 1024):
                pass
        for scenario in SCENARIOS:
            for name in args.servers:
                if name not in servers:
                    continue
                began = time.monotonic()
                busy = wait_quiet(list(servers.values()), args.quiet_limit)
                quiet_s = time.monotonic() - began
                if busy:
                    log(f"  still busy after {args.quiet_limit:g} s: {', '.join(busy)}")
                try:
                    results[scenario][name] = measure(servers[name], scenario, args)
                    outcome = ""
                    results[scenario][name]["quiet_wait_s"] = round(quiet_s, 1)
                    if busy:
                        results[scenario][name]["busy_before"] = busy
                except Exception as e:
                    results[scenario][name] = {"error": f"{type(e).__name__}: {e}"}
                    outcome = f"  error: {e}"
                log(f"{labels[scenario]:<24} {SERVER_LABELS[name]:<16} "
                    f"{time.monotonic() - began:4.1f} s (quiet after {quiet_s:.1f} s){outcome}")
    finally:
        for server in servers.values():
            try:
                server.stop()
            except Exception as e:  # keep stopping the others
                log(f"warning: stopping {server.label}: {e}")
        shutil.rmtree(tmp, ignore_errors=True)

    runtime = time.monotonic() - started
    shown_servers = [s for s in args.servers if s in servers or s in start_errors]
    sq = servers.get("shuqiao")
    settings_used = sq.info.get("settings", {}) if sq else {}
    print()
    print(f"Shuqiao serve benchmark  {stamp}  file {args.size_mb} MB  window {args.window:g} s  "
          f"probe every {args.probe_interval * 1000:.0f} ms (fresh connection, "
          f"timeout {args.probe_timeout:g} s)")
    print(f"machine: {psutil.cpu_count()} cpu, load avg {load_start:.2f} at the start and "
          f"{os.getloadavg()[0]:.2f} at the end, "
          f"Python {platform.python_version()}")
    if settings_used:
        sndbuf = settings_used.get("send_buffer_bytes")
        print(f"shuqiao settings: threads {settings_used.get('threads')}, send_buffer_bytes "
              f"{sndbuf} (getsockopt reports {effective_sndbuf(int(sndbuf))}), connection_limit "
              f"{settings_used.get('connection_limit')}")
    if "nginx" in servers:
        print(f"nginx {servers['nginx'].info.get('version')}: sendfile on, "
              f"{servers['nginx'].info.get('workers')} workers, access_log off")
    if "flask" in servers:
        print(f"flask-send_file: waitress defaults except threads {args.flask_threads}")
    print("columns: page latency p50/p95/max (failed probes count as slowest) | failed probes | "
          "server CPU (s/GB; total s for no load and paused) | MB/s served |\n"
          "         clients that got bytes in the window (paused: that got their headers)")
    print()
    print(table(results, shown_servers, labels, args.probe_timeout))
    print()
    checks = verdicts(results, args.probe_timeout)
    for c in checks:
        print(f"target (shuqiao): {c['target']:<42} {c['shown']:>12}  {c['verdict']}")
    paced = results["paced"].get("shuqiao")
    if paced and "server_user_s" in paced:
        # Where the CPU went: a high system share with many page faults means the server
        # copies file data through freshly allocated memory instead of sending it directly.
        print(f"shuqiao at paced clients: user {paced['server_user_s']:.2f} s, system "
              f"{paced['server_system_s']:.2f} s, {paced['server_minor_faults_per_s']} minor "
              f"page faults/s (nginx: "
              + (f"{results['paced']['nginx']['server_minor_faults_per_s']}/s)"
                 if "server_minor_faults_per_s" in results["paced"].get("nginx", {}) else "-)"))
    fast = results["fast"].get("shuqiao")
    if fast and "p95_ms" in fast:
        per_gb = fast.get("cpu_s_per_gb")
        print(f"unpaced (no target): shuqiao p95 {fmt_ms(fast['p95_ms'], args.probe_timeout)} ms, "
              f"{'-' if per_gb is None else f'{per_gb:.2f}'} s/GB, {fast.get('mb_per_s', 0):.0f} MB/s")
    print("reference CPU at 50 paced clients on this kind of machine: "
          + ", ".join(f"{k} {v} s/GB" for k, v in REFERENCE_S_PER_GB.items()))
    for name, error in start_errors.items():
        print(f"{SERVER_LABELS[name]} did not start: {error}")
    print(f"runtime {runtime:.0f} s")

    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"serve-{stamp}.json"
    record = {
        "timestamp": stamp, "runtime_s": round(runtime, 1),
        "options": {k: v for k, v in vars(args).items() if k != "results_dir"},
        "machine": {"cpus": psutil.cpu_count(), "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg(),
                    "python": platform.python_version()},
        "servers": {n: s.info for n, s in servers.items()}, "start_errors": start_errors,
        "scenarios": labels, "results": results, "targets": checks,
        "reference_s_per_gb": REFERENCE_S_PER_GB,
    }
    out.write_text(json.dumps(plain_json(record), indent=2, ensure_ascii=False))
    print(f"results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
