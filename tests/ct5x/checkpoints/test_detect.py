"""Format detection and how a T5X path resolves to one step directory."""

import pytest

from ct5x.checkpoints import detect_format, load_checkpoint, save_t5x
from ct5x.checkpoints.detect import locate
from ct5x.errors import UserInputError


@pytest.fixture(scope="module")
def model_dirs(hf_dirs, tmp_path_factory):
    checkpoint = load_checkpoint(hf_dirs["t5_1_0"])
    root = tmp_path_factory.mktemp("detect")
    save_t5x(checkpoint, root / "orbax", step=10)
    save_t5x(checkpoint, root / "legacy", step=10, layout="legacy")
    return root


def test_detects_each_format(hf_dirs, model_dirs):
    assert detect_format(hf_dirs["t5_1_1"]) == "hf"
    assert detect_format(model_dirs / "orbax") == "t5x_orbax"
    assert detect_format(model_dirs / "orbax" / "checkpoint_10") == "t5x_orbax"
    assert detect_format(model_dirs / "legacy") == "t5x_legacy"
    assert detect_format(model_dirs / "legacy" / "checkpoint_10") == "t5x_legacy"
    assert detect_format(model_dirs / "legacy" / "checkpoint_10" / "checkpoint") == "t5x_legacy"


def test_model_directory_resolves_to_latest_complete_step(hf_dirs, tmp_path):
    checkpoint = load_checkpoint(hf_dirs["t5_1_0"])
    for step in (2, 30, 100):
        save_t5x(checkpoint, tmp_path, step=step, layout="legacy" if step == 30 else "orbax")
    (tmp_path / "checkpoint_900").mkdir()  # incomplete: no checkpoint file, no Orbax item
    (tmp_path / ".checkpoint_1000.tmp-abc").mkdir()
    located = locate(tmp_path)
    assert located.directory == tmp_path / "checkpoint_100"
    assert located.format == "t5x_orbax"
    assert located.side_directories == (tmp_path / "checkpoint_100", tmp_path)
    assert load_checkpoint(tmp_path).step == 100
    assert load_checkpoint(tmp_path / "checkpoint_30").step == 30


def test_missing_path():
    with pytest.raises(UserInputError, match=r"/nowhere/at/all: no such file or directory"):
        detect_format("/nowhere/at/all")


def test_directory_of_something_else(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserInputError, match=r"neither a Hugging Face T5 directory nor a T5X"):
        detect_format(tmp_path)


def test_plain_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(UserInputError, match=r"weights.npz: expected a checkpoint directory"):
        detect_format(tmp_path / "weights.npz")
