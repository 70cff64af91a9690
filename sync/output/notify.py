"""Alerts where the team works: run failures, refusals, quarantines and expiry warnings, sent after a run to
Slack (an incoming webhook) and to a generic webhook (signed JSON).

```yaml
targets:
  prod:
    notify:
      slack_webhook_url: ${LAKESEG_SLACK_WEBHOOK_URL}
      webhook_url: https://hooks.example.com/lakeseg
      webhook_secret: ${LAKESEG_WEBHOOK_SECRET}
      events: [failure, refusal, quarantine, expiry]
```

What is sent: the run id, command, target, the run's status (``run_status``), and per event the segment name,
its status, a count and the rule involved (``max_exit_share``, ``max_size_change_share``, ``contract``, ...).
Never a reason text, an error message or any attribute value: those stay in the run history and the report.

The generic webhook's body is JSON; ``X-Lakeseg-Timestamp`` is the Unix time of sending and
``X-Lakeseg-Signature`` is ``sha256=`` + the hex HMAC-SHA256, keyed with ``webhook_secret``, of
``<timestamp>.<body>`` (reject messages older than a few minutes to stop replays). 5xx answers, 429,
timeouts and refused connections are retried with backoff (``retries``, default 2); other answers are not.

It never blocks or fails a sync: each destination is sent from a daemon thread that the caller waits for
at most ``deadline_s`` seconds (default 10), and every failure is logged at warning level and swallowed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass

from sync.core import clock
from sync.run.engine import run_status

log = logging.getLogger(__name__)

EVENTS = ("failure", "refusal", "quarantine", "expiry")
FAILED_STATUSES = ("failed", "skipped", "partial", "interrupted")
SIGNATURE_HEADER = "X-Lakeseg-Signature"
TIMESTAMP_HEADER = "X-Lakeseg-Timestamp"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Event:
    event: str  # failure | refusal | quarantine | expiry
    status: str
    segment: str | None = None
    count: int | None = None
    rule: str | None = None
    new: int | None = None  # quarantine: rows first quarantined in this run (the others were already held)


def _rule(reason: str) -> str:
    """The guard setting or check behind a refusal, from its reason (the reason itself is never sent)."""
    for rule in ("max_exit_share", "max_size_change_share", "max_entered_share"):
        if f"guard.{rule}" in reason:
            return rule
    text = reason.lower()
    if "would empty the segment" in text:
        return "max_exit_share"
    if "contract" in text:
        return "contract"
    if "lock" in text:
        return "lock"
    return "other"


def _quarantined(value) -> int:
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)):
        return len(value)
    if isinstance(value, dict) and isinstance(value.get("count"), int):
        return value["count"]
    return 0


def events_of(run: dict, wanted=EVENTS) -> list[Event]:
    """What in one run document calls for an alert, limited to the ``wanted`` kinds."""
    out: list[Event] = []
    status = run_status(run)
    segments = [s for s in run.get("segments") or [] if isinstance(s, dict) and s.get("segment")]
    if run.get("crashed"):  # the run stopped with an exception before it had a report: its type only
        out.append(Event("failure", status, rule=str(run["crashed"])))
    elif run.get("error") or (
        status in FAILED_STATUSES and not any(s.get("status") in FAILED_STATUSES + ("refused",) for s in segments)
    ):
        if status != "succeeded":
            out.append(Event("failure", status))
    for seg in segments:
        name, seg_status = str(seg["segment"]), str(seg.get("status") or "?")
        plan: dict = seg["plan"] if isinstance(seg.get("plan"), dict) else {}
        if seg_status in FAILED_STATUSES:
            out.append(Event("failure", seg_status, name))
        elif seg_status == "refused":
            rule = _rule(str(seg.get("reason") or ""))
            count = plan.get("exited") if rule == "max_exit_share" else plan.get("rows")
            out.append(Event("refusal", seg_status, name, int(count) if isinstance(count, int) else None, rule))
        if quarantined := _quarantined(seg.get("quarantined")):
            rows: list = seg["quarantined"] if isinstance(seg.get("quarantined"), list) else []
            new = sum(1 for q in rows if isinstance(q, dict) and q.get("first_run_id") == run.get("run_id"))
            out.append(Event("quarantine", seg_status, name, quarantined, new=new if rows else None))
        if isinstance(plan.get("refresh"), int) and plan["refresh"] > 0:
            out.append(Event("expiry", seg_status, name, plan["refresh"], "refresh_before_expiry_days"))
    return [e for e in out if e.event in wanted]


def crashed_run(command: str, exc: BaseException) -> dict:
    """A run document for a run that raised before it had a report (its message is not kept)."""

    return {
        "run_id": None,
        "command": command,
        "status": "failed",
        "crashed": type(exc).__name__,
        "finished_at": clock.stamp(),
        "segments": [],
    }


def payload(run: dict, events: list[Event]) -> dict:
    """The generic webhook's JSON document: identifiers, statuses, counts and rule names only."""
    return {
        "source": "lakeseg",
        "version": 1,
        "run_id": run.get("run_id"),
        "command": run.get("command"),
        "target": run.get("target"),
        "destination": run.get("destination"),
        "status": run_status(run),
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "events": [{k: v for k, v in asdict(e).items() if v is not None} for e in events],
    }


