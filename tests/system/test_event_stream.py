"""The live event stream end to end: a delivery on a real daemon reaches a WebSocket client (reference §5.9)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import trio
from trio_websocket import open_websocket_url

from tests.daemon import ADMIN_TOKEN, Daemon, wait_for
from tests.system.smtpsink import SmtpSink
from tests.system.test_delivery_path import _add, _tenant_with_account
from tests.tenantservers import TenantServer


async def test_a_live_sent_event_reaches_the_stream_within_two_seconds(
    daemon: Daemon, smtp_sink: SmtpSink, tenant_server: Callable[..., TenantServer]
) -> None:
    sync = tenant_server()
    node = daemon.serve(env={"GMP_SENDER_PROCESSES": "2"})
    _tenant_with_account(node, smtp_sink, sync.base_url)
    url = node.url.replace("http://", "ws://") + "/events?tenant_id=acme"
    async with open_websocket_url(url, extra_headers=[("X-API-Token", ADMIN_TOKEN)]) as ws:
        _add(node, "live-1")
        with trio.fail_after(10):
            frame = json.loads(await ws.get_message())
        seen = time.time()
    received = wait_for(smtp_sink.received, 5, what="the message at the SMTP server")
    # The event was recorded by a sender process and streamed by the api process.
    assert frame["tenant_id"] == "acme" and frame["id"] == "live-1"
    assert frame["event"] == "sent" and isinstance(frame["sent_ts"], int)
    assert {"account_id", "priority", "error_ts", "error", "deferred_ts"} <= set(frame)
    # Reference §5.9: frames go out within 2 s of the event being recorded.
    assert seen - received[0].at < 2.0
