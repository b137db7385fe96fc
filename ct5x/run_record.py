"""A run's record, `MODEL_DIR/run.json`: the contract between `ct5x train` and everything after it.

The trainer writes it (after every evaluation, atomically); the evaluation, the sweep and the
learning-rate selection read it through `read_run_record`, with one error policy: no file is
"no record yet" (None), and anything else unusable is a `RunRecordError` naming the file and the
field. The names of every file a run directory holds are defined here too.

Schema 2 (this version) records what evaluation needs to score the run as it was trained: the
anchor mode, the selection metric and its direction, and the paper task whose metrics score it.
Records without `schema_version` are schema 1 (ct5x 0.1): they still read; the fields they lack
are None (`selection` is rebuilt from `best_metric`, as schema 1 always took higher as better).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ct5x import storage
from ct5x.errors import UserInputError
from ct5x_tasks.catalog import Selection
from ct5x_tasks.naming import NUM_FOLDS, Variant

if TYPE_CHECKING:
    from etils import epath

SCHEMA_VERSION = 2

# The files of a run directory.
RUN_FILE = "run.json"
TRAINING_METRICS_FILE = "metrics.jsonl"  # one line per training log or validation step
CONFIG_GIN = "config.gin"  # the operative gin config
TEST_METRICS_FILE = "metrics.json"  # `ct5x evaluate`: the test scores
PREDICTIONS_FILE = "predictions.jsonl"  # `ct5x evaluate`: one line per test example
SITE_METRICS_GLOB = "metrics_site_*.json"  # `ct5x evaluate --test-site`
SWEEP_ERROR_LOG = "sweep_error.log"  # `ct5x sweep run`: the traceback of a run that raised
TIMINGS_FILE = "timings.jsonl"  # `ct5x train`: its timeline (start-up, phases, compilation)

_VARIANT_KEYS = ("flan", "deid", "site", "fold", "fraction")


class RunRecordError(UserInputError):
    """A run.json that cannot be used; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class BestMetric:
    """The selection metric's value at the best checkpoint."""

    name: str
    value: float


@dataclasses.dataclass(frozen=True)
class DataLocations:
    """The task settings the run read its data with (`ct5x_tasks.settings` fields)."""

    data_dir: str | None = None
    dataset_dirs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    site_dirs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    folds_dir: str | None = None
    # None: recorded before schema 2.
    on_bad_record: str | None = None


DATA_SETTING_KEYS = tuple(field.name for field in dataclasses.fields(DataLocations))


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """run.json, typed. Fixed fields first, then the progress fields the training loop updates."""

    model: str
    task: str
    variant: Variant
    initial_checkpoint: str | None
    learning_rate: float
    seed: int
    train_examples: int
    train_steps: int
    task_feature_lengths: Mapping[str, int]
    data_settings: DataLocations
    vocabulary: str | None
    ct5x_version: str
    latest_step: int
    best_step: int | None
    best_metric: BestMetric | None
    finished: bool
    evaluations_without_improvement: int = 0
    # Early stopping fired: a resumed run trains no further.
    early_stopped: bool = False
    # Schema 2 (None in schema-1 records):
    anchor_compatible: bool | None = None
    selection: Selection | None = None
    # The paper task whose metrics score the run (None: the task's own metric functions).
    scored_as: str | None = None
    batch_size: int | None = None
    # Rows per validation batch (EVAL_BATCH_SIZE); `ct5x evaluate` decodes at this size.
    eval_batch_size: int | None = None
    pack: bool | None = None
    num_folds: int = NUM_FOLDS
    schema_version: int = SCHEMA_VERSION

    @property
    def base_task(self) -> str:
        return self.variant.base

    @property
    def checkpoint_step(self) -> int:
        """The step to evaluate: the best validation checkpoint, else the latest."""
        return self.latest_step if self.best_step is None else self.best_step

    def to_json(self) -> dict[str, Any]:
        """The record as run.json holds it."""
        variant = self.variant
        record = {
            "schema_version": self.schema_version,
            "model": self.model, "task": self.task, "base_task": variant.base,
            "variant": {key: getattr(variant, key) for key in _VARIANT_KEYS},
            "initial_checkpoint": self.initial_checkpoint,
            "learning_rate": self.learning_rate, "seed": self.seed,
            "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size,
            "pack": self.pack,
            "train_examples": self.train_examples, "train_steps": self.train_steps,
            "latest_step": self.latest_step, "best_step": self.best_step,
            "best_metric": None if self.best_metric is None else dataclasses.asdict(
                self.best_metric),
            "finished": self.finished,
            "evaluations_without_improvement": self.evaluations_without_improvement,
            "early_stopped": self.early_stopped,
            "ct5x_version": self.ct5x_version,
            "task_feature_lengths": dict(self.task_feature_lengths),
            "data_settings": {key: getattr(self.data_settings, key) for key in DATA_SETTING_KEYS},
            "vocabulary": self.vocabulary,
            "anchor_compatible": self.anchor_compatible,
            "selection": None if self.selection is None else dataclasses.asdict(self.selection),
            "scored_as": self.scored_as,
            "num_folds": self.num_folds,
        }
        return record


