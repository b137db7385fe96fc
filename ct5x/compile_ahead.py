"""Compiling a process's programs on a background thread, before their first call.

JAX compiles a jitted function's program at the first call with new shapes, on the calling thread,
which waits. XLA:CPU's compiler keeps about one of two cores busy, and an accelerator's host sits
idle while the device trains; a program needed later (the validation's decoder, another packed row
count, the next test bucket) can compile meanwhile. `AheadOfTime.compile_ahead` lowers and compiles
a call's program on one background thread; JAX keeps the executable in the jitted function's
caches, so the call itself then runs it, after waiting for it if it is still compiling (the wait is
the only compilation time the caller sees: `ct5x.timing` counts the background's apart).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np

from ct5x import timing

_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _background() -> concurrent.futures.ThreadPoolExecutor:
    """One thread: two programs compiling at once would only share the idle core."""
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ct5x-compile-ahead")
    return _executor


def cancel_pending() -> None:
    """Drops the programs not begun yet, so a run that stops early does not compile them before
    the process exits (one already compiling finishes)."""
    global _executor
    if _executor is not None:
        _executor.shutdown(wait=False, cancel_futures=True)
        _executor = None


def abstract(tree: Any) -> Any:
    """Arrays -> `jax.ShapeDtypeStruct`s with their shardings: what compiling ahead needs of
    arguments that are still in use (or will be donated) when the background thread lowers."""
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), tree)


def _leaf_signature(leaf: Any) -> Hashable:
    if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)):
        return tuple(leaf.shape), str(leaf.dtype), leaf.sharding
    if isinstance(leaf, (np.ndarray, np.generic)):
        return tuple(np.shape(leaf)), str(leaf.dtype), None  # placed as an unplaced struct is
    return type(leaf), leaf  # a static argument: its value picks the program


def signature(args: tuple, kwargs: dict) -> Hashable:
    """What picks a call's program: the arguments' structure, shapes, dtypes, shardings and
    static values (an array and a `jax.ShapeDtypeStruct` alike give the same)."""
    leaves, structure = jax.tree.flatten((args, kwargs))
    return structure, tuple(_leaf_signature(leaf) for leaf in leaves)


class AheadOfTime:
    """A jitted function whose programs may be compiled ahead of their first call, inside
    `context` (what the call itself runs inside, e.g. a mesh and its axis rules)."""

    def __init__(self, jitted: Any,
                 context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self._jitted, self._context = jitted, context
        self._pending: dict[Hashable, concurrent.futures.Future] = {}

    def compile_ahead(self, *args, **kwargs) -> None:
        """Starts compiling the program of a call with these arguments (arrays or
        `jax.ShapeDtypeStruct`s with the call's shardings) in the background."""
        key = signature(args, kwargs)
        if key not in self._pending:
            self._pending[key] = _background().submit(self._compile, args, kwargs)

    def _compile(self, args: tuple, kwargs: dict) -> None:
        with timing.in_background(), self._context():
            self._jitted.lower(*args, **kwargs).compile()

    def __call__(self, *args, **kwargs):
        if self._pending:
            future = self._pending.pop(signature(args, kwargs), None)
            if future is not None:
                # A failed or cancelled compilation is left to the call to redo (and to
                # raise its error here, on the caller's thread).
                with timing.compile_wait(), contextlib.suppress(Exception):
                    future.result()
        with self._context():
            return self._jitted(*args, **kwargs)

    def lower(self, *args, **kwargs) -> jax.stages.Lowered:
        with self._context():
            return self._jitted.lower(*args, **kwargs)
