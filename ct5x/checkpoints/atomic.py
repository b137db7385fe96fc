"""All-or-nothing writes: build in a temporary path beside the target, then rename it into place.

A crash or error midway leaves the target absent (or as it was), never half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ct5x.errors import UserInputError


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def staged_directory(dst: str | Path) -> Iterator[Path]:
    """Yields an empty directory that becomes `dst` when the block succeeds.

    `dst` must not exist or be an empty directory; on failure the staging directory is removed.
    """
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


def write_bytes(dst: str | Path, data: bytes) -> None:
    """Writes one file atomically (temporary file in the same directory, then rename)."""
    dst = Path(dst)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.tmp-", dir=dst.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(data)
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise

