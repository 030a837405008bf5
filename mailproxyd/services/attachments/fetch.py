"""The four fetch modes (reference §11.1–§11.5): content in, classified failure out.

Every fetch is capped in size (cut as soon as the cap is passed) and in time (the caller's
deadline); the reason texts and the temporary/permanent split are those of reference §11.5. HTTP goes
through clients whose transports dial only addresses the network policy accepted
(``drivers/connect``), each redirect included.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import httpx
import trio

from mailproxyd import __version__
from mailproxyd.core import report as core_report
from mailproxyd.core.attachment_rules import MIB, decode_base64, normalise_roots, path_allowed
from mailproxyd.drivers.connect import AddressRefused, ResolveFailed
from mailproxyd.services.attachments.content import Content, Sink, in_memory

MAX_REDIRECTS: Final = 5
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_OVERRIDE: Final = re.compile(r"\[(https?://[^\]]+)\](.*)", re.DOTALL)
_READ_CHUNK: Final = 1 << 16


class Failure(Exception):
    """A fetch failed with ``reason`` (reference §11.5); ``permanent`` or temporary."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int
    threshold: int  # spill to a temporary file above this many bytes


def too_large(limits: Limits) -> Failure:
    return Failure(f"larger than {limits.max_bytes // MIB} MB", permanent=True)


def authorization(auth: Mapping[str, Any] | None) -> str | None:
    """The ``Authorization`` value of an ``auth`` object (attachment or ``client_auth``)."""
    return core_report.authorization(auth)


def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


# ------------------------------------------------------------------ HTTP


async def http_fetch(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    limits: Limits,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    redirect_client: httpx.AsyncClient | None = None,
) -> Content:
    """GET/POST ``url`` following up to five redirects, each through the checked transport.

    ``redirect_client`` (the ``http_url`` policy) takes over once a redirect leaves the origin
    of ``url``: the trust given to the tenant's ``client_base_url`` does not extend to wherever
    its server redirects (reference §11.3).
    """
    current = url
    send_headers = {"User-Agent": f"mail-proxy/{__version__}", **(headers or {})}
    for _ in range(MAX_REDIRECTS + 1):
        try:
            request = client.build_request(method, current, headers=send_headers, content=body)
            response = await client.send(request, stream=True)
        except AddressRefused as exc:
            raise Failure(exc.reason, permanent=True) from None
        except ResolveFailed:
            raise Failure("DNS failure", permanent=False) from None
        except httpx.ConnectTimeout:
            raise Failure("connection timed out", permanent=False) from None
        except httpx.ConnectError as exc:
            text = str(exc).lower()
            if "name or service" in text or "resolve" in text or "nodename" in text:
                raise Failure("DNS failure", permanent=False) from None
            raise Failure("connection refused", permanent=False) from None
        except httpx.TimeoutException:
            raise Failure("timed out", permanent=False) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError):
            raise Failure("invalid URL", permanent=True) from None
        except (httpx.HTTPError, OSError):
            raise Failure("connection reset", permanent=False) from None
        try:
            if response.status_code in _REDIRECTS and "location" in response.headers:
                target = urljoin(current, response.headers["location"])
                try:
                    same_origin = origin(target) == origin(current)
                except ValueError:
                    raise Failure("redirect to an invalid URL", permanent=True) from None
                if urlsplit(target).scheme.lower() not in ("http", "https"):
                    raise Failure("redirect to a non-HTTP URL", permanent=True)
                if not same_origin:
                    # Credentials belong to the origin they were given for.
                    send_headers.pop("Authorization", None)
                if redirect_client is not None and origin(target) != origin(url):
                    client = redirect_client
                if response.status_code == 303 or (
                    response.status_code in (301, 302) and method == "POST"
                ):
                    method, body = "GET", None
                    send_headers.pop("Content-Type", None)
                current = target
                continue
            return await _read_body(response, limits)
        finally:
            await response.aclose()
    raise Failure("too many redirects", permanent=True)


