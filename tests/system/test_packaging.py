"""The files shipped next to the package: the environment file and the manual pages."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_environment_file_only_names_known_variables() -> None:
    from mailproxyd.settings import SPECS

    known = {spec.env for spec in SPECS} | {"SSL_CERT_FILE"}
    text = (ROOT / "etc" / "mail-proxy.env").read_text()
    names = [line.lstrip("#").split("=", 1)[0] for line in text.splitlines() if "=" in line]
    assert names and set(names) <= known


@pytest.mark.skipif(shutil.which("groff") is None or shutil.which("man") is None, reason="no man")
def test_make_man_builds_pages_that_render_without_warnings(tmp_path: Path) -> None:
    build = tmp_path / "man"
    shutil.copytree(ROOT / "man", build)
    made = subprocess.run(["make", "-C", str(build)], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    for page, title in (("mail-proxy.1", "MAIL-PROXY(1)"), ("mailproxyd.8", "MAILPROXYD(8)")):
        assert (build / f"{page}.gz").stat().st_size > 500
        shown = subprocess.run(
            ["man", "--warnings", "-l", str(build / f"{page}.gz")],
            capture_output=True,
            text=True,
            env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"},
            check=False,
        )
        assert shown.returncode == 0 and shown.stderr == "", shown.stderr
        assert shown.stdout.lstrip().startswith(title)
