"""Validation of usage events as posted by kiosk pages and players.

A batch is all or nothing: if any event is invalid the whole request is refused with
every problem listed, and nothing is stored, so a terminal can fix and resend it whole.

Nothing personal may enter: terminal ids are short ASCII tokens (a child's name cannot go
where a pseudonymous id belongs), and a ``class`` is a class label a teacher set
(三年级一班, 3(2)班, Grade 3 A): letters, digits, spaces and a few marks, at most 32
characters, never a long run of digits (a phone or ID-card number is not a class).

Event types (README "Usage events" documents each field):

==================  =========================================================
view-start          a video or audio started; ``seconds`` watched so far (0)
view-progress       still watching; ``seconds`` watched (required)
view-complete       watched to the end; ``seconds`` watched (required)
doc-open            a document (textbook PDF, courseware…) was opened
exercise            an exercise attempt: ``score`` 0-100 and/or ``correct``/``total``
rating              ``rating`` 1-5, optional ``comment`` (≤ 500 characters)
search              ``query`` and its ``results`` count (0: searched but missing);
                    ``resource`` optional (the result opened, if any)
fetch-request       a teacher asked for a resource that is not cached yet
==================  =========================================================
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from datetime import datetime, timezone
from typing import Any

VIEW_TYPES = ("view-start", "view-progress", "view-complete")
EVENT_TYPES = VIEW_TYPES + ("doc-open", "exercise", "rating", "search", "fetch-request")
ROLES = ("student", "teacher")
COMMON_FIELDS = {"id", "type", "resource", "terminal", "role", "at", "class"}
# Fields each type may carry beyond the common ones (anything else is refused by name).
TYPE_FIELDS: dict[str, set[str]] = {
    "view-start": {"seconds", "duration"},
    "view-progress": {"seconds", "duration"},
    "view-complete": {"seconds", "duration"},
    "doc-open": {"seconds", "page"},
    "exercise": {"seconds", "score", "correct", "total"},
    "rating": {"rating", "comment"},
    "search": {"query", "results"},
    "fetch-request": set(),
}
# Type-specific fields kept in the row's ``data`` JSON (``seconds`` has its own column).
DATA_FIELDS = ("duration", "page", "score", "correct", "total", "rating", "comment", "query",
               "results")

_TERMINAL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RESOURCE = re.compile(r"^[0-9a-f]{32}$")
# Class labels: CJK ideographs, letters, digits, space and ()（）-_·.# — nothing else.
_CLASS = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fffA-Za-z0-9 ()（）\-_·.#]{1,32}$")
_DIGIT_RUN = re.compile(r"\d{5,}")
MAX_SECONDS = 24 * 3600
MAX_QUERY = 100
MAX_COMMENT = 500
MAX_RESULTS = 1_000_000
MAX_ITEMS = 10_000


class EventError(ValueError):
    """The batch was refused; ``problems`` lists every reason (with the event's index)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def _parse_time(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone (add Z or +08:00)")
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _is_number(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def _is_whole(value: Any) -> bool:
    return (not isinstance(value, bool) and (isinstance(value, int)
                                             or (isinstance(value, float) and value.is_integer())))


def _clean_text(value: Any, name: str, limit: int, problems: list[str]) -> str | None:
    """Free text from a terminal: trimmed, NFC, no control characters, at most ``limit``."""
    if not isinstance(value, str):
        problems.append(f"{name} must be text")
        return None
    text = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co") for c in text):
        problems.append(f"{name} must not contain control characters")
        return None
    if len(text) > limit:
        problems.append(f"{name} is longer than {limit} characters")
        return None
    return text


def validate_class(value: Any) -> str:
    """A class label, normalised; raises ValueError with the reason."""
    if not isinstance(value, str):
        raise ValueError("class must be text (a class label such as 三年级一班)")
    text = unicodedata.normalize("NFKC", value).strip()
    # NFKC turns full-width brackets into ASCII ones; keep one spelling per class.
    if not _CLASS.match(text):
        raise ValueError("class must be a class label of 1-32 characters: Chinese characters, "
                         "letters, digits, spaces and ()-_·.# only (e.g. 三年级一班); never a "
                         "pupil's name")
    if _DIGIT_RUN.search(text):
        raise ValueError("class must not contain 5 or more digits in a row (a class label, "
                         "not a phone or ID number)")
    return text


def _validate_type_fields(kind: str, raw: dict, event: dict, problems: list[str]) -> None:
    data: dict[str, Any] = {}
    seconds = raw.get("seconds")
    if seconds is None:
        if kind in ("view-progress", "view-complete"):
            problems.append("seconds is required for view-progress and view-complete")
        event["seconds"] = 0.0
    elif not _is_number(seconds) or not 0 <= seconds <= MAX_SECONDS:
        problems.append(f"seconds must be a number from 0 to {MAX_SECONDS}")
    else:
        event["seconds"] = float(seconds)
    if "duration" in raw and raw["duration"] is not None:
        if not _is_number(raw["duration"]) or not 0 < raw["duration"] <= MAX_SECONDS:
            problems.append(f"duration (the media's length) must be a number above 0 and at "
                            f"most {MAX_SECONDS}")
        else:
            data["duration"] = float(raw["duration"])
    if "page" in raw and raw["page"] is not None:
        if not _is_whole(raw["page"]) or not 1 <= raw["page"] <= MAX_ITEMS:
            problems.append(f"page must be a whole number from 1 to {MAX_ITEMS}")
        else:
            data["page"] = int(raw["page"])
    if kind == "exercise":
        _validate_score(raw, data, problems)
    elif kind == "rating":
        rating = raw.get("rating")
        if not _is_whole(rating) or not 1 <= rating <= 5:
            problems.append("rating must be a whole number from 1 to 5")
        else:
            data["rating"] = int(rating)
        if raw.get("comment") is not None:
            comment = _clean_text(raw["comment"], "comment", MAX_COMMENT, problems)
            if comment:
                data["comment"] = comment
    elif kind == "search":
        if raw.get("query") is None:
            problems.append("query is required for search")
        else:
            query = _clean_text(raw["query"], "query", MAX_QUERY, problems)
            if query == "":
                problems.append("query must not be empty")
            elif query is not None:
                data["query"] = query
        results = raw.get("results")
        if not _is_whole(results) or not 0 <= results <= MAX_RESULTS:
            problems.append("results (how many resources the search found; 0 = nothing) must "
                            f"be a whole number from 0 to {MAX_RESULTS}")
        else:
            data["results"] = int(results)
    event["data"] = data


def _validate_score(raw: dict, data: dict, problems: list[str]) -> None:
    score, correct, total = raw.get("score"), raw.get("correct"), raw.get("total")
    if score is None and correct is None and total is None:
        problems.append("exercise needs score (0-100) or correct and total")
        return
    if score is not None:
        if not _is_number(score) or not 0 <= score <= 100:
            problems.append("score must be a number from 0 to 100")
        else:
            data["score"] = round(float(score), 2)
    if correct is not None or total is not None:
        if not _is_whole(total) or not 1 <= total <= MAX_ITEMS:
            problems.append(f"total must be a whole number from 1 to {MAX_ITEMS}")
        elif not _is_whole(correct) or not 0 <= correct <= total:
            problems.append("correct must be a whole number from 0 to total")
        else:
            data["correct"], data["total"] = int(correct), int(total)
            computed = round(100.0 * correct / total, 2)
            if "score" in data and abs(data["score"] - computed) > 1:
                problems.append(f"score {data['score']} does not match correct/total "
                                f"({computed}); send one or make them agree")
            data.setdefault("score", computed)


def validate_event(raw: Any) -> dict:
    """One event, normalised (canonical UUID, UTC time); raises ValueError with a reason.

    The result has ``id type resource terminal role at seconds class data`` (``resource``
    is '' for a search without one; ``data`` holds the type-specific fields).
    """
    if not isinstance(raw, dict):
        raise ValueError("must be a JSON object")
    kind = raw.get("type")
    if kind not in EVENT_TYPES:
        raise ValueError(f"type must be one of {', '.join(EVENT_TYPES)}")
    unknown = sorted(set(raw) - COMMON_FIELDS - TYPE_FIELDS[kind])
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)} (not allowed for {kind})")
    problems: list[str] = []
    event: dict[str, Any] = {"type": kind}
    try:
        event["id"] = str(uuid.UUID(str(raw["id"]))) if raw.get("id") is not None else str(uuid.uuid4())
    except ValueError:
        problems.append("id must be a UUID")
    resource = raw.get("resource")
    if resource is None and kind == "search":
        event["resource"] = ""
    elif not isinstance(resource, str) or not _RESOURCE.match(resource):
        problems.append("resource must be a resource id (32 hex characters)")
    else:
        event["resource"] = resource
    if not isinstance(raw.get("terminal"), str) or not _TERMINAL.match(raw["terminal"]):
        problems.append("terminal must be a pseudonymous id: 1-64 of A-Z a-z 0-9 _ -")
    event["terminal"] = raw.get("terminal")
    if raw.get("role") not in ROLES:
        problems.append("role must be student or teacher")
    event["role"] = raw.get("role")
    if raw.get("at") is None:
        event["at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    else:
        try:
            event["at"] = _parse_time(raw["at"])
        except ValueError as error:
            problems.append(f"at {error}")
    event["class"] = ""
    if raw.get("class") is not None:
        try:
            event["class"] = validate_class(raw["class"])
        except ValueError as error:
            problems.append(str(error))
    _validate_type_fields(kind, raw, event, problems)
    if problems:
        raise ValueError("; ".join(problems))
    return event


def validate_events(body: Any, max_events: int) -> list[dict]:
    """A posted body (one event or an array of them) → normalised events, or EventError."""
    events = body if isinstance(body, list) else [body]
    if not events:
        raise EventError(["the array is empty: send at least one event"])
    if len(events) > max_events:
        raise EventError([f"too many events in one request: {len(events)} > {max_events}"])
    problems, valid = [], []
    for index, raw in enumerate(events):
        try:
            valid.append(validate_event(raw))
        except ValueError as error:
            problems.append(f"event {index}: {error}")
    ids = [e["id"] for e in valid]
    if len(set(ids)) != len(ids):
        problems.append("the same id appears twice in one request")
    if problems:
        raise EventError(problems)
    return valid
