"""The anchor-compatible grid: every run reproduces the study's code and trains each task as the
study's script did (its micro-batches, NCBI's AdamW, MIMIC-T5's RadQA conversion)."""

import pytest

from ct5x.sweep.plan import load_runs
from ct5x_tasks.study_training import study_run_macros


def _bindings(run) -> dict[str, str]:
    return dict(binding.split("=", 1) for binding in run.bindings)


@pytest.fixture(scope="module")
def anchor_runs():
    return {name: load_runs(f"experiments/{name}.gin", ["ANCHOR_COMPATIBLE = True"])[1]
            for name in ("in_domain", "low_resource")}


def test_default_grid_binds_no_study_training(anchor_runs):
    _, runs = load_runs("experiments/in_domain.gin")
    for run in runs:
        assert not {"ANCHOR_COMPATIBLE", "OPTIMIZER_FLAVOUR", "NUM_MICROBATCHES"} & set(
            _bindings(run))


def test_anchor_grid_trains_each_task_as_the_studys_script(anchor_runs):
    in_domain = anchor_runs["in_domain"]
    assert all(_bindings(run)["ANCHOR_COMPATIBLE"] == "True" for run in in_domain)
    expected = {"mednli": None, "hoc": None, "radqa": "8", "clip": "4", "ncbi_disease": "4",
                "bc5cdr_disease": "8"}
    for run in in_domain:
        bindings = _bindings(run)
        assert bindings.get("NUM_MICROBATCHES") == expected[run.base_task], run.task
        ncbi = run.base_task == "ncbi_disease"
        assert (bindings.get("OPTIMIZER_FLAVOUR"), bindings.get("LR_SCHEDULE")) == (
            ('"adamw"', '"linear_decay"') if ncbi else (None, None))
    mimic_radqa = {run.task for run in in_domain
                   if run.model == "MIMIC-T5" and run.base_task == "radqa"}
    assert mimic_radqa == {f"radqa_deid_fold{fold}" for fold in range(5)}
    # Stigma's study micro-batches hold 4 examples: batch 16 is 4 of them, batch 4 is one.
    stigma = {(run.batch_size, _bindings(run).get("NUM_MICROBATCHES"))
              for run in anchor_runs["low_resource"] if run.block == "stigma"}
    assert stigma == {(16, "4"), (4, None)}


def test_study_run_macros_only_split_batches_they_divide():
    assert study_run_macros("ncbi_disease", 64) == {
        "OPTIMIZER_FLAVOUR": "adamw", "LR_SCHEDULE": "linear_decay", "NUM_MICROBATCHES": 4}
    assert study_run_macros("clip", 24) == {}
    assert study_run_macros("custom", 64) == {}
