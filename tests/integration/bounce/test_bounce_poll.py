"""The bounce poll against a real IMAP server, on both database backends (reference §12, §5.6)."""

from __future__ import annotations

import logging
import time

import pytest
import trio

from mailproxyd.core.report import encode_item
from mailproxyd.drivers.imap import Mailbox, MailboxConfig
from mailproxyd.services import bounce
from mailproxyd.services.context import Doorbell
from tests import bounce_samples as samples

from .conftest import FOLDER, BounceEnv, message_id


def _original(key: str) -> bytes:
    return samples.original_message(message_id(key), key)


def _mailbox_of_every_kind(env: BounceEnv) -> dict[str, int]:
    env.send("m1", "m2", "m3", "m4", "m5")
    unknown = samples.original_message("<nobody-knows@elsewhere.example>", None)
    raws = {
        "postfix": samples.postfix_dsn(_original("m1")),
        "exchange": samples.exchange_dsn(_original("m2")),
        "text": samples.text_bounce(samples.original_message(message_id("m3"), None)),
        "delayed": samples.postfix_delayed(_original("m4")),
        "reply": samples.not_a_bounce(),
        "unknown": samples.postfix_dsn(unknown, bounce_id="9A9A9A9A9A"),
        "again": samples.postfix_dsn(_original("m1"), bounce_id="5C5C5C5C5C"),
        # Only the client id survives (the Message-ID was rewritten on the way).
        "by_client_id": samples.postfix_dsn(
            samples.original_message("<rewritten@relay.example>", "m5"),
            "eve@example.org",
            bounce_id="6D6D6D6D6D",
        ),
    }
    return dict(zip(raws, env.deliver(raws.values()), strict=True))


async def test_every_kind_of_message(env: BounceEnv, caplog: pytest.LogCaptureFixture) -> None:
    uids = _mailbox_of_every_kind(env)
    caplog.set_level(logging.INFO, logger="mailproxyd.bounce")
    result = await bounce.poll_once(env.ctx())
    assert result.polled and result.error is None
    assert dict((uid, outcome) for uid, outcome in result.outcomes) == {
        uids["postfix"]: "recorded",
        uids["exchange"]: "recorded",
        uids["text"]: "recorded",
        uids["delayed"]: "recorded",
        uids["reply"]: "not_bounce",
        uids["unknown"]: "unmatched",
        uids["again"]: "duplicate",
        uids["by_client_id"]: "recorded",
    }
    items = {item["id"]: item for item in map(encode_item, env.bounce_events())}
    assert set(items) == {"m1", "m2", "m3", "m4", "m5"}
    assert items["m1"] == {
        "id": "m1",
        "account_id": "smtp1",
        "priority": 2,
        "sent_ts": None,
        "error_ts": None,
        "error": None,
        "deferred_ts": None,
        "event": "bounce",
        "bounce_type": "hard",
        "bounce_code": "5.1.1",
        "bounce_reason": "smtp; 550 5.1.1 <ann@example.org>: Recipient address rejected",
        "bounce_ts": items["m1"]["bounce_ts"],
    }
    assert abs(items["m1"]["bounce_ts"] - time.time()) < 30
    assert (items["m2"]["bounce_type"], items["m2"]["bounce_code"]) == ("hard", "5.1.10")
    assert (items["m3"]["bounce_type"], items["m3"]["bounce_code"]) == ("hard", "552")
    assert items["m3"]["bounce_reason"].startswith("Hi. This is the qmail-send program")
    assert (items["m4"]["bounce_type"], items["m4"]["bounce_code"]) == ("soft", "4.4.1")
    for key in ("m1", "m2", "m3", "m4", "m5"):
        record = env.record(key)
        assert record["status"] == "sent" and record["bounce_ts"] is not None
    assert env.record("m4")["bounce_reason"].startswith("X-Postfix; connect to mx.example.org")
    # Processed means \Seen, never deleted.
    flags = env.imap.flags(FOLDER)
    assert set(flags) == set(uids.values()) and all("\\Seen" in f for f in flags.values())
    log = caplog.text
    assert f"bounce skipped uid={uids['reply']}: not a bounce" in log
    assert f"bounce skipped uid={uids['unknown']}: no retained message matches" in log
    assert f"bounce skipped uid={uids['again']}: already recorded for tenant=acme id=m1" in log
    assert "bounce recorded tenant=acme id=m2 type=hard code=5.1.10" in log
    state = env.state()
    assert state["last_uid"] == max(uids.values()) and state["lock_owner"] is None
    assert env.instance()["bounce_last_sync"] is not None


async def test_nothing_is_processed_twice_and_new_messages_are(env: BounceEnv) -> None:
    env.send("m1", "m2")
    env.deliver([samples.postfix_dsn(_original("m1"))])
    assert (await bounce.poll_once(env.ctx())).recorded == 1
    # Not due yet: nothing happens without force.
    assert not (await bounce.poll_once(env.ctx())).polled
    # A restarted poller (another owner, same database) reads nothing old.
    again = await bounce.poll_once(env.ctx("node-a/reporter-restarted"), force=True)
    assert again.polled and again.read == 0
    # Messages that were \Seen already are still read once when new to the cursor.
    (uid,) = env.deliver([samples.exchange_dsn(_original("m2"))])
    result = await bounce.poll_once(env.ctx(), force=True)
    assert result.outcomes == [(uid, "recorded")]
    assert len(env.bounce_events()) == 2


