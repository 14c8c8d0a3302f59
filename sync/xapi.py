"""Usage events as xAPI 1.0.3 statements.

Identity and ids (the README's "xAPI mapping" table is the reference for the county):

- **Statement id** = uuid5(:data:`NAMESPACE`, ``"<instance id>:<event id>"``): the same
  event always yields the same id, so a resend is a no-op at any LRS, and a terminal
  cannot aim an event id at another school's statements.
- **Actor**: the pseudonymous terminal, ``{"account": {"homePage": <appliance IRI>,
  "name": <terminal id>}}``. No name, no mbox: nothing personal.
- **Object**: ``<base>/resource/<resource id>``. Resource ids are uuid5 of (source,
  upstream id) (``cache.catalog.resource_id_for``), so a platform resource has the same
  IRI on every appliance and the county can count it across schools; its platform id
  (smartedu ``contentId``) is in the definition's ``…/extensions/resource``.
- **Context**: platform "Shuqiao", language, and extensions for the school (name from
  ``display_name``, code from ``school_code``), the appliance (id, version), the role
  (student/teacher), the class label, and the original event id.
- **Timestamp** = the event's own time: a statement without one is stamped by the LRS
  when stored, and a resend of it then answers 409 (see toolbox.md).

Statements are frozen (stored as JSON) the first time they are made; everything here is
pure, so a test can rebuild and compare.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from settings import VERSION

NAMESPACE = uuid.UUID("6f1c3e52-0b7a-5d43-9a2e-3c1f0e6b8d21")
XAPI_VERSION = "1.0.3"
PLATFORM = "Shuqiao 书桥"

# Well-known verbs: ADL (adlnet.gov), Activity Streams, the Tin Can registry, and the
# AcrossX profile of the xAPI Chinese Community of Practice.
VERBS: dict[str, tuple[str, str, str]] = {
    # type: (IRI, en-US, zh-CN)
    "view-start": ("http://adlnet.gov/expapi/verbs/initialized", "initialized", "开始观看"),
    "view-progress": ("http://adlnet.gov/expapi/verbs/progressed", "progressed", "观看进度"),
    "view-complete": ("http://adlnet.gov/expapi/verbs/completed", "completed", "看完"),
    "doc-open": ("http://adlnet.gov/expapi/verbs/experienced", "experienced", "打开"),
    "exercise": ("http://adlnet.gov/expapi/verbs/scored", "scored", "练习得分"),
    "rating": ("http://id.tincanapi.com/verb/rated", "rated", "评分"),
    "search": ("https://w3id.org/xapi/acrossx/verbs/searched", "searched", "搜索"),
    "fetch-request": ("http://activitystrea.ms/schema/1.0/request", "requested", "请求下载"),
    "daily": ("http://adlnet.gov/expapi/verbs/experienced", "experienced", "当日使用汇总"),
}

ACTIVITY_TYPES = {
    "textbook": "https://w3id.org/xapi/acrossx/activities/e-book",
    "lesson_package": "http://adlnet.gov/expapi/activities/lesson",
    "video": "https://w3id.org/xapi/video/activity-type/video",
    "audio": "http://adlnet.gov/expapi/activities/media",
    "courseware": "http://id.tincanapi.com/activitytype/document",
    "lesson_plan": "http://id.tincanapi.com/activitytype/document",
    "task_sheet": "http://id.tincanapi.com/activitytype/document",
    "document": "http://id.tincanapi.com/activitytype/document",
    "exercise": "http://adlnet.gov/expapi/activities/assessment",
    "image": "http://activitystrea.ms/schema/1.0/image",
}
DEFAULT_ACTIVITY_TYPE = "http://adlnet.gov/expapi/activities/media"
SEARCH_ACTIVITY_TYPE = "https://w3id.org/xapi/acrossx/activities/search-engine"
VIDEO_PROGRESS = "https://w3id.org/xapi/video/extensions/progress"
VIDEO_LENGTH = "https://w3id.org/xapi/video/extensions/length"


class IdentityError(RuntimeError):
    """The appliance has no identity yet (no instance.json): run serve or demo once."""


@dataclass(frozen=True)
class Identity:
    """Who is speaking: the appliance and its school, and the IRIs built from them."""

    instance_id: str
    base_iri: str
    school_name: str = ""
    school_code: str = ""
    version: str = VERSION
    language: str = "zh-CN"

    @classmethod
    def from_config(cls, config) -> "Identity":
        path = Path(config.home) / "instance.json"
        try:
            instance_id = json.loads(path.read_text())["id"]
        except (OSError, ValueError, KeyError):
            raise IdentityError(f"no appliance identity in {path}: run `shuqiao serve` "
                                "once to initialise the home") from None
        return cls(instance_id=instance_id, base_iri=config.xapi_base_iri.rstrip("/"),
                   school_name=config.display_name, school_code=config.school_code,
                   language=config.language)

    @property
    def appliance_iri(self) -> str:
        return f"{self.base_iri}/appliance/{self.instance_id}"

    def resource_iri(self, resource: str) -> str:
        return f"{self.base_iri}/resource/{resource}"

    @property
    def search_iri(self) -> str:
        return f"{self.appliance_iri}/search"

    def extension(self, name: str) -> str:
        return f"{self.base_iri}/xapi/extensions/{name}"


def statement_id(identity: Identity, event_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{identity.instance_id}:{event_id}"))


def to_json(statement: dict) -> str:
    """The one serialisation of a statement (frozen in usage.db, written to USB)."""
    return json.dumps(statement, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def iso_duration(seconds: float) -> str:
    """Seconds → ISO 8601 duration with xAPI's 0.01 s precision: 61.5 → PT61.5S."""
    text = f"{round(float(seconds), 2):.2f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


