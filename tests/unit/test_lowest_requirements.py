"""The pins that ``make test-lowest`` installs are exactly the lower bounds of setup.cfg."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bounds() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    out = {}
    declared = cfg["options"]["install_requires"] + cfg["options.extras_require"]["postgresql"]
    for line in declared.strip().splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)>=([0-9.]+)\s*", line)
        assert match, f"install_requires entry without a >= lower bound: {line!r}"
        out[match.group(1).lower()] = match.group(2)
    return out


def _pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".ci" / "lowest-requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            out[name.lower()] = version
    return out


def _same(bound: str, pin: str) -> bool:
    parts = bound.split(".")
    return pin.split(".")[: len(parts)] == parts and all(
        p == "0" for p in pin.split(".")[len(parts) :]
    )


def test_every_lower_bound_is_pinned_for_the_lowest_run() -> None:
    bounds, pins = _bounds(), _pins()
    assert set(bounds) == set(pins)
    for name, bound in bounds.items():
        assert _same(bound, pins[name]), (name, bound, pins[name])
