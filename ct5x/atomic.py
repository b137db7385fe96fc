"""All-or-nothing writes, the one family every file ct5x writes goes through: build in a temporary
path beside the target, flush it to disk, then rename it into place. In a bucket (`gs://...`,
through `ct5x.storage`) a file is one object write, which the store makes atomic itself, and a
folder is built on local disk and then uploaded.

A crash or error midway leaves the target absent (or as it was), never half-written. Only the
standard library is imported here for local paths, so light commands can write files too. JSON
Lines files go through `ct5x.jsonl.write_atomic`, which builds its text and hands it to
`write_text`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ct5x.errors import UserInputError
from ct5x.storage import is_url


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_bytes(dst: str | os.PathLike, data: bytes, mode: int = 0o666) -> None:
    """Writes one file atomically with permissions `mode` less the umask (0o755: a script); in a
    bucket, one object (objects have no permission bits)."""
    if is_url(dst):
        from ct5x import storage

        storage.path(dst).write_bytes(data)
        return
    dst = Path(dst)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.tmp-", dir=dst.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, mode & ~_current_umask())
        os.replace(tmp_name, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def write_text(dst: str | os.PathLike, text: str, mode: int = 0o666) -> None:
    """`text` as UTF-8, atomically."""
    write_bytes(dst, text.encode("utf-8"), mode)


def write_json(dst: str | os.PathLike, value: Any) -> None:
    """One JSON document, indented, with a final newline; NaN is refused (not JSON)."""
    write_text(dst, json.dumps(value, indent=2, allow_nan=False) + "\n")


@contextlib.contextmanager
def staged_directory(dst: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty directory that becomes `dst` when the block succeeds.

    `dst` must not exist or be an empty directory; on failure the staging directory is removed.
    In a bucket the directory is staged on local disk and its files are uploaded after the block.
    """
    if is_url(dst):
        with _staged_upload(dst) as staging:
            yield staging
        return
    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UserInputError(f"{dst}: already exists and is not empty; choose a new destination")
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_current_umask())  # mkdtemp made it 0700
        os.replace(staging, dst)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def _staged_upload(dst: str | os.PathLike) -> Iterator[Path]:
    """`staged_directory` for a bucket: a local staging folder, uploaded when the block succeeds
    (objects are written one by one: a reader must not take the folder before the command ends)."""
    from ct5x import storage

    target = storage.path(dst)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserInputError(f"{dst}: already exists and is not empty; choose a new destination")
    staging = Path(tempfile.mkdtemp(prefix="ct5x-upload-"))
    try:
        yield staging
        storage.upload_tree(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
