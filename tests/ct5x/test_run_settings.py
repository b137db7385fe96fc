"""Run settings the trainer derives from gin macros."""

from ct5x.run_settings import CPU_STEPS_PER_EXECUTION, RunSettings


def test_steps_per_execution_defaults_by_backend_and_yields_to_the_macro():
    assert RunSettings().steps_per_execution_for("cpu") == CPU_STEPS_PER_EXECUTION == 8
    assert RunSettings().steps_per_execution_for("gpu") == 1
    assert RunSettings().steps_per_execution_for("tpu") == 1
    assert RunSettings(steps_per_execution=3).steps_per_execution_for("cpu") == 3
    assert RunSettings(steps_per_execution=3).steps_per_execution_for("gpu") == 3
