"""The sync exchange with tenants, as pure data (reference §13).

Four things live here, none of which touches a socket, a file or a clock:

* **items** — an event row becomes one delivery-report item (reference §13.1) or one event-stream frame
  (reference §5.9): the seven base keys always present (``null`` included), ``event``, and exactly the
  extras that apply to that kind of event;
* **requests** — the body bytes and the headers of a sync POST, with the optional HMAC signature
  (reference §13.2, §13.3);
* **answers** — what a tenant's reply means: acknowledged or not, and the ``queued`` /
  ``next_sync_after`` hints that are honoured only when acknowledged (reference §13.4);
* **scheduling** — when a tenant should be called and how its stored sync state changes after a
  call (reference §13.5), as functions of that state and ``now``.

The process code (``services.report``) reads the clock and the database and feeds them in.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec

from mailproxyd import __version__

BASE_KEYS: Final = (
    "id",
    "account_id",
    "priority",
    "sent_ts",
    "error_ts",
    "error",
    "deferred_ts",
)
EVENT_TYPES: Final = ("sent", "error", "deferred", "bounce")

BACKOFF_MAX_SECONDS: Final = 300
QUEUED_CALL_CAP: Final = 20
SIGNATURE_HEADER: Final = "X-Mail-Proxy-Signature"

Outcome = Literal["ok", "rejected", "http_error", "network_error"]
Reason = Literal["run_now", "events", "heartbeat", "queued"]

_json_encoder = msgspec.json.Encoder()


# --------------------------------------------------------------------------------------------
# Items (reference §13.1) and event-stream frames (reference §5.9)
# --------------------------------------------------------------------------------------------


def _ts(value: Any) -> int | None:
    """Wire times are integer Unix seconds; stored times may be floats."""
    if value is None:
        return None
    return math.floor(value)


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    return int(value)


def encode_item(row: Mapping[str, Any]) -> dict[str, Any]:
    """The reference §13.1 report item for one event row.

    ``row`` carries ``id, account_id, priority, batch_code, event_type, event_ts, description``
    and ``metadata`` (a mapping, possibly empty or ``None``) with the optional
    ``deferred_ts, deferred_reason, retry_count, smtp_code, refused_recipients,
    outcome_uncertain, bounce_type, bounce_code, bounce_reason``.

    The key order is fixed (base keys, ``event``, then ``batch_code``, ``deferred_reason``,
    ``smtp_code``, ``retry_count``, ``refused_recipients``, ``outcome_uncertain``, the bounce
    keys) so that the reference's examples (reference §13.8) come out byte for byte.
    """
    kind = row["event_type"]
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind!r}")
    meta: Mapping[str, Any] = row.get("metadata") or {}
    event_ts = _ts(row["event_ts"])
    item: dict[str, Any] = {
        "id": row["id"],
        "account_id": row.get("account_id"),
        "priority": int(row["priority"]),
        "sent_ts": event_ts if kind == "sent" else None,
        "error_ts": event_ts if kind == "error" else None,
        "error": row.get("description") if kind == "error" else None,
        "deferred_ts": _ts(meta.get("deferred_ts")) if kind == "deferred" else None,
        "event": kind,
    }
    if row.get("batch_code") is not None:
        item["batch_code"] = row["batch_code"]
    if kind == "bounce":
        item["bounce_type"] = meta.get("bounce_type")
        item["bounce_code"] = meta.get("bounce_code")
        item["bounce_reason"] = meta.get("bounce_reason")
        item["bounce_ts"] = event_ts
        return item

    retry_count = _int_or_none(meta.get("retry_count")) or 0
    smtp_code = _int_or_none(meta.get("smtp_code"))
    refused = meta.get("refused_recipients") or None
    if kind == "deferred":
        reason = meta.get("deferred_reason")
        item["deferred_reason"] = reason if reason is not None else row.get("description")
    if smtp_code is not None and kind != "sent":
        item["smtp_code"] = smtp_code
    if kind == "deferred" or retry_count >= 1:
        item["retry_count"] = retry_count
    # A deferral has no refused_recipients key (reference §13.1): the whole message comes back anyway.
    if refused and kind != "deferred":
        item["refused_recipients"] = refused
    if meta.get("outcome_uncertain") is True:
        item["outcome_uncertain"] = True
    return item


def event_frame(tenant_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The reference §5.9 event-stream frame: the report item plus ``tenant_id`` (first)."""
    return {"tenant_id": tenant_id, **encode_item(row)}


# --------------------------------------------------------------------------------------------
# Requests (reference §13.2, §13.3)
# --------------------------------------------------------------------------------------------


def sync_url(client_base_url: str, client_sync_path: str | None) -> str:
    """``client_base_url`` without trailing ``/`` + ``client_sync_path`` (default path)."""
    return client_base_url.rstrip("/") + (client_sync_path or "/mail-proxy/sync")


