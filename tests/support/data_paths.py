"""Where the real public data the tests read lives: ../shared/data beside the project.

A clone of the project alone has no such folder; tests that read it skip with one line saying so,
and fixtures written in each dataset's real format cover the same code paths.
"""

import pathlib

import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"


def real_data(folder: str) -> pathlib.Path:
    """`SHARED_DATA / folder`, or skip the test when it is absent."""
    path = SHARED_DATA / folder
    if not path.is_dir():
        pytest.skip(f"real data not present at {path}")
    return path
