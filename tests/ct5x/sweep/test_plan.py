"""`ct5x sweep plan`: the paper's grid counts, the run records, and errors that name the setting.

The counts are the paper's: in-domain 5 models x 6 tasks x 5 folds = 150; out-of-domain 4 models x
3 Stigma tasks x 5 folds x 2 sites = 120; low-resource MedNLI 1% 4 x 4 rates x 5 = 80 plus Stigma
3 tasks x 3 fractions x 4 models x 4 rates x 5 folds x 2 sites = 1,440, so 1,520.
"""

import collections
import json

import pytest

from ct5x.cli import main
from ct5x.errors import UserInputError
from ct5x.sweep.grid import expand, experiment
from ct5x.sweep.plan import load_runs, select

COUNTS = {"in_domain": 150, "out_of_domain": 120, "low_resource": 1520}


@pytest.fixture(scope="module")
def plans():
    return {name: load_runs(f"experiments/{name}.gin")[1] for name in COUNTS}


def test_counts_equal_the_papers_grid(plans):
    assert {name: len(runs) for name, runs in plans.items()} == COUNTS
    low = collections.Counter(run.block for run in plans["low_resource"])
    assert low == {"mednli": 80, "stigma": 1440}
    for runs in plans.values():
        assert len({run.model_dir for run in runs}) == len(runs)


def test_prompts_deid_batch_sizes_and_rates(plans):
    in_domain = plans["in_domain"]
    assert {run.model for run in in_domain} == {
        "T5-Den", "T5-Sup", "FLAN-T5", "MIMIC-T5", "SciFive+MIMIC-T5"}
    assert all(("_flan" in run.task) == (run.model == "FLAN-T5") for run in in_domain)
    deid = {run.base_task for run in in_domain if "_deid" in run.task}
    assert deid == {"mednli", "clip", "radqa"}
    assert all(run.model == "MIMIC-T5" for run in in_domain if "_deid" in run.task)
    assert all(run.batch_size == 64 and run.learning_rate == 1e-4 for run in in_domain)
    low = plans["low_resource"]
    stigma_one_percent = [run for run in low if run.fraction == 0.01 and run.block == "stigma"]
    assert {run.batch_size for run in stigma_one_percent} == {4}
    assert {run.batch_size for run in low if run.fraction in (0.05, 0.25)} == {16}
    assert {run.batch_size for run in low if run.block == "mednli"} == {64}
    assert {run.learning_rate for run in low if run.block == "mednli"} == {5e-3, 1e-3, 5e-4, 1e-4}
    assert {run.learning_rate for run in low if run.block == "stigma"} == {1e-3, 5e-4, 1e-4, 1e-5}
    assert {run.site for run in plans["out_of_domain"]} == {None, "ood"}
    assert "T5-Den" not in {run.model for run in plans["out_of_domain"] + low}


def test_commands_carry_the_bindings(plans):
    run = next(r for r in plans["low_resource"] if r.task == "stigma_other_site_ood_fold3_pct5")
    assert run.model_dir.endswith(f"low_resource/{'t5_sup'}/stigma_other_site_ood_fold3_pct5/"
                                  f"lr{run.learning_rate:g}")
    command = run.command
    for expected in ("ct5x train", "--gin_file=runs/finetune.gin",
                     f'--gin.MIXTURE_OR_TASK_NAME="{run.task}"', "--gin.BATCH_SIZE=16",
                     '--gin.TASK_FEATURE_LENGTHS={"inputs": 512, "targets": 20}',
                     "--gin.EPOCHS=30", "ct5x_tasks.data_settings.site_dirs"):
        assert expected in command


def test_jsonl_plan_before_any_data_or_checkpoint(capsys, tmp_path):
    code = main(["sweep", "plan", "gin/experiments/out_of_domain.gin", "--format", "jsonl",
                 "--only", "*FLAN*", f'--gin.RUNS_DIR="{tmp_path}"',
                 '--gin.FLAN_T5_CHECKPOINT="/nowhere/flan-t5-large"'])
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 30
    for record in records:
        assert {"model", "task", "fold", "fraction", "site", "learning_rate", "model_dir",
                "command"} <= set(record)
        assert record["model"] == "FLAN-T5" and "_flan_" in record["task"]
        assert record["model_dir"].startswith(str(tmp_path))
        assert '--gin.INITIAL_CHECKPOINT_PATH="/nowhere/flan-t5-large"' in record["command"]


