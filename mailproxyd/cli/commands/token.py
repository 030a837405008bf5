"""``mail-proxy NAME token [--regenerate]``: the instance's admin token (reference §15.3, §3.4)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

from cyclopts import Parameter

from mailproxyd import instance
from mailproxyd.cli.apps import instance as instance_app
from mailproxyd.cli.apps import instance_name
from mailproxyd.control import client as control
from mailproxyd.core import crypto
from mailproxyd.errors import MailProxyError
from mailproxyd.settings import load_settings, read_token_file


@instance_app.command
def token(
    *,
    regenerate: Annotated[
        bool, Parameter(help="Write a new token; a running node switches to it at once.")
    ] = False,
) -> int:
    """Print the admin token of the instance alone on stdout."""
    name = instance_name()
    instance.validate_name(name)
    if not instance.instance_exists(name):
        raise MailProxyError(f"instance '{name}' does not exist")
    directory = instance.instance_dir(name)
    path = directory / "api_token"
    settings = load_settings("instance", name=name)
    if settings.sources.get("api_token") == "env":
        print("warning: GMP_API_TOKEN is set and overrides the api_token file", file=sys.stderr)
    if regenerate:
        new = crypto.new_token()
        tmp = path.with_name("api_token.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (new + "\n").encode("ascii"))
        finally:
            os.close(fd)
        os.replace(tmp, path)
        pid_info = instance.read_pid_file(directory)
        if pid_info and instance.running_pid(directory) and pid_info.get("socket"):
            # The node re-reads the api_token file on reload (reference §3.4): the old token stops now.
            control.call(str(pid_info["socket"]), "reload")
        print(new)
        return 0
    current = read_token_file(path)
    if current is None:
        raise MailProxyError(f"instance '{name}' has no api_token file")
    print(current)
    return 0
