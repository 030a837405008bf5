"""The supervisor ↔ worker link (``mailproxyd.link``): typed messages over one framing, and the
typed control calls both ends share (``control.protocol``)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from mailproxyd import link
from mailproxyd.control import protocol
from mailproxyd.core.framing import LineBuffer, encode_line
from mailproxyd.services.context import Doorbell, ServiceContext

EVERY_MESSAGE: list[link.LinkMessage] = [
    link.Init(key="a2V5", settings="{}"),
    link.RunCycle(),
    link.Reload(settings='{"x": 1}'),
    link.Stop(grace=2.5),
    link.Reply(id=3, result={"workers": {}}),
    link.Reply(id=4, error=link.ReplyError(code=-32601, message="unknown method: x")),
    link.Ready(),
    link.Fatal(message="port 8000 is already in use"),
    link.Heartbeat(),
    link.CycleDone(),
    link.Call(id=5, method="run_now", params={"tenant_id": "acme"}),
    link.Wake(reason="enqueue", target="sender", tenant_id="acme"),
]


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_every_message_survives_its_line(message: link.LinkMessage) -> None:
    line = encode_line(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert link.decode(line[:-1]) == message


def test_the_wire_form_is_tagged_by_type() -> None:
    assert encode_line(link.Stop(grace=1.0)) == b'{"type":"stop","grace":1.0}\n'
    assert link.decode(b'{"type":"wake","reason":"run_now"}') == link.Wake(reason="run_now")


@pytest.mark.parametrize(
    "line", [b"{not json", b"[1]", b'{"type":"nonsense"}', b'{"type":"stop","grace":"x"}']
)
def test_a_line_that_is_no_message_decodes_to_none(line: bytes) -> None:
    assert link.decode(line) is None


async def test_a_channel_skips_garbage_and_ends_at_an_overlong_line() -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    raw = trio.SocketStream(trio.socket.from_stdlib_socket(left))
    a, b = link.Channel(raw), link.Channel.from_socket(right)
    await raw.send_all(b"garbage\n" + encode_line(link.Ready()) + b"\n\n")
    await a.send(link.Wake(reason="event", target="reporter"))
    assert await b.receive() == link.Ready()
    assert await b.receive() == link.Wake(reason="event", target="reporter")
    async with trio.open_nursery() as nursery:
        # More than a socket buffer holds: written while the other end reads.
        nursery.start_soon(raw.send_all, b"x" * (link.MAX_MESSAGE_BYTES + 10))
        assert await b.receive() is None and b.closed
        await b.aclose()  # the writer's end breaks: its send_all ends
        nursery.cancel_scope.cancel()
    await a.aclose()


def test_one_framing_for_both_protocols() -> None:
    """The control socket's line buffer is the link's, with the 1 MB bound of reference §17."""
    assert issubclass(protocol.LineBuffer, LineBuffer)
    buf = protocol.LineBuffer()
    assert buf.feed(b"x" * (protocol.MAX_LINE_BYTES + 1)) == [None]


def test_one_method_table_types_every_control_call() -> None:
    assert set(protocol.METHODS) == {
        "status",
        "stats",
        "run_now",
        "suspend",
        "activate",
        "reload",
        "stop",
        "workers",
    }
    request = protocol.parse_request(
        b'{"id": 1, "method": "suspend", "params": {"tenant_id": "acme", "batch_code": "b1"}}'
    )
    assert request.call == protocol.Suspend(tenant_id="acme", batch_code="b1")
    assert protocol.method_name(request.call) == "suspend"
    assert protocol.make_call("stop", {"grace_seconds": 3}) == protocol.Stop(grace_seconds=3)
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.make_call("stats", {"tenant_id": 7})
    assert (info.value.code, info.value.message) == (
        protocol.INVALID_PARAMS,
        "tenant_id: must be a string",
    )


async def test_a_ring_is_kept_for_the_next_wait() -> None:
    bell = Doorbell()
    assert not await bell.wait(0)
    bell.ring()
    bell.ring()
    assert bell.pending
    assert await bell.wait(0)
    assert not bell.pending and not await bell.wait(0.01)


@pytest.mark.parametrize(
    "module",
    [
        "mailproxyd.api.app",
        "mailproxyd.api.openapi",
        "mailproxyd.api.routes.system",
        "mailproxyd.supervisor",
        "mailproxyd.supervision.handlers",
        "mailproxyd.link",
        "mailproxyd.services.context",
    ],
)
def test_each_module_imports_alone(module: str) -> None:
    """No import cycle makes a module importable only after another one."""
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, timeout=60)


def test_the_cli_context_is_a_service_context_naming_its_instance(tmp_path: Path) -> None:
    from mailproxyd.cli.context import CliContext, CliLink
    from mailproxyd.settings import load_settings

    settings = load_settings("serve", environ={})
    ctx = CliContext(
        settings,
        None,  # type: ignore[arg-type]
        CliLink(tmp_path),
        logging.getLogger("test"),
        kind="cli",
        name="shop",
        directory=tmp_path,
    )
    assert isinstance(ctx, ServiceContext)
    assert (ctx.name, ctx.process_name) == ("shop", "cli")
    assert ctx.owner.startswith(f"{settings.node_id}/cli/")
