"""Nearest-name suggestions for unknown task names."""

import difflib
from collections.abc import Iterable


def nearest(name: str, known: Iterable[str], count: int = 5) -> str:
    """'; nearest: a, b' for the closest known names, or '' when none is close."""
    matches = difflib.get_close_matches(name, list(known), n=count, cutoff=0.5)
    return f"; nearest: {', '.join(matches)}" if matches else ""
