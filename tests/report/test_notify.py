"""Alerts after a run, against a local HTTP server (127.0.0.1) that checks the payload and the signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sync.output.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, events_of, notify
from sync.run.engine import RunReport, SegmentReport
from tests.report.fixtures_runs import _plan, history

SECRET = "s3cr3t-for-tests"


class Hook:
    """A local webhook: answers each POST with the next status of ``answers`` (the last one repeats), or never
    answers when that status is None; records every request."""

    def __init__(self, answers=(200,)):
        self.answers = list(answers)
        self.requests: list[dict] = []
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = hook.answers[min(len(hook.requests), len(hook.answers)) - 1]
                if status is None:
                    hook.release.wait(30)  # a server that never answers (until the test ends)
                    return
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0/SECRETPATH"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def json(self, i: int = -1) -> dict:
        return json.loads(self.requests[i]["body"])


@pytest.fixture
def hook(request):
    made = []

    def make(*answers):
        made.append(Hook(answers or (200,)))
        return made[-1]

    yield make
    for h in made:
        h.close()


def refused_run() -> dict:
    """A run in which one segment was refused by the mass-exit guard, one quarantined rows and needed a refresh
    before expiry, and one was skipped; its reasons hold text that must never be sent."""
    run = RunReport(
        "20261103T050000000Z-cccccc",
        "sync",
        "prod",
        "pinpoint",
        "s3://b/state",
        "2026-11-03T05:00:00+00:00",
        "2026-11-03T05:01:00+00:00",
        "failed",
    )
    plan = _plan("seg_active", 50, 0, 0, 250, 300)
    refreshing = dict(_plan("seg_vip", 1000, 5, 0, 0, 995), refresh=40)
    run.segments = [
        SegmentReport(
            "seg_active",
            "refused",
            "250 of 300 previous members (83.3%) would exit, above the 30% limit "
            "(guard.max_exit_share); alice@example.com",
            plan,
        ),
        SegmentReport(
            "seg_vip",
            "synced",
            "",
            refreshing,
            quarantined=[
                {
                    "id": "endpoint-17",
                    "message": "Invalid email 'bob@example.com'",
                    "first_run_id": "20261103T050000000Z-cccccc",
                },
                {"id": "endpoint-18", "code": "refused", "first_run_id": "20261101T050000000Z-aaaaaa"},
            ],
        ),
        SegmentReport("seg_clickers", "skipped", "tests did not pass: accepted_values (value 'carol')"),
    ]
    return run.as_dict()


def _verify(request: dict) -> None:
    headers = {k.lower(): v for k, v in request["headers"].items()}
    stamp = headers[TIMESTAMP_HEADER.lower()]
    expected = (
        "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    )
    assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], expected)
    assert abs(time.time() - int(stamp)) < 60


def test_the_webhook_gets_a_signed_payload_of_ids_statuses_counts_and_rules_only(hook):
    # Given a webhook and a run with a refusal, a quarantine, an expiry warning and a skip
    server = hook(200)
    # When the run's alerts are sent
    sent = notify(refused_run(), {"webhook_url": server.url, "webhook_secret": SECRET})
    # Then the webhook got one JSON document, signed over timestamp + body with the secret
    assert sent == ["webhook"] and len(server.requests) == 1
    _verify(server.requests[0])
    body = server.json()
    assert (body["run_id"], body["status"], body["target"]) == ("20261103T050000000Z-cccccc", "failed", "prod")
    assert body["events"] == [
        {"event": "refusal", "status": "refused", "segment": "seg_active", "count": 250, "rule": "max_exit_share"},
        {"event": "quarantine", "status": "synced", "segment": "seg_vip", "count": 2, "new": 1},
        {
            "event": "expiry",
            "status": "synced",
            "segment": "seg_vip",
            "count": 40,
            "rule": "refresh_before_expiry_days",
        },
        {"event": "failure", "status": "skipped", "segment": "seg_clickers"},
    ]
    # and nothing of the reasons or the quarantined rows: no attribute value, no id
    raw = server.requests[0]["body"].decode()
    for value in ("alice@", "bob@", "carol", "endpoint-17", "endpoint-18", "Invalid email", "accepted_values"):
        assert value not in raw


def test_a_tampered_body_does_not_match_the_signature(hook):
    server = hook(200)
    notify(refused_run(), {"webhook_url": server.url, "webhook_secret": SECRET})
    tampered = dict(server.requests[0], body=server.requests[0]["body"].replace(b"250", b"251"))
    with pytest.raises(AssertionError):
        _verify(tampered)


def test_slack_gets_one_line_per_event_and_how_to_reproduce(hook):
    server = hook(200)
    assert notify(refused_run(), {"slack_webhook_url": server.url}) == ["slack"]
    text = server.json()["text"]
    assert "`20261103T050000000Z-cccccc` on prod → pinpoint: *failed*" in text
    assert "refusal: seg_active refused (max_exit_share, 250)" in text
    assert (
        "quarantine: seg_vip synced (2, 1 new)" in text
        and "expiry: seg_vip synced (refresh_before_expiry_days, 40)" in text
    )
    assert "Reproduce: `lakeseg sync --select seg_active`" in text
    assert "alice@" not in text and "bob@" not in text


def test_a_500_is_retried_and_the_retry_is_signed_afresh(hook):
    # Given a webhook that fails once with a 500, then takes the message
    server = hook(500, 200)
    # When the alerts are sent
    sent = notify(refused_run(), {"webhook_url": server.url, "webhook_secret": SECRET, "retries": 2})
    # Then it was sent twice, the same body, each signed
    assert sent == ["webhook"] and len(server.requests) == 2
    assert server.requests[0]["body"] == server.requests[1]["body"]
    for request in server.requests:
        _verify(request)


def test_a_4xx_is_not_retried_and_is_logged_without_the_secret_path(hook, caplog):
    server = hook(403)
    with caplog.at_level(logging.WARNING, logger="sync.output.notify"):
        assert notify(refused_run(), {"webhook_url": server.url, "webhook_secret": SECRET, "retries": 3}) == []
    assert len(server.requests) == 1
    assert "HTTP 403" in caplog.text and "SECRETPATH" not in caplog.text


def test_a_server_that_never_answers_costs_at_most_the_deadline_and_raises_nothing(hook, caplog):
    # Given a webhook that accepts the connection and never answers
    server = hook(None)
    started = time.monotonic()
    # When the alerts are sent with a short timeout
    with caplog.at_level(logging.WARNING, logger="sync.output.notify"):
        sent = notify(
            refused_run(),
            {"webhook_url": server.url, "webhook_secret": SECRET, "timeout_s": 0.3, "retries": 1, "deadline_s": 5},
        )
    # Then nothing was sent, it took about two timeouts and a backoff, and a warning says so
    assert sent == [] and time.monotonic() - started < 3
    assert len(server.requests) == 2
    assert "failed after 2 attempt(s)" in caplog.text


def test_the_deadline_bounds_the_wait_even_with_long_timeouts(hook):
    server = hook(None)
    started = time.monotonic()
    assert (
        notify(refused_run(), {"webhook_url": server.url, "webhook_secret": SECRET, "timeout_s": 20, "deadline_s": 0.5})
        == []
    )
    assert time.monotonic() - started < 2


def test_a_refused_connection_is_swallowed():
    assert notify(refused_run(), {"webhook_url": "http://127.0.0.1:9/x", "webhook_secret": SECRET, "retries": 0}) == []


@pytest.mark.parametrize(
    "events, kinds",
    [
        pytest.param(["failure"], ["failure"], id="failures-only"),
        pytest.param(["refusal", "quarantine"], ["refusal", "quarantine"], id="refusal-and-quarantine"),
        pytest.param(["expiry"], ["expiry"], id="expiry-only"),
    ],
)
def test_only_the_chosen_events_are_sent(hook, events, kinds):
    server = hook(200)
    notify(refused_run(), {"webhook_url": server.url, "webhook_secret": SECRET, "events": events})
    assert [e["event"] for e in server.json()["events"]] == kinds


def test_a_run_with_nothing_to_report_sends_nothing(hook):
    server = hook(200)
    clean = history()[1]  # synced and unchanged
    assert events_of(clean) == [] and notify(clean, {"webhook_url": server.url, "webhook_secret": SECRET}) == []
    assert server.requests == []


@pytest.mark.parametrize(
    "run_index, expected",
    [
        pytest.param(3, [("failure", "interrupted", None)], id="interrupted-run"),
        pytest.param(
            2,
            [
                ("failure", "skipped", "seg_clickers"),
                ("quarantine", "skipped", "seg_clickers"),
                ("refusal", "refused", "seg_active"),
            ],
            id="skip-and-refusal",
        ),
    ],
)
def test_failures_are_found_in_run_documents(run_index, expected):
    found = [(e.event, e.status, e.segment) for e in events_of(history()[run_index])]
    assert found == expected


def test_a_run_that_failed_with_an_error_is_a_failure_without_its_message():
    run = dict(history()[0], status="failed", error="Database Error: value 'dave@example.com' too long")
    events = events_of(run)
    assert [(e.event, e.status, e.segment) for e in events] == [("failure", "failed", None)]
    assert "dave" not in json.dumps([e.__dict__ for e in events])


@pytest.mark.parametrize(
    "answers", [pytest.param((500, 200), id="retried-after-500"), pytest.param((None,), id="server-never-answers")]
)
def test_lakeseg_sync_alerts_after_the_run_and_exits_with_its_own_code_quickly(tmp_path, monkeypatch, hook, answers):
    from click.testing import CliRunner

    import sync.app.wiring
    from sync.cli import main

    # Given a project whose lakeseg.yml sends alerts to a local webhook, and a sync whose run refuses a segment
    server = hook(*answers)
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    (tmp_path / "profiles.yml").write_text(
        "p:\n  target: local\n  outputs:\n    local: {type: duckdb, path: p.duckdb}\n"
    )
    (tmp_path / "lakeseg.yml").write_text(
        "targets:\n  local:\n    notify:\n      webhook_url: ${HOOK_URL}\n      webhook_secret: ${HOOK_SECRET}\n"
        "      timeout_s: 0.5\n      retries: 1\n      deadline_s: 3\n"
    )
    monkeypatch.setenv("HOOK_URL", server.url)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setattr(sync.app.wiring, "run_sync", lambda req, **kw: _report_of(refused_run()))
    started = time.monotonic()
    # When `lakeseg sync` runs
    result = CliRunner().invoke(
        main, ["sync", "--project-dir", str(tmp_path), "--profiles-dir", str(tmp_path), "--no-report"]
    )
    # Then it exits with the run's own code (a refusal: 1), within the alert's bounds
    assert result.exit_code == 1, result.output
    assert time.monotonic() - started < 6
    # and the webhook was asked twice (the first attempt got a 500 or no answer), each signed
    assert len(server.requests) == 2
    for request in server.requests:
        _verify(request)
    assert server.json()["events"][0]["segment"] == "seg_active"


def _report_of(doc: dict) -> RunReport:
    segments = [SegmentReport(**s) for s in doc.pop("segments")]
    return RunReport(**{**doc, "segments": segments})


def test_a_run_that_raises_is_alerted_by_its_error_type_only_and_exits_as_before(tmp_path, monkeypatch, hook):
    from click.testing import CliRunner

    import sync.app.wiring
    from sync.cli import main

    # Given a project with a webhook (and Slack) configured, and a sync that raises before it has a report
    server, slack = hook(200), hook(200)
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    (tmp_path / "profiles.yml").write_text(
        "p:\n  target: local\n  outputs:\n    local: {type: duckdb, path: p.duckdb}\n"
    )
    (tmp_path / "lakeseg.yml").write_text(
        f"targets:\n  local:\n    notify:\n      webhook_url: '{server.url}'\n      webhook_secret: '{SECRET}'\n"
        f"      slack_webhook_url: '{slack.url}'\n"
    )

    def boom(req, **kw):
        raise RuntimeError("could not parse 'erin@example.com'")

    monkeypatch.setattr(sync.app.wiring, "run_sync", boom)
    # When `lakeseg sync` runs
    result = CliRunner().invoke(
        main, ["sync", "--project-dir", str(tmp_path), "--profiles-dir", str(tmp_path), "--no-report"]
    )
    # Then it fails as an unexpected error always has (exit 1)
    assert result.exit_code == 1
    # and the webhook was told of a failure, by the error's type only
    _verify(server.requests[0])
    body = server.json()
    assert (body["run_id"], body["status"], body["target"]) == (None, "failed", "local")
    assert body["events"] == [{"event": "failure", "status": "failed", "rule": "RuntimeError"}]
    assert "erin" not in server.requests[0]["body"].decode() and "erin" not in slack.requests[0]["body"].decode()
    assert "before it recorded a run" in slack.json()["text"]


def _guarded(rows: int, entered: int, exited: int, previous: int) -> str:
    from sync.run.diff import Plan
    from sync.run.guard import mass_exit_refusal, size_change_refusal

    plan = Plan(
        "seg_x",
        rows=rows,
        previous_rows=previous,
        entered=entered,
        changed=0,
        exited=exited,
        unchanged=rows - entered,
        exit_rows=exited,
    )
    return mass_exit_refusal(plan, 0.30) or size_change_refusal(plan, 0.50, 0.50) or ""


@pytest.mark.parametrize(
    "rows, entered, exited, previous, rule, count",
    [
        pytest.param(50, 0, 250, 300, "max_exit_share", 250, id="mass-exit"),
        pytest.param(0, 0, 300, 300, "max_exit_share", 300, id="would-empty"),
        pytest.param(1000, 700, 0, 300, "max_size_change_share", 1000, id="size-grows"),
    ],
)
def test_a_refusal_names_the_guard_rule_that_refused_it(rows, entered, exited, previous, rule, count):
    # Given a segment refused with the guard's own reason
    reason = _guarded(rows, entered, exited, previous)
    assert reason
    run = {
        "run_id": "r",
        "status": "failed",
        "finished_at": "x",
        "segments": [
            {
                "segment": "seg_x",
                "status": "refused",
                "reason": reason,
                "plan": _plan("seg_x", rows, entered, 0, exited, previous),
            }
        ],
    }
    # Then the alert names the rule (a settings key) and the count, not the reason
    [event] = events_of(run)
    assert (event.event, event.rule, event.count) == ("refusal", rule, count)
