"""What a benchmark does before it imports JAX or PyTorch: keep to its first cores, and quiet.

XLA sizes its CPU thread pool from the process's affinity mask when it loads, so the mask must be
set first; PyTorch is then given as many threads by the benchmark itself.
"""

from __future__ import annotations

import os


def pin_threads(threads: int) -> None:
    """Runs this process on its first `threads` allowed cores, with TensorFlow's logs and the
    Hugging Face hub off."""
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
