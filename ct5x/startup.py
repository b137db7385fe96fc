"""Process start-up for ct5x's entry points: quiet, offline, TensorFlow kept off accelerators."""

from __future__ import annotations

import os
import sys


def import_frameworks_quietly() -> None:
    """Imports TensorFlow and JAX with the process's stderr closed.

    Loaded together they print C++ start-up notices (oneDNN, CUDA stubs) that ignore
    TF_CPP_MIN_LOG_LEVEL; an import error still surfaces afterwards as a Python exception.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import jax  # noqa: F401
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
