"""Small facts the uploader keeps in ``usage.db`` so another process can show them.

The serving process uploads; ``shuqiao status`` and the admin page (in any process) read
the last attempt, success, error and retry time from here.
"""

from __future__ import annotations

import json

import sqlite_utils

UPLOADER_KEY = "uploader"


def save_state(db: sqlite_utils.Database, state: dict, key: str = UPLOADER_KEY) -> None:
    with db.atomic():
        db.execute("INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key)"
                   " DO UPDATE SET value = excluded.value",
                   [key, json.dumps(state, ensure_ascii=False)])


def load_state(db: sqlite_utils.Database, key: str = UPLOADER_KEY) -> dict:
    row = db.execute("SELECT value FROM sync_state WHERE key = ?", [key]).fetchone()
    return json.loads(row[0]) if row else {}
