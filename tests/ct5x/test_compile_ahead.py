"""`ct5x.compile_ahead`: a program compiled on the background thread is the one the call runs
(compiled once), the caller's wait counts as compilation, and failures and cancellations fall back
to compiling at the call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ct5x import compile_ahead, timing
from ct5x.compile_ahead import AheadOfTime, signature


def _layers(x):
    """Enough work that its compilation takes a noticeable moment."""
    for index in range(40):
        x = jnp.tanh(x @ x.T @ x + index)
    return x.sum(axis=0)


def _rows(count):
    return np.linspace(0.0, 0.1, count * 6, dtype=np.float32).reshape(count, 6)


def _counts(timeline):
    """What a test reads from the process's timeline (which earlier tests may have used)."""
    return (timeline.programs, timeline.background_compile_seconds,
            timeline.compile_by_step["xla"], timeline.compile_by_step["background_wait"])


def test_a_program_compiled_ahead_is_the_one_the_call_runs():
    timeline = timing.begin("compile_ahead")
    programs, background, xla, waited = _counts(timeline)
    function = AheadOfTime(jax.jit(_layers))
    function.compile_ahead(jax.ShapeDtypeStruct((5, 6), np.float32))
    with timing.phase("compile_ahead_calls"):
        got = function(_rows(5))
    assert timeline.programs == programs + 1  # compiled once, in the background
    assert timeline.background_compile_seconds > background
    assert timeline.compile_by_step["xla"] == xla  # nothing compiled on this thread
    # The call waited for the background: its phase shows that wait as compilation.
    wait = timeline.compile_by_step["background_wait"] - waited
    assert timeline.phases["compile_ahead_calls"]["compile_seconds"] == pytest.approx(wait)
    assert wait > 0
    np.testing.assert_allclose(got, jax.jit(_layers)(_rows(5)), rtol=1e-6)


def test_arrays_and_their_structs_pick_the_same_program_and_static_values_another():
    array = jnp.zeros((2, 3))
    struct = jax.ShapeDtypeStruct((2, 3), jnp.float32, sharding=array.sharding)
    assert signature((array,), {}) == signature((struct,), {})
    assert signature((np.zeros((2, 3), np.float32),), {}) == signature(
        (jax.ShapeDtypeStruct((2, 3), np.float32),), {})
    assert signature((array,), {}) != signature((jnp.zeros((2, 4)),), {})
    assert signature((array,), {"beams": 1}) != signature((array,), {"beams": 4})


def _four_rows_refused(x):
    if x.shape[0] == 4:
        raise ValueError("four rows refused")
    return x * 2


def test_a_failure_in_the_background_is_raised_by_the_call_on_its_own_thread():
    function = AheadOfTime(jax.jit(_four_rows_refused))
    function.compile_ahead(_rows(4))
    with pytest.raises(ValueError, match="four rows refused"):
        function(_rows(4))
    np.testing.assert_allclose(function(_rows(3)), _rows(3) * 2)


def test_cancelled_programs_compile_at_their_call_once_each():
    counts = (7, 8, 9)
    # Another program (JAX would reuse an identical one's executable, compiling nothing).
    reference = jax.jit(lambda x: _layers(x) * 1.0)
    expected = [np.asarray(reference(_rows(count))) for count in counts]
    timeline = timing.begin("cancelled")
    programs = timeline.programs
    function = AheadOfTime(jax.jit(_layers))
    for count in counts:
        function.compile_ahead(_rows(count))
    compile_ahead.cancel_pending()  # the one compiling finishes; the others are dropped
    for count, want in zip(counts, expected):
        np.testing.assert_allclose(function(_rows(count)), want, rtol=1e-6)
    assert timeline.programs == programs + len(counts)