async def test_uidvalidity_change_resets_the_cursor(env: BounceEnv) -> None:
    env.send("m1", "m2")
    env.deliver([samples.postfix_dsn(_original("m1"))])
    await bounce.poll_once(env.ctx())
    old = env.state()
    env.imap.recreate(FOLDER)  # empty, new UIDVALIDITY, UIDs start again
    (uid,) = env.deliver([samples.exchange_dsn(_original("m2"))])
    assert uid <= old["last_uid"]
    result = await bounce.poll_once(env.ctx(), force=True)
    assert result.outcomes == [(uid, "recorded")]
    new = env.state()
    assert new["uidvalidity"] != old["uidvalidity"] and new["last_uid"] == uid


async def test_starttls_when_offered(env: BounceEnv) -> None:
    env.send("m1")
    env.configure(bounce_imap_port=env.imap.port, bounce_imap_ssl=False)
    env.deliver([samples.postfix_dsn(_original("m1"))])
    assert (await bounce.poll_once(env.ctx())).recorded == 1
    plain = Mailbox(
        MailboxConfig(
            env.imap.host, env.imap.port, env.imap.user, env.imap.password, FOLDER, False
        ),
        cafile=env.cafile,
    )
    await trio.to_thread.run_sync(plain.open)
    try:
        assert plain.tls
    finally:
        plain.close()


async def test_failures_show_in_the_instance_and_clear_once_a_poll_succeeds(
    env: BounceEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailproxyd.bounce")
    env.send("m1")
    env.configure(bounce_imap_password="wrong-password")
    result = await bounce.poll_once(env.ctx())
    assert result.error is not None and result.error.startswith("IMAP login refused")
    assert "wrong-password" not in result.error and "wrong-password" not in caplog.text
    shown = env.instance()
    assert shown["bounce_last_error"] == result.error and shown["bounce_last_error_ts"] is not None
    # Backed off: the next poll is due after twice the interval, and the same failure again is
    # not logged again.
    assert result.next_poll_ts is not None and result.next_poll_ts - time.time() > 100
    await bounce.poll_once(env.ctx(), force=True)
    assert caplog.text.count("bounce poll failed") == 1

    env.configure()
    env.imap.stop()
    down = await bounce.poll_once(env.ctx(), force=True)
    assert down.error is not None and down.error.startswith("IMAP server unreachable")
    assert env.instance()["bounce_last_error"] == down.error
    env.imap.start()
    env.deliver([samples.malformed_bounce(), samples.postfix_dsn(_original("m1"))])
    broken = await bounce.poll_once(env.ctx(), force=True)
    assert broken.recorded == 1 and broken.malformed == 1
    assert broken.error is not None and "could not be parsed" in broken.error
    assert env.instance()["bounce_last_error"] == broken.error
    assert "bounce mailbox polled successfully again" in caplog.text
    clean = await bounce.poll_once(env.ctx(), force=True)
    assert clean.error is None and "bounce_last_error" not in {
        k for k, v in env.instance().items() if v is not None
    }
    assert env.state()["consecutive_failures"] == 0


async def test_disabled_or_incomplete_settings(env: BounceEnv) -> None:
    env.configure(bounce_enabled=False)
    assert not (await bounce.poll_once(env.ctx(), force=True)).polled
    assert env.imap.sessions == []
    env.configure(bounce_imap_password=None)
    result = await bounce.poll_once(env.ctx(), force=True)
    assert result.error == bounce.INCOMPLETE


async def test_the_loop_backs_off_recovers_by_itself_and_polls_one_at_a_time(
    env: BounceEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailproxyd.bounce")
    env.send("m1", "m2")
    env.configure(bounce_poll_interval=0.2)  # the API allows 10 s at least; the store any
    env.imap.stop()
    woken: list[float] = []
    bells = [Doorbell(), Doorbell()]
    async with trio.open_nursery() as nursery:
        for index, bell in enumerate(bells):
            ctx = env.ctx(f"node-{index}/reporter", on_recorded=lambda: woken.append(time.time()))
            nursery.start_soon(bounce.bounce_loop, ctx, bell)
        with trio.fail_after(20):
            while env.state()["consecutive_failures"] < 3:
                await trio.sleep(0.05)
        assert env.instance()["bounce_last_error"].startswith("IMAP server unreachable")
        assert caplog.text.count("bounce poll failed") == 1  # once per change of state
        env.imap.start()
        env.deliver([samples.postfix_dsn(_original("m1"))])
        with trio.fail_after(20):
            while not woken or env.instance().get("bounce_last_error") is not None:
                await trio.sleep(0.05)
        env.deliver([samples.exchange_dsn(_original("m2"))])
        with trio.fail_after(20):
            while len(env.bounce_events()) < 2:
                await trio.sleep(0.05)
        # A reload request makes the next poll due at once, back-off forgotten.
        sessions = len(env.imap.closed_sessions())
        bells[1].ring()
        with trio.fail_after(10):
            while len(env.imap.closed_sessions()) <= sessions:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert env.imap.max_concurrent() == 1
    assert len(env.imap.closed_sessions()) >= 3
