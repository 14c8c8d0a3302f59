"""Every setting of the appliance, declared once.

Each :class:`Setting` has a name, a default, a type, the environment variable that
sets it and a help text. The README's settings table and ``shuqiao config`` are both
derived from :data:`SETTINGS`, and a test checks the README documents every one.

Values are layered, later layers winning:

1. the defaults below,
2. ``shuqiao.toml`` in the home directory,
3. ``SHUQIAO_*`` environment variables,
4. command-line flags (and the mapping tests pass to ``create_app``).

Every bad value is collected and reported at once, each with where it came from, so an
IT teacher fixes a config file in one go instead of one error per restart.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

VERSION = "0.1.0"
API_VERSION = "1"
ENV_PREFIX = "SHUQIAO_"
CONFIG_FILE_NAME = "shuqiao.toml"


class SettingsError(Exception):
    """One or more settings have bad values; ``problems`` lists them all."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("Invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, int):
        return value
    return int(str(value).strip())


def _parse_str(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError("expected text")
    return str(value)


def _parse_map(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("expected a JSON object of strings")
    return dict(value)


def _parse_budget_windows(value: Any) -> str:
    """Checked by the budget's own parser (cache/budget.py owns the syntax); kept as text."""
    from cache.budget import parse_windows

    text = _parse_str(value)
    parse_windows(text)
    return text


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "budget_windows": _parse_budget_windows,
    "bool": _parse_bool,
    "int": _parse_int,
    "str": _parse_str,
    "map": _parse_map,
}


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    type: str
    help: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def parse(self, value: Any) -> Any:
        try:
            parsed = _PARSERS[self.type](value)
        except (ValueError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"{value!r} is not valid ({error})") from None
        if self.minimum is not None and parsed < self.minimum:
            raise ValueError(f"{parsed} is below the minimum {self.minimum}")
        if self.maximum is not None and parsed > self.maximum:
            raise ValueError(f"{parsed} is above the maximum {self.maximum}")
        if self.choices and parsed not in self.choices:
            raise ValueError(f"{parsed!r} is not one of {', '.join(self.choices)}")
        return parsed


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "str",
            "Address to listen on. 127.0.0.1 serves this machine only; 0.0.0.0 serves the "
            "whole LAN (the systemd unit sets it)."),
    Setting("port", 8080, "int", "TCP port to listen on; 0 picks a free one.",
            minimum=0, maximum=65535),
    Setting("threads", 8, "int",
            "Waitress worker threads for pages and API calls. Blob downloads do not use "
            "them: waitress streams files from its I/O loop.", minimum=1, maximum=256),
    Setting("connection_limit", 500, "int",
            "Most simultaneous connections waitress accepts (a classroom of lab terminals "
            "each opens several).", minimum=200, maximum=10000),
    Setting("send_buffer_bytes", 131072, "int",
            "SO_SNDBUF for client sockets (Linux doubles it): bounds the kernel memory a "
            "paused viewer holds and the bytes sent to one client per wakeup.",
            minimum=16384, maximum=16777216),
    Setting("mdns", True, "bool",
            "Announce the appliance on the LAN by mDNS (_shuqiao._tcp and _http._tcp)."),
    Setting("display_name", "书桥 Shuqiao", "str",
            "Name shown on the kiosk and in the mDNS announcement, e.g. the school's name."),
    Setting("language", "zh-CN", "str",
            "Default language of the kiosk pages; each terminal can switch.",
            choices=("zh-CN", "en")),
    Setting("disk_reserve_mb", 512, "int",
            "Free disk space (MB) to keep; below it `shuqiao status` reports low disk and "
            "uploads are refused.", minimum=0),
    Setting("upload_max_mb", 2048, "int",
            "Largest file (MB) a teacher may upload through the admin pages.", minimum=1),
    Setting("event_batch_max", 500, "int",
            "Most usage events accepted in one POST /api/events request.",
            minimum=1, maximum=10000),
    Setting("login_attempts", 5, "int",
            "Failed admin logins allowed per address in 15 minutes before login is refused "
            "for that address.", minimum=1, maximum=1000),
    Setting("shutdown_grace_seconds", 10, "int",
            "On SIGTERM, how long in-flight requests may take to finish before the server "
            "closes their connections.", minimum=0, maximum=600),
    Setting("log_level", "info", "str", "How much the server logs to stderr (the journal "
            "under systemd).",
            choices=("debug", "info", "warning", "error")),
    Setting("feed_name", "", "str",
            "Name of the pack feed this appliance publishes at /feed/ and writes with "
            "`shuqiao export` (empty: the display name plus a short instance id)."),
    Setting("feed_trusted_keys", {}, "map",
            "Ed25519 public keys whose signed pack feeds (USB packs, county mirrors, LAN "
            "peers) may be imported: a map name -> key (base64 as `shuqiao feed-key` prints "
            "it, or 64 hex). In shuqiao.toml a [feed_trusted_keys] table; env as JSON. This "
            "appliance's own key is always trusted."),
    Setting("peer_discovery", True, "bool",
            "Look for other Shuqiao appliances on the LAN by mDNS and fetch from a trusted "
            "one (its key in feed_trusted_keys) before the internet."),
    Setting("smartedu_hosts", {}, "map",
            "Maps a national-platform host name to another base URL, e.g. "
            '{"r1-ndr-private.ykt.cbern.com.cn": "http://mirror.county.lan/r1"}: how a '
            "county mirror, a proxy or the test stand-in is used. Applies to every URL the "
            "platform's JSON names (catalogue, files, HLS keys, token refresh); the MAC "
            "signature covers the URL actually requested. Env as JSON."),
    Setting("smartedu_token_file", "", "str",
            "File holding the platform login token JSON an administrator pasted (the "
            "browser's localStorage ND_UC_AUTH-…&token value); refreshed tokens are written "
            "back to it. Empty: smartedu_token.json in the home; relative: under the home."),
    Setting("smartedu_auth", "auto", "str",
            "How requests to the platform's private file hosts are authenticated: mac "
            "(X-ND-AUTH MAC signature plus Bearer), bearer (Authorization: Bearer only), "
            "placeholder (MAC with nonce/mac \"0\", as old tools did; strict objects refuse "
            "it), none; auto = mac when the token has a mac_key, none without a token.",
            choices=("auto", "mac", "bearer", "placeholder", "none")),
    Setting("smartedu_video_rendition", "720p", "str",
            "Which HLS rendition of a lesson video to fetch; when a video lacks it, the "
            "nearest one available.", choices=("1080p", "720p", "480p", "360p")),
    Setting("smartedu_modules", "all", "str",
            "Which platform catalogues `shuqiao catalog update` syncs: tch_material "
            "(e-textbooks), national_lesson (课程教学 lesson packages) or all.",
            choices=("all", "tch_material", "national_lesson")),
    Setting("smartedu_course_scope", "", "str",
            "Which course books' lessons to catalogue: rules separated by ';', each a set "
            "of tag names a course book must all carry, e.g. \"小学 数学; 初中 语文 统编版\". "
            "Empty: all 2,400 (a full lesson catalogue is large on a thin link)."),
    Setting("fetch_workers", 3, "int",
            "Transfers run at once (worker threads of the fetch queue). The national "
            "platform source limits itself to 3 at once whatever this says.",
            minimum=1, maximum=16),
    Setting("budget_windows", "", "budget_windows",
            "Bandwidth budget by time of day, e.g. \"18:00-07:00=unlimited, "
            "07:00-18:00=256KB, mon-fri 08:00-08:45=pause\": windows [days ]HH:MM-HH:MM=RATE "
            "separated by commas; RATE is unlimited, pause, or a number with B, KB, MB "
            "(per second, ×1024) or kbit, Mbit. Where windows overlap the most restrictive "
            "applies; outside all windows there is no cap. One budget is shared by all "
            "transfers. Empty: no cap."),
    Setting("monthly_quota_mb", 0, "int",
            "Most MB fetched from upstream per calendar month (metered 4G plans); when "
            "used up, fetching pauses until the next month or until the admin grants more. "
            "0: no quota.", minimum=0),
    Setting("storage_quota_mb", 0, "int",
            "Most MB of fetched content to keep; beyond it the least recently used content "
            "that is not pinned is evicted (it can be fetched again). 0: no quota (only "
            "disk_reserve_mb limits).", minimum=0),
    Setting("lrs_url", "", "str",
            "xAPI endpoint of the Learning Record Store that collects usage, e.g. "
            "https://lrs.example.edu.cn/xAPI/ (statements go to <url>statements). Empty: "
            "usage stays in the outbox; `shuqiao export-usage` carries it on a USB drive."),
    Setting("lrs_user", "", "str", "User name for the LRS (HTTP Basic auth)."),
    Setting("lrs_password", "", "str", "Password for the LRS (HTTP Basic auth); masked by "
            "`shuqiao config`.", secret=True),
    Setting("lrs_ca_file", "", "str",
            "CA certificate file (PEM) to trust for an LRS with a private certificate. "
            "Empty: the system's CAs."),
    Setting("lrs_batch_max", 200, "int", "Most statements sent to the LRS in one request.",
            minimum=1, maximum=5000),
    Setting("lrs_batch_max_kb", 512, "int",
            "Most KB of statements in one request to the LRS (a lone larger statement "
            "still goes alone).", minimum=1, maximum=65536),
    Setting("lrs_timeout_seconds", 30, "int",
            "How long to wait for the LRS to answer one request before backing off.",
            minimum=1, maximum=600),
    Setting("lrs_interval_seconds", 60, "int",
            "How often the serving process looks for new usage to upload.",
            minimum=1, maximum=86400),
    Setting("lrs_retry_max_seconds", 1800, "int",
            "Longest wait between upload attempts while the LRS is down or failing "
            "(exponential back-off with jitter up to this).", minimum=1, maximum=86400),
    Setting("lrs_sync_window", "", "str",
            "When uploads may run, local time, e.g. \"18:00-07:00, 12:00-13:00\" (a window "
            "that ends before it starts runs past midnight). Empty: any time. Uploads also "
            "pause whenever the fetch bandwidth budget is paused."),
    Setting("lrs_mode", "events", "str",
            "events: one xAPI statement per usage event. daily: one statement per "
            "resource, class and day, sent after the day ends (for very thin links; no "
            "terminal ids go upstream).", choices=("events", "daily")),
    Setting("xapi_base_iri", "https://shuqiao.invalid", "str",
            "Base of the IRIs in xAPI statements (appliance, resources, extensions). The "
            "county may set an address it owns; keep it the same on all its appliances."),
    Setting("school_code", "", "str",
            "The school's 10-digit national school identification code (学校标识码), sent "
            "in each statement's context with display_name so the county can tell schools "
            "apart. Empty: not sent."),
    Setting("usage_retention_days", 365, "int",
            "Delivered usage events older than this many days are deleted from usage.db "
            "(undelivered ones are kept).", minimum=1, maximum=36500),
    Setting("usage_retention_mb", 256, "int",
            "Largest size of usage.db's data: beyond it the oldest delivered events are "
            "deleted (undelivered ones are kept).", minimum=1),
    Setting("usage_disk_floor_mb", 64, "int",
            "When the disk has less free space than this, usage.db drops its oldest events, "
            "even undelivered ones, so recording can go on; drops are counted and shown on "
            "the admin page.", minimum=0),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


