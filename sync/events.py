"""Validation of usage events as posted by kiosk pages and players.

A batch is all or nothing: if any event is invalid the whole request is refused with
every problem listed, and nothing is stored, so a terminal can fix and resend it whole.
Terminal ids are restricted to short ASCII tokens so that a child's name cannot be put
where a pseudonymous id belongs.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime, timezone
from typing import Any

EVENT_TYPES = ("view-start", "view-progress", "view-complete")
ROLES = ("student", "teacher")
_FIELDS = {"id", "type", "resource", "terminal", "role", "at", "seconds"}
_TERMINAL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RESOURCE = re.compile(r"^[0-9a-f]{32}$")
MAX_SECONDS = 24 * 3600


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


def validate_event(raw: Any) -> dict:
    """One event, normalised (canonical UUID, UTC time); raises ValueError with a reason."""
    if not isinstance(raw, dict):
        raise ValueError("must be a JSON object")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    problems = []
    event: dict[str, Any] = {}
    try:
        event["id"] = str(uuid.UUID(str(raw["id"]))) if raw.get("id") is not None else str(uuid.uuid4())
    except ValueError:
        problems.append("id must be a UUID")
    if raw.get("type") not in EVENT_TYPES:
        problems.append(f"type must be one of {', '.join(EVENT_TYPES)}")
    event["type"] = raw.get("type")
    if not isinstance(raw.get("resource"), str) or not _RESOURCE.match(raw["resource"]):
        problems.append("resource must be a resource id (32 hex characters)")
    event["resource"] = raw.get("resource")
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
    seconds = raw.get("seconds")
    if seconds is None:
        if raw.get("type") in ("view-progress", "view-complete"):
            problems.append("seconds is required for view-progress and view-complete")
        event["seconds"] = 0.0
    elif (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
          or not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS):
        problems.append(f"seconds must be a number from 0 to {MAX_SECONDS}")
    else:
        event["seconds"] = float(seconds)
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
