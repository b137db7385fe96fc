"""The registry's one gin module: the names gin files bind, fed to `task_settings` at the edge.

    ct5x_tasks.data_settings.data_dir = %DATA_DIR           (gin/tasks/data.gin)
    ct5x_tasks.data_settings.dataset_dirs = {'radqa': '/elsewhere/radqa'}
    ct5x_tasks.data_settings.site_dirs = {'ood': '/data/hospital_b'}
    ct5x_tasks.data_settings.folds_dir = '/runs/folds'
    ct5x_tasks.data_settings.on_bad_record = 'skip'
    ct5x_tasks.anchor_settings.anchor_compatible = %ANCHOR_COMPATIBLE
    ct5x_tasks.vocabulary_settings.path = '/models/flan-t5-large/spiece.model'
    ct5x_tasks.vocabulary_settings.extra_ids = 100
    ct5x_tasks.custom_task_settings.input_field = 'text'

Each function returns what its bindings set (None: unbound). `task_settings` asks for them each time
it resolves the settings in force, below any explicit `ct5x_tasks.settings(...)` block, so a run's
gin file configures the registry while it is parsed, and code that sets values explicitly never
depends on what gin holds.
"""

from collections.abc import Mapping
from typing import Any

import gin

from ct5x_tasks import task_settings


@gin.configurable("data_settings", module="ct5x_tasks")
def data_settings(
    data_dir: str | None = None,
    dataset_dirs: Mapping[str, str] | None = None,
    site_dirs: Mapping[str, str] | None = None,
    folds_dir: str | None = None,
    on_bad_record: str | None = None,
) -> dict[str, Any]:
    """Where the task data lives and how malformed records are treated."""
    return {"data_dir": data_dir, "dataset_dirs": dataset_dirs, "site_dirs": site_dirs,
            "folds_dir": folds_dir, "on_bad_record": on_bad_record}


@gin.configurable("anchor_settings", module="ct5x_tasks")
def anchor_settings(anchor_compatible: bool | None = None) -> dict[str, Any]:
    """The study-compatibility switch (None: left to CT5X_ANCHOR_COMPATIBLE, else off)."""
    return {"anchor_compatible": None if anchor_compatible is None else bool(anchor_compatible)}


@gin.configurable("vocabulary_settings", module="ct5x_tasks")
def vocabulary_settings(path: str | None = None, extra_ids: int | None = None) -> dict[str, Any]:
    """The spiece.model every task tokenizes with, and its number of sentinel ids."""
    return {"vocabulary_path": path, "extra_ids": extra_ids}


@gin.configurable("custom_task_settings", module="ct5x_tasks")
def custom_task_settings(
    file_format: str | None = None,
    input_field: str | None = None,
    target_field: str | None = None,
    id_field: str | None = None,
    group_field: str | None = None,
    prefix: str | None = None,
    score_as: str | None = None,
    input_length: int | None = None,
    target_length: int | None = None,
) -> dict[str, Any]:
    """The `custom` task's fields (see `task_settings.CustomTaskSettings`); unbound ones keep
    their defaults."""
    bound = {name: value for name, value in locals().items() if value is not None}
    return {"custom_task": task_settings.CustomTaskSettings(**bound) if bound else None}


def bound_task_settings() -> dict[str, Any]:
    """Every field the gin bindings set, as `task_settings` layers them."""
    return {**data_settings(), **anchor_settings(), **vocabulary_settings(),
            **custom_task_settings()}


task_settings.read_configuration_from(bound_task_settings)
