"""The platform stand-in (tests/standin) behaves as smartedu-upstream.md describes.

Everything goes through the real server with plain `requests` (or a raw socket where the
exact bytes on the wire matter): JSON shapes and absolute URLs, the auth matrix with the
document's MAC vector, strict objects, Range on and off, the HLS key handshake and
decryption, token rotation, burst throttling, and each fault.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection
from urllib.parse import quote, urlsplit

import pytest
import requests
from conftest import CAPTURED, ROOT
from standin import Standin, auth, hls
from standin.common import ALL_HOSTS

PRIVATE = "r1-ndr-private.ykt.cbern.com.cn"
S_FILE = "s-file-1.ykt.cbern.com.cn"


@pytest.fixture(scope="module")
def standin():
    with Standin(None, seed=1, small=True) as s:
        yield s


@pytest.fixture(autouse=True)
def healthy(request):
    yield
    if "standin" in request.fixturenames:
        s = request.getfixturevalue("standin")
        s.settle()
        s.faults.reset()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def get_json(s: Standin, http, path: str, host: str = S_FILE):
    response = http.get(s.hosts[host] + path)
    assert response.status_code == 200, (path, response.status_code)
    return response.json()


def normal_book(s: Standin):
    return next(b for b in s.catalogue.textbooks
                if b.has_pdf and not b.strict and b.storage == "mirrors" and b.node == "normal")


def strict_book(s: Standin):
    return next(b for b in s.catalogue.textbooks if b.has_pdf and b.strict)


def signed(s: Standin, url: str, **extra) -> dict:
    return {"X-ND-AUTH": s.nd_auth(url), **extra}


# ------------------------------------------------------------------------- vectors

def test_mac_and_key_vectors_from_the_reference():
    url = ("https://r2-ndr-private.ykt.cbern.com.cn/edu_product/esp/assets/"
           "00000000-0000-0000-0000-000000000001.pkg/%E6%A0%B7%E4%BE%8B.pdf")
    parts = urlsplit(url)
    text = auth.signed_text("GET", parts.path, parts.hostname, "1700000000000:K3J9QX2A")
    assert text == ("1700000000000:K3J9QX2A\nGET\n/edu_product/esp/assets/"
                    "00000000-0000-0000-0000-000000000001.pkg/样例.pdf\n"
                    "r2-ndr-private.ykt.cbern.com.cn\n")
    assert auth.mac(text, "example-mac-key") == "Q2TPR24b1fDsjvopY9huMI3grNRob3rnV3DRdUq732A="
    assert auth.nd_auth_header(url, "GET", "T", "example-mac-key",
                               nonce="1700000000000:K3J9QX2A").endswith(
        'mac="Q2TPR24b1fDsjvopY9huMI3grNRob3rnV3DRdUq732A="')

    sign = hls.sign_for("5f1c2e", "0123456789abcdef0123456789abcdef")
    assert sign == "d42de74df7954f7a"
    assert hls.wrap_key(b"0123456789ABCDEF", sign) == "0ibnmDA9Ertbeb35eJ9FLQ/vP2FAkrZ4+tK+/kHpFdo="


def test_key_handshake_vector_through_the_server(standin, http):
    key_id = "0123456789abcdef0123456789abcdef"
    standin.catalogue.keyservice.issue_nonce(key_id, "5f1c2e")
    base = standin.hosts["ndvideo-key.ykt.eduyun.cn"] + f"/v1/resource_keys/{key_id}"
    answer = http.get(base, params={"nonce": "5f1c2e", "sign": "d42de74df7954f7a"})
    assert answer.status_code == 200
    assert answer.json() == {"key": "0ibnmDA9Ertbeb35eJ9FLQ/vP2FAkrZ4+tK+/kHpFdo="}
    wrong = http.get(base, params={"nonce": "5f1c2e", "sign": "0000000000000000"})
    assert wrong.status_code == 403


# -------------------------------------------------------------- hosts and the token

def test_every_platform_host_is_mapped_and_the_token_is_the_pasted_shape(standin, http):
    expected = {"s-file-1", "s-file-2", "s-file-3", "bdcs-file-1", "bdcs-file-2", "r1-ndr",
                "r2-ndr", "r3-ndr", "r1-ndr-private", "r2-ndr-private", "r3-ndr-private",
                "r1-ndr-doc-private", "r2-ndr-doc-private"}
    assert {h.split(".")[0] for h in standin.hosts if h.endswith("cbern.com.cn")} == expected
    assert {"ndvideo-key.ykt.eduyun.cn", "uc-gateway.ykt.eduyun.cn"} <= set(standin.hosts)
    for host, base in standin.hosts.items():
        assert base == f"{standin.base_url}/{host}"
    pasted = json.loads(standin.token_json())
    assert set(pasted) == {"value", "expire"}
    inner = json.loads(pasted["value"])
    assert {"access_token", "refresh_token", "mac_key", "expires_at", "user_id", "diff"} <= set(inner)
    assert inner["access_token"] == standin.token.access_token
    assert pasted["expire"] > time.time() * 1000 + 6 * 86400 * 1000          # about 7 days

    unknown = http.get(standin.base_url + "/example.com/x")
    assert unknown.status_code == 404


# ------------------------------------------------------------------------ catalogue

def test_small_catalogue_walk_has_no_404_and_every_file_verifies(standin, http):
    """version → parts → details/bundles/audio; course version → parts → trees → lesson
    lists → lesson details; every listed private file downloads and matches size and md5."""
    version = get_json(standin, http, "/zxx/ndrs/resources/tch_material/version/data_version.json")
    assert isinstance(version["urls"], str) and "," in version["urls"]     # comma string
    entries = []
    for url in version["urls"].split(","):
        assert url.startswith("https://s-file-")
        entries += http.get(standin.url(url)).json()
    assert len(entries) == len(standin.catalogue.textbooks)
    get_json(standin, http, "/zxx/ndrs/tags/tch_material_tag.json")
    files = []
    for entry in entries:
        assert entry["ti_items"] == [] and "teachmeterial_ids" in entry
        node = entry["resource_custom_properties"]["compound_node"]
        if node == "normal":
            detail = get_json(standin, http, f"/zxx/ndrv2/resources/tch_material/details/{entry['id']}.json",
                              host="s-file-3.ykt.cbern.com.cn")
            files += detail["ti_items"]
            source = next(i for i in detail["ti_items"] if i["ti_is_source_file"])
            assert source["ti_size"] == entry["custom_properties"]["size"]
            if "英语" in json.dumps(entry["tag_list"], ensure_ascii=False):
                for audio in get_json(standin, http, f"/zxx/ndrs/resources/{entry['id']}/relation_audios.json"):
                    files += audio["ti_items"]
        else:
            detail_path = f"/zxx/ndrv2/resources/tch_material/details/{entry['id']}.json"
            assert http.get(standin.hosts[S_FILE] + detail_path).status_code == 403
            detail = get_json(standin, http, f"/zxx/ndrs/special_edu/resources/details/{entry['id']}.json")
            if node == "parent":
                children = get_json(standin, http,
                                    f"/zxx/ndrs/special_edu/thematic_course/{entry['id']}/resources/list.json")
                assert children and all(c["ti_items"] for c in children)
            else:
                files += detail["ti_items"]

    courses = get_json(standin, http, "/zxx/ndrs/national_lesson/teachingmaterials/version/data_version.json")
    assert isinstance(courses["urls"], list)                               # array form
    books = [b for url in courses["urls"] for b in http.get(standin.url(url)).json()]
    assert len(books) == len(standin.catalogue.course_books)
    lessons = 0
    for book in books:
        tree = get_json(standin, http, f"/zxx/ndrv2/national_lesson/trees/{book['id']}.json")
        assert tree and all("node_path" in node and "child_nodes" in node for node in tree)
        parts = get_json(standin, http, f"/zxx/ndrs/national_lesson/teachingmaterials/{book['id']}/resources/parts.json")
        for part in parts:
            for lesson in http.get(standin.url(part)).json():
                lessons += 1
                assert lesson["teachmeterial_ids"] == [book["id"]]
                assert lesson["custom_properties"]["prom_resouce_type"] == "standard_lesson"
                leaf = lesson["chapter_ids"][-1]
                assert any(leaf == child["id"] for unit in tree for child in unit["child_nodes"])
                national = f"/zxx/ndrv2/national_lesson/resources/details/{lesson['id']}.json"
                if lesson["resource_type_code"] == "elite_lesson":
                    assert http.get(standin.hosts[S_FILE] + national).status_code == 403
                    detail = get_json(standin, http, f"/zxx/ndrv2/resources/{lesson['id']}.json")
                    subs = detail["relations"]["course_resource"]
                else:
                    detail = get_json(standin, http, national)
                    subs = detail["relations"]["national_course_resource"]
                for sub in subs:
                    files += [i for i in sub["ti_items"] if i["ti_format"] != "m3u8"]
    assert lessons == len(standin.catalogue.lessons) > 0

    verified = 0
    for item in files:
        if item["ti_format"] == "folder" or not item.get("ti_md5"):
            continue
        storages = item["ti_storages"] or [item["ti_storage"].replace(
            "cs_path:${ref-path}", "https://r1-ndr-private.ykt.cbern.com.cn")]
        url = standin.url(storages[0])
        response = http.get(url, headers=signed(standin, url))
        assert response.status_code == 200, storages[0]
        assert len(response.content) == item["ti_size"]
        assert hashlib.md5(response.content).hexdigest() == item["ti_md5"]
        if item["ti_format"] == "pdf":
            assert response.content.startswith(b"%PDF-") and response.content.rstrip().endswith(b"%%EOF")
        verified += 1
    assert verified > 40


def test_documented_quirks_are_present(standin, http):
    c = standin.catalogue
    kinds = {b.storage for b in c.textbooks} | {"old" if b.old_name else "" for b in c.textbooks}
    assert {"cs_path", "doc_private", "mirrors", "old"} <= kinds
    cs_path_book = next(b for b in c.textbooks if b.storage == "cs_path")
    detail = get_json(standin, http, f"/zxx/ndrv2/resources/tch_material/details/{cs_path_book.id}.json")
    source = next(i for i in detail["ti_items"] if i["ti_is_source_file"])
    assert source["ti_storages"] == [] and source["ti_storage"].startswith("cs_path:${ref-path}/edu_product/")
    doc_book = next(b for b in c.textbooks if b.storage == "doc_private")
    assert "ndr-doc-private" in doc_book.url
    assert http.get(standin.url(doc_book.url), headers=signed(standin, standin.url(doc_book.url))).status_code == 200

    lessons = list(c.lessons.values())
    details = [get_json(standin, http, (f"/zxx/ndrv2/resources/{lesson.id}.json" if lesson.elite else
                                        f"/zxx/ndrv2/national_lesson/resources/details/{lesson.id}.json"))
               for lesson in lessons]
    subs = [sub for d in details for key in ("national_course_resource", "course_resource")
            for sub in d["relations"].get(key, [])]
    assert {s["title"] for s in subs} >= {"视频课程", "课件", "教学设计", "学习任务单", "课后练习"}
    assert any(isinstance(s["global_title"], str) for s in subs)
    assert any(isinstance(s["global_title"], dict) for s in subs)
    assert any(s["resource_type_code"] == "assets_video" for s in subs)
    assert any("teacher_list" not in d for d in details) and any("teacher_list" in d for d in details)
    assert any("size" not in s["custom_properties"] for s in subs)
    two_periods = next(d for d in details if len(d["resource_structure"]["relations"]) == 2)
    assert two_periods["resource_structure"]["relations"][1]["title"] == "第二课时"
    # bdcs hosts use /zxx_secondary/ for the same paths (§1)
    assert get_json(standin, http, "/zxx_secondary/ndrs/resources/tch_material/version/data_version.json",
                    host="bdcs-file-2.ykt.cbern.com.cn")["module"] == "tch_material"


@pytest.mark.skipif(not CAPTURED.is_dir(), reason="captured catalogue not present")
def test_full_sync_with_captured_data_sees_3800_books_and_2400_course_books_without_404():
    with Standin(CAPTURED, seed=1, small=True) as s:
        connection = HTTPConnection("127.0.0.1", s.port, timeout=30)

        def fetch(host: str, path: str):
            connection.request("GET", f"/{host}{path}")
            response = connection.getresponse()
            return response.status, response.read()

        status, body = fetch(S_FILE, "/zxx/ndrs/resources/tch_material/version/data_version.json")
        assert body == (CAPTURED / "tchMaterial" / "data_version.json").read_bytes()
        books = []
        for url in json.loads(body)["urls"].split(","):
            parts = urlsplit(url)
            status, body = fetch(parts.hostname, parts.path)
            assert status == 200
            books += json.loads(body)
            if url.endswith("part_103.json"):
                assert body == (CAPTURED / "tchMaterial" / "part_103.json").read_bytes()
        assert 3700 <= len(books) <= 3900 and len({b["id"] for b in books}) == len(books)
        status, body = fetch(S_FILE, "/zxx/ndrs/national_lesson/teachingmaterials/version/data_version.json")
        course_books = []
        for url in json.loads(body)["urls"]:
            status, body = fetch(urlsplit(url).hostname, urlsplit(url).path)
            course_books += json.loads(body)
        assert len(course_books) == 2400
        failures = []
        for book in books:
            node = book["resource_custom_properties"]["compound_node"]
            path = (f"/zxx/ndrv2/resources/tch_material/details/{book['id']}.json" if node == "normal"
                    else f"/zxx/ndrs/special_edu/resources/details/{book['id']}.json")
            status, body = fetch(S_FILE, path)
            if status != 200:
                failures.append(path)
        with_lessons = 0
        for book in course_books:
            for path in (f"/zxx/ndrv2/national_lesson/trees/{book['id']}.json",
                         f"/zxx/ndrs/national_lesson/teachingmaterials/{book['id']}/resources/part_100.json"):
                status, body = fetch("s-file-2.ykt.cbern.com.cn", path)
                if status != 200:
                    failures.append(path)
            with_lessons += body != b"[]"
        connection.close()
        assert failures == []
        assert with_lessons == len(s.catalogue.lesson_books) == 4


def test_a_new_edition_changes_version_time_url_and_md5(http):
    with Standin(None, seed=3, small=True) as s:
        book = normal_book(s)
        old_url, old_md5, old_version = book.url, book.md5, s.catalogue.textbook_module_version
        s.touch_textbook(book.id)
        version = get_json(s, http, "/zxx/ndrs/resources/tch_material/version/data_version.json")
        assert version["module_version"] == old_version + 1
        detail = get_json(s, http, f"/zxx/ndrv2/resources/tch_material/details/{book.id}.json")
        source = next(i for i in detail["ti_items"] if i["ti_is_source_file"])
        assert source["ti_md5"] == book.md5 != old_md5 and source["ti_storages"][0] == book.url != old_url
        assert http.get(s.url(old_url), headers=signed(s, s.url(old_url))).status_code == 404


# ----------------------------------------------------------------------------- auth

def test_auth_matrix_on_normal_and_strict_objects(standin, http):
    s = standin
    normal, strict = s.url(normal_book(s).url), s.url(strict_book(s).url)
    token = s.token.access_token
    seen = len(s.log)

    def status(url, headers=None, params=None):
        response = http.get(url, headers=headers or {}, params=params)
        return response.status_code, response.content

    code, body = status(normal)
    assert code == 401 and b"401 Authorization Required" in body and 300 < len(body) < 400
    assert status(normal, {"X-ND-AUTH": 'MAC id="NOPE",nonce="0",mac="0"'})[0] == 401
    placeholder = {"X-ND-AUTH": f'MAC id="{token}",nonce="0",mac="0"'}
    assert status(normal, placeholder)[0] == 200
    code, body = status(strict, placeholder)
    assert code == 400 and b"<Code>InvalidArgument</Code>" in body
    assert status(normal, signed(s, normal))[0] == 200
    assert status(strict, signed(s, strict))[0] == 200
    bearer = {"Authorization": f"Bearer {token}"}
    assert status(normal, bearer)[0] == 200 and status(strict, bearer)[0] == 400
    assert status(normal, {"Authorization": "Bearer 0"})[0] == 401
    raw = {"X-ND-AUTH": token}
    assert status(normal, raw)[0] == 200 and status(strict, raw)[0] == 400
    assert status(normal, params={"accessToken": token})[0] == 200
    assert status(normal, params={"accessToken": "EXPIRED"})[0] == 400

    # The MAC covers the URL actually requested: signing the platform URL does not pass.
    platform = strict_book(s).url
    assert status(strict, {"X-ND-AUTH": s.nd_auth(platform)})[0] == 400
    # A stale nonce does not pass; the platform clock offset is what "diff" is for.
    stale = s.nd_auth(strict, nonce=f"{int(time.time() * 1000) - 3_600_000}:ABCDEFGH")
    assert status(strict, {"X-ND-AUTH": stale})[0] == 400
    s.faults.clock_offset_ms = -3_600_000
    diff = json.loads(json.loads(s.token_json())["value"])["diff"]
    assert diff == -3_600_000
    assert status(strict, {"X-ND-AUTH": auth.nd_auth_header(
        strict, "GET", token, s.token.mac_key, diff_ms=0)})[0] == 400
    assert status(strict, {"X-ND-AUTH": auth.nd_auth_header(
        strict, "GET", token, s.token.mac_key, diff_ms=diff)})[0] == 200
    s.settle()
    modes = [e.auth for e in s.log[seen:]]
    assert {"none", "unknown-token", "placeholder", "mac", "bearer", "raw", "query", "bad-mac"} <= set(modes)


def test_public_hosts_serve_images_without_auth_and_refuse_private_objects(standin, http):
    book = normal_book(standin)
    entry = json.loads(book.entry_bytes)
    thumbnail = standin.url(entry["custom_properties"]["thumbnails"][0])
    response = http.get(thumbnail)
    assert response.status_code == 200 and response.content[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0")
    page = standin.url(next(iter(entry["custom_properties"]["preview"].values())))
    assert http.get(page).content.startswith(b"\xff\xd8\xff")
    private_on_public = standin.hosts["r2-ndr.ykt.cbern.com.cn"] + quote(book.pdf_path)
    response = http.get(private_on_public)
    assert response.status_code == 403 and b"AccessDenied" in response.content


def test_refresh_rotates_tokens_and_expired_tokens_get_401(http):
    with Standin(None, seed=2, small=True) as s:
        first = json.loads(json.loads(s.token_json())["value"])
        refresh_url = s.hosts["uc-gateway.ykt.eduyun.cn"] + "/v1.1/tokens/{}/actions/refresh"
        answer = http.post(refresh_url.format(first["refresh_token"]))
        assert answer.status_code == 201
        second = answer.json()
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"] and second["mac_key"]
        again = http.post(refresh_url.format(first["refresh_token"]))          # rotated
        assert again.status_code == 401 and again.json()["code"].startswith("UC/")
        assert http.post(refresh_url.format("UNKNOWN")).status_code == 401
        url = s.url(strict_book(s).url)
        new_auth = auth.nd_auth_header(url, "GET", second["access_token"], second["mac_key"])
        assert http.get(url, headers={"X-ND-AUTH": new_auth}).status_code == 200
        profile = http.get(s.hosts["uc-gateway.ykt.eduyun.cn"] + f"/v1.1/users/{second['user_id']}",
                           params={"with_ext": "true", "session_id": second["access_token"]})
        assert profile.status_code == 200

        s.faults.token_ttl_seconds = 0.3
        time.sleep(0.4)
        new_auth = auth.nd_auth_header(url, "GET", second["access_token"], second["mac_key"])
        assert http.get(url, headers={"X-ND-AUTH": new_auth}).status_code == 401
        third = http.post(refresh_url.format(second["refresh_token"])).json()  # refresh still works
        assert third["expires_at"]
        fresh = auth.nd_auth_header(url, "GET", third["access_token"], third["mac_key"])
        assert http.get(url, headers={"X-ND-AUTH": fresh}).status_code == 200
        s.revoke_tokens()
        assert http.post(refresh_url.format(third["refresh_token"])).status_code == 401
        assert http.get(url, headers={"X-ND-AUTH": fresh}).status_code == 401


def test_bursts_on_private_hosts_get_400_then_recover(standin, http):
    url = standin.url(normal_book(standin).url)
    standin.faults.burst_limit = (3, 0.5)
    statuses, bodies = [], []
    for _ in range(8):
        response = http.get(url, headers=signed(standin, url, Range="bytes=0-0"))
        statuses.append(response.status_code)
        bodies.append(response.content)
    assert statuses[:3] == [206, 206, 206] and set(statuses[3:]) == {400}
    throttled = [b for code, b in zip(statuses, bodies) if code == 400]
    assert all(len(b) <= 2 or b"<Code>InvalidArgument</Code>" in b for b in throttled)
    json_host = http.get(standin.hosts[S_FILE] + "/zxx/ndrs/tags/tch_material_tag.json")
    assert json_host.status_code == 200                                    # only private hosts
    time.sleep(0.6)
    assert http.get(url, headers=signed(standin, url)).status_code == 200


# ---------------------------------------------------------------------------- Range

def test_range_on_and_off_416_if_range_and_head(standin, http):
    book = normal_book(standin)
    url, data = standin.url(book.url), standin.file_bytes(book.url)
    size = len(data)
    part = http.get(url, headers=signed(standin, url, Range="bytes=100-199"))
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert part.headers["Content-Length"] == "100" and part.headers["Accept-Ranges"] == "bytes"
    tail = http.get(url, headers=signed(standin, url, Range="bytes=-10"))
    assert tail.status_code == 206 and tail.content == data[-10:]
    open_ended = http.get(url, headers=signed(standin, url, Range=f"bytes={size - 5}-"))
    assert open_ended.content == data[-5:]
    beyond = http.get(url, headers=signed(standin, url, Range=f"bytes={size}-"))
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"
    etag, modified = part.headers["ETag"], part.headers["Last-Modified"]
    assert etag == f'"{book.md5}"'
    same = http.get(url, headers=signed(standin, url, Range="bytes=10-19", **{"If-Range": etag}))
    assert same.status_code == 206
    by_date = http.get(url, headers=signed(standin, url, Range="bytes=10-19", **{"If-Range": modified}))
    assert by_date.status_code == 206
    changed = http.get(url, headers=signed(standin, url, Range="bytes=10-19", **{"If-Range": '"other"'}))
    assert changed.status_code == 200 and changed.content == data
    head = http.head(url, headers=signed(standin, url))
    assert head.status_code == 200 and head.headers["Content-Length"] == str(size) and head.content == b""

    standin.faults.range_supported = False
    ignored = http.get(url, headers=signed(standin, url, Range="bytes=100-199"))
    assert ignored.status_code == 200 and ignored.content == data
    assert "Content-Range" not in ignored.headers and "Accept-Ranges" not in ignored.headers
    assert ignored.headers["Content-Length"] == str(size)


# ------------------------------------------------------------------------------ HLS

def test_hls_playlist_key_handshake_and_segments_decrypt_to_ts(standin, http):
    lesson = next(iter(standin.catalogue.lessons.values()))
    video = lesson.videos[0]
    detail = get_json(standin, http, f"/zxx/ndrv2/national_lesson/resources/details/{lesson.id}.json")
    sub = next(s for s in detail["relations"]["national_course_resource"] if s["id"] == video.id)
    flags = {i["ti_file_flag"] for i in sub["ti_items"]}
    assert {"href", "href-m3u8", "href-720p-m3u8", "href-480p-m3u8", "href-360p-m3u8"} <= flags
    item = next(i for i in sub["ti_items"] if i["ti_file_flag"] == "href-720p-m3u8")
    requirements = {r["name"]: r["value"] for r in item["custom_properties"]["requirements"]}
    assert item["custom_properties"]["encryption"] == "drm"
    playlist_url = standin.url(item["ti_storages"][0])
    playlist = http.get(playlist_url, headers=signed(standin, playlist_url))
    assert playlist.status_code == 200 and len(playlist.content) == item["ti_size"]
    assert hashlib.md5(playlist.content).hexdigest() == item["ti_md5"]
    lines = playlist.text.splitlines()
    assert lines[:5] == ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:10",
                         "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]
    key_line = lines[5]
    assert key_line.startswith('#EXT-X-KEY:METHOD=AES-128,URI="https://ndvideo-key.ykt.eduyun.cn/v1/resource_keys/')
    assert key_line.endswith(",IV=0x" + "0" * 32)
    key_uri = key_line.split('URI="')[1].split('"')[0]
    segments = [line for line in lines if line and not line.startswith("#")]
    assert lines[-1] == "#EXT-X-ENDLIST" and 3 <= len(segments) <= 5
    assert all("/" not in name and name.endswith(f"-{i:05d}.ts") for i, name in enumerate(segments))
    assert int(requirements["count"]) == len(segments)

    key_id = key_uri.rsplit("/", 1)[1]
    nonce = http.get(standin.url(key_uri) + "/signs").json()["nonce"]
    sign = hashlib.md5((nonce + key_id).encode()).hexdigest()[:16]
    wrapped = http.get(standin.url(key_uri), params={"nonce": nonce, "sign": sign}).json()["key"]
    key = hls.unwrap_key(wrapped, sign)
    assert len(key) == 16 and key == standin.catalogue.key(key_id)
    assert http.get(standin.url(key_uri), params={"nonce": nonce, "sign": "x" * 16}).status_code == 403

    base = playlist_url.rsplit("/", 1)[0]
    total, plain = 0, b""
    for name in segments:
        url = f"{base}/{name}"
        data = http.get(url, headers=signed(standin, url)).content
        total += len(data)
        decrypted = hls.decrypt_segment(data, key)
        assert len(decrypted) % 188 == 0 and decrypted[::188] == b"\x47" * (len(decrypted) // 188)
        plain += decrypted
    assert total == int(requirements["total_size"])
    if shutil.which("ffprobe") and standin.catalogue.courses.clip.playable:
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v",
                                "-show_entries", "stream=codec_name,profile,nb_read_frames",
                                "-of", "json", "-i", "pipe:0"], input=plain,
                               capture_output=True, timeout=60, check=True)
        stream = json.loads(probe.stdout)["streams"][0]
        assert stream["codec_name"] == "h264" and stream["profile"] == "Main"
        assert int(stream["nb_read_frames"]) == 25 * 2 * len(segments)      # 2 s at 25 fps each


def test_strict_video_needs_a_real_mac_and_playlists_need_a_token(standin, http):
    strict_sub = next(s for s in standin.catalogue.courses.subs.values() if s.strict)
    assert strict_sub.id in standin.catalogue.strict_ids
    document = standin.url("https://" + PRIVATE + quote(strict_sub.document_path))
    assert http.get(document, headers={"Authorization": f"Bearer {standin.token.access_token}"}).status_code == 400
    assert http.get(document, headers=signed(standin, document)).status_code == 200
    playlist = standin.url(next(iter(standin.catalogue.lessons.values())).videos[0].renditions[1].url)
    assert http.get(playlist).status_code == 401


# ---------------------------------------------------------------------------- faults

def raw_get(s: Standin, url: str, timeout: float = 10.0, read_gap: list | None = None):
    """GET over a plain socket: (headers bytes, body bytes, error) — exactly what arrived."""
    parts = urlsplit(url)
    request = (f"GET {quote(parts.path)} HTTP/1.1\r\nHost: 127.0.0.1:{s.port}\r\n"
               f"X-ND-AUTH: {s.nd_auth(url)}\r\nConnection: close\r\n\r\n").encode()
    received, error = b"", None
    with socket.create_connection(("127.0.0.1", s.port), timeout=timeout) as sock:
        sock.sendall(request)
        last = time.monotonic()
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError as exc:
                error = exc
                break
            now = time.monotonic()
            if read_gap is not None:
                read_gap.append(now - last)
            last = now
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body, error


def test_drop_after_bytes_resets_the_connection_mid_body_once(standin, http):
    book = normal_book(standin)
    url, data = standin.url(book.url), standin.file_bytes(book.url)
    standin.faults.drop_after_bytes = 5000
    head, body, error = raw_get(standin, url)
    assert f"Content-Length: {len(data)}".encode() in head
    assert body == data[:5000]
    assert isinstance(error, ConnectionResetError)                       # no clean end
    assert standin.faults.drop_after_bytes is None                       # one-shot
    standin.settle()
    assert standin.log[-1].fault == "drop" and standin.log[-1].outcome == "dropped"
    assert http.get(url, headers=signed(standin, url)).content == data


def test_random_drops_happen_about_every_n_bytes(standin):
    book = normal_book(standin)
    url, data = standin.url(book.url), standin.file_bytes(book.url)
    standin.faults.drop_every_bytes = len(data) // 2
    cut = 0
    for _ in range(12):
        _, body, error = raw_get(standin, url)
        if error is not None:
            cut += 1
            assert data.startswith(body) and len(body) < len(data)
        else:
            assert body == data
    assert 4 <= cut <= 12          # 12 bodies of 2N bytes: ~24 gaps of N/2..3N/2 bytes


def test_stall_stops_sending_then_resumes(standin):
    book = normal_book(standin)
    url, data = standin.url(book.url), standin.file_bytes(book.url)
    standin.faults.stall_after_bytes, standin.faults.stall_seconds = 3000, 0.8
    gaps: list[float] = []
    _, body, error = raw_get(standin, url, read_gap=gaps)
    assert error is None and body == data
    assert max(gaps) >= 0.7                                              # really stopped
    assert standin.faults.stall_after_bytes is None


def test_a_stalled_download_does_not_block_other_requests(standin, http):
    book = normal_book(standin)
    url = standin.url(book.url)
    standin.faults.stall_after_bytes, standin.faults.stall_seconds = 100, 1.0
    seen = len(standin.log)
    stalled = threading.Thread(target=raw_get, args=(standin, url))
    stalled.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stalled_entry = next((e for e in standin.log[seen:] if e.fault == "stall"), None)
            if stalled_entry is not None and stalled_entry.bytes_sent == 100:
                break
            time.sleep(0.01)
        other = http.get(url, headers=signed(standin, url, Range="bytes=0-9"))
        assert other.status_code == 206
        assert stalled_entry.outcome == "" and stalled_entry.bytes_sent == 100  # still stalled
    finally:
        stalled.join(10)


def test_corrupt_next_flips_a_byte_and_keeps_the_length(standin, http):
    book = normal_book(standin)
    url, data = standin.url(book.url), standin.file_bytes(book.url)
    standin.faults.corrupt_next = 1
    bad = http.get(url, headers=signed(standin, url))
    assert bad.status_code == 200 and len(bad.content) == len(data) and bad.content != data
    assert sum(a != b for a, b in zip(bad.content, data)) == 1
    assert bad.content[:5] == b"%PDF-"
    assert http.get(url, headers=signed(standin, url)).content == data


def test_5xx_on_chosen_hosts_for_the_next_n_requests(standin, http):
    book = normal_book(standin)
    r1, r2 = (standin.url(u) for u in book.pdf_urls[:2])
    standin.faults.fail_5xx_next, standin.faults.fail_5xx_hosts = 2, {PRIVATE}
    assert http.get(r2, headers=signed(standin, r2)).status_code == 200
    assert [http.get(r1, headers=signed(standin, r1)).status_code for _ in range(3)] == [503, 503, 200]
    standin.faults.fail_5xx_next, standin.faults.fail_5xx_hosts = 1, None
    version = standin.hosts[S_FILE] + "/zxx/ndrs/resources/tch_material/version/data_version.json"
    assert http.get(version).status_code == 200                          # JSON hosts untouched
    assert http.get(r2, headers=signed(standin, r2)).status_code == 503
    standin.faults.fail_5xx_next, standin.faults.fail_5xx_hosts = 1, {S_FILE}
    assert http.get(version).status_code == 503


def test_bandwidth_cap_is_a_shared_token_bucket(standin, http):
    """Correctness, not speed: the cap is never exceeded, alone or shared by two."""
    book = normal_book(standin)
    url, data = standin.url(book.url), standin.file_bytes(book.url)
    rate = 200_000
    standin.faults.rate_limit_bytes_per_s = rate
    started = time.monotonic()
    assert http.get(url, headers=signed(standin, url)).content == data
    burst = 16384
    assert time.monotonic() - started >= (len(data) - burst) / rate * 0.95

    results = []

    def fetch():
        with requests.Session() as session:
            results.append(session.get(url, headers=signed(standin, url)).content)

    started = time.monotonic()
    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [data, data]
    assert time.monotonic() - started >= (2 * len(data) - burst) / rate * 0.95


def test_runs_as_a_process_steered_over_http(tmp_path):
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "standin"), "--seed", "4"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(process.stdout.readline())
        assert set(first["hosts"]) == set(ALL_HOSTS) and json.loads(first["token_json"])["value"]
        with requests.Session() as session:
            control = first["base_url"] + "/_standin/faults"
            assert session.post(control, json={"range_supported": False}).json()["range_supported"] is False
            assert session.post(control, json={"no_such_fault": 1}).status_code == 400
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert process.returncode == 0
