"""argparse types shared by the subcommands (no subcommand imports another's module for them)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type for counts such as --batch-size."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value
