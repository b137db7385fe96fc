"""Every path a user gives, on local disk or in a bucket, through `etils.epath` (as Orbax reads
them), and what an object store lacks: append, recursive search, rename of a folder.

A `gs://bucket/...` URL goes through epath's fsspec backend (gcsfs, Google's JSON API), array data
through TensorStore's `gcs` driver (Orbax's and T5X's checkpoints), both with credentials as
Google's libraries find them (application-default credentials, a TPU VM's service account). The
one setting a user changes to aim all of ct5x at another endpoint, such as an emulator on
localhost, is Google's own `STORAGE_EMULATOR_HOST=http://HOST:PORT`; `configure` passes it on to
each library in the setting that library reads:

- gcsfs reads STORAGE_EMULATOR_HOST itself; without credentials to send (`token="anon"`, as
  Google's Python client does for an emulator), so nothing asks a metadata server for them; and
  always without its listing cache (other processes and TensorStore write the same bucket);
- TensorStore: TENSORSTORE_GCS_HTTP_URL, and a fixed token (GOOGLE_AUTH_TOKEN_FOR_TESTING) so
  that it does not look for credentials either;
- epath: EPATH_USE_TF=false always (not only for an emulator), so that gs:// goes through gcsfs:
  epath would otherwise pick TensorFlow's GCS file system, whose endpoint cannot be changed. ct5x
  then reads and writes a bucket the same way on a TPU VM as in its tests;
- gcsfs's experimental zonal-bucket class (GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT) stays off: it asks
  a gRPC control API, which emulators lack, about every bucket, and ct5x needs none of it.

Local paths are epath paths too (its local backend calls `os` directly): nothing changes for them.
epath is imported on first use, so `is_url` stays light.
"""

from __future__ import annotations

import atexit
import fnmatch
import io
import os
import pathlib
import re
import shutil
import sys
import tempfile
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from etils import epath

EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://")
# A token TensorStore sends an emulator instead of looking for credentials (an emulator takes any).
EMULATOR_TOKEN = "emulator"


def is_url(location: str | os.PathLike) -> bool:
    """True for `gs://...` and other object-store URLs, False for local paths."""
    return bool(_URL.match(os.fspath(location)))


def emulator_url() -> str | None:
    """STORAGE_EMULATOR_HOST as a URL (Google's clients take `host:port` as http://), or None."""
    host = os.environ.get(EMULATOR_VARIABLE, "").strip()
    if not host or host == "default":
        return None
    return host if is_url(host) else f"http://{host}"


def configure() -> None:
    """Points epath, gcsfs and TensorStore at the endpoint the environment names (see the module
    docstring). Settings the user made are kept; call before the first bucket access (`path`
    does)."""
    os.environ.setdefault("EPATH_USE_TF", "false")
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    gpath = sys.modules.get("etils.epath.gpath")
    decided = getattr(gpath, "_is_tf_installed", None)
    if decided is not None:  # epath caches its backend choice: one made before this is redone
        decided.cache_clear()
    endpoint = emulator_url()
    if endpoint is not None:
        os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", endpoint)
        os.environ.setdefault("GOOGLE_AUTH_TOKEN_FOR_TESTING", EMULATOR_TOKEN)


def _configure_gcsfs() -> None:
    """gcsfs's settings (through fsspec's configuration, which every new file system reads):
    no listing cache, since other processes and TensorStore write the same bucket; no
    credentials for an emulator."""
    import fsspec.config

    settings = fsspec.config.conf.setdefault("gcs", {})
    settings.setdefault("use_listings_cache", False)
    if emulator_url() is not None:
        settings.setdefault("token", "anon")


def path(location: str | os.PathLike) -> epath.Path:
    """A user's path (local or a URL) as an epath path; relative local paths stay relative."""
    from etils import epath

    if is_url(location):
        configure()
        _configure_gcsfs()
    return epath.Path(location)


def absolute(location: str | os.PathLike) -> epath.Path:
    """`path`, with a local path made absolute (`~` expanded); URLs are absolute already."""
    if is_url(location):
        return path(location)
    return path(os.path.abspath(os.path.expanduser(os.fspath(location))))


def open_text(location: epath.Path, newline: str | None = None) -> IO[str]:
    """A UTF-8 text reader, with `newline` as `open` takes it (csv wants ""); epath's own `open`
    takes no `newline`."""
    if not is_url(location):
        return open(location, encoding="utf-8", newline=newline)
    return io.TextIOWrapper(location.open("rb"), encoding="utf-8", newline=newline)


def rglob(root: epath.Path, pattern: str) -> list[epath.Path]:
    """Files under `root` (any depth) whose name matches `pattern`, sorted: epath refuses `**`
    (a glob over a bucket lists it whole anyway)."""
    if not is_url(root):
        return sorted(path(found) for found in pathlib.Path(root).rglob(pattern))
    # epath's walk over a bucket yields folders without their scheme (fsspec's): rebuild them.
    top = os.fspath(root).partition("://")[2].strip("/")
    found = []
    for folder, _, files in root.walk():
        here = _below(root, os.path.relpath(os.fspath(folder).strip("/"), top))
        found += [here / name for name in files if fnmatch.fnmatch(name, pattern)]
    return sorted(found)


def _below(root: epath.Path, relative: str) -> epath.Path:
    """`root / relative`, with no "." left in an object's name."""
    return root if relative == "." else root / relative


def append_text(location: epath.Path, text: str) -> None:
    """Appends to a file; on an object store (no append) the object is rewritten whole, in one
    write, so a reader sees it before or after, never half-written."""
    if not is_url(location):
        with open(location, "a", encoding="utf-8") as stream:
            stream.write(text)
        return
    existing = location.read_text(encoding="utf-8") if location.exists() else ""
    location.write_text(existing + text, encoding="utf-8")


def upload_tree(source: str | os.PathLike, destination: epath.Path) -> None:
    """Copies a local folder's files into `destination` (a bucket folder), one object each."""
    source = path(source)
    for folder, _, files in source.walk():
        target = _below(destination, os.path.relpath(folder, source))
        for name in sorted(files):
            (target / name).write_bytes((folder / name).read_bytes())


def local_copy(location: str | os.PathLike) -> str:
    """A local file for a library that reads only local paths (safetensors, zipfile, SeqIO's
    vocabulary through TensorFlow's file system): `location` itself, or a copy of a bucket
    object, made once per process and removed when it exits."""
    location = os.fspath(location)
    if not is_url(location):
        return location
    if location not in _LOCAL_COPIES:
        if not _LOCAL_COPIES:
            folder = tempfile.mkdtemp(prefix="ct5x-copies-")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            _LOCAL_COPIES[""] = folder
        copy = os.path.join(_LOCAL_COPIES[""], str(len(_LOCAL_COPIES)),
                            os.path.basename(location))
        os.makedirs(os.path.dirname(copy))
        with open(copy, "wb") as stream:
            stream.write(path(location).read_bytes())
        _LOCAL_COPIES[location] = copy
    return _LOCAL_COPIES[location]


# Bucket object -> its local copy ("" -> the folder holding them).
_LOCAL_COPIES: dict[str, str] = {}
