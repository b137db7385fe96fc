"""ct5x's SeqIO registry: the paper's seven datasets as tasks and mixtures (see README.md).

`import ct5x_tasks` is cheap: it registers nothing and imports neither SeqIO nor TensorFlow, so the
task facts (`catalog`), the names (`naming`) and the settings are there for the command line. The
registry registers every task and mixture with SeqIO on first use of `task_info`, `task_names`,
`get_provider`, `register_all` or `register_custom_task`, or when `ct5x_tasks.registration` is
imported (T5X's MIXTURE_OR_TASK_MODULE). No data file is read until a dataset is built.
"""

import importlib

from ct5x_tasks import gin_bindings  # noqa: F401  (gin files bind ct5x_tasks.*_settings)
from ct5x_tasks.catalog import Selection, TaskInfo
from ct5x_tasks.folds import make_folds, write_folds
from ct5x_tasks.naming import Variant, task_name
from ct5x_tasks.task_settings import (
    CustomTaskSettings,
    TaskSettings,
    set_vocabulary_path,
    settings,
)
from ct5x_tasks.task_settings import current as current_settings

_REGISTRY = ("get_provider", "register_all", "register_custom_task", "task_info", "task_names")
_LAZY = {**{name: "ct5x_tasks.registration" for name in _REGISTRY},
         "VOCABULARY": "ct5x_tasks.vocabulary"}

__all__ = [
    "VOCABULARY",
    "CustomTaskSettings",
    "Selection",
    "TaskInfo",
    "TaskSettings",
    "Variant",
    "current_settings",
    "get_provider",
    "make_folds",
    "register_all",
    "register_custom_task",
    "set_vocabulary_path",
    "settings",
    "task_info",
    "task_name",
    "task_names",
    "write_folds",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'ct5x_tasks' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
