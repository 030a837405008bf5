"""Named SQL queries loaded from ``mailproxyd/sql/*.sql``.

Queries are written once in ``queries.sql`` as ``-- name: <name>`` blocks with ``:param``
placeholders (sqlite3's named style). Where the dialects differ, ``queries.<backend>.sql`` holds
a block of the same name that replaces the common one for that backend. For psycopg the
placeholders are rewritten to ``%(param)s`` (and literal ``%`` doubled) once, at load time.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME_LINE = re.compile(r"^--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)
# ``:name`` but not the ``::`` of a PostgreSQL cast.
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


def parse_blocks(text: str) -> dict[str, str]:
    """Split a queries file into ``{name: sql}``; comment lines inside a block are dropped."""
    blocks: dict[str, str] = {}
    matches = list(_NAME_LINE.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        lines = [
            line
            for line in text[match.end() : end].splitlines()
            if line.strip() and not line.lstrip().startswith("--")
        ]
        sql = "\n".join(lines).strip().rstrip(";").strip()
        if match.group(1) in blocks:
            raise ValueError(f"query {match.group(1)!r} defined twice")
        blocks[match.group(1)] = sql
    return blocks


def to_pyformat(sql: str) -> str:
    """Rewrite ``:name`` placeholders to psycopg's ``%(name)s``."""
    return _PLACEHOLDER.sub(r"%(\1)s", sql.replace("%", "%%"))


def read_sql_file(name: str) -> str:
    """Text of a file in the ``mailproxyd.sql`` package ('' when absent)."""
    path = resources.files("mailproxyd") / "sql" / name
    return path.read_text(encoding="utf-8") if path.is_file() else ""


@cache
def queries_for(backend: str) -> dict[str, str]:
    """Every named query for ``backend`` (``"sqlite"`` or ``"postgres"``), ready to execute."""
    merged = parse_blocks(read_sql_file("queries.sql"))
    merged.update(parse_blocks(read_sql_file(f"queries.{backend}.sql")))
    if backend == "postgres":
        return {name: to_pyformat(sql) for name, sql in merged.items()}
    return merged
