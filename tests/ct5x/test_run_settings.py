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


def test_the_paper_objective_is_the_default_and_t5x_protocol_is_pretraining():
    """finetune.gin (and RunSettings without gin): plain cross-entropy per target token after
    clipping the gradient norm at 1.0; pretrain.gin: T5X's z-loss, no clipping, the sum."""
    from ct5x.train import load_settings

    assert RunSettings().loss.z_loss == 0.0 and RunSettings().optimizer.max_grad_norm == 1.0
    required = ["MODEL_DIR = '/tmp/unused'", "MIXTURE_OR_TASK_NAME = 'ncbi_disease'"]
    finetune, _ = load_settings(["runs/finetune.gin"], required)
    assert finetune.loss.z_loss == 0.0 and finetune.optimizer.max_grad_norm == 1.0
    assert finetune.loss.loss_normalizing_factor == "NUM_REAL_TARGET_TOKENS"
    pretrain, _ = load_settings(["runs/pretrain.gin"], required[:1])
    assert pretrain.loss.z_loss == 1e-4 and pretrain.optimizer.max_grad_norm is None
    assert pretrain.optimizer.flavour == "t5x" and pretrain.loss.loss_normalizing_factor == "NONE"
    off, _ = load_settings(["runs/finetune.gin"], [*required, "MAX_GRAD_NORM = None"])
    assert off.optimizer.max_grad_norm is None


def test_anchor_runs_take_the_studys_feature_lengths_and_label_padding():
    import ct5x_tasks
    from ct5x.run_setup import _loss_options

    settings = RunSettings()
    expected = {
        "stigma_adamant_flan_fold0": ({"inputs": 512, "targets": 512}, True),
        "stigma_adamant_fold0": ({"inputs": 512, "targets": 20}, False),
        "clip_fold0": ({"inputs": 258, "targets": 64}, False),
        "clip_flan_fold0": ({"inputs": 512, "targets": 64}, False),
        "ncbi_disease_fold0": ({"inputs": 512, "targets": 512}, False),
    }
    for name, (lengths, padding) in expected.items():
        info = ct5x_tasks.task_info(name)
        paper = {"inputs": info.input_length, "targets": info.target_length}
        found = dict(paper)
        assert _loss_options(settings, info, found, anchor=True).loss_on_padding == padding
        assert found == lengths, name
        unchanged = dict(paper)
        assert _loss_options(settings, info, unchanged, anchor=False) == settings.loss
        assert unchanged == paper
def test_eval_batch_size_defaults_to_four_microbatches_scored_one_at_a_time():
    required = {"model_dir": "/tmp/run", "mixture_or_task_name": "task", "epochs": 1}
    settings = RunSettings(batch_size=64, num_microbatches=4)
    assert (settings.evaluation_batch_size(), settings.scoring_rows()) == (64, 16)
    settings = RunSettings(batch_size=64, eval_batch_size=8)
    assert (settings.evaluation_batch_size(), settings.scoring_rows()) == (8, 8)
    settings = RunSettings(**required, batch_size=16, eval_batch_size=48)
    settings.check()
    assert (settings.evaluation_batch_size(), settings.scoring_rows()) == (48, 16)
    with pytest.raises(UserInputError, match="EVAL_BATCH_SIZE=0 must be positive"):
        RunSettings(**required, eval_batch_size=0).check()
    with pytest.raises(UserInputError, match=r"EVAL_BATCH_SIZE=24 must be at most, or a multiple "
                                             r"of, BATCH_SIZE / NUM_MICROBATCHES = 16"):
        RunSettings(**required, batch_size=16, eval_batch_size=24).check()


def test_the_price_of_a_packed_program_cannot_be_negative():
    required = {"model_dir": "/tmp/run", "mixture_or_task_name": "task", "epochs": 1}
    RunSettings(**required, packing_program_cost=0).check()
    with pytest.raises(UserInputError, match="PACKING_PROGRAM_COST=-1 must be zero or more"):
        RunSettings(**required, packing_program_cost=-1).check()
