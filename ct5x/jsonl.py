"""JSON Lines in and out: one reader that names file:line, one writer that never half-writes.

Shared by `ct5x predict/score` and `ct5x metrics`; it knows nothing of their fields. Line text is
never put in a message: it may be protected health information.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from ct5x import storage
from ct5x.atomic import write_text
from ct5x.errors import UserInputError


def read_values(path: str | os.PathLike) -> list[tuple[int, Any]]:
    """(line number, parsed value) for every non-blank line; a line that is not JSON stops."""
    try:
        # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line separators.
        lines = storage.path(path).read_text(encoding="utf-8").split("\n")
    except OSError as error:
        raise UserInputError(f"{path}: cannot read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: not UTF-8 text") from None
    values = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values.append((number, json.loads(line)))
        except json.JSONDecodeError:
            raise UserInputError(f"{path}:{number}: not valid JSON") from None
    return values


def write_atomic(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line, written atomically (`ct5x.atomic`); the folder must exist (a
    bucket has no folders to check)."""
    path = storage.path(path)
    if not storage.is_url(path) and not path.parent.is_dir():
        raise UserInputError(f"{path}: folder {path.parent} does not exist")
    write_text(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
