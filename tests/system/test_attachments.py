"""Attachments end to end (reference §11, §5.8): the real daemon, a real SMTP server, real
HTTP servers as attachment sources, the received e-mail parsed back."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailproxyd.core import largefile
from mailproxyd.core.crypto import derive_key, new_token, parse_key
from tests.daemon import Daemon, Node, wait_for
from tests.fileservers import FileServer, Serve
from tests.system.smtpsink import SmtpSink
from tests.tenantservers import Call, Reply, TenantServer, verify_signature

SECRET = "whsec_0123456789abcdef"


def _setup(
    node: Node,
    sink: SmtpSink,
    *,
    base_url: str | None = None,
    client_auth: dict[str, Any] | None = None,
    large_file_config: dict[str, Any] | None = None,
    tenant_id: str = "acme",
) -> None:
    tenant: dict[str, Any] = {"id": tenant_id, "name": "Acme"}
    if base_url:
        tenant["client_base_url"] = base_url
    if client_auth:
        tenant["client_auth"] = client_auth
    if large_file_config:
        tenant["large_file_config"] = large_file_config
    answer = node.http("POST", "/tenant", json=tenant)
    assert answer.status_code == 200, answer.text
    account = {
        "id": "smtp1",
        "tenant_id": tenant_id,
        "host": "127.0.0.1",
        "port": sink.port,
        "tls_mode": "none",
        "is_default": True,
    }
    answer = node.http("POST", "/account", json=account)
    assert answer.status_code == 200, answer.text


def _send(
    node: Node,
    message_id: str,
    attachments: list[dict[str, Any]],
    *,
    tenant_id: str = "acme",
    body: str = "See attached.",
    **extra: Any,
) -> None:
    message = {
        "id": message_id,
        "account_id": "smtp1",
        "from": "orders@acme.example",
        "to": ["ann@example.org"],
        "subject": "Your documents",
        "body": body,
        "attachments": attachments,
        **extra,
    }
    answer = node.http(
        "POST", "/commands/add-messages", json={"tenant_id": tenant_id, "messages": [message]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["queued"] == 1, answer.text


def _message(node: Node, message_id: str, tenant_id: str = "acme") -> dict[str, Any]:
    answer = node.http("GET", f"/message/{message_id}", params={"tenant_id": tenant_id})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _wait_status(node: Node, message_id: str, *statuses: str, timeout: float = 20) -> dict:
    def done() -> dict[str, Any] | None:
        found = _message(node, message_id)
        return found if found.get("status") in statuses else None

    return wait_for(done, timeout, what=f"{message_id} to become {statuses}")


def _received(sink: SmtpSink, count: int = 1) -> list[email.message.EmailMessage]:
    wait_for(lambda: len(sink.received()) >= count, 20, what="the e-mail at the SMTP server")
    return [
        email.message_from_bytes(r.data, policy=email.policy.default)  # type: ignore[misc]
        for r in sink.received()
    ]


def _attachments(msg: email.message.EmailMessage) -> dict[str, bytes]:
    return {
        str(part.get_filename()): part.get_payload(decode=True) for part in msg.iter_attachments()
    }


def _text(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(("plain", "html"))
    assert part is not None
    return str(part.get_content())


# ------------------------------------------------------------------ the four modes


def test_http_url_attachment_bytes_arrive(
    daemon: Daemon, smtp_sink: SmtpSink, file_server: Callable[..., FileServer]
) -> None:
    content = os.urandom(150_000)  # above the disk threshold: streamed to a temporary file
    files = file_server({"/invoice.pdf": Serve(body=content)})
    node = daemon.serve(env={"GMP_ALLOW_PRIVATE_NETWORKS": "true"})
    _setup(node, smtp_sink)
    item = {
        "filename": "invoice.pdf",
        "storage_path": files.url("/invoice.pdf"),
        "auth": {"method": "bearer", "token": "att-token-1"},
    }
    _send(node, "h1", [item])
    [msg] = _received(smtp_sink)
    assert _attachments(msg) == {"invoice.pdf": content}
    assert [r.method for r in files.requests] == ["GET"]
    assert files.requests[0].headers["Authorization"] == "Bearer att-token-1"


def test_endpoint_attachment_posts_the_reference_with_auth_and_signature(
    daemon: Daemon, smtp_sink: SmtpSink, tenant_server: Callable[..., TenantServer]
) -> None:
    content = os.urandom(5000)

    def answer(call: Call) -> Reply:
        return Reply(body=content, content_type="application/pdf")

    app = tenant_server(answer)
    node = daemon.serve()
    _setup(
        node,
        smtp_sink,
        base_url=app.base_url,
        client_auth={"method": "bearer", "token": "tok-XYZ-123", "signing_secret": SECRET},
    )
    _send(node, "e1", [{"filename": "statement.pdf", "storage_path": "doc_id=42&v=2"}])
    [msg] = _received(smtp_sink)
    assert _attachments(msg) == {"statement.pdf": content}
    [call] = [c for c in app.calls if c.path == "/mail-proxy/attachments"]
    assert call.method == "POST"
    assert call.json == {"storage_path": "doc_id=42&v=2"}
    assert call.header("Content-Type") == "application/json"
    assert call.header("Authorization") == "Bearer tok-XYZ-123"
    assert (
        abs(
            verify_signature(SECRET, call.header("X-Mail-Proxy-Signature"), call.body) - time.time()
        )
        < 60
    )


def test_filesystem_attachment_bytes_arrive(
    daemon: Daemon, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    root = tmp_path / "attachments"
    root.mkdir()
    content = os.urandom(20_000)
    (root / "scan.tif").write_bytes(content)
    node = daemon.serve(env={"GMP_ATTACHMENT_FS_ROOTS": str(root)})
    _setup(node, smtp_sink)
    _send(node, "f1", [{"filename": "scan.tif", "storage_path": str(root / "scan.tif")}])
    [msg] = _received(smtp_sink)
    assert _attachments(msg) == {"scan.tif": content}


def test_base64_attachment_bytes_arrive_with_a_cleaned_name(
    daemon: Daemon, smtp_sink: SmtpSink
) -> None:
    content = os.urandom(3000)
    md5 = hashlib.md5(content).hexdigest()
    node = daemon.serve()
    _setup(node, smtp_sink)
    data = base64.b64encode(content).decode().rstrip("=")
    _send(node, "b1", [{"filename": f"report_{{MD5:{md5}}}.pdf", "storage_path": "base64:" + data}])
    [msg] = _received(smtp_sink)
    assert _attachments(msg) == {"report.pdf": content}


# ------------------------------------------------------------------ refusals (reference §11.3–§11.5)


def test_filesystem_is_disabled_by_default(daemon: Daemon, smtp_sink: SmtpSink) -> None:
    node = daemon.serve()
    _setup(node, smtp_sink)
    message = {
        "id": "fs-off",
        "account_id": "smtp1",
        "from": "a@acme.example",
        "to": ["b@example.org"],
        "subject": "x",
        "attachments": [{"filename": "a.txt", "storage_path": "/etc/hostname"}],
    }
    answer = node.http(
        "POST", "/commands/add-messages", json={"tenant_id": "acme", "messages": [message]}
    ).json()
    assert answer["rejected"] == [
        {"id": "fs-off", "reason": "invalid attachment[0]: filesystem attachments are disabled"}
    ]


def test_filesystem_paths_outside_the_roots_are_refused(
    daemon: Daemon, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (root / "link.txt").symlink_to(outside)
    node = daemon.serve(env={"GMP_ATTACHMENT_FS_ROOTS": str(root)})
    _setup(node, smtp_sink)
    for message_id, path in (("dots", f"{root}/../secret.txt"), ("out", str(outside))):
        message = {
            "id": message_id,
            "account_id": "smtp1",
            "from": "a@acme.example",
            "to": ["b@example.org"],
            "subject": "x",
            "attachments": [{"filename": "a.txt", "storage_path": path}],
        }
        answer = node.http(
            "POST", "/commands/add-messages", json={"tenant_id": "acme", "messages": [message]}
        ).json()
        assert answer["rejected"] == [
            {"id": message_id, "reason": f"invalid attachment[0]: path not allowed: {path}"}
        ]
    # A symlink out of the root passes the lexical check at enqueue, and fails at send time.
    _send(node, "link", [{"filename": "a.txt", "storage_path": str(root / "link.txt")}])
    found = _wait_status(node, "link", "error")
    assert found["error"] == "Attachment fetch failed for a.txt: path not allowed"
    assert smtp_sink.received() == []


@pytest.mark.parametrize(
    ("host", "shown"),
    [("169.254.169.254", "169.254.169.254"), ("[fd00:ec2::254]", "fd00:ec2::254")],
)
def test_http_url_to_metadata_services_is_refused(
    daemon: Daemon, smtp_sink: SmtpSink, host: str, shown: str
) -> None:
    # Refused even with private networks allowed: link-local and metadata never are.
    node = daemon.serve(env={"GMP_ALLOW_PRIVATE_NETWORKS": "true"})
    _setup(node, smtp_sink)
    _send(node, "meta", [{"filename": "k.txt", "storage_path": f"http://{host}/latest/meta-data/"}])
    found = _wait_status(node, "meta", "error")
    assert found["error"] == f"Attachment fetch failed for k.txt: address not allowed ({shown})"


def test_http_url_to_loopback_is_refused_unless_allowed(
    daemon: Daemon, smtp_sink: SmtpSink, file_server: Callable[..., FileServer]
) -> None:
    files = file_server({"/a.txt": Serve(body=b"hello")})
    node = daemon.serve()
    _setup(node, smtp_sink)
    _send(node, "lo", [{"filename": "a.txt", "storage_path": files.url("/a.txt")}])
    found = _wait_status(node, "lo", "error")
    assert found["error"] == "Attachment fetch failed for a.txt: address not allowed (127.0.0.1)"
    assert files.connections == 0


def test_a_redirect_is_checked_again(
    daemon: Daemon, smtp_sink: SmtpSink, file_server: Callable[..., FileServer]
) -> None:
    target = "http://169.254.169.254/latest/meta-data/iam"
    files = file_server({"/go": Serve(status=302, headers=(("Location", target),))})
    node = daemon.serve(env={"GMP_ALLOW_PRIVATE_NETWORKS": "true"})
    _setup(node, smtp_sink)
    _send(node, "redir", [{"filename": "a.txt", "storage_path": files.url("/go")}])
    found = _wait_status(node, "redir", "error")
    assert (
        found["error"] == "Attachment fetch failed for a.txt: address not allowed (169.254.169.254)"
    )
    assert [r.path for r in files.requests] == ["/go"]


def test_a_30_mb_answer_is_cut_at_the_cap(
    daemon: Daemon, smtp_sink: SmtpSink, file_server: Callable[..., FileServer]
) -> None:
    files = file_server({"/big": Serve(stream_size=30 * 1_048_576)})
    files.send_buffer = 65536
    node = daemon.serve(env={"GMP_ALLOW_PRIVATE_NETWORKS": "true"})
    _setup(node, smtp_sink)
    _send(node, "big", [{"filename": "big.bin", "storage_path": files.url("/big")}])
    found = _wait_status(node, "big", "error")
    assert found["error"] == "Attachment fetch failed for big.bin: larger than 25 MB"
    # The transfer was cut: the server could not write the whole answer (what it did write
    # is the cap plus what the socket buffers took in).
    assert files.aborted == 1
    assert files.streamed < 30 * 1_048_576


def test_a_5xx_is_temporary_and_a_404_permanent(
    daemon: Daemon, smtp_sink: SmtpSink, file_server: Callable[..., FileServer]
) -> None:
    files = file_server({"/busy": Serve(status=503), "/gone": Serve(status=404)})
    node = daemon.serve(env={"GMP_ALLOW_PRIVATE_NETWORKS": "true"})
    _setup(node, smtp_sink)
    _send(node, "busy", [{"filename": "a.txt", "storage_path": files.url("/busy")}])
    _send(node, "gone", [{"filename": "b.txt", "storage_path": files.url("/gone")}])
    busy = _wait_status(node, "busy", "deferred")
    assert busy["deferred_reason"] == "Attachment fetch failed for a.txt: HTTP 503"
    gone = _wait_status(node, "gone", "error")
    assert gone["error"] == "Attachment fetch failed for b.txt: HTTP 404"


# ------------------------------------------------------------------ large files (reference §11.8, §5.8)

BIG = 1_100_000  # a little over 1 MB: large for max_size_mb = 1


def test_large_file_warn_attaches_and_logs(daemon: Daemon, smtp_sink: SmtpSink) -> None:
    content = os.urandom(BIG)
    node = daemon.serve()
    _setup(node, smtp_sink, large_file_config={"enabled": True, "max_size_mb": 1, "action": "warn"})
    _send(
        node,
        "w1",
        [{"filename": "big.bin", "storage_path": "base64:" + base64.b64encode(content).decode()}],
    )
    [msg] = _received(smtp_sink)
    assert _attachments(msg) == {"big.bin": content}
    assert "big.bin (1.0 MB) exceeds the large-file limit" in node.log()


def test_large_file_reject_fails_the_message(daemon: Daemon, smtp_sink: SmtpSink) -> None:
    node = daemon.serve()
    _setup(
        node, smtp_sink, large_file_config={"enabled": True, "max_size_mb": 1, "action": "reject"}
    )
    data = base64.b64encode(os.urandom(BIG)).decode()
    _send(node, "r1", [{"filename": "scan.pdf", "storage_path": "base64:" + data}])
    found = _wait_status(node, "r1", "error")
    assert found["error"] == "Attachment 'scan.pdf' (1.0 MB) exceeds limit (1.0 MB)"
    assert smtp_sink.received() == []


def _file_record(db_path: Path) -> tuple[str, dict[str, Any]]:
    import json
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT key, value FROM meta WHERE key LIKE 'large_file:%'").fetchall()
    [(key, value)] = rows
    return key, json.loads(value)


def test_large_file_rewrite_to_file_storage_links_through_download(
    daemon: Daemon, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    key_text = new_token()
    store = tmp_path / "files"
    db_path = tmp_path / "mail.db"
    node = daemon.serve(
        env={"GMP_SECRET_KEY": key_text, "GMP_TEST_MODE": "true"}, database=str(db_path)
    )
    _setup(
        node,
        smtp_sink,
        large_file_config={
            "enabled": True,
            "max_size_mb": 1,
            "action": "rewrite",
            "storage_url": f"file://{store}",
            "public_base_url": node.url,
            "file_ttl_days": 2,
        },
    )
    big = os.urandom(BIG)
    small = b"small attachment"
    _send(
        node,
        "rw1",
        [
            {
                "filename": "big-report.bin",
                "storage_path": "base64:" + base64.b64encode(big).decode(),
            },
            {"filename": "note.txt", "storage_path": "base64:" + base64.b64encode(small).decode()},
        ],
    )
    sent_at = time.time()
    assert node.control("run_now") == {"triggered": True}
    [msg] = _received(smtp_sink)
    assert _attachments(msg) == {"note.txt": small}
    text = _text(msg).replace("\r\n", "\n")
    prefix = f"- big-report.bin (1.0 MB): {node.url}/download/"
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    link = line.split(": ", 1)[1]
    assert text.startswith("See attached.\n\n---\nLarge attachments available for download:\n")
    assert "Links expire on " in text and text.rstrip().endswith(" UTC.")
    # The link downloads the exact bytes (HEAD: the headers alone).
    head = httpx.head(link)
    assert head.status_code == 200 and head.headers["content-length"] == str(BIG)
    got = httpx.get(link)
    assert got.status_code == 200
    assert got.content == big
    assert got.headers["content-length"] == str(BIG)
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"big-report.bin\"; filename*=UTF-8''big-report.bin"
    )
    assert got.headers["cache-control"].startswith("private, max-age=")
    assert 2 * 86400 - 120 < int(got.headers["cache-control"].split("=")[1]) <= 2 * 86400
    token = link.split("/download/", 1)[1].split("/", 1)[0]
    file_id, expires_at, _ = token.split("-")
    assert abs(int(expires_at) - (sent_at + 2 * 86400)) < 60
    # An altered token or another name: 404; a correctly signed, expired token: 410.
    altered = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert httpx.get(f"{node.url}/download/{altered}/big-report.bin").status_code == 404
    assert httpx.get(f"{node.url}/download/{token}/other.bin").status_code == 404
    link_key = derive_key(parse_key(key_text), largefile.LINK_PURPOSE)
    past = int(time.time()) - 10
    expired = largefile.make_token(link_key, file_id, "big-report.bin", past)
    gone = httpx.get(f"{node.url}/download/{expired}/big-report.bin")
    assert gone.status_code == 410 and gone.json()["error"] == "expired"
    # The expiry sweep deletes the file once its time has come.
    stored = store / file_id / "big-report.bin"
    assert stored.read_bytes() == big
    import json
    import sqlite3

    record_key, record = _file_record(db_path)
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = ?",
            (json.dumps({**record, "expires_at": past}), record_key),
        )
    assert node.control("run_now") == {"triggered": True}
    wait_for(lambda: not stored.exists(), 20, what="the expired file to be swept")


# ------------------------------------------------------------------ values set with a tenant key


def test_a_tenant_key_cannot_point_the_node_at_internal_networks(
    daemon: Daemon, smtp_sink: SmtpSink
) -> None:
    node = daemon.serve()
    created = node.http("POST", "/tenant", json={"id": "acme"})
    key = created.json()["api_key"]
    as_tenant = {"X-API-Token": key}
    answer = node.http(
        "PUT", "/tenant/acme", json={"client_base_url": "http://127.0.0.1:9/app"}, headers=as_tenant
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "client_base_url"
    assert answer.json()["detail"] == "client_base_url: address not allowed (127.0.0.1)"
    answer = node.http(
        "PUT",
        "/tenant/acme",
        json={
            "large_file_config": {
                "enabled": True,
                "action": "rewrite",
                "storage_url": "file:///var/tmp",
                "public_base_url": "https://files.acme.example",
            }
        },
        headers=as_tenant,
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "large_file_config.storage_url"
    # Nothing was stored; the admin token may set the loopback URL.
    assert "client_base_url" not in node.http("GET", "/tenant/acme").json()
    answer = node.http("PUT", "/tenant/acme", json={"client_base_url": "http://127.0.0.1:9/app"})
    assert answer.status_code == 200, answer.text
    assert node.http("GET", "/tenant/acme").json()["client_base_url"] == "http://127.0.0.1:9/app"


# ------------------------------------------------------------------ cache (reference §11.7)


def test_the_disk_cache_serves_a_tenant_once_and_keeps_tenants_apart(
    daemon: Daemon, smtp_sink: SmtpSink, file_server: Callable[..., FileServer], tmp_path: Path
) -> None:
    content = os.urandom(200_000)  # above the disk threshold: on disk only
    md5 = hashlib.md5(content).hexdigest()
    files = file_server({"/logo.png": Serve(body=content)})
    node = daemon.serve(
        env={"GMP_ALLOW_PRIVATE_NETWORKS": "true", "GMP_CACHE_DISK_DIR": str(tmp_path / "cache")}
    )
    _setup(node, smtp_sink)
    _setup(node, smtp_sink, tenant_id="beta")
    item = {"filename": "logo.png", "storage_path": files.url("/logo.png"), "content_md5": md5}
    _send(node, "c1", [item])
    _received(smtp_sink, 1)
    _send(node, "c2", [item])
    _received(smtp_sink, 2)
    assert len(files.requests) == 1
    _send(node, "c3", [item], tenant_id="beta")
    received = _received(smtp_sink, 3)
    assert len(files.requests) == 2
    assert [_attachments(m) for m in received] == [{"logo.png": content}] * 3


@pytest.fixture
def s3_server() -> Any:
    """moto's S3 server on a free port, with one bucket."""
    import subprocess
    import sys

    import boto3

    from tests.daemon import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(endpoint, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 30, what="the moto S3 server")
        credentials = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "FSSPEC_S3_ENDPOINT_URL": endpoint,
        }
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="acme-mail")
        yield credentials, s3
    finally:
        proc.terminate()
        proc.wait(10)


