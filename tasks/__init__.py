"""ct5x's SeqIO registry: the paper's seven datasets as tasks and mixtures (see README.md).

Importing registers every task; no data file is read until a dataset is built.
"""

from ct5x_tasks.folds import add_folds_arguments, folds_command, make_folds, write_folds
from ct5x_tasks.naming import Variant, task_name
from ct5x_tasks.registration import (
    TaskInfo,
    get_provider,
    register_all,
    register_custom_task,
    task_info,
    task_names,
)
from ct5x_tasks.settings import CustomTaskSettings
from ct5x_tasks.span_corruption import register_span_corruption
from ct5x_tasks.synthetic import register_synthetic_task
from ct5x_tasks.vocabulary import VOCABULARY, set_vocabulary_path

register_all()
register_span_corruption()
register_synthetic_task()

__all__ = [
    "VOCABULARY",
    "CustomTaskSettings",
    "TaskInfo",
    "Variant",
    "add_folds_arguments",
    "folds_command",
    "get_provider",
    "make_folds",
    "register_all",
    "register_custom_task",
    "set_vocabulary_path",
    "task_info",
    "task_name",
    "task_names",
    "write_folds",
]
