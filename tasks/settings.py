"""Where the task data lives and how bad records are treated, read at dataset-build time.

This is the one module of the registry that imports gin: the registry is imported before gin files
are parsed, so readers ask `data_settings()` for the bindings each time they build a dataset.
Every setting also has an environment variable, so tasks work without gin.

gin (see gin/tasks/data.gin):
    DATA_DIR = '/data/clinical'
    ct5x_tasks.data_settings.data_dir = %DATA_DIR
    ct5x_tasks.data_settings.dataset_dirs = {'radqa': '/elsewhere/radqa'}
    ct5x_tasks.data_settings.site_dirs = {'ood': '/data/hospital_b'}
    ct5x_tasks.data_settings.folds_dir = '/runs/folds'
    ct5x_tasks.data_settings.on_bad_record = 'skip'
    ct5x_tasks.anchor_settings.anchor_compatible = True
    ct5x_tasks.vocabulary_settings.path = '/models/flan-t5-large/spiece.model'
    ct5x_tasks.custom_task_settings.input_field = 'text'
environment: CT5X_DATA_DIR, CT5X_SITE_DIR_<SITE>, CT5X_FOLDS_DIR, CT5X_ON_BAD_RECORD,
CT5X_ANCHOR_COMPATIBLE, CT5X_VOCABULARY.
"""

import dataclasses
import os
import pathlib
from collections.abc import Mapping

import gin

from ct5x.errors import UserInputError