async def _read_body(response: httpx.Response, limits: Limits) -> Content:
    status = response.status_code
    if not 200 <= status < 300:
        temporary = status in (408, 429) or status >= 500
        raise Failure(f"HTTP {status}", permanent=not temporary)
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise too_large(limits)
    sink = Sink(cap=limits.max_bytes, threshold=limits.threshold)
    try:
        async for chunk in response.aiter_raw():
            if not await sink.add(chunk):
                raise too_large(limits)
    except httpx.TimeoutException:
        sink.abort()
        raise Failure("timed out", permanent=False) from None
    except (httpx.HTTPError, OSError):
        sink.abort()
        raise Failure("connection reset", permanent=False) from None
    except BaseException:
        sink.abort()
        raise
    return sink.close()


# ------------------------------------------------------------------ endpoint


@dataclass(frozen=True, slots=True)
class EndpointCall:
    url: str
    body: bytes
    headers: dict[str, str]
    override: bool  # the ``[url]rest`` form: the http_url policy applies


def endpoint_call(
    tenant: Mapping[str, Any], storage_path: str, auth: Mapping[str, Any] | None, now: float
) -> EndpointCall:
    """The POST of reference §11.2 for one attachment of ``tenant`` (decrypted ``client_auth``)."""
    base = str(tenant.get("client_base_url") or "").rstrip("/")
    path = str(tenant.get("client_attachment_path") or "/mail-proxy/attachments")
    url = base + path
    client_auth = tenant.get("client_auth") or {}
    reference = storage_path
    override = _OVERRIDE.fullmatch(storage_path)
    tenant_auth_ok = True
    if override is not None:
        url, reference = override.group(1), override.group(2)
        tenant_auth_ok = origin(url) == origin(base)
    body = json.dumps({"storage_path": reference}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    value = (
        authorization(auth) if auth else (authorization(client_auth) if tenant_auth_ok else None)
    )
    if value is not None:
        headers["Authorization"] = value
    secret = client_auth.get("signing_secret")
    if secret:
        headers[core_report.SIGNATURE_HEADER] = core_report.sign(str(secret), int(now), body)
    return EndpointCall(url, body, headers, override is not None)


# ------------------------------------------------------------------ filesystem and base64


def read_file(path: str, roots: tuple[str, ...], limits: Limits) -> Content:
    """Blocking: read ``path`` after resolving symlinks, only under ``roots`` (reference §11.4)."""
    allowed = normalise_roots(roots)
    if not allowed or not path_allowed(path, allowed):
        raise Failure("path not allowed", permanent=True)
    real = os.path.realpath(path)
    real_roots = normalise_roots(os.path.realpath(root) for root in allowed)
    if not path_allowed(real, real_roots):
        raise Failure("path not allowed", permanent=True)
    try:
        src = open(real, "rb")
    except FileNotFoundError:
        raise Failure("file not found", permanent=True) from None
    except OSError:
        raise Failure("file unreadable", permanent=True) from None
    with src:
        try:
            if not os.path.isfile(real):
                raise Failure("file unreadable", permanent=True)
            size = os.fstat(src.fileno()).st_size
            if size > limits.max_bytes:
                raise too_large(limits)
            md5 = hashlib.md5()
            if size <= limits.threshold:
                data = src.read(limits.max_bytes + 1)
                if len(data) > limits.max_bytes:
                    raise too_large(limits)
                return in_memory(data)
            fd, tmp = tempfile.mkstemp(prefix="mail-proxy-att-")
            total = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(1 << 20):
                    total += len(chunk)
                    if total > limits.max_bytes:
                        out.close()
                        os.unlink(tmp)
                        raise too_large(limits)
                    md5.update(chunk)
                    out.write(chunk)
            return Content(total, md5.hexdigest(), path=tmp)
        except OSError:
            raise Failure("file unreadable", permanent=True) from None


async def filesystem(path: str, roots: tuple[str, ...], limits: Limits) -> Content:
    return await trio.to_thread.run_sync(read_file, path, roots, limits)


def base64_content(data: str, limits: Limits) -> Content:
    try:
        raw = decode_base64(data)
    except ValueError:
        raise Failure("invalid base64", permanent=True) from None
    if len(raw) > limits.max_bytes:
        raise too_large(limits)
    return in_memory(raw)


def timed_out_reason(seconds: float) -> str:
    shown = str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
    return f"timed out after {shown} s"


__all__ = [
    "EndpointCall",
    "Failure",
    "Limits",
    "base64_content",
    "endpoint_call",
    "filesystem",
    "http_fetch",
    "timed_out_reason",
]