def test_table_plan_ends_with_the_total(capsys):
    assert main(["sweep", "plan", "experiments/in_domain.gin", "--no-commands"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("total: 150 runs in experiment in_domain")


@pytest.mark.parametrize("models, settings, message", [
    ([{"name": "a", "prompt": "chat"}], [], r"models\[0\].prompt"),
    ([{"name": "a", "colour": 1}], [], r"models\[0\]: unknown field 'colour'"),
    ([{"name": "a"}], [{"name": "s", "tasks": ["mednli"], "learning_rates": [0],
                        "batch_size": 8}], r"settings\[0\].learning_rates"),
    ([{"name": "a"}], [{"name": "s", "tasks": ["mednli"], "learning_rates": [1e-4],
                        "fractions": [1.5], "batch_size": 8}], r"settings\[0\].fractions"),
    ([{"name": "a"}], [{"name": "s", "tasks": ["mednli"], "learning_rates": [1e-4],
                        "models": ["b"], "batch_size": 8}], "no model named 'b'"),
])
def test_bad_experiments_name_the_block(models, settings, message):
    with pytest.raises(UserInputError, match=message):
        experiment("bad", models, settings)


def test_unknown_task_and_missing_batch_size_entry():
    grid = experiment("bad", [{"name": "a"}], [
        {"name": "s", "tasks": ["medlni"], "learning_rates": [1e-4], "batch_size": 8}])
    with pytest.raises(UserInputError, match="mednli"):
        expand(grid)
    grid = experiment("bad", [{"name": "a"}], [
        {"name": "s", "tasks": ["mednli"], "learning_rates": [1e-4], "fractions": [0.01],
         "batch_size": {0.05: 8}}])
    with pytest.raises(UserInputError, match="no entry for fraction 0.01"):
        expand(grid)


@pytest.mark.parametrize("block, message", [
    ({"tasks": ["mednli"], "sites": ["ood"]}, "mednli offers sites none"),
    ({"tasks": ["radqa"], "fractions": [0.01]}, "radqa offers .*fractions none"),
    ({"tasks": ["stigma_adamant"], "fractions": [0.02]}, r".*fractions \[0.01, 0.05, 0.25\]"),
])
def test_a_run_the_registry_does_not_offer_fails_at_plan_time(block, message):
    """Checked against the registry's facts (`ct5x_tasks.catalog`) for every expanded run."""
    grid = experiment("bad", [{"name": "a"}], [
        {"name": "low", "learning_rates": [1e-4], "batch_size": 8, **block}])
    with pytest.raises(UserInputError, match=f"settings\\['low'\\], model 'a': task .* is "
                                             f"not registered: {message}"):
        expand(grid)


def test_select_by_glob_or_index(plans):
    runs = plans["in_domain"]
    assert len(select(runs, "*radqa*")) == 25
    assert select(runs, index=149) == [runs[149]]
    with pytest.raises(UserInputError, match="runs 0-149"):
        select(runs, index=150)
    with pytest.raises(UserInputError, match="matches no run"):
        select(runs, "*nothing*")


def test_cli_reports_a_missing_experiment_file(capsys):
    assert main(["sweep", "plan", "experiments/nope.gin"]) == 2
    assert "nope.gin" in capsys.readouterr().err


def test_every_planned_task_is_registered(plans):
    import ct5x_tasks

    registered = set(ct5x_tasks.task_names())
    for runs in plans.values():
        assert {run.task for run in runs} <= registered


def test_runs_share_a_compilation_cache_under_runs_dir_unless_told_otherwise(plans):
    bound = {next(b for b in run.bindings if b.startswith("COMPILATION_CACHE_DIR="))
             for run in plans["in_domain"]}
    assert bound == {'COMPILATION_CACHE_DIR="runs/compilation_cache"'}
    _, runs = load_runs("experiments/in_domain.gin", ["RUNS_DIR = '/shared/runs'",
                                                      "COMPILATION_CACHE_DIR = None"])
    assert all("COMPILATION_CACHE_DIR=None" in run.bindings for run in runs)
    assert all("/shared/runs/in_domain/" in run.model_dir for run in runs)
