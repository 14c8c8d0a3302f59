"""kill -9 during upload, again and again: afterwards the LRS (a real Ralph) holds exactly
the recorded events, none twice, and the outbox knows every one of them as delivered."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from ralph import ROOT, event_batch, lrs_settings, sample_appliance, start_or_skip

from sync import xapi
from sync.upload import sync_once

ITERATIONS = 8

# The uploader as its own process: passes in a loop until killed.
UPLOADER = r"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
from conftest import make_config
from sync import Usage
from sync.upload import sync_once
config = make_config(sys.argv[2], **json.loads(sys.argv[3]))
print("ready", flush=True)
while sync_once(config, Usage(config.home), echo=lambda _: None):
    pass
print("done", flush=True)
"""


@pytest.fixture
def lrs(tmp_path):
    server = start_or_skip(tmp_path / "ralph")
    yield server
    server.stop()


def test_kill_9_during_upload_neither_loses_nor_duplicates(lrs, tmp_path):
    settings = lrs_settings(lrs, lrs_batch_max=2)
    app, ctx, rids = sample_appliance(tmp_path / "home", **settings)
    client = app.test_client()
    rng = random.Random(4)
    recorded: list[str] = []
    partial_kills = 0
    for iteration in range(ITERATIONS):
        r = client.post("/api/events", json=event_batch(rids, 100, f"lab-{iteration:02d}"))
        assert r.status_code == 201
        recorded += r.get_json()["ids"]
        process = subprocess.Popen(
            [sys.executable, "-c", UPLOADER, str(ROOT), str(ctx.config.home),
             __import__("json").dumps(settings)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert process.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.02, 0.5))
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.communicate(timeout=30)
        with ctx.usage.outbox() as outbox:
            delivered = outbox.counts()["delivered"]
        # Killed in the middle (a pass that finished first exits 0 and counts for nothing).
        partial_kills += process.returncode == -signal.SIGKILL and 0 < delivered < len(recorded)
    assert partial_kills >= 3, "the kills should land in the middle of uploads"

    assert sync_once(ctx.config, ctx.usage, echo=lambda _: None) == 0
    identity = xapi.Identity.from_config(ctx.config)
    expected = sorted(xapi.statement_id(identity, e) for e in recorded)
    assert sorted(s["id"] for s in lrs.statements(identity.appliance_iri)) == expected
    on_disk = [s["id"] for s in lrs.stored_lines()]
    assert sorted(on_disk) == expected            # each once in the LRS's own file
    with ctx.usage.outbox() as outbox:
        assert outbox.counts() | {} == {"pending": 0, "delivered": len(recorded),
                                        "handed-off": 0, "invalid": 0, "conflict": 0,
                                        "total": len(recorded)}
        assert outbox.statement_counts()["delivered"] == len(recorded)
        check = outbox.db.execute("PRAGMA integrity_check").fetchone()[0]
    assert check == "ok"
