"""Where the control socket goes (reference §2.4), as a pure choice.

UNIX socket paths are limited to 107 bytes, so several candidates are tried in
order. The caller supplies the facts (environment values, uid, whether a
candidate directory is usable) and gets the first path that fits.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

UNIX_SOCKET_MAX = 107


def control_socket_candidates(
    *,
    name: str,
    instance_dir: str | None,
    uid: int,
    xdg_runtime_dir: str | None,
    serve_port: int | None = None,
) -> list[str]:
    """Candidates 2–4 of reference §2.4 in order (candidate 1, ``GMP_CONFIG_SOCKET``, is the caller's).

    ``instance_dir`` is None in ``serve`` mode, where ``name`` is ``serve-<port>``,
    candidate 3 is skipped and candidate 4 is named after the port.
    """
    out: list[str] = []
    if xdg_runtime_dir:
        out.append(os.path.join(xdg_runtime_dir, "mail-proxy", f"{name}.sock"))
    tmp_dir = f"/tmp/mail-proxy-{uid}"
    if instance_dir is not None:
        out.append(os.path.join(instance_dir, "control.sock"))
        digest = hashlib.sha256(instance_dir.encode("utf-8")).hexdigest()[:16]
        out.append(os.path.join(tmp_dir, f"{digest}.sock"))
    else:
        out.append(os.path.join(tmp_dir, f"serve-{serve_port}.sock"))
    return out


def choose_control_socket(candidates: list[str], usable_dir: Callable[[str], bool]) -> str | None:
    """The first candidate that fits in 107 bytes and whose directory is usable."""
    for path in candidates:
        if len(os.fsencode(path)) > UNIX_SOCKET_MAX:
            continue
        if usable_dir(os.path.dirname(path)):
            return path
    return None


def metrics_directory(
    *,
    name: str,
    instance_dir: str | None,
    uid: int,
    xdg_runtime_dir: str | None,
) -> str:
    """The node's metrics directory (one file per process and metric type, reference §14).

    It sits beside the control socket's usual places, in the runtime directory when there is
    one (a tmpfs, emptied at boot): ``<runtime>/mail-proxy/<name>.metrics``, else
    ``/tmp/mail-proxy-<uid>/<name>.metrics``, where an instance is named by a digest of its
    directory so that two homes holding the same name do not meet. ``name`` is the instance
    name or ``serve-<port>``.
    """
    if xdg_runtime_dir:
        return os.path.join(xdg_runtime_dir, "mail-proxy", f"{name}.metrics")
    if instance_dir is not None:
        name = hashlib.sha256(instance_dir.encode("utf-8")).hexdigest()[:16]
    return os.path.join(f"/tmp/mail-proxy-{uid}", f"{name}.metrics")