def encode_body(items: Sequence[Mapping[str, Any]]) -> bytes:
    """The compact JSON body ``{"delivery_report":[...]}``; ``[]`` is a heartbeat."""
    return _json_encoder.encode({"delivery_report": items})


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Mail-Proxy-Signature`` value ``t=<t>,v1=<hex>`` over ``b"<t>." + body``."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def authorization(client_auth: Mapping[str, Any] | None) -> str | None:
    """The ``Authorization`` header value for a tenant's decrypted ``client_auth``, if any."""
    auth = client_auth or {}
    method = auth.get("method") or "none"
    if method == "bearer" and auth.get("token"):
        return f"Bearer {auth['token']}"
    if method == "basic" and auth.get("user") is not None:
        pair = f"{auth['user']}:{auth.get('password') or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    return None


def request_headers(
    client_auth: Mapping[str, Any] | None, body: bytes, *, now: float
) -> dict[str, str]:
    """Headers of one sync POST. Signed anew per attempt: ``t`` is ``now``."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"mail-proxy/{__version__}",
    }
    value = authorization(client_auth)
    if value is not None:
        headers["Authorization"] = value
    secret = (client_auth or {}).get("signing_secret")
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, math.floor(now), body)
    return headers


# --------------------------------------------------------------------------------------------
# Answers (reference §13.4)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """What a tenant's answer means for the proxy."""

    outcome: Outcome
    queued: int = 0
    next_sync_after: float | None = None
    warnings: tuple[str, ...] = ()
    error: str | None = None  # short text for ``last_error`` when not acknowledged

    @property
    def acknowledged(self) -> bool:
        return self.outcome == "ok"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _warnings(obj: Mapping[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    not_found = obj.get("not_found")
    if isinstance(not_found, list) and not_found:
        out.append("not_found: " + ", ".join(str(x) for x in not_found))
    error = obj.get("error")
    if isinstance(error, str) and error:
        out.append("error: " + error)
    elif isinstance(error, list) and error:
        out.append("error: " + "; ".join(str(x) for x in error))
    return tuple(out)


def interpret(status: int | None, body: Any, *, network_error: str | None = None) -> Reply:
    """Classify a tenant answer.

    ``status`` is ``None`` when no HTTP answer arrived (``network_error`` then says why);
    ``body`` is the decoded JSON, or ``None`` when the body was not JSON. Acknowledged means
    2xx **and** a JSON object with ``"ok": true`` exactly. Hints of the wrong type are ignored
    and never change the ack decision.
    """
    if status is None:
        return Reply("network_error", error=network_error or "connection failed")
    obj = body if isinstance(body, dict) else None
    warnings = _warnings(obj) if obj is not None else ()
    if not 200 <= status < 300:
        return Reply("http_error", warnings=warnings, error=f"HTTP {status}")
    if obj is None:
        return Reply("rejected", error="answer is not a JSON object")
    if obj.get("ok") is not True:
        return Reply("rejected", warnings=warnings, error='answer without "ok": true')
    queued = obj.get("queued")
    nsa = obj.get("next_sync_after")
    if not (isinstance(queued, int) and not isinstance(queued, bool) and queued > 0):
        queued = 0
    return Reply(
        "ok",
        queued=queued,
        next_sync_after=float(nsa) if isinstance(nsa, int | float) and _is_number(nsa) else None,
        warnings=warnings,
    )


def decode_answer(raw: bytes) -> Any:
    """Decode an answer body; ``None`` when it is not valid JSON."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


# --------------------------------------------------------------------------------------------
# Scheduling (reference §13.5)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportState:
    """A tenant's persisted sync state.

    ``queued_wanted`` remembers that the last acknowledged answer asked for another call;
    ``queued_calls`` counts the consecutive calls made only for that reason (capped at 20);
    ``heartbeat_due`` is set by a tenant-scoped run-now until a call is acknowledged.
    """

    last_sync_ts: float | None = None
    dnd_until: float | None = None
    consecutive_failures: int = 0
    backoff_until: float | None = None
    queued_calls: int = 0
    queued_wanted: bool = False
    heartbeat_due: bool = False
    last_error: str | None = None

    def in_dnd(self, now: float) -> bool:
        return self.dnd_until is not None and self.dnd_until > now

    def in_backoff(self, now: float) -> bool:
        return self.backoff_until is not None and self.backoff_until > now


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to call a tenant now, why, and otherwise when to look again.

    ``next_check`` is the earliest time at which the decision could change without a new
    event or a run-now (``None``: only such an outside cause can make it due).
    """

    call: bool
    reason: Reason | None = None
    next_check: float | None = None


def heartbeat_due(state: ReportState, *, active: bool, now: float, interval: float) -> bool:
    """Would a heartbeat be sent now (sync-status ``next_sync_due``, reference §5.5)?

    A run-now makes it due whatever the activity; otherwise the tenant must be active, out of
    DND and back-off, and unacknowledged for ``interval`` seconds (or never acknowledged).
    """
    if state.in_backoff(now):
        return False
    if state.heartbeat_due:
        return True
    if not active or state.in_dnd(now):
        return False
    return state.last_sync_ts is None or now - state.last_sync_ts >= interval


def decide(
    state: ReportState, *, active: bool, has_events: bool, now: float, interval: float
) -> Decision:
    """Should the tenant be called now (reference §13.5)? Reasons in priority order:

    run-now, events, heartbeat, queued. A call is "made only for queued" only when no other
    reason holds — that is what the cap of 20 counts.
    """
    if state.in_backoff(now):
        return Decision(False, next_check=state.backoff_until)
    if state.heartbeat_due:
        return Decision(True, "run_now")
    if has_events:
        return Decision(True, "events")
    if heartbeat_due(state, active=active, now=now, interval=interval):
        return Decision(True, "heartbeat")
    dnd = state.in_dnd(now)
    wants_queued = state.queued_wanted and state.queued_calls < QUEUED_CALL_CAP
    if wants_queued and not dnd:
        return Decision(True, "queued")
    # Nothing is due now: DND holds back a queued follow-up or a heartbeat, or the last
    # acknowledged call is recent, or the tenant is inactive.
    dnd_until = state.dnd_until if dnd else None
    candidates: list[float] = []
    if dnd_until is not None and wants_queued:
        candidates.append(dnd_until)
    if active:
        # Never acknowledged and still not due means DND holds the heartbeat back.
        due = state.last_sync_ts + interval if state.last_sync_ts is not None else now
        candidates.append(max(due, dnd_until) if dnd_until is not None else due)
    return Decision(False, next_check=min(candidates) if candidates else None)


def backoff_seconds(failures: int) -> int:
    """1, 2, 4, … doubling up to 300 s after the n-th consecutive unacknowledged call."""
    if failures <= 0:
        return 0
    return min(BACKOFF_MAX_SECONDS, 2 ** min(failures - 1, 16))


def _queued_count(state: ReportState, reply: Reply, reason: Reason) -> int:
    """Consecutive calls made only for ``queued``: one more for such a call; back to 0 once a
    call made for another reason is answered (a network error is no answer)."""
    if reason == "queued":
        return state.queued_calls + 1
    return state.queued_calls if reply.outcome == "network_error" else 0


def after_call(state: ReportState, reply: Reply, *, reason: Reason, now: float) -> ReportState:
    """The state after a call made for ``reason`` was answered with ``reply``."""
    if reply.acknowledged:
        nsa = reply.next_sync_after
        return ReportState(
            last_sync_ts=now,
            dnd_until=nsa if nsa is not None and nsa > now else None,
            consecutive_failures=0,
            backoff_until=None,
            queued_calls=_queued_count(state, reply, reason),
            queued_wanted=reply.queued > 0,
            heartbeat_due=False,
            last_error=None,
        )
    failures = state.consecutive_failures + 1
    # DND, the last acknowledged time, a pending queued wish and a run-now stay as they were.
    return dataclasses.replace(
        state,
        consecutive_failures=failures,
        backoff_until=now + backoff_seconds(failures),
        queued_calls=_queued_count(state, reply, reason),
        last_error=reply.error,
    )


# --------------------------------------------------------------------------------------------
# Sync status (reference §5.5)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantReportView:
    """What sync-status needs to know about one tenant besides its sync state."""

    id: str
    name: str | None
    active: bool
    client_base_url: str | None
    unreported_events: int
    state: ReportState = field(default_factory=ReportState)


def status_row(view: TenantReportView, *, now: float, interval: float) -> dict[str, Any]:
    """One ``tenants`` entry of ``GET /tenants/sync-status``; ``null`` keys omitted (reference §0)."""
    state = view.state
    in_dnd = state.in_dnd(now)
    row: dict[str, Any] = {"id": view.id}
    if view.name is not None:
        row["name"] = view.name
    row["active"] = view.active
    if view.client_base_url is not None:
        row["client_base_url"] = view.client_base_url
    if state.last_sync_ts is not None:
        row["last_sync_ts"] = math.floor(state.last_sync_ts)
    row["next_sync_due"] = view.client_base_url is not None and heartbeat_due(
        state, active=view.active, now=now, interval=interval
    )
    row["in_dnd"] = in_dnd
    if in_dnd:
        row["dnd_until"] = _ts(state.dnd_until)
    row["consecutive_failures"] = state.consecutive_failures
    if state.in_backoff(now):
        row["backoff_until"] = _ts(state.backoff_until)
    if state.last_error is not None:
        row["last_error"] = state.last_error
    row["unreported_events"] = view.unreported_events
    return row


def status_document(
    views: Iterable[TenantReportView], *, now: float, interval: int
) -> dict[str, Any]:
    """The whole ``GET /tenants/sync-status`` body."""
    return {
        "ok": True,
        "sync_interval_seconds": interval,
        "tenants": [status_row(v, now=now, interval=interval) for v in views],
    }