# Every key run.json may hold: RunRecord's fields as `to_json` spells them.
_KEYS = frozenset({field.name for field in dataclasses.fields(RunRecord)} | {"base_task"})


class _Fields:
    """Typed access to a run.json object; every problem names the file and the field."""

    def __init__(self, record: Mapping[str, Any], where: str):
        self.record, self.where = record, where

    def fail(self, name: str, expected: str) -> RunRecordError:
        return RunRecordError(f"{self.where}: field {name!r} must be {expected}")

    def get(self, name: str, kinds: tuple[type, ...], required: bool = True,
            record: Mapping[str, Any] | None = None) -> Any:
        source = self.record if record is None else record
        if name not in source and not required:
            return None
        value = source.get(name)
        # bool is an int subclass: a step given as true/false is still wrong.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
            raise self.fail(name, names)
        return value

    def mapping(self, name: str, value: Any, values: type) -> dict:
        if not isinstance(value, Mapping) or not all(
                isinstance(key, str) and isinstance(item, values) and not isinstance(item, bool)
                for key, item in value.items()):
            raise self.fail(name, f"an object of {values.__name__}s")
        return dict(value)


def _variant(fields: _Fields) -> Variant:
    base = fields.get("base_task", (str,))
    raw = fields.get("variant", (dict,))
    unknown = sorted(set(raw) - set(_VARIANT_KEYS))
    if unknown:
        raise fields.fail("variant", f"an object with keys {', '.join(_VARIANT_KEYS)}")
    try:
        return Variant(
            base,
            flan=fields.get("flan", (bool,), record=raw),
            deid=fields.get("deid", (bool,), record=raw),
            site=fields.get("site", (str, type(None)), record=raw),
            fold=fields.get("fold", (int, type(None)), record=raw),
            fraction=fields.get("fraction", (int, float, type(None)), record=raw),
        )
    except ValueError as error:
        raise RunRecordError(f"{fields.where}: field 'variant': {error}") from None


def _data_locations(fields: _Fields) -> DataLocations:
    raw = fields.get("data_settings", (dict,))
    unknown = sorted(set(raw) - set(DATA_SETTING_KEYS))
    if unknown:
        raise RunRecordError(f"{fields.where}: unknown data_settings keys {', '.join(unknown)}")
    optional = (str, type(None))
    return DataLocations(
        data_dir=fields.get("data_dir", optional, required=False, record=raw),
        dataset_dirs=fields.mapping("data_settings.dataset_dirs", raw.get("dataset_dirs") or {},
                                    str),
        site_dirs=fields.mapping("data_settings.site_dirs", raw.get("site_dirs") or {}, str),
        folds_dir=fields.get("folds_dir", optional, required=False, record=raw),
        on_bad_record=fields.get("on_bad_record", optional, required=False, record=raw),
    )


def _best_metric(fields: _Fields) -> BestMetric | None:
    raw = fields.get("best_metric", (dict, type(None)))
    if raw is None:
        return None
    value = fields.get("value", (int, float), record=raw)
    if not math.isfinite(value):
        raise fields.fail("best_metric", "a name and a finite value")
    return BestMetric(fields.get("name", (str,), record=raw), float(value))


