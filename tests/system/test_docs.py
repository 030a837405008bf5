"""The documentation as shipped: ``docs/`` builds with mkdocs in strict mode (every link and
anchor resolves), every Markdown link of the repository resolves, no file refers to a document
outside the repository, the reference covers every route and setting, and the guide's Python
signature check verifies the reference's test vector."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference.md"


def tracked_files() -> list[Path]:
    done = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
        timeout=60,
    )
    if done.returncode == 0:
        names = [n for n in done.stdout.decode().split("\0") if n]
    else:  # an unpacked sdist has no git metadata
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]
    skip = (".venv/", "build/", "dist/", ".git/")
    return [ROOT / n for n in names if not n.startswith(skip) and (ROOT / n).is_file()]


def test_mkdocs_builds_in_strict_mode(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    assert (tmp_path / "reference.html").stat().st_size > 100_000
    assert (tmp_path / "guide" / "sync.html").exists()


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def test_every_markdown_link_in_the_repository_resolves() -> None:
    checked = 0
    for path in tracked_files():
        if path.suffix != ".md":
            continue
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for target in LINK.findall(text):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            file_part = target.split("#", 1)[0]
            assert (path.parent / file_part).exists(), f"{path.relative_to(ROOT)}: {target}"
            checked += 1
    assert checked > 20


# Names of the project's planning documents, which are not part of the repository.
OUTSIDE = re.compile(
    r"contract\.md|design\.md|style\.md|shared/spec|\.\./shared|contract\s*§|contract's\s*§"
    r"|\(contract\b|the contract\b|product contract",
    re.I,
)


def test_no_file_refers_to_a_document_outside_the_repository() -> None:
    offenders = []
    for path in tracked_files():
        if path.suffix in {".png", ".gz", ".db", ".ico"} or path == Path(__file__):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert offenders == []


def reference_section(number: str) -> str:
    text = REFERENCE.read_text(encoding="utf-8")
    anchor = "{#s" + number.replace(".", "-") + "}"
    start = text.index(anchor)
    following = re.search(r"^#{2,3} \d", text[start + len(anchor) :], re.M)
    end = start + len(anchor) + (following.start() if following else len(text))
    return text[start:end]


def test_reference_sections_have_stable_anchors() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    for heading in re.findall(r"^#{2,3} (\d+)\.(\d*) .*$", text, re.M):
        major, minor = heading
        anchor = "{#s" + major + (f"-{minor}" if minor else "") + "}"
        assert anchor in text, anchor
    assert len(re.findall(r"\{#s\d+(-\d+)?\}", text)) >= 90


def test_reference_lists_every_route() -> None:
    from mailproxyd.api.openapi import document_bytes

    catalogue = reference_section("4.6")
    document = msgspec.json.decode(document_bytes())
    for path, operations in document["paths"].items():
        for method in operations:
            if method.upper() in {"GET", "POST", "PUT", "DELETE", "PATCH"}:
                row = f"`{method.upper()} {path}"
                assert row in catalogue, row


def test_reference_lists_every_setting() -> None:
    from mailproxyd.settings import SPECS

    table = reference_section("3.2")
    for spec in SPECS:
        assert f"`{spec.env}`" in table, spec.env


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def test_the_guide_signature_check_verifies_the_test_vector() -> None:
    namespace: dict[str, object] = {}
    exec(_python_blocks(DOCS / "guide" / "sync.md")[0], namespace)
    verify = namespace["verify_signature"]
    assert callable(verify)
    secret, body, t = "whsec_3f9a2c7d1e5b8a40", b'{"delivery_report":[]}', 1767225600
    header = f"t={t},v1=98df553488a888ba9c1094c8561bb7b29ce9e6592000998c3fce6c62a72f579a"
    assert verify(secret, header, body, now=t + 10) is True
    assert verify(secret, header, body + b" ", now=t) is False  # body changed
    assert verify("whsec_other_secret_00", header, body, now=t) is False
    assert verify(secret, header, body, now=t + 301) is False  # replayed too late
    assert verify(secret, "garbage", body, now=t) is False
    # The same vector is the one the reference gives.
    assert "98df553488a888ba9c1094c8561bb7b29ce9e6592000998c3fce6c62a72f579a" in (
        reference_section("13.3")
    )


def test_the_guide_signature_check_accepts_what_the_product_signs() -> None:
    from mailproxyd.core.report import sign

    namespace: dict[str, object] = {}
    exec(_python_blocks(DOCS / "guide" / "sync.md")[0], namespace)
    verify = namespace["verify_signature"]
    assert callable(verify)
    body = b'{"delivery_report":[{"id":"m1","event":"sent"}]}'
    header = sign("whsec_0123456789abcdef", 1767225600, body)
    assert verify("whsec_0123456789abcdef", header, body, now=1767225600) is True
    assert verify("whsec_0123456789abcdef", header, body[:-1], now=1767225600) is False