BAD_RECORD_POLICIES = ("raise", "skip")


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Resolved data locations and the bad-record policy."""

    data_dir: str | None
    dataset_dirs: Mapping[str, str]
    site_dirs: Mapping[str, str]
    folds_dir: str | None
    on_bad_record: str


@gin.configurable(module="ct5x_tasks")
def data_settings(
    data_dir: str | None = None,
    dataset_dirs: Mapping[str, str] | None = None,
    site_dirs: Mapping[str, str] | None = None,
    folds_dir: str | None = None,
    on_bad_record: str | None = None,
) -> DataSettings:
    """Gin bindings first, then the environment variables, then defaults (policy 'raise')."""
    policy = on_bad_record or os.environ.get("CT5X_ON_BAD_RECORD") or "raise"
    if policy not in BAD_RECORD_POLICIES:
        raise UserInputError(
            f"ct5x_tasks.data_settings.on_bad_record (or CT5X_ON_BAD_RECORD) is {policy!r}; "
            f"expected one of {BAD_RECORD_POLICIES}"
        )
    return DataSettings(
        data_dir=data_dir or os.environ.get("CT5X_DATA_DIR") or None,
        dataset_dirs=dict(dataset_dirs or {}),
        site_dirs=dict(site_dirs or {}),
        folds_dir=folds_dir or os.environ.get("CT5X_FOLDS_DIR") or None,
        on_bad_record=policy,
    )


def dataset_dir(base_task: str, folder: str, site: str | None = None) -> pathlib.Path:
    """The folder holding one dataset's raw files.

    Order: a site's directory (`site_dirs[site]` or CT5X_SITE_DIR_<SITE>, then `<it>/<folder>` if
    that exists); a per-task override (`dataset_dirs[base_task]` or `dataset_dirs[folder]`);
    `<DATA_DIR>/<folder>`.
    """
    settings = data_settings()
    if site is not None:
        env_name = f"CT5X_SITE_DIR_{site.upper()}"
        root = settings.site_dirs.get(site) or os.environ.get(env_name)
        if not root:
            raise UserInputError(
                f"no directory for site {site!r}: bind ct5x_tasks.data_settings.site_dirs or set "
                f"{env_name}"
            )
        nested = pathlib.Path(root) / folder
        return nested if nested.is_dir() else pathlib.Path(root)
    override = settings.dataset_dirs.get(base_task) or settings.dataset_dirs.get(folder)
    if override:
        return pathlib.Path(override)
    if not settings.data_dir:
        raise UserInputError(
            f"no data directory for task {base_task!r}: set the gin macro DATA_DIR "
            "(ct5x_tasks.data_settings.data_dir), the environment variable CT5X_DATA_DIR, or "
            "ct5x_tasks.data_settings.dataset_dirs"
        )
    return pathlib.Path(settings.data_dir) / folder


def folds_file(base_task: str, folder: str, site: str | None = None) -> pathlib.Path:
    """`<folds_dir>/<name>/folds.json`, or `<dataset dir>/folds/<base_task>/folds.json`.

    `name` is the base task, or `<base_task>_site_<site>` for a site, whose folds come from its own
    files; without `folds_dir` a site's folds live in its own dataset folder.
    """
    settings = data_settings()
    if settings.folds_dir:
        name = base_task if site is None else f"{base_task}_site_{site}"
        return pathlib.Path(settings.folds_dir) / name / "folds.json"
    return dataset_dir(base_task, folder, site) / "folds" / base_task / "folds.json"


def skip_bad_records() -> bool:
    """True when malformed records are skipped and counted instead of raising."""
    return data_settings().on_bad_record == "skip"


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


@gin.configurable(module="ct5x_tasks")
def anchor_settings(anchor_compatible: bool | None = None) -> bool:
    """The one switch for the study's own behaviour where it is a bug (see tasks/README.md).

    Read whenever a dataset is built, a task's decoding length is asked for, or a metric is
    computed: the gin binding when it is not None, else CT5X_ANCHOR_COMPATIBLE (1/true/yes/on),
    else off.
    """
    if anchor_compatible is not None:
        return bool(anchor_compatible)
    text = os.environ.get("CT5X_ANCHOR_COMPATIBLE", "").strip().lower()
    if text not in _TRUE + _FALSE:
        raise UserInputError(
            f"CT5X_ANCHOR_COMPATIBLE is {text!r}; expected one of {', '.join(_TRUE + _FALSE[1:])}"
        )
    return text in _TRUE


@gin.configurable(module="ct5x_tasks")
def vocabulary_settings(path: str | None = None, extra_ids: int = 0) -> tuple[str | None, int]:
    """The gin-bound spiece.model path and its number of sentinel ids (T5's HF spiece.model: 0)."""
    return path, extra_ids


@dataclasses.dataclass(frozen=True)
class CustomTaskSettings:
    """A user's own dataset: which file format and fields, the prompt prefix, how to score it.

    Files: `<dir>/{train,dev,test}.<file_format>` (jsonl or csv with a header). `score_as` names a
    paper task whose postprocessor and metrics fit (e.g. 'mednli' for single-label
    classification, 'hoc' for multi-label, 'radqa' for extractive answers, 'ncbi_disease' for
    marked-up entities).
    """

    file_format: str = "jsonl"
    input_field: str = "input"
    target_field: str = "target"
    id_field: str | None = None
    group_field: str | None = None
    prefix: str = ""
    score_as: str | None = None
    input_length: int = 512
    target_length: int = 128


@gin.configurable(module="ct5x_tasks")
def custom_task_settings(
    file_format: str = "jsonl",
    input_field: str = "input",
    target_field: str = "target",
    id_field: str | None = None,
    group_field: str | None = None,
    prefix: str = "",
    score_as: str | None = None,
    input_length: int = 512,
    target_length: int = 128,
) -> CustomTaskSettings:
    """The `custom` task's settings, e.g. ct5x_tasks.custom_task_settings.input_field = 'text'."""
    if file_format not in ("jsonl", "csv"):
        raise UserInputError(
            f"ct5x_tasks.custom_task_settings.file_format is {file_format!r}; expected jsonl or csv"
        )
    return CustomTaskSettings(
        file_format, input_field, target_field, id_field, group_field, prefix, score_as,
        input_length, target_length,
    )