def verb(kind: str) -> dict:
    iri, english, chinese = VERBS[kind]
    return {"id": iri, "display": {"en-US": english, "zh-CN": chinese}}


def resource_activity(identity: Identity, resource: str, info: dict | None) -> dict:
    """The Activity for a resource; ``info`` is its row in usage.db's ``activities``."""
    info = info or {}
    definition: dict[str, Any] = {
        "type": ACTIVITY_TYPES.get(info.get("kind", ""), DEFAULT_ACTIVITY_TYPE)}
    if info.get("title"):
        definition["name"] = {identity.language: info["title"]}
    described = {k: info[k] for k in ("source", "source_id", "kind", "stage", "grade",
                                      "subject") if info.get(k)}
    described["id"] = resource
    definition["extensions"] = {identity.extension("resource"): described}
    return {"objectType": "Activity", "id": identity.resource_iri(resource),
            "definition": definition}


def search_activity(identity: Identity) -> dict:
    return {"objectType": "Activity", "id": identity.search_iri,
            "definition": {"type": SEARCH_ACTIVITY_TYPE,
                           "name": {"zh-CN": "书桥资源搜索", "en-US": "Shuqiao library search"}}}


def context(identity: Identity, *, role: str = "", class_label: str = "",
            event_id: str = "", extra: dict | None = None) -> dict:
    extensions: dict[str, Any] = {
        identity.extension("school"): {k: v for k, v in (("name", identity.school_name),
                                                         ("code", identity.school_code)) if v},
        identity.extension("appliance"): {"id": identity.instance_id,
                                          "version": identity.version},
    }
    if role:
        extensions[identity.extension("role")] = role
    if class_label:
        extensions[identity.extension("class")] = class_label
    if event_id:
        extensions[identity.extension("event")] = event_id
    extensions.update(extra or {})
    return {"platform": PLATFORM, "language": identity.language, "extensions": extensions}


def event_statement(identity: Identity, event: dict, info: dict | None = None) -> dict:
    """One stored event (a row of ``events``, ``data`` decoded or not) → its statement."""
    data = event.get("data") or {}
    if isinstance(data, str):
        data = json.loads(data)
    kind = event["type"]
    seconds = float(event.get("seconds") or 0)
    result: dict[str, Any] = {}
    extra_context: dict[str, Any] = {}
    obj = (search_activity(identity) if kind == "search"
           else resource_activity(identity, event["resource"], info))

    if kind in ("view-progress", "view-complete") or (kind != "view-start" and seconds):
        result["duration"] = iso_duration(seconds)
    if kind == "view-complete":
        result["completion"] = True
    if "duration" in data:
        extra_context[VIDEO_LENGTH] = data["duration"]
        if kind != "view-start":
            result.setdefault("extensions", {})[VIDEO_PROGRESS] = round(
                min(1.0, seconds / data["duration"]), 3)
    if "page" in data:
        result.setdefault("extensions", {})[identity.extension("page")] = data["page"]
    if kind == "exercise":
        if "total" in data:
            result["score"] = {"raw": data["correct"], "min": 0, "max": data["total"],
                               "scaled": round(data["correct"] / data["total"], 4)}
        else:
            result["score"] = {"raw": data["score"], "min": 0, "max": 100,
                               "scaled": round(data["score"] / 100, 4)}
        result["completion"] = True
    elif kind == "rating":
        result["score"] = {"raw": data["rating"], "min": 1, "max": 5}
        if data.get("comment"):
            result["response"] = data["comment"]
    elif kind == "search":
        result["response"] = data["query"]
        # success false = searched but found nothing: the county's demand signal.
        result["success"] = data["results"] > 0
        result.setdefault("extensions", {})[identity.extension("results")] = data["results"]

    ctx = context(identity, role=event["role"], class_label=event.get("class") or "",
                  event_id=event["id"], extra=extra_context)
    if kind == "search" and event.get("resource"):
        ctx["contextActivities"] = {"other": [resource_activity(identity, event["resource"],
                                                                info)]}
    statement = {
        "id": statement_id(identity, event["id"]),
        "actor": {"objectType": "Agent",
                  "account": {"homePage": identity.appliance_iri, "name": event["terminal"]}},
        "verb": verb(kind),
        "object": obj,
        "context": ctx,
        "timestamp": event["at"],
    }
    if result:
        statement["result"] = result
    return statement
