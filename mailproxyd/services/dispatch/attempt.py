"""One SMTP attempt of one admitted message: build, send, classify (reference §7, §10.3, §10.4).

The message already holds a rate-limit slot. The attempt builds the wire message (attachments
first), sends it over the account's pooled connections and turns the classified result into
the ``Completion`` to record (the retry ladder decides between ``deferred`` and ``error``).
The slot is given back when the attempt failed before the message data was transmitted; it
stays counted when the message was sent or the outcome is uncertain (reference §9).

At shutdown an attempt still running at the hard deadline is cut off and recorded as an
uncertain outcome (reference §18.3; see ``_abandoned`` for why it is never silently released).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mailproxyd.core import retry, smtp_outcome
from mailproxyd.core.mime import Built, MessageBuildFailed, Part, build_message
from mailproxyd.core.smtp_outcome import Kind, Outcome
from mailproxyd.services.attachments.errors import AttachmentFailed
from mailproxyd.services.dispatch.record import Completion
from mailproxyd.services.dispatch.smtp import Delivery, deliver, deliver_many

if TYPE_CHECKING:
    from mailproxyd.services.dispatch.env import DispatchEnv


def _inline_parts(attachments: Sequence[Mapping[str, Any]]) -> list[Part]:
    """Decode ``base64`` attachments (reference §11.1); other modes need the attachment service."""
    parts: list[Part] = []
    for item in attachments:
        name = str(item.get("filename") or "attachment")
        path = str(item.get("storage_path") or "")
        mode = item.get("fetch_mode")
        if mode is None and path.startswith("base64:"):
            mode = "base64"
        if mode != "base64":
            raise AttachmentFailed(
                f"Attachment fetch failed for {name}: fetch mode {mode or 'inferred'} unavailable",
                permanent=True,
            )
        data = path[len("base64:") :] if path.startswith("base64:") else path
        try:
            content = base64.b64decode(data + "=" * (-len(data) % 4), validate=False)
        except (binascii.Error, ValueError):
            raise AttachmentFailed(
                f"Attachment fetch failed for {name}: invalid base64", permanent=True
            ) from None
        parts.append(Part(filename=name, content=content, mime_type=item.get("mime_type")))
    return parts


def _nothing() -> None:
    pass


async def _attachments(
    env: DispatchEnv, row: Mapping[str, Any], payload: Mapping[str, Any]
) -> tuple[list[Part], Mapping[str, Any], Callable[[], None]]:
    """The parts to attach, the payload to build (large-file links may change its body) and
    what to call once the attempt is over (large parts are temporary files)."""
    items = payload.get("attachments") or []
    if not items:
        return [], payload, _nothing
    fetch = env.fetch_attachments
    if fetch is not None:
        prepared = await fetch(row, items)
        body = {**payload, "body": prepared.payload.get("body")}
        return list(prepared.parts), body, prepared.close
    return _inline_parts(items), payload, _nothing


def completion_for(
    env: DispatchEnv,
    row: Mapping[str, Any],
    outcome: Outcome,
    *,
    now: float,
    slot_id: int,
    duration_ms: int | None,
    rcpts: int,
) -> Completion:
    """The completion of a classified attempt: reference §10.3 class → reference §10.4 ladder → event."""
    settings = env.settings()
    retries = int(row.get("retry_count") or 0)
    refused = outcome.refused_recipients or None
    common: dict[str, Any] = {
        "attempt": retries + 1,
        "duration_ms": duration_ms,
        "rcpts": rcpts,
        "release_slot": slot_id if outcome.release_slot else None,
        "outcome_uncertain": outcome.uncertain,
        "smtp_code": outcome.smtp_code,
    }
    if outcome.kind is Kind.SENT:
        common["smtp_code"] = None  # reference §13.1: a sent item carries no smtp_code
        return Completion(row, "sent", now, refused_recipients=refused, **common)
    text = outcome.error_text or "unknown failure"
    if not outcome.retryable:
        return Completion(row, "error", now, text=text, refused_recipients=refused, **common)
    decision = retry.next_attempt(
        now=now,
        retry_count=retries,
        max_retries=int(settings.max_retries),
        delays=settings.retry_delays,
        jitter=float(settings.retry_jitter),
        error_text=text,
        rng=env.rng,
    )
    if decision.retry:
        return Completion(
            row,
            "deferred",
            now,
            text=text,
            deferred_ts=decision.deferred_ts,
            count_retry=True,
            **common,
        )
    return Completion(
        row,
        "error",
        now,
        text=decision.error_text,
        refused_recipients=refused,
        # The failure that ends the ladder is not a retry: retry_count stays at the
        # number of retries granted (reference §10.4).
        **common,
    )


async def run_attempt(
    env: DispatchEnv,
    account: Mapping[str, Any],
    row: Mapping[str, Any],
    slot_id: int,
    *,
    bounce_return_path: str | None,
) -> Completion:
    """Deliver one admitted message; the completion to record."""
    started = time.perf_counter()
    payload = row["payload"]
    if bounce_return_path and not payload.get("return_path"):
        payload = {**payload, "bounce_return_path": bounce_return_path}
    outcome: Outcome
    built: Built | None = None
    rcpts = 0
    release = _nothing
    try:
        try:
            parts, payload, release = await _attachments(env, row, payload)
            built = build_message(payload, now=env.now(), attachments=parts)
        except AttachmentFailed as exc:
            kind = Kind.PERMANENT if exc.permanent else Kind.TEMPORARY
            outcome = Outcome(kind, exc.text, release_slot=True)
        except MessageBuildFailed as exc:
            outcome = smtp_outcome.build_failed(str(exc))
        if built is not None:
            with env.send_scope() as scope:
                delivery = await deliver(env.pool, account, built)
            if scope.cancelled_caught:
                return _abandoned(env, row, slot_id)
            outcome = delivery.outcome
            rcpts = delivery.accepted_recipients
    finally:
        release()
    # The duration of the SMTP attempt (reference §14); none when the message could not be built.
    duration_ms = int((time.perf_counter() - started) * 1000) if built is not None else None
    return completion_for(
        env, row, outcome, now=env.now(), slot_id=slot_id, duration_ms=duration_ms, rcpts=rcpts
    )


async def run_attempts(
    env: DispatchEnv,
    account: Mapping[str, Any],
    items: Sequence[tuple[Mapping[str, Any], int]],
    *,
    bounce_return_path: str | None,
) -> list[Completion | None]:
    """Deliver admitted messages ``(row, slot_id)`` in order over one SMTP session.

    The same outcome per message as ``run_attempt``, but one trip to a worker thread and one
    session for all of them. The answer follows ``items``; None marks a message that was never
    attempted because the sender began to stop (to be handed back, no event, reference §18.3).
    """
    out: list[Completion | None] = [None] * len(items)
    sending: list[tuple[int, Built]] = []
    # Temporary files of large attachments, removed once the run is over.
    releases: list[Callable[[], None]] = []
    results: list[Delivery] = []
    try:
        for index, (row, slot_id) in enumerate(items):
            payload = row["payload"]
            if bounce_return_path and not payload.get("return_path"):
                payload = {**payload, "bounce_return_path": bounce_return_path}
            try:
                parts, payload, release = await _attachments(env, row, payload)
                releases.append(release)
                sending.append((index, build_message(payload, now=env.now(), attachments=parts)))
                continue
            except AttachmentFailed as exc:
                kind = Kind.PERMANENT if exc.permanent else Kind.TEMPORARY
                outcome = Outcome(kind, exc.text, release_slot=True)
            except MessageBuildFailed as exc:
                outcome = smtp_outcome.build_failed(str(exc))
            out[index] = completion_for(
                env, row, outcome, now=env.now(), slot_id=slot_id, duration_ms=None, rcpts=0
            )
        if not sending:
            return out
        with env.send_scope() as scope:
            await deliver_many(
                env.pool,
                account,
                [built for _, built in sending],
                results,
                lambda: not env.stopping(),
            )
    finally:
        for release in releases:
            release()
    ended = len(results)
    for position, (index, _) in enumerate(sending):
        row, slot_id = items[index]
        if position < ended:
            delivery = results[position]
            out[index] = completion_for(
                env,
                row,
                delivery.outcome,
                now=env.now(),
                slot_id=slot_id,
                duration_ms=delivery.duration_ms,
                rcpts=delivery.accepted_recipients,
            )
        elif position == ended and scope.cancelled_caught:
            out[index] = _abandoned(env, row, slot_id)
    return out


def _abandoned(env: DispatchEnv, row: Mapping[str, Any], slot_id: int) -> Completion:
    """An attempt cut off at the shutdown deadline (reference §18.3).

    The driver reports whether the data went out only when the attempt ends, and this one did
    not end. Releasing it as "not started" could hide a delivery, so it is recorded as the
    uncertain outcome (retry later, same Message-ID, ``outcome_uncertain``), which is right
    whenever the data had been transmitted and merely cautious when it had not.
    """
    outcome = Outcome(Kind.UNCERTAIN, smtp_outcome.UNCERTAIN_TEXT)
    return completion_for(
        env, row, outcome, now=env.now(), slot_id=slot_id, duration_ms=None, rcpts=0
    )


__all__ = ["AttachmentFailed", "completion_for", "run_attempt", "run_attempts"]
