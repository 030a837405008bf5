"""The shipped etc/mail-proxy.toml documents every file setting and parses when uncommented."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from mailproxyd.settings import SPECS

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "mail-proxy.toml"


def test_every_setting_is_documented_and_valid(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    uncommented = re.sub(r"^# (\w+ = .*)$", r"\1", text, flags=re.M)
    data = tomllib.loads(uncommented)
    keys = {f"{section}.{key}" for section, table in data.items() for key in table}
    assert keys == {spec.file_key for spec in SPECS if spec.file_key}
