"""A stand-in of the national platform (国家中小学智慧教育平台) for tests and benches.

Built from ../shared/reference/smartedu-upstream.md. Usage (``tests/`` is on sys.path)::

    from standin import Standin
    with Standin(captured_dir=CAPTURED_or_None, seed=1, small=True) as s:
        s.hosts         # {"s-file-1.ykt.cbern.com.cn": "http://127.0.0.1:PORT/s-file-1.ykt.cbern.com.cn", …}
        s.token_json()  # the login token JSON an admin pastes (localStorage value, §3.4)
        s.faults        # switches tests flip at any time (standin.faults.Faults)
        s.log           # list[LogEntry]: method, host, path, query, status, range,
                        # bytes_sent, auth, client, fault, outcome
        s.catalogue     # ids, files, sizes, md5s, keys (standin.catalogue.Catalogue)
        s.file_bytes(url)   # exact bytes a file URL serves (platform or stand-in URL)

Also: ``s.url(platform_url)`` (host mapping), ``s.nd_auth(mapped_url)`` (a valid header),
``s.token`` (the current login Token), ``s.touch_textbook(id)`` (new edition, new
module_version), ``s.revoke_tokens()`` (refresh chain broken), ``s.settle()`` (wait until no
request is in flight, so log entries are final), ``s.requests_to(host, path_contains)``.
Constructor extras: ``lesson_books`` (course books that have lessons; default 4 when
small, all when large), ``lessons_per_book`` (default 3 small, 6 large), ``host``, ``port``.
Run it as a process for benches: ``python tests/standin --captured DIR --large`` prints the
hosts and token JSON; faults are then set with ``POST /_standin/faults`` (JSON). A large
stand-in takes ~5 s to start and ~310 MB (14,400 lessons), so a bench that measures the
appliance's memory should run it as a process. ``LogEntry.time`` is when the request
line arrived: in one process with a busy client, thread scheduling blurs it by some ms.

Hosts (§1): s-file-1/2/3 and bdcs-file-1/2 (JSON, identical mirrors; ``/zxx_secondary/``
is an alias of ``/zxx/``), r1/r2/r3-ndr (public bucket), r1/r2/r3-ndr-private and
r1/r2-ndr-doc-private (private bucket), ndvideo-key.ykt.eduyun.cn (HLS keys),
uc-gateway.ykt.eduyun.cn (token refresh). Each is served under ``/<host>/…`` on one port.
All URLs inside JSON and playlists are the **real absolute platform URLs**; a client maps
them through ``s.hosts`` exactly as the appliance maps them through ``smartedu_hosts``.

THE SIGNING RULE — the MAC covers the URL actually requested
-------------------------------------------------------------
The stand-in verifies ``X-ND-AUTH: MAC id="{access_token}",nonce="{nonce}",mac="{mac}"``
against the request it received, as the real CDN does, so the client signs the **mapped**
URL it really sends, e.g. for
``https://r2-ndr-private.ykt.cbern.com.cn/edu_product/esp/assets/X.pkg/样例.pdf`` sent as
``http://127.0.0.1:PORT/r2-ndr-private.ykt.cbern.com.cn/edu_product/esp/assets/X.pkg/%E6%A0%B7%E4%BE%8B.pdf``
the signed text is (four lines, each ending in ``\\n``)::

    {nonce}\\nGET\\n/r2-ndr-private.ykt.cbern.com.cn/edu_product/esp/assets/X.pkg/样例.pdf\\n127.0.0.1\\n

- line 3: the request path **percent-decoded** (UTF-8), including the ``/<host>`` prefix,
  then ``?query`` exactly as sent (not decoded) if there is a query; no fragment;
- line 4: the host name from the ``Host`` header without the port;
- ``mac`` = Base64(HMAC-SHA256(key=mac_key, msg=text)); ``nonce`` =
  ``"{ms since epoch + diff}:{8 chars of 1-9A-Z}"``; it must be within
  ``faults.nonce_window_seconds`` (300) of the platform clock, which runs
  ``faults.clock_offset_ms`` ahead of the local one (the token's ``diff``). No replay check.
``standin.auth.nd_auth_header(mapped_url, method, token, mac_key, diff)`` is a reference.

Auth on the private hosts (files; checked before the file lookup, so 401 beats 404)
-----------------------------------------------------------------------------------
Order on a private host: burst limit (400) → injected 5xx → auth (401) → lookup (404
NoSuchKey XML) → strictness (400 InvalidArgument) → the body.
- no ``X-ND-AUTH`` / ``Authorization`` / ``?accessToken`` → 401, openresty HTML (~346 B);
- a token that is unknown, expired (``faults.token_ttl_seconds`` after issue, checked at
  use) or revoked → 401 (with ``?accessToken`` → 400 InvalidArgument XML, as observed);
- valid token with a valid MAC → 200/206 for every object;
- valid token with placeholder ``nonce="0",mac="0"``, a wrong MAC, ``Authorization: Bearer``
  alone, raw ``X-ND-AUTH: {token}``, or ``?accessToken`` → 200/206 for normal objects,
  **400 XML ``<Code>InvalidArgument</Code>`` for strict objects** (``entry.strict``;
  ids in ``s.catalogue.strict_ids``). ``LogEntry.auth`` says which mode was seen
  (mac, bad-mac, placeholder, bearer, raw, query, none, unknown-token, …).
Public r*-ndr hosts serve page images, thumbnails and covers without auth and answer 403
AccessDenied XML for private objects. The key service and JSON hosts need no auth.

Files
-----
``Content-Length`` always; ``ETag`` = quoted lowercase hex MD5 of the whole object (as
object stores do) and ``Last-Modified`` (the resource's update time) on every file and
JSON answer. ``faults.range_supported`` True: one ``bytes=`` range → 206 +
``Content-Range``, unsatisfiable → 416 + ``Content-Range: bytes */size``, several ranges
or a malformed header → 200 whole; False: Range ignored, 200 whole, no ``Accept-Ranges``.
``If-Range`` with an ETag (strong comparison) or an HTTP date that does not match → 200
whole. HEAD answers the same headers. PDFs start ``%PDF-`` and end ``%%EOF``; sizes are
tens of KB when ``small`` and realistic otherwise (§8); ``ti_size``/``ti_md5`` match the
bytes, and the list's ``custom_properties.size`` equals ``ti_size`` — except for the
captured part_103 entries when ``small`` (served verbatim with their real sizes). Bodies
are generated on demand (standin.content), never stored; unmetered they go out at
hundreds of MB/s. Catalogue: with captured data ~3,800 e-textbooks (parts 100-102
generated from the captured tag tree, part_103 captured) and the 2,400 captured course
books; without, 29 books and 6 course books (small) or 3,803 and 2,400 (large).

HLS (§4.4-4.5): per video sub-resource and rendition (1080p ``href``/``href-m3u8``, 720p,
480p, 360p) a v3 VOD media playlist, TARGETDURATION 10, absolute ``EXT-X-KEY`` URI
``https://ndvideo-key.ykt.eduyun.cn/v1/resource_keys/{32 hex}``, IV zero, relative segment
names ``{stem}-{00000}.ts``; segments are AES-128-CBC (PKCS#7, zero IV) over real MPEG-TS,
playable H.264/AAC when ffmpeg is installed (standin.hls). small: 3-5 segments of 2 s;
large: 91 segments of 10 s, 720p ≈ 45 MB. ``requirements.total_size``/``count`` match.
Key service: ``GET …/{keyId}/signs`` → ``{"nonce"}``; ``GET …/{keyId}?nonce=&sign=`` →
``{"key": base64(AES-128-ECB(PKCS7(raw 16-byte key), key=sign))}``; sign =
md5(nonce + keyId)[:16]; a nonce not issued for that key or a wrong sign → 403 JSON.

Tokens (§3.4): ``POST https://uc-gateway.ykt.eduyun.cn/v1.1/tokens/{refresh_token}/actions/refresh``
→ 201 ``{access_token, refresh_token, mac_key, mac_algorithm, expires_at, server_time,
user_id}``; the old refresh token stops working (rotation; the old access token lives until
it expires); unknown refresh token → 401 JSON. ``GET /v1.1/users/{user_id}?session_id=``.

Faults (``s.faults``, see standin.faults for every default)
-----------------------------------------------------------
"File responses" = bodies from the bucket hosts (r*-ndr, r*-ndr-private,
r*-ndr-doc-private); ``faults.apply_to_json = True`` adds the JSON hosts.
- ``rate_limit_bytes_per_s``: token bucket over every 200/206 body on every host (files
  and JSON; error pages are not paced) — it stands for the school's link;
  ``rate_limit_scope`` "global" (default, one bucket shared by all connections) or
  "connection". Burst of one chunk (<= 16 KiB); measured 10.02 Mbit/s at a 10 Mbit/s cap.
- ``drop_after_bytes`` (one-shot): the next file body longer than N is cut after exactly N
  body bytes with a TCP reset; then it resets itself to None.
- ``drop_every_bytes``: random resets, one per ~N file-body bytes (gap uniform in
  [N/2, 3N/2), seeded): ``10 drops per 100 MB`` is ``10_000_000``.
- ``stall_after_bytes`` + ``stall_seconds`` (one-shot): after N body bytes nothing is sent
  for stall_seconds (connection open), then the rest follows.
- ``corrupt_next``: the next N file bodies have one byte flipped in the middle of the bytes
  served (same length, same headers).
- ``fail_5xx_next`` (+ ``fail_5xx_hosts``: None = all file hosts, or a set of host names,
  JSON hosts allowed; ``fail_5xx_status``, default 503): the next N matching requests fail
  before anything else.
- ``burst_limit = (requests, seconds)``: per client IP on the private hosts, every request
  start counts; beyond the limit → 400, half the time a 2-byte body, half InvalidArgument XML.
- ``token_ttl_seconds``, ``clock_offset_ms``, ``nonce_window_seconds``: see above.
``faults.reset()`` restores a healthy platform. ``LogEntry.fault`` records what was applied.

JSON routes (every s-file/bdcs host): see standin.catalogue (tch_material version/parts/tag
tree/details/relation_audios, special_edu bundle detail and list, national_lesson
version/parts/tag tree/tm details/trees/parts.json/part_100/lesson details; elite ids 403
on the national_lesson detail path and work on ``/zxx/ndrv2/resources/{id}.json``).
"""

from .server import LogEntry, Standin

__all__ = ["LogEntry", "Standin"]
