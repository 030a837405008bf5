"""The outbound network rule (reference §11.3), address by address."""

from __future__ import annotations

import pytest

from mailproxyd.core.netpolicy import Policy, refusal

ALWAYS = [
    "169.254.169.254",
    "169.254.0.1",
    "fe80::1",
    "fe80::1%eth0",
    "fd00:ec2::254",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "ff02::1",
    "255.255.255.255",
    "::ffff:169.254.169.254",
]
PRIVATE = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "fc00::1",
    "fd12:3456::1",
    "100.64.0.1",
    "::ffff:127.0.0.1",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111", "100.128.0.1"]


@pytest.mark.parametrize("address", ALWAYS)
def test_always_refused_whatever_the_trust(address: str) -> None:
    for policy in (Policy(), Policy(allow_private=True), Policy(trusted=True)):
        reason = policy.refusal(address)
        assert reason is not None and reason.startswith("address not allowed (")


@pytest.mark.parametrize("address", PRIVATE)
def test_private_refused_unless_allowed_or_trusted(address: str) -> None:
    assert Policy().refusal(address) == f"address not allowed ({address.split('%')[0]})"
    assert Policy(allow_private=True).refusal(address) is None
    assert Policy(trusted=True).refusal(address) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_allowed(address: str) -> None:
    assert refusal(address, trusted=False, allow_private=False) is None


def test_the_reason_names_the_address() -> None:
    assert Policy().refusal("169.254.169.254") == "address not allowed (169.254.169.254)"
    assert Policy().refusal("[fd00:ec2::254]") == "address not allowed (fd00:ec2::254)"
    assert Policy().refusal("not-an-ip") == "address not allowed (not-an-ip)"
