"""Large-file storage through fsspec (reference §11.8): upload, presign, read, delete.

``file://`` is built into fsspec; ``s3://`` (s3fs), ``gs://`` (gcsfs) and ``az://`` (adlfs)
come with the optional extras. Credentials and endpoints are the backends' own (environment,
instance metadata, configuration files): nothing here reads them. Every call blocks and is
meant for ``trio.to_thread``; errors come back as :class:`StorageError` with a short reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

_CHUNK = 1 << 20


class StorageError(Exception):
    """A storage operation failed; ``str(exc)`` is the reason for the error text."""


def object_url(storage_url: str, file_id: str, filename: str) -> str:
    """``<storage_url>/<file_id>/<filename>``."""
    return f"{storage_url.rstrip('/')}/{file_id}/{filename}"


def _fs(url: str) -> tuple[Any, str]:
    # Imported here: fsspec comes with the large-files extra, and a node without it must
    # still start (only large-file storage then fails, with this reason).
    try:
        import fsspec
    except ImportError as exc:
        raise StorageError(
            "fsspec is not installed (pip install 'mail-proxy[large-files]')"
        ) from exc
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise StorageError(str(exc) or type(exc).__name__) from exc
    return fs, path


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def upload(url: str, *, data: bytes | None = None, source: str | None = None) -> None:
    """Write ``data`` (or the file at ``source``) to ``url``, creating parents."""
    fs, path = _fs(url)
    try:
        parent = path.rsplit("/", 1)[0]
        if getattr(fs, "protocol", None) in ("file", ("file", "local")) or url.startswith("file:"):
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as out:
            if source is not None:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, _CHUNK)
            else:
                out.write(data or b"")
    except Exception as exc:  # any backend error is an upload failure
        raise StorageError(_reason(exc)) from exc


def presign(url: str, seconds: int) -> str:
    """A presigned GET URL valid ``seconds``; :class:`StorageError` when the backend cannot."""
    fs, path = _fs(url)
    try:
        return str(fs.sign(path, expiration=seconds))
    except NotImplementedError as exc:
        raise StorageError(f"{fs.protocol} storage cannot presign links") from exc
    except Exception as exc:
        raise StorageError(_reason(exc)) from exc


def size(url: str) -> int | None:
    """The stored size of ``url``, ``None`` when it is absent."""
    fs, path = _fs(url)
    try:
        return int(fs.size(path))
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise StorageError(_reason(exc)) from exc


def read_chunks(url: str) -> Iterator[bytes]:
    """The content of ``url`` in chunks (the download route streams it)."""
    fs, path = _fs(url)
    with fs.open(path, "rb") as src:
        while chunk := src.read(_CHUNK):
            yield chunk


def delete(url: str) -> bool:
    """Delete ``url`` (and its ``<file_id>`` directory when local and empty); False if absent."""
    fs, path = _fs(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        return False
    except Exception as exc:
        raise StorageError(_reason(exc)) from exc
    if url.startswith("file:"):
        try:
            os.rmdir(os.path.dirname(path))
        except OSError:
            pass
    return True
