"""`ct5x train` on bad input and faults: one line and exit 2 for user errors, a NaN stop that keeps
the last good checkpoint, and refusals before any training starts."""

import pytest
from training_run import (
    gin_flags,
    make_hf_checkpoint,
    synthetic_ncbi_lines,
    train_vocabulary,
    write_ncbi,
)

from ct5x import cli, train
from ct5x.checkpoints.train_state import complete_steps


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    lines = synthetic_ncbi_lines(90, seed=5)
    data_dir = write_ncbi(root / "data", {"train": lines[:60], "dev": lines[60:75],
                                          "test": lines[75:]})
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(line.split("\t")[1] for line in lines) + "\n")
    spiece = train_vocabulary(corpus, root / "vocabulary")
    return data_dir, make_hf_checkpoint(root / "hf", spiece)


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--gin.run_settings.RunSettings.batchsize=3", "parameter named 'batchsize'"),
        ("--gin.BATCHSIZE=3", "unknown macro BATCHSIZE"),
        ("--gin.LEARNING_RATE=fast", "--gin.LEARNING_RATE=fast"),
        ("--gin.MIXTURE_OR_TASK_NAME='ncbi_disease_fold9'", "nearest: ncbi_disease_fold4"),
        ("--gin.TRAIN_STEPS=0", "TRAIN_STEPS=0 must be positive"),
        ("--gin.STEPS_PER_EXECUTION=0", "STEPS_PER_EXECUTION=0 must be positive"),
        ("--gin.OPTIMIZER_FLAVOUR='adam'", "flavour='adam'"),
    ],
)
def test_gin_mistakes_fail_with_one_line_naming_them(flag, expected, tmp_path, capsys):
    flags = ["--gin_file=runs/finetune.gin", f"--gin.MODEL_DIR='{tmp_path}'",
             "--gin.MIXTURE_OR_TASK_NAME='ncbi_disease_fold0'", flag]
    assert train.main(flags) == 2
    assert expected in _error_line(capsys)


def test_missing_required_macro_is_named(capsys):
    assert train.main(["--gin_file=runs/finetune.gin",
                       "--gin.MIXTURE_OR_TASK_NAME='ncbi_disease_fold0'"]) == 2
    assert "required macro MODEL_DIR" in _error_line(capsys)


def test_unquoted_string_gets_a_hint(capsys):
    assert train.main(["--gin_file=runs/finetune.gin", "--gin.MODEL_DIR=/tmp/somewhere"]) == 2
    assert "strings need quotes" in _error_line(capsys)


def test_ct5x_train_subcommand_passes_t5x_flags_through(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("ct5x.train",))
    assert cli.main(["train", "--gin_file=runs/finetune.gin", "--gin.BATCHSIZE=3"]) == 2
    assert "unknown macro BATCHSIZE" in _error_line(capsys)


def test_shape_mismatch_lists_the_parameters(inputs, tmp_path, capsys):
    flags = gin_flags(tmp_path / "model", *inputs)
    assert train.main(["--gin_file=models/t5_1_1/tiny.gin", *flags]) == 2
    line = _error_line(capsys)
    assert "does not fit the model" in line
    assert "encoder/layers_0/mlp/wi_0/kernel: checkpoint (32, 48) vs model (32, 64)" in line


def test_unwritable_model_dir_is_reported_before_training(inputs, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert train.main(gin_flags(blocker / "model", *inputs)) == 2
    assert "not writable" in _error_line(capsys)
    assert not (tmp_path / "a_file").is_dir()


def test_too_little_disk_is_reported_before_training(inputs, tmp_path, capsys, monkeypatch):
    import collections

    from ct5x import run_directory

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(run_directory.shutil, "disk_usage", lambda path: usage(10, 9, 1))
    assert train.main(gin_flags(tmp_path / "model", *inputs)) == 2
    assert "MiB free, one checkpoint needs" in _error_line(capsys)
    assert not complete_steps(tmp_path / "model")


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(inputs, tmp_path,
                                                                         capsys):
    model_dir = tmp_path / "model"
    # An absurd learning rate: step 1 is computed from the initial parameters and is finite;
    # its update overflows the network, so step 2's loss is not.
    flags = gin_flags(model_dir, *inputs, TRAIN_STEPS=6, EVAL_PERIOD=100, CHECKPOINT_PERIOD=1,
                      LEARNING_RATE=1e30)
    assert train.main(flags) == 1
    line = _error_line(capsys)
    assert "at step 2" in line and "last good checkpoint is kept" in line
    assert complete_steps(model_dir) == [1]
