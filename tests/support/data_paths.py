"""Where the real public data the tests read lives: ../shared/data beside the project."""

import pathlib

SHARED_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
