"""An appliance runs for months: serving must not leak file descriptors or threads."""

from __future__ import annotations

import psutil
import requests


def test_no_descriptor_or_thread_leak_under_repeated_requests(live_server):
    process = psutil.Process()
    session = requests.Session()
    listing = session.get(live_server.url + "/api/resources", timeout=5).json()
    first = listing["resources"][0]["id"]
    item = session.get(f"{live_server.url}/api/resources/{first}", timeout=5).json()
    blob = next(f["url"] for f in item["files"] if f["url"])
    paths = ["/", "/browse?stage=小学", "/search?q=数学", f"/r/{first}", "/api/info", "/healthz",
             blob]

    def round_trip():
        for path in paths:
            response = session.get(live_server.url + path, timeout=5,
                                   headers={"Range": "bytes=0-99"} if path == blob else {})
            assert response.status_code in (200, 206)

    for _ in range(5):  # warm up: thread pool, caches, lazily opened files
        round_trip()
    fds, threads = process.num_fds(), process.num_threads()
    for _ in range(60):
        round_trip()
    session.close()
    assert process.num_fds() <= fds + 2, "file descriptors leak"
    assert process.num_threads() <= threads, "threads leak"
