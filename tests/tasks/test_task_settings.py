"""`ct5x_tasks.settings(...)`: explicit, nestable, restored on exit; above gin and the environment,
which bind at the edge."""

import pathlib

import gin
import pytest

import ct5x_tasks
from ct5x.errors import UserInputError
from ct5x_tasks import task_settings

DATA_GIN = pathlib.Path(__file__).parents[2] / "gin" / "tasks" / "data.gin"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch):
    for name in ("CT5X_DATA_DIR", "CT5X_FOLDS_DIR", "CT5X_ON_BAD_RECORD", "CT5X_VOCABULARY",
                 "CT5X_ANCHOR_COMPATIBLE", "CT5X_SITE_DIR_OOD"):
        monkeypatch.delenv(name, raising=False)


def test_blocks_nest_and_restore_the_previous_state_however_they_end():
    assert ct5x_tasks.current_settings() == ct5x_tasks.TaskSettings()
    with ct5x_tasks.settings(data_dir="/a", site_dirs={"ood": "/b"}) as outer:
        assert (outer.data_dir, outer.site_dirs, outer.anchor_compatible) == ("/a", {"ood": "/b"},
                                                                             False)
        with pytest.raises(KeyError), ct5x_tasks.settings(anchor_compatible=True,
                                                          site_dirs={"c": "/c"}) as inner:
            # Only the fields named change; a mapping changes by key.
            assert (inner.data_dir, inner.anchor_compatible) == ("/a", True)
            assert inner.site_dirs == {"ood": "/b", "c": "/c"}
            raise KeyError("the block fails")
        assert ct5x_tasks.current_settings() == outer
    assert ct5x_tasks.current_settings() == ct5x_tasks.TaskSettings()


def test_explicit_settings_win_over_gin_which_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("CT5X_DATA_DIR", "/from/environment")
    monkeypatch.setenv("CT5X_SITE_DIR_OOD", "/site/environment")
    monkeypatch.setenv("CT5X_ANCHOR_COMPATIBLE", "yes")
    assert task_settings.dataset_dir("mednli", "mednli") == pathlib.Path(
        "/from/environment/mednli")
    gin.parse_config_files_and_bindings([str(DATA_GIN)], ["DATA_DIR = '/from/gin'",
                                                          "ANCHOR_COMPATIBLE = False"])
    assert ct5x_tasks.current_settings().data_dir == "/from/gin"
    assert ct5x_tasks.current_settings().anchor_compatible is False
    with ct5x_tasks.settings(data_dir="/explicit", anchor_compatible=True):
        assert task_settings.dataset_dir("mednli", "mednli") == pathlib.Path("/explicit/mednli")
        assert ct5x_tasks.task_info("clip").decode_length == 19
        assert task_settings.dataset_dir("stigma_other", "stigma", "ood") == pathlib.Path(
            "/site/environment")
    # Nothing explicit touched gin: its bindings are as they were parsed.
    assert gin.query_parameter("%DATA_DIR") == "/from/gin"
    assert ct5x_tasks.task_info("clip").decode_length == 64


def test_the_vocabulary_of_a_block_sits_above_the_trainers(spm_model_path):
    ct5x_tasks.set_vocabulary_path("/trainer/spiece.model", extra_ids=100)
    try:
        with ct5x_tasks.settings(vocabulary_path=spm_model_path, extra_ids=0) as inside:
            assert (inside.vocabulary_path, inside.extra_ids) == (spm_model_path, 0)
        after = ct5x_tasks.current_settings()
        assert (after.vocabulary_path, after.extra_ids) == ("/trainer/spiece.model", 100)
    finally:
        ct5x_tasks.set_vocabulary_path(None)
    assert ct5x_tasks.current_settings().vocabulary_path is None


@pytest.mark.parametrize("fields, message", [
    ({"data_root": "/x"}, "unknown task setting 'data_root'"),
    ({"on_bad_record": "ignore"}, "on_bad_record is 'ignore'"),
    ({"site_dirs": "/x"}, "site_dirs must map names to folders"),
])
def test_bad_settings_are_named(fields, message):
    with pytest.raises(UserInputError, match=message), ct5x_tasks.settings(**fields):
        pass
    assert ct5x_tasks.current_settings() == ct5x_tasks.TaskSettings()
