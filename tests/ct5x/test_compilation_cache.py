"""`ct5x.compilation_cache`: JAX's persistent cache turned on, reused, moved and turned off."""

import jax
import jax.numpy as jnp
import pytest

from ct5x import compilation_cache, timing


@pytest.fixture
def cache_off_afterwards(monkeypatch):
    monkeypatch.setattr(compilation_cache, "MIN_COMPILE_SECONDS", 0.0)  # cache every program
    yield
    compilation_cache.configure(None)


def _fresh_timeline() -> timing.Timeline:
    timeline = timing.begin("cache test")
    timeline.mark("start")  # the next begin() starts another one
    return timeline


def _compile_and_run(scale: float) -> None:
    jax.jit(lambda x: jnp.tanh(x) * scale)(jnp.ones(5)).block_until_ready()


def test_a_fresh_compilation_of_the_same_program_loads_from_the_cache(tmp_path,
                                                                       cache_off_afterwards):
    folder = tmp_path / "nested" / "cache"
    assert compilation_cache.configure(str(folder)) == str(folder)
    jax.clear_caches()  # programs earlier tests compiled in memory would never reach the cache
    cold = _fresh_timeline()
    _compile_and_run(1.75)
    assert cold.cache_hits == 0 and any(folder.iterdir())  # folder made, programs written
    jax.clear_caches()  # as a new process would start: nothing compiled in memory
    warm = _fresh_timeline()
    _compile_and_run(1.75)
    assert warm.cache_hits >= 1 and warm.cache_hits == warm.programs


def test_none_turns_the_cache_off_and_a_new_folder_is_used(tmp_path, cache_off_afterwards):
    compilation_cache.configure(str(tmp_path / "first"))
    _compile_and_run(2.5)
    assert compilation_cache.configure(None) is None
    assert not jax.config.jax_enable_compilation_cache
    _compile_and_run(3.5)
    assert len(list((tmp_path / "first").glob("*-cache"))) == 1
    compilation_cache.configure(str(tmp_path / "second"))
    _compile_and_run(4.5)
    assert len(list((tmp_path / "second").glob("*-cache"))) == 1


def test_a_folder_that_cannot_be_made_leaves_the_cache_off(tmp_path, cache_off_afterwards,
                                                          caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert compilation_cache.configure(str(blocker / "cache")) is None
    assert "cannot be created" in caplog.text
