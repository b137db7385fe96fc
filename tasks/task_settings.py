"""What the registry is told from outside: where the data is, the bad-record policy, the study
switch, the vocabulary and the `custom` task's fields, as one frozen `TaskSettings`.

Code sets them explicitly, for the duration of a block, and the previous state comes back on exit:

    with ct5x_tasks.settings(data_dir="/data/clinical", site_dirs={"ood": "/data/b"},
                             anchor_compatible=True):
        ...  # datasets built, lengths and metrics asked for here see these settings

Blocks nest; an inner block overrides only the fields it names (a mapping field by key). Outside
every block a field falls back, in order, to `set_vocabulary_path` (the trainer's vocabulary),
the gin bindings (fed in by `gin_bindings`, the registry's one gin module: gin binds at the
edge), the environment (CT5X_DATA_DIR, CT5X_SITE_DIR_<SITE>, CT5X_FOLDS_DIR, CT5X_ON_BAD_RECORD,
CT5X_ANCHOR_COMPATIBLE, CT5X_VOCABULARY) and the defaults. This module never reads gin itself and
never writes the environment: `ct5x evaluate` applies a run's recorded settings as a block.
"""

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from etils import epath

from ct5x import storage
from ct5x.errors import UserInputError

BAD_RECORD_POLICIES = ("raise", "skip")
FILE_FORMATS = ("jsonl", "csv")
SITE_DIR_VARIABLE = "CT5X_SITE_DIR_"
ANCHOR_VARIABLE = "CT5X_ANCHOR_COMPATIBLE"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


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

    def __post_init__(self):
        if self.file_format not in FILE_FORMATS:
            raise UserInputError(
                f"custom task file_format is {self.file_format!r}; expected one of {FILE_FORMATS}"
            )


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """The settings in force (every field resolved); `settings(...)` yields one."""

    data_dir: str | None = None
    # Base task (or folder) name -> the folder holding that dataset, instead of DATA_DIR/<folder>.
    dataset_dirs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Site name -> its data root (a second hospital's copy of the same formats).
    site_dirs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    folds_dir: str | None = None
    on_bad_record: str = "raise"
    # The study's own behaviour where it is a bug (tasks/README.md lists each point).
    anchor_compatible: bool = False
    vocabulary_path: str | None = None
    # Sentinel ids above the SentencePiece pieces (T5's HF spiece.model: 0; pre-training: 100).
    extra_ids: int = 0
    custom_task: CustomTaskSettings = CustomTaskSettings()


FIELDS = tuple(field.name for field in dataclasses.fields(TaskSettings))
_MAPPINGS = ("dataset_dirs", "site_dirs")
Layer = Mapping[str, Any]

# Innermost last: the blocks of `settings(...)` in force now.
_blocks: list[Layer] = []
# What `set_vocabulary_path` chose for the whole process.
_process: dict[str, Any] = {}
# The gin bindings, installed by `gin_bindings` when it is imported (None: gin is not in use).
_configured: Callable[[], Layer] | None = None


def _checked(layer: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The fields a layer sets (None means 'not set here'), each checked."""
    unknown = sorted(set(layer) - set(FIELDS))
    if unknown:
        raise UserInputError(f"{where}: unknown task setting {unknown[0]!r}; known: {FIELDS}")
    values = {name: value for name, value in layer.items() if value is not None}
    policy = values.get("on_bad_record")
    if policy is not None and policy not in BAD_RECORD_POLICIES:
        raise UserInputError(f"{where}: on_bad_record is {policy!r}; expected one of "
                             f"{BAD_RECORD_POLICIES}")
    for name in _MAPPINGS:
        if name in values and not isinstance(values[name], Mapping):
            raise UserInputError(f"{where}: {name} must map names to folders")
        if name in values:
            values[name] = dict(values[name])  # the caller's dict may change later
    if "custom_task" in values and not isinstance(values["custom_task"], CustomTaskSettings):
        raise UserInputError(f"{where}: custom_task must be a CustomTaskSettings")
    return values


def environment_flag(name: str) -> bool | None:
    """A yes/no environment variable (1/true/yes/on, 0/false/no/off); None when unset or empty."""
    text = os.environ.get(name, "").strip().lower()
    if text not in _TRUE + _FALSE:
        raise UserInputError(f"{name} is {text!r}; expected one of {', '.join(_TRUE + _FALSE[1:])}")
    return None if not text else text in _TRUE


def _environment() -> dict[str, Any]:
    env = os.environ
    site_dirs = {key[len(SITE_DIR_VARIABLE):].lower(): value for key, value in env.items()
                 if key.startswith(SITE_DIR_VARIABLE) and value}
    layer = {
        "data_dir": env.get("CT5X_DATA_DIR") or None,
        "site_dirs": site_dirs,
        "folds_dir": env.get("CT5X_FOLDS_DIR") or None,
        "on_bad_record": env.get("CT5X_ON_BAD_RECORD") or None,
        "anchor_compatible": environment_flag(ANCHOR_VARIABLE),
        "vocabulary_path": env.get("CT5X_VOCABULARY") or None,
    }
    return _checked(layer, "environment (CT5X_ON_BAD_RECORD)")


def current() -> TaskSettings:
    """The settings in force: the innermost block's fields, then the outer ones', the process
    vocabulary, gin, the environment, the defaults."""
    layers = [_environment()]
    if _configured is not None:
        layers.append(_checked(_configured(), "gin (ct5x_tasks.*_settings)"))
    layers += [_process, *_blocks]
    fields: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            if name in _MAPPINGS:
                fields[name] = {**fields.get(name, {}), **value}
            else:
                fields[name] = value
    return TaskSettings(**fields)


@contextlib.contextmanager
def settings(**fields: Any) -> Iterator[TaskSettings]:
    """Inside the block the registry uses these settings (see the module docstring); the previous
    ones are back on exit, however the block ends."""
    layer = _checked(fields, "ct5x_tasks.settings")
    _blocks.append(layer)
    depth = len(_blocks)
    try:
        yield current()
    finally:
        del _blocks[depth - 1:]


def set_vocabulary_path(path: str | os.PathLike | None, extra_ids: int = 0) -> None:
    """The vocabulary for the rest of the process (a trainer's), below any `settings` block;
    None forgets it."""
    _process.clear()
    if path is not None:
        _process.update(vocabulary_path=os.fspath(path), extra_ids=extra_ids)


def vocabulary() -> tuple[str | None, int]:
    """(vocabulary_path, extra_ids) in force; the trainer's, without resolving every setting,
    when no block names a vocabulary (it is read for every decoded example)."""
    if _process and not any({"vocabulary_path", "extra_ids"} & set(layer) for layer in _blocks):
        return _process["vocabulary_path"], _process["extra_ids"]
    resolved = current()
    return resolved.vocabulary_path, resolved.extra_ids


def read_configuration_from(configured: Callable[[], Layer] | None) -> None:
    """Installs the function giving the gin-bound fields (`gin_bindings` calls this)."""
    global _configured
    _configured = configured


def dataset_dir(base_task: str, folder: str, site: str | None = None) -> epath.Path:
    """The folder holding one dataset's raw files (local, or in a bucket: `ct5x.storage`).

    Order: a site's root (`site_dirs[site]`, then `<root>/<folder>` if that exists); a per-task
    folder (`dataset_dirs[base_task]` or `dataset_dirs[folder]`); `<data_dir>/<folder>`.
    """
    resolved = current()
    if site is not None:
        root = resolved.site_dirs.get(site)
        if not root:
            raise UserInputError(
                f"no directory for site {site!r}: set site_dirs (gin "
                f"ct5x_tasks.data_settings.site_dirs) or {SITE_DIR_VARIABLE}{site.upper()}"
            )
        nested = storage.path(root) / folder
        return nested if nested.is_dir() else storage.path(root)
    override = resolved.dataset_dirs.get(base_task) or resolved.dataset_dirs.get(folder)
    if override:
        return storage.path(override)
    if not resolved.data_dir:
        raise UserInputError(
            f"no data directory for task {base_task!r}: set the gin macro DATA_DIR "
            "(ct5x_tasks.data_settings.data_dir), the environment variable CT5X_DATA_DIR, or "
            "dataset_dirs"
        )
    return storage.path(resolved.data_dir) / folder


def folds_file(base_task: str, folder: str, site: str | None = None) -> epath.Path:
    """`<folds_dir>/<name>/folds.json`, or `<dataset dir>/folds/<base_task>/folds.json`.

    `name` is the base task, or `<base_task>_site_<site>` for a site, whose folds come from its own
    files; without `folds_dir` a site's folds live in its own dataset folder.
    """
    folds_dir = current().folds_dir
    if folds_dir:
        name = base_task if site is None else f"{base_task}_site_{site}"
        return storage.path(folds_dir) / name / "folds.json"
    return dataset_dir(base_task, folder, site) / "folds" / base_task / "folds.json"


def skip_bad_records() -> bool:
    """True when malformed records are skipped and counted instead of raising."""
    return current().on_bad_record == "skip"


def anchor_compatible() -> bool:
    """The study-compatibility switch in force."""
    return current().anchor_compatible
