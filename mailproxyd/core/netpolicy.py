"""The outbound network policy (reference §11.3): which addresses a destination may reach.

One pure rule used by every outbound connection (attachment fetches, endpoint fetches, sync
calls, SMTP connections to tenant-set hosts) through the connector in ``drivers/connect``.
The rule is judged on the *addresses* a host resolves to, never on its name, and the
connector dials only addresses this rule accepted, so there is no second resolution.

Two trust levels. A value set with the admin token (the operator's own configuration) is
*trusted*: it may reach loopback and private networks. Anything else — ``http_url``
attachments, redirects, values set with a tenant key — is *untrusted*: loopback, private and
shared ranges are refused unless ``GMP_ALLOW_PRIVATE_NETWORKS`` is on. Link-local (with the
cloud metadata services), unspecified, multicast and broadcast addresses are refused always.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_net = ipaddress.ip_network

# Refused whatever the trust. 0.0.0.0/8 as a whole: Linux routes it to the local host.
_ALWAYS_REFUSED: Final = (
    _net("169.254.0.0/16"),
    _net("fe80::/10"),
    _net("0.0.0.0/8"),
    _net("::/128"),
    _net("224.0.0.0/4"),
    _net("ff00::/8"),
    _net("255.255.255.255/32"),
    _net("fd00:ec2::254/128"),  # AWS metadata over IPv6 (inside fc00::/7, but never allowed)
)
# Refused for untrusted values unless private networks are allowed.
_PRIVATE: Final = (
    _net("127.0.0.0/8"),
    _net("::1/128"),
    _net("10.0.0.0/8"),
    _net("172.16.0.0/12"),
    _net("192.168.0.0/16"),
    _net("fc00::/7"),
    _net("100.64.0.0/10"),
)


@dataclass(frozen=True, slots=True)
class Policy:
    """What one destination may reach: its trust, and the node's private-network switch."""

    trusted: bool = False
    allow_private: bool = False

    def refusal(self, address: str) -> str | None:
        """``None`` when ``address`` may be reached, else the reason (``address not allowed (…)``)."""
        return refusal(address, trusted=self.trusted, allow_private=self.allow_private)


UNTRUSTED: Final = Policy()


def parse_ip(address: str) -> IPAddress | None:
    """The address as compared by the rule (zone id dropped, IPv4-mapped IPv6 unwrapped)."""
    text = address.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return mapped
        if ip in _net("64:ff9b::/96"):  # NAT64: the IPv4 address in the low 32 bits
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal(address: str, *, trusted: bool, allow_private: bool) -> str | None:
    """The reference §11.3 rule for one resolved address; ``None`` when it may be reached."""
    ip = parse_ip(address)
    shown = address.strip("[]").split("%", 1)[0]
    if ip is None:
        return f"address not allowed ({shown})"
    if any(ip in net for net in _ALWAYS_REFUSED if net.version == ip.version):
        return f"address not allowed ({shown})"
    if trusted or allow_private:
        return None
    if any(ip in net for net in _PRIVATE if net.version == ip.version):
        return f"address not allowed ({shown})"
    return None


def literal_host(host: str) -> IPAddress | None:
    """The address of a host written as an IP literal (``[::1]`` included), else ``None``."""
    return parse_ip(host) if host else None
