"""Run settings the trainer derives from gin macros."""

import pytest

from ct5x.errors import UserInputError
from ct5x.run_settings import CPU_STEPS_PER_EXECUTION, RunSettings


def test_steps_per_execution_defaults_by_backend_and_yields_to_the_macro():
    assert RunSettings().steps_per_execution_for("cpu") == CPU_STEPS_PER_EXECUTION == 8
    assert RunSettings().steps_per_execution_for("gpu") == 1
    assert RunSettings().steps_per_execution_for("tpu") == 1
    assert RunSettings(steps_per_execution=3).steps_per_execution_for("cpu") == 3
    assert RunSettings(steps_per_execution=3).steps_per_execution_for("gpu") == 3


def test_eval_batch_size_defaults_to_one_microbatch_and_must_be_positive():
    required = {"model_dir": "/tmp/run", "mixture_or_task_name": "task"}
    assert RunSettings(batch_size=64, num_microbatches=4).evaluation_batch_size() == 16
    assert RunSettings(batch_size=64, eval_batch_size=8).evaluation_batch_size() == 8
    with pytest.raises(UserInputError, match="EVAL_BATCH_SIZE=0 must be positive"):
        RunSettings(**required, eval_batch_size=0).check()