def slack_message(run: dict, events: list[Event]) -> dict:
    """A Slack incoming-webhook message: one line for the run, one per event."""
    icon = {"failure": ":red_circle:", "refusal": ":no_entry:", "quarantine": ":warning:", "expiry": ":hourglass:"}
    if run.get("run_id"):
        lines = [
            f"*lakeseg {run.get('command') or 'sync'}* `{run.get('run_id')}` on {run.get('target')} "
            f"→ {run.get('destination')}: *{run_status(run)}*"
        ]
    else:
        lines = [
            f"*lakeseg {run.get('command') or 'sync'}* on {run.get('target')}: *{run_status(run)}* before it "
            "recorded a run (see the runner's log)"
        ]
    for e in events:
        what = f"{e.segment} {e.status}" if e.segment else f"run {e.status}"
        extra = ", ".join(
            x
            for x in (e.rule, f"{e.count:,}" if e.count is not None else None, f"{e.new:,} new" if e.new else None)
            if x
        )
        lines.append(f"{icon.get(e.event, '•')} {e.event}: {what}" + (f" ({extra})" if extra else ""))
    if any(e.segment for e in events):
        first = next(e.segment for e in events if e.segment)
        again = f"`lakeseg run --select {first}`" if run.get("command") == "run" else f"`lakeseg sync --select {first}`"
        lines.append(f"Reproduce: {again} · history: `lakeseg history --run-id {run.get('run_id')}`")
    return {"text": "\n".join(lines)}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def post(
    url: str,
    body: bytes,
    headers: dict,
    *,
    timeout: float = 3.0,
    retries: int = 2,
    backoff: float = 0.5,
    secret: str | None = None,
) -> bool:
    """POST ``body``; retry 5xx, 429, timeouts and connection errors with exponential backoff. True when sent."""
    import urllib3

    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=timeout, read=timeout))
    where = url.split("?", 1)[0].rsplit("/", 1)[0] + "/…"  # never log a webhook's secret path
    for attempt in range(retries + 1):
        sent_headers = {"Content-Type": "application/json", "User-Agent": "lakeseg", **headers}
        if secret:  # signed afresh on each attempt, so a retry is not stale
            stamp = str(int(time.time()))
            sent_headers |= {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, body)}
        try:
            response = pool.request("POST", url, body=body, headers=sent_headers, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            problem = f"{type(exc).__name__}"
        else:
            if 200 <= response.status < 300:
                return True
            problem = f"HTTP {response.status}"
            if response.status not in RETRY_STATUSES:
                log.warning("notify: %s answered %s; not retried", where, problem)
                return False
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    log.warning("notify: %s failed after %d attempt(s): %s", where, retries + 1, problem)
    return False


def notify(run: dict, settings: dict | None, *, deadline_s: float | None = None) -> list[str]:
    """Send the run's alerts as ``settings`` (the target's ``notify:`` block) asks; never raises.

    Returns the destinations that took the message ("slack", "webhook").
    """
    try:
        if not settings:
            return []
        events = events_of(run, tuple(settings.get("events") or EVENTS))
        if not events:
            return []
        timeout = float(settings.get("timeout_s") or 3.0)
        retries = int(settings["retries"]) if settings.get("retries") is not None else 2
        deadline = float(deadline_s if deadline_s is not None else settings.get("deadline_s") or 10.0)
        jobs = []
        if settings.get("slack_webhook_url"):
            jobs.append(("slack", settings["slack_webhook_url"], json.dumps(slack_message(run, events)).encode(), None))
        if settings.get("webhook_url"):
            jobs.append(
                (
                    "webhook",
                    settings["webhook_url"],
                    json.dumps(payload(run, events)).encode(),
                    settings.get("webhook_secret"),
                )
            )
        done: list[str] = []

        def send(name, url, body, secret):
            try:
                if post(url, body, {}, timeout=timeout, retries=retries, secret=secret):
                    done.append(name)
            except Exception as exc:  # noqa: BLE001 - an alert never fails the sync
                log.warning("notify: %s could not be sent: %s", name, type(exc).__name__)

        threads = [
            threading.Thread(target=send, args=job, name=f"lakeseg-notify-{job[0]}", daemon=True) for job in jobs
        ]
        for t in threads:
            t.start()
        end = time.monotonic() + deadline
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
        if any(t.is_alive() for t in threads):
            log.warning("notify: gave up waiting after %.0f s; the sync goes on", deadline)
        return sorted(done)
    except Exception as exc:  # noqa: BLE001
        log.warning("notify: alerts not sent: %s", exc)
        return []
