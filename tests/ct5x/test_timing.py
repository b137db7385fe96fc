"""`ct5x.timing`: marks, phases and the compilation JAX reports inside them."""

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import pytest

from ct5x import timing


def test_process_start_is_before_now_and_not_long_ago():
    started = timing.process_start()
    assert started <= time.time()
    assert time.time() - started < 24 * 3600  # a test process, not the machine's boot


def test_compilation_inside_a_phase_is_counted_there_and_marks_see_it():
    timeline = timing.begin("test")
    timeline.mark("before")
    with timeline.phase("work"):
        jax.jit(lambda x: jnp.sin(x) * 3.0 + 0.125)(jnp.arange(7.0)).block_until_ready()
        time.sleep(0.05)
    timeline.mark("after")
    timeline.mark("before")  # a mark keeps its first time
    record = timeline.record()
    work = record["phases"]["work"]
    assert work["count"] == 1 and work["seconds"] >= 0.05
    assert 0 < work["compile_seconds"] <= work["seconds"]
    assert record["programs_compiled"] >= 1
    assert sum(record["compile_by_step"].values()) == pytest.approx(record["compile_seconds"],
                                                                    abs=0.01)
    assert record["compile_by_step"]["xla"] > 0
    assert record["marks"]["after"]["compile_before"] == pytest.approx(record["compile_seconds"])
    assert record["marks"]["before"]["at"] <= work["first_start"] <= work["last_end"]
    assert record["marks"]["after"]["at"] >= work["last_end"]
    assert "compilation" in timeline.summary() and "work" in timeline.summary()
    json.dumps(record)


def test_a_second_timeline_of_the_process_starts_from_now():
    first = timing.begin("one")
    first.mark("something")
    second = timing.begin("two")
    assert second is not first and second.origin > first.origin
    assert timing.begin("three") is second  # nothing recorded yet: kept, renamed
    assert second.command == "three"


def test_ct5x_timings_environment_appends_the_record_at_exit(tmp_path):
    path = tmp_path / "timings.jsonl"
    code = ("from ct5x import timing; timing.record_from_environment('probe'); "
            "import jax; jax.jit(lambda x: x + 1)(1)\n"
            "with timing.phase('work'): pass")
    path.write_text(json.dumps({"command": "an earlier process"}) + "\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env=dict(os.environ, CT5X_TIMINGS=str(path), JAX_PLATFORMS="cpu"))
    earlier, record = [json.loads(line) for line in path.read_text().splitlines()]
    assert earlier["command"] == "an earlier process"
    assert record["command"] == "probe" and record["phases"]["work"]["count"] == 1
    assert record["compile_seconds"] > 0 and 0 < record["end"] < 120