def test_large_file_rewrite_to_s3_links_a_presigned_url(
    daemon: Daemon, smtp_sink: SmtpSink, s3_server: Any
) -> None:
    credentials, s3 = s3_server
    node = daemon.serve(env=credentials)
    _setup(
        node,
        smtp_sink,
        large_file_config={
            "enabled": True,
            "max_size_mb": 1,
            "action": "rewrite",
            "storage_url": "s3://acme-mail/attachments",
        },
    )
    big = os.urandom(BIG)
    _send(
        node,
        "s3",
        [{"filename": "scan.pdf", "storage_path": "base64:" + base64.b64encode(big).decode()}],
    )
    [msg] = _received(smtp_sink)
    assert _attachments(msg) == {}
    text = _text(msg).replace("\r\n", "\n")
    [line] = [line for line in text.splitlines() if line.startswith("- scan.pdf (1.0 MB): ")]
    link = line.split(": ", 1)[1]
    assert link.startswith(credentials["AWS_ENDPOINT_URL"] + "/acme-mail/attachments/")
    assert "Signature=" in link or "X-Amz-Signature=" in link
    got = httpx.get(link)
    assert got.status_code == 200
    assert got.content == big
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="acme-mail")["Contents"]]
    assert len(keys) == 1 and keys[0].endswith("/scan.pdf")