def _selection(fields: _Fields, schema: int, best: BestMetric | None) -> Selection | None:
    if schema < 2:
        return None if best is None else Selection(best.name, higher_is_better=True)
    raw = fields.get("selection", (dict,))
    return Selection(fields.get("metric", (str,), record=raw),
                     fields.get("higher_is_better", (bool,), record=raw))


def record_from_json(record: Any, where: str) -> RunRecord:
    """A parsed run.json checked field by field (schema 1 or 2); `where` names it in errors."""
    if not isinstance(record, Mapping):
        raise RunRecordError(f"{where}: not a JSON object")
    fields = _Fields(record, where)
    schema = fields.get("schema_version", (int,), required=False) or 1
    if schema > SCHEMA_VERSION:
        raise RunRecordError(f"{where}: written by a newer ct5x (schema {schema}; this one "
                             f"reads up to {SCHEMA_VERSION})")
    unknown = sorted(set(record) - _KEYS)
    if unknown:
        raise RunRecordError(f"{where}: unknown field {unknown[0]!r} (not in run.json schema "
                             f"{SCHEMA_VERSION})")
    v2 = schema >= 2
    lengths = fields.mapping("task_feature_lengths", fields.get("task_feature_lengths", (dict,)),
                             int)
    best = _best_metric(fields)
    variant = _variant(fields)
    task = fields.get("task", (str,))
    if variant.name != task:
        raise RunRecordError(f"{where}: fields 'base_task' and 'variant' name task "
                             f"{variant.name!r}, not {task!r}")
    return RunRecord(
        model=fields.get("model", (str,)),
        task=task,
        variant=variant,
        initial_checkpoint=fields.get("initial_checkpoint", (str, type(None))),
        learning_rate=float(fields.get("learning_rate", (int, float))),
        seed=fields.get("seed", (int,)),
        train_examples=fields.get("train_examples", (int,)),
        train_steps=fields.get("train_steps", (int,)),
        task_feature_lengths=lengths,
        data_settings=_data_locations(fields),
        vocabulary=fields.get("vocabulary", (str, type(None))),
        ct5x_version=fields.get("ct5x_version", (str,)),
        latest_step=fields.get("latest_step", (int,)),
        best_step=fields.get("best_step", (int, type(None))),
        best_metric=best,
        finished=fields.get("finished", (bool,)),
        evaluations_without_improvement=fields.get(
            "evaluations_without_improvement", (int,), required=False) or 0,
        early_stopped=fields.get("early_stopped", (bool,), required=False) or False,
        anchor_compatible=fields.get("anchor_compatible", (bool,)) if v2 else None,
        selection=_selection(fields, schema, best),
        scored_as=fields.get("scored_as", (str, type(None))) if v2 else None,
        batch_size=fields.get("batch_size", (int,)) if v2 else None,
        eval_batch_size=fields.get("eval_batch_size", (int, type(None)), required=False),
        pack=fields.get("pack", (bool,)) if v2 else None,
        num_folds=fields.get("num_folds", (int,)) if v2 else NUM_FOLDS,
        schema_version=schema,
    )


def run_file(path: str | os.PathLike) -> epath.Path:
    """A run directory's run.json (or the run.json given), on local disk or in a bucket."""
    path = storage.path(path)
    return path if path.name == RUN_FILE and not path.is_dir() else path / RUN_FILE


def read_run_record(path: str | os.PathLike) -> RunRecord | None:
    """The record of a run directory (or of a run.json path); None when there is no run.json yet.
    Anything unusable is a `RunRecordError` naming the file (and line or field)."""
    path = run_file(path)
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RunRecordError(f"{path}: cannot read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise RunRecordError(f"{path}: not UTF-8 text") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunRecordError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    return record_from_json(record, str(path))


def record_text(record: RunRecord | Mapping[str, Any], where: str) -> str:
    """run.json's text for a record (a mapping is checked first, as a reader would)."""
    if not isinstance(record, RunRecord):
        record = record_from_json(record, where)
    return json.dumps(record.to_json(), indent=2) + "\n"
