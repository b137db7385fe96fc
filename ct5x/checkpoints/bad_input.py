"""Turns a library's exception while parsing a user's file into a one-line UserInputError."""

from __future__ import annotations

from pathlib import Path

from ct5x.errors import UserInputError


def bad_input(path: str | Path, problem: str, error: BaseException) -> UserInputError:
    """`{path}: {problem} ({first line of the library's message})`, for `raise ... from None`."""
    text = str(error).strip()
    reason = text.splitlines()[0] if text else type(error).__name__
    return UserInputError(f"{path}: {problem} ({reason})")