def default_home() -> Path:
    """The per-user data directory (XDG), used when neither --home nor SHUQIAO_HOME is set."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "shuqiao"


def resolve_home(cli_home: str | os.PathLike | None = None,
                 environ: Mapping[str, str] | None = None) -> Path:
    """The home directory: --home, else SHUQIAO_HOME, else the per-user default.

    The home is not itself an ordinary setting: ``shuqiao.toml`` lives inside it.
    """
    environ = os.environ if environ is None else environ
    if cli_home:
        return Path(cli_home).expanduser().resolve()
    if environ.get(ENV_PREFIX + "HOME"):
        return Path(environ[ENV_PREFIX + "HOME"]).expanduser().resolve()
    return default_home()


@dataclass
class Config:
    """The effective settings: ``home`` plus one value per :data:`SETTINGS` entry."""

    home: Path
    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def describe(self) -> list[dict[str, Any]]:
        """Rows for ``shuqiao config``: name, value, source, env var (secrets masked)."""
        rows = [{"name": "home", "value": str(self.home), "source": self.sources.get("home", "default"),
                 "env": ENV_PREFIX + "HOME"}]
        for setting in SETTINGS:
            value = self.values[setting.name]
            rows.append({
                "name": setting.name,
                "value": "********" if setting.secret and value else value,
                "source": self.sources.get(setting.name, "default"),
                "env": setting.env_var,
            })
        return rows


def load(home: str | os.PathLike | None = None,
         overrides: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Build the effective :class:`Config`, raising :class:`SettingsError` listing every problem.

    :param home: the --home flag, if given.
    :param overrides: values from command-line flags or tests (None values are ignored).
    :param environ: the environment (defaults to ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    home_path = resolve_home(home, environ)
    sources = {"home": "--home" if home else ("env " + ENV_PREFIX + "HOME"
                                              if environ.get(ENV_PREFIX + "HOME") else "default")}
    values = {s.name: s.default for s in SETTINGS}
    problems: list[str] = []

    def apply(name: str, raw: Any, source: str) -> None:
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None:
            problems.append(f"{source}: unknown setting {name!r}")
            return
        try:
            values[name] = setting.parse(raw)
            sources[name] = source
        except ValueError as error:
            problems.append(f"{source}: {name} = {error}")

    config_file = home_path / CONFIG_FILE_NAME
    if config_file.is_file():
        try:
            file_values = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            problems.append(f"{config_file}: cannot be read as TOML ({error})")
            file_values = {}
        for name, raw in file_values.items():
            apply(name, raw, str(config_file))

    for setting in SETTINGS:
        if setting.env_var in environ:
            apply(setting.name, environ[setting.env_var], "env " + setting.env_var)

    for name, raw in (overrides or {}).items():
        if raw is not None:
            apply(name, raw, "--" + name.replace("_", "-") if name in SETTINGS_BY_NAME else "override")

    if problems:
        raise SettingsError(problems)
    return Config(home=home_path, values=values, sources=sources)
