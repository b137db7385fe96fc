"""JAX's persistent compilation cache: a later process with the same shapes loads its compiled
programs from disk instead of compiling them again (COMPILATION_CACHE_DIR).

JAX 0.10 keeps executables on every backend that can serialise them: CPU, GPU (CUDA and ROCm)
and TPU. The key holds the program, the jaxlib version, the platform, XLA's flags, the compile
options and the devices, so a cache folder can be shared by runs of every shape and model: each
finds only its own programs. It is trusted: whoever can write to it can make ct5x run code.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

# Programs that compile faster than this are not written (JAX's default is 1 s; the validation
# scoring program of a small model and the state initialisation take a few tenths of a second).
MIN_COMPILE_SECONDS = 0.2

_configured: list[str | None] = []


def configure(directory: str | None) -> str | None:
    """Uses `directory` ('~' expanded, created if missing; or a bucket, which JAX reaches through
    epath) as the cache; None or '' turns it off. Returns the folder in use. A folder that cannot
    be created leaves the cache off, with a warning: compiling is slower, never wrong."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    from ct5x import storage

    path = os.fspath(storage.absolute(directory)) if directory else None
    if path is not None:
        try:
            storage.path(path).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            logger.warning("COMPILATION_CACHE_DIR=%s: cannot be created (%s); compiling without "
                           "the cache", directory, error)
            path = None
    if _configured and _configured[-1] == path:
        return path
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_enable_compilation_cache", path is not None)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    compilation_cache.reset_cache()  # JAX opens its cache once; a new folder needs a reset
    _configured.append(path)
    return path
