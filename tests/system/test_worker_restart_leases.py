"""A dead worker's claims are released when the supervisor restarts it (reference §18.4, §8.3).

Without the release the message would wait out its 120 s lease; with it, the restarted sender
picks it up within seconds (defect 15.4).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from tests.daemon import Daemon, wait_for
from tests.system.smtpsink import SmtpSink
from tests.system.test_delivery_path import _add, _tenant_with_account
from tests.tenantservers import TenantServer


def test_a_killed_senders_leases_are_released_at_its_restart(
    daemon: Daemon, smtp_sink: SmtpSink, tenant_server: Callable[..., TenantServer]
) -> None:
    sync = tenant_server()
    smtp_sink.delay = 5.0  # the first transaction hangs in DATA while the sender is killed
    node = daemon.serve(env={"GMP_SENDER_PROCESSES": "1"})
    _tenant_with_account(node, smtp_sink, sync.base_url)
    sender = next(w for w in node.workers() if w["kind"] == "sender")
    _add(node, "held-1")
    wait_for(lambda: smtp_sink.in_data, 10, what="the SMTP transaction to be under way")
    record = node.http("GET", "/message/held-1?tenant_id=acme").json()
    assert record["status"] == "sending", record
    smtp_sink.delay = 0.0
    os.kill(int(sender["pid"]), signal.SIGKILL)
    killed_at = time.monotonic()

    def sent() -> bool:
        answer = node.http("GET", "/message/held-1?tenant_id=acme").json()
        return answer["status"] == "sent"

    wait_for(sent, 30, interval=0.2, what="the message sent by the restarted sender")
    # Restart back-off 1 s, then claim and send: far below the 120 s lease.
    assert time.monotonic() - killed_at < 20
    assert f"released 1 lease(s) of sender-0 (pid {sender['pid']})" in node.log()
