"""Events → xAPI 1.0.3 statements: ids, verbs, actor, object, context, result; and a real
LRS (Ralph) accepts a statement of every type, including daily aggregates."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta

import pytest
from ralph import event_batch, lrs_settings, sample_appliance, start_or_skip

from sync import xapi
from sync.aggregate import compile_daily
from sync.upload import sync_once

IDENTITY = xapi.Identity(instance_id="a" * 32, base_iri="https://lrs.example.org/shuqiao",
                         school_name="城关镇中心小学", school_code="3141000123")
RID = "b" * 32


def stored_event(kind, **data):
    return {"id": str(uuid.uuid4()), "type": kind, "resource": RID, "terminal": "lab-07",
            "role": "student", "at": "2026-11-27T01:15:00.000+00:00",
            "seconds": data.pop("seconds", 0.0), "class": "三年级一班", "data": json.dumps(data)}


def test_statement_id_is_derived_from_the_event_and_the_appliance():
    event = stored_event("doc-open")
    first = xapi.event_statement(IDENTITY, event)
    again = xapi.event_statement(IDENTITY, dict(event))
    assert first == again and xapi.to_json(first) == xapi.to_json(again)
    assert first["id"] == str(uuid.uuid5(xapi.NAMESPACE, f"{'a' * 32}:{event['id']}"))
    other = xapi.Identity(instance_id="c" * 32, base_iri=IDENTITY.base_iri)
    assert xapi.event_statement(other, event)["id"] != first["id"]


def test_actor_is_the_pseudonymous_terminal_and_context_names_school_and_appliance():
    s = xapi.event_statement(IDENTITY, stored_event("view-start"))
    assert s["actor"] == {"objectType": "Agent", "account": {
        "homePage": "https://lrs.example.org/shuqiao/appliance/" + "a" * 32, "name": "lab-07"}}
    ext = s["context"]["extensions"]
    base = "https://lrs.example.org/shuqiao/xapi/extensions/"
    assert ext[base + "school"] == {"name": "城关镇中心小学", "code": "3141000123"}
    assert ext[base + "appliance"]["id"] == "a" * 32
    assert ext[base + "role"] == "student" and ext[base + "class"] == "三年级一班"
    assert s["timestamp"] == "2026-11-27T01:15:00.000+00:00"
    assert s["object"]["id"] == "https://lrs.example.org/shuqiao/resource/" + RID


@pytest.mark.parametrize("kind, data, verb, result", [
    ("view-start", {}, "http://adlnet.gov/expapi/verbs/initialized", None),
    ("view-progress", {"seconds": 30.5, "duration": 61}, "http://adlnet.gov/expapi/verbs/progressed",
     {"duration": "PT30.5S", "extensions": {xapi.VIDEO_PROGRESS: 0.5}}),
    ("view-complete", {"seconds": 61}, "http://adlnet.gov/expapi/verbs/completed",
     {"duration": "PT61S", "completion": True}),
    ("doc-open", {}, "http://adlnet.gov/expapi/verbs/experienced", None),
    ("exercise", {"score": 70.0, "correct": 7, "total": 10}, "http://adlnet.gov/expapi/verbs/scored",
     {"score": {"raw": 7, "min": 0, "max": 10, "scaled": 0.7}, "completion": True}),
    ("exercise", {"score": 85.5}, "http://adlnet.gov/expapi/verbs/scored",
     {"score": {"raw": 85.5, "min": 0, "max": 100, "scaled": 0.855}, "completion": True}),
    ("rating", {"rating": 4, "comment": "好"}, "http://id.tincanapi.com/verb/rated",
     {"score": {"raw": 4, "min": 1, "max": 5}, "response": "好"}),
    ("fetch-request", {}, "http://activitystrea.ms/schema/1.0/request", None),
])
def test_verbs_and_results(kind, data, verb, result):
    s = xapi.event_statement(IDENTITY, stored_event(kind, **data))
    assert s["verb"]["id"] == verb and s["verb"]["display"]["en-US"]
    assert s.get("result") == result


def test_search_without_results_is_the_demand_signal():
    event = stored_event("search", query="分数的意义", results=0)
    event["resource"] = ""
    s = xapi.event_statement(IDENTITY, event)
    assert s["verb"]["id"] == "https://w3id.org/xapi/acrossx/verbs/searched"
    assert s["object"]["id"] == IDENTITY.appliance_iri + "/search"
    assert s["result"]["response"] == "分数的意义" and s["result"]["success"] is False
    assert s["result"]["extensions"][IDENTITY.extension("results")] == 0
    assert "contextActivities" not in s["context"]


def test_activity_definition_carries_the_platform_id():
    info = {"source": "smartedu", "source_id": "bdc00134-465d-454b-a541-dcd0cec4d86e",
            "kind": "textbook", "title": "数学 三年级 上册", "subject": "数学"}
    s = xapi.event_statement(IDENTITY, stored_event("doc-open"), info)
    definition = s["object"]["definition"]
    assert definition["type"] == xapi.ACTIVITY_TYPES["textbook"]
    assert definition["name"] == {"zh-CN": "数学 三年级 上册"}
    described = definition["extensions"][IDENTITY.extension("resource")]
    assert described["source"] == "smartedu" and described["source_id"].startswith("bdc00134")


def test_iso_durations():
    assert [xapi.iso_duration(s) for s in (0, 1.5, 61, 0.004, 86400)] == [
        "PT0S", "PT1.5S", "PT61S", "PT0S", "PT86400S"]


# -------------------------------------------------------------- a real LRS

@pytest.fixture(scope="module")
def lrs(tmp_path_factory):
    server = start_or_skip(tmp_path_factory.mktemp("ralph"))
    yield server
    server.stop()


def test_a_real_lrs_accepts_every_type(lrs, tmp_path):
    app, ctx, rids = sample_appliance(tmp_path / "home", **lrs_settings(lrs))
    events = event_batch(rids, 16)
    events[6].pop("resource")           # a search with no resource
    events[7]["comment"] = None
    r = app.test_client().post("/api/events", json=[{k: v for k, v in e.items() if v is not None}
                                                    for e in events])
    assert r.status_code == 201
    assert sync_once(ctx.config, ctx.usage, echo=lambda _: None) == 0
    identity = xapi.Identity.from_config(ctx.config)
    held = lrs.statements(identity.appliance_iri)
    assert sorted(s["id"] for s in held) == sorted(
        xapi.statement_id(identity, eid) for eid in r.get_json()["ids"])
    verbs = {s["verb"]["id"] for s in held}
    assert len(verbs) == 8   # every verb of the mapping was accepted


def test_daily_aggregates_are_accepted_and_sum_correctly(lrs, tmp_path):
    app, ctx, rids = sample_appliance(tmp_path / "home", **lrs_settings(lrs, lrs_mode="daily"))
    client = app.test_client()
    yesterday = date.today() - timedelta(days=1)
    at = f"{yesterday.isoformat()}T10:00:00+08:00"
    events = [dict(e, at=at) for e in event_batch(rids[:1], 8)]
    events[6].pop("resource")   # the search: no resource
    events += [{"type": "rating", "resource": rids[0], "terminal": "lab-02", "role": "student",
                "rating": 2, "at": at, "class": "三年级一班"}]
    assert client.post("/api/events", json=events).status_code == 201
    with ctx.usage.outbox() as outbox:
        # Received yesterday as far as the appliance knows (the test cannot wait a day).
        with outbox.db.atomic():
            outbox.db.execute("UPDATE events SET received_at = ?", [f"{yesterday}T00:30:00.000+00:00"])
        identity = xapi.Identity.from_config(ctx.config)
        assert compile_daily(outbox, identity, today=date.today()) == 2   # resource + search
        assert compile_daily(outbox, identity, today=date.today()) == 0
    assert sync_once(ctx.config, ctx.usage, echo=lambda _: None) == 0
    held = {s["object"]["id"]: s for s in lrs.statements(identity.appliance_iri)}
    summary = held[identity.resource_iri(rids[0])]["result"]["extensions"][identity.extension("daily")]
    assert summary["events"] == 8 and summary["terminals"] == 2
    assert summary["rating"] == {"count": 2, "mean": 3.0, "histogram": {"2": 1, "4": 1}}
    assert summary["exercise"] == {"attempts": 1, "mean_score": 60.0}
    assert summary["completions"] == 1 and summary["seconds"] == 120
    search = held[identity.search_iri]["result"]["extensions"][identity.extension("daily")]
    assert search["searches"] == [{"query": "分数", "count": 1, "results": 0}]
    actor = held[identity.search_iri]["actor"]
    assert actor["objectType"] == "Group" and actor["account"]["name"] == "class:三年级一班"
    with ctx.usage.outbox() as outbox:
        assert outbox.counts()["delivered"] == 9

    # A late event for the same day makes a second statement, not a conflicting one.
    late = dict(events[0], terminal="lab-09", id=str(uuid.uuid4()))
    assert client.post("/api/events", json=late).status_code == 201
    with ctx.usage.outbox() as outbox:
        with outbox.db.atomic():
            outbox.db.execute("UPDATE events SET received_at = ? WHERE state = 'pending'",
                              [f"{yesterday}T00:30:00.000+00:00"])
    assert sync_once(ctx.config, ctx.usage, echo=lambda _: None) == 0
    assert len(lrs.statements(identity.appliance_iri)) == 3


def test_daily_mode_keeps_todays_events_for_after_the_day(lrs, tmp_path):
    app, ctx, rids = sample_appliance(tmp_path / "home", **lrs_settings(lrs, lrs_mode="daily"))
    assert app.test_client().post("/api/events", json=event_batch(rids, 3)).status_code == 201
    assert sync_once(ctx.config, ctx.usage, echo=lambda _: None) == 0   # nothing due yet
    with ctx.usage.outbox() as outbox:
        assert outbox.counts()["pending"] == 3 and outbox.uncompiled() == 3
