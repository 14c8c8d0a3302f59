"""`shuqiao demo`: the built-in sample library, served from a temporary home."""

from __future__ import annotations

import json
import re
from pathlib import Path

import requests

from cache.sample import MANIFEST, SAMPLE_DIR
from conftest import start_cli_server, stop_cli_server

MAX_SAMPLE_BYTES = 10 * 1024 * 1024


def test_sample_library_is_small_complete_and_real():
    library = json.loads(MANIFEST.read_text(encoding="utf-8"))
    files = [f for r in library["resources"] for f in r.get("files", [])]
    files += [f for r in library["resources"] for p in r.get("parts", []) for f in p["files"]]
    listed = {f["path"] for f in files}
    on_disk = {p.name for p in SAMPLE_DIR.iterdir() if p.is_file() and p.suffix not in (".py", ".md")
               and p.name != "library.json"}
    assert listed == on_disk, "library.json and cache/sample/ disagree"
    assert sum((SAMPLE_DIR / name).stat().st_size for name in listed) < MAX_SAMPLE_BYTES
    subjects = {(r["subject"], r["grade"]) for r in library["resources"]}
    assert len({s for s, _ in subjects}) >= 2 and len({g for _, g in subjects}) >= 2
    magic = {"application/pdf": b"%PDF-", "image/jpeg": b"\xff\xd8\xff"}
    for f in files:
        head = (SAMPLE_DIR / f["path"]).read_bytes()[:12]
        if f["mime"] in magic:
            assert head.startswith(magic[f["mime"]]), f["path"]
        if f["mime"] == "video/mp4":
            assert head[4:8] == b"ftyp", f["path"]
    package = next(r for r in library["resources"] if r["kind"] == "lesson_package")
    kinds = [p["kind"] for p in package["parts"]]
    assert kinds == ["video", "courseware", "lesson_plan", "task_sheet", "exercise"]


def test_demo_serves_the_sample_library_and_cleans_up_its_temporary_home():
    process, url = start_cli_server(["demo", "--port", "0", "--no-mdns"])
    try:
        listing = requests.get(url + "/api/resources", timeout=5).json()
        titles = {r["title"] for r in listing["resources"]}
        assert "几分之一" in titles and listing["total"] >= 4
        assert all(r["ready"] for r in listing["resources"])
        home_page = requests.get(url + "/", timeout=5).text
        assert "三年级" in home_page and "数学" in home_page
        package = next(r for r in listing["resources"] if r["title"] == "几分之一")
        item = requests.get(f"{url}/api/resources/{package['id']}", timeout=5).json()
        video = item["lessons"][0]["parts"][0]["files"][0]
        response = requests.get(url + video["url"], headers={"Range": "bytes=0-1023"}, timeout=5)
        assert response.status_code == 206 and response.headers["Content-Type"] == "video/mp4"
    finally:
        code = stop_cli_server(process)
    assert code == 0
    home = re.search(r"Sample library: \d+ resources in (\S+)", "\n".join(process.preamble))
    assert home, process.preamble
    assert not Path(home.group(1)).exists(), "the temporary home was left behind"
