"""The control-socket location rule (reference §2.4)."""

from __future__ import annotations

import hashlib

from mailproxyd.core.paths import choose_control_socket, control_socket_candidates


def test_instance_candidates_in_order() -> None:
    got = control_socket_candidates(
        name="prod",
        instance_dir="/home/u/.mail-proxy/prod",
        uid=1000,
        xdg_runtime_dir="/run/user/1000",
    )
    digest = hashlib.sha256(b"/home/u/.mail-proxy/prod").hexdigest()[:16]
    assert got == [
        "/run/user/1000/mail-proxy/prod.sock",
        "/home/u/.mail-proxy/prod/control.sock",
        f"/tmp/mail-proxy-1000/{digest}.sock",
    ]


def test_serve_candidates() -> None:
    got = control_socket_candidates(
        name="serve-8000", instance_dir=None, uid=0, xdg_runtime_dir=None, serve_port=8000
    )
    assert got == ["/tmp/mail-proxy-0/serve-8000.sock"]


def test_too_long_and_unusable_candidates_are_skipped() -> None:
    long_dir = "/" + "d" * 120
    candidates = [long_dir + "/x.sock", "/run/bad/x.sock", "/tmp/ok/x.sock"]
    assert choose_control_socket(candidates, lambda d: d != "/run/bad") == "/tmp/ok/x.sock"
    assert choose_control_socket(candidates[:2], lambda d: d != "/run/bad") is None
