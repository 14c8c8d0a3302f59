"""End to end: `shuqiao serve` on one host of a namespace LAN is found by mDNS from another
host, which then reaches the page and /api/info at the announced address; on SIGTERM the
announcement is withdrawn."""

from __future__ import annotations

import json
import sys

from netns import LanNamespaces, LineReader, requires_netns, stop_process
from test_announce import REPO, TIMEOUT, _env, _is, _start_browser

FETCH = r"""
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    print(json.dumps({"status": r.status, "body": r.read().decode()}))
"""


@requires_netns
def test_serve_is_found_and_reached_across_the_lan(tmp_path):
    home = tmp_path / "home"
    with LanNamespaces(["srv", "cli"]) as lan:
        browse = _start_browser(lan, "cli", tmp_path)
        env = {**_env(), "SHUQIAO_HOME": str(home), "SHUQIAO_DISPLAY_NAME": "书桥 · 测试小学"}
        with (tmp_path / "serve.log").open("w") as log:  # the child keeps its own copy
            server = lan.popen("srv", [sys.executable, str(REPO / "app.py"), "serve", "--host",
                                       lan.addr("srv"), "--port", "0"], cwd=REPO, env=env,
                               stderr=log)
        try:
            lines = LineReader(server)
            serving = lines.wait_for(lambda line: isinstance(line, str)
                                     and line.startswith("Serving on "), timeout=20)
            port = int(serving.rstrip("/").rsplit(":", 1)[1])
            found = browse.wait_for(_is("Added", type="_shuqiao._tcp.local."), TIMEOUT)
            assert found["addresses"] == [lan.addr("srv")] and found["port"] == port
            assert found["txt"]["name"] == "书桥 · 测试小学"
            http = browse.wait_for(_is("Added", type="_http._tcp.local."), TIMEOUT)
            assert http["port"] == port and http["txt"]["path"] == "/"

            url = f"http://{found['addresses'][0]}:{found['port']}{found['txt']['path']}api/info"
            fetched = json.loads(lan.run("cli", [sys.executable, "-c", FETCH, url]).stdout)
            info = json.loads(fetched["body"])
            assert fetched["status"] == 200
            assert info["id"] == found["txt"]["id"] and info["version"] == found["txt"]["version"]
            assert info["api"] == found["txt"]["api"] and info["name"] == found["txt"]["name"]

            assert stop_process(server, grace=15) == 0
            browse.wait_for(_is("Removed", type="_shuqiao._tcp.local."), TIMEOUT)
        finally:
            stop_process(server)
            print((tmp_path / "serve.log").read_text(errors="replace"))