def test_an_account_host_set_with_a_tenant_key_follows_the_untrusted_rule(
    daemon: Daemon, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    db = str(tmp_path / "mail.db")
    key_env = {"GMP_SECRET_KEY": new_token()}
    node = daemon.serve(database=db, env=key_env)
    key = node.http("POST", "/tenant", json={"id": "acme"}).json()["api_key"]
    account = {"id": "smtp1", "host": "127.0.0.1", "port": smtp_sink.port, "tls_mode": "none"}
    answer = node.http("POST", "/account", json=account, headers={"X-API-Token": key})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == "host: address not allowed (127.0.0.1)"
    node.signal(15)
    assert node.wait_exit() == 0
    # With private networks allowed the tenant may save it; without, the sender refuses it.
    node = daemon.serve(database=db, env={**key_env, "GMP_ALLOW_PRIVATE_NETWORKS": "true"})
    answer = node.http("POST", "/account", json=account, headers={"X-API-Token": key})
    assert answer.status_code == 200, answer.text
    node.signal(15)
    assert node.wait_exit() == 0
    node = daemon.serve(database=db, env=key_env)
    _send(node, "p1", [])
    found = _wait_status(node, "p1", "error")
    assert found["error"] == "Connection to 127.0.0.1 refused by network policy"
    assert smtp_sink.received() == []
