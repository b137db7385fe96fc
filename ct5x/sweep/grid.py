"""An experiment's grid — models x settings x folds x learning rates — expanded into runs.

An experiment gin file (gin/experiments/*.gin) binds `EXPERIMENT = @grid.experiment()`; this module
turns it into one `Run` per fine-tuning job, each with its `ct5x train` command and MODEL_DIR
`<runs_dir>/<experiment>/<model key>/<task>/lr<rate>`. Nothing here reads a checkpoint or data
file, so a grid can be planned before either exists.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ct5x.errors import UserInputError
from ct5x_tasks.catalog import family_of_base
from ct5x_tasks.naming import NUM_FOLDS, Variant

PROMPTS = ("t5", "flan")
_MODEL_FIELDS = {"name", "gin_file", "checkpoint", "prompt", "deid_tasks", "bindings"}
_SETTING_FIELDS = {
    "name", "tasks", "models", "fractions", "sites", "learning_rates", "batch_size",
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One pre-trained checkpoint of the study and how its runs are prompted.

    `checkpoint` is the INITIAL_CHECKPOINT_PATH (its config.json and spiece.model give network
    and vocabulary); without one, `gin_file` (a model gin file) describes a network trained from
    scratch. `deid_tasks` are the base tasks whose de-identified variant this model is fine-tuned
    on (MIMIC-T5 was trained on text with de-identification tags). `bindings` are this model's
    own extra gin bindings.
    """

    name: str
    gin_file: str | None
    checkpoint: str | None
    prompt: str = "t5"
    deid_tasks: tuple[str, ...] = ()
    bindings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        """The model's folder name: 'SciFive+MIMIC-T5' -> 'scifive_mimic_t5'."""
        return re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One block of the grid: tasks x fractions x sites, for some models, at some rates.

    `fractions` holds None for the full training data; `sites` holds None for the default data
    directory; `batch_size` is one size, or a size per fraction.
    """

    name: str
    tasks: tuple[str, ...]
    models: tuple[str, ...] | None
    fractions: tuple[float | None, ...]
    sites: tuple[str | None, ...]
    learning_rates: tuple[float, ...]
    batch_size: int | Mapping[float | None, int]

    def batch_size_for(self, fraction: float | None) -> int:
        if isinstance(self.batch_size, Mapping):
            if fraction not in self.batch_size:
                raise UserInputError(
                    f"grid.experiment.settings[{self.name!r}].batch_size has no entry for "
                    f"fraction {fraction}"
                )
            return int(self.batch_size[fraction])
        return int(self.batch_size)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """An experiment of the paper: its models, settings and what every run shares."""

    name: str
    models: tuple[ModelSpec, ...]
    settings: tuple[Setting, ...]
    runs_dir: str
    run_gin_files: tuple[str, ...]
    folds: tuple[int, ...] = tuple(range(NUM_FOLDS))
    bindings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Run:
    """One fine-tuning job of the grid."""

    experiment: str
    model: str
    setting: str
    task: str
    base_task: str
    fold: int
    fraction: float | None
    site: str | None
    learning_rate: float
    batch_size: int
    model_dir: str
    gin_files: tuple[str, ...]
    bindings: tuple[str, ...]

    @property
    def command(self) -> str:
        """The `ct5x train` command line of this run, quoted for a POSIX shell."""
        words = ["ct5x", "train"]
        words += [f"--gin_file={name}" for name in self.gin_files]
        words += [f"--gin.{binding}" for binding in self.bindings]
        return shlex.join(words)

    @property
    def group(self) -> tuple[str, str, str, float | None, str | None]:
        """What the learning-rate choice averages over folds within: model, setting, task,
        fraction and site."""
        return (self.model, self.setting, self.base_task, self.fraction, self.site)

    def as_record(self) -> dict[str, Any]:
        """The run as `ct5x sweep plan --format jsonl` prints it."""
        record = dataclasses.asdict(self)
        record["gin_files"] = list(self.gin_files)
        record["bindings"] = list(self.bindings)
        record["command"] = self.command
        return record


def _check_fields(where: str, given: Mapping, allowed: set[str], required: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise UserInputError(f"{where}: unknown field {unknown[0]!r}; known: {sorted(allowed)}")
    missing = sorted(required - set(given))
    if missing:
        raise UserInputError(f"{where}: missing field {missing[0]!r}")


def _model_spec(index: int, fields: Mapping) -> ModelSpec:
    where = f"grid.experiment.models[{index}]"
    if not isinstance(fields, Mapping):
        raise UserInputError(f"{where}: expected a dict, got {type(fields).__name__}")
    _check_fields(where, fields, _MODEL_FIELDS, {"name"})
    prompt = fields.get("prompt", "t5")
    if prompt not in PROMPTS:
        raise UserInputError(f"{where}.prompt is {prompt!r}; expected one of {PROMPTS}")
    return ModelSpec(
        name=str(fields["name"]),
        gin_file=fields.get("gin_file"),
        checkpoint=fields.get("checkpoint"),
        prompt=prompt,
        deid_tasks=tuple(fields.get("deid_tasks", ())),
        bindings=dict(fields.get("bindings") or {}),
    )


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _setting(index: int, fields: Mapping, model_names: set[str]) -> Setting:
    where = f"grid.experiment.settings[{index}]"
    if not isinstance(fields, Mapping):
        raise UserInputError(f"{where}: expected a dict, got {type(fields).__name__}")
    _check_fields(where, fields, _SETTING_FIELDS, {"name", "tasks", "learning_rates", "batch_size"})
    models = fields.get("models")
    if models is not None:
        models = _as_tuple(models)
        for name in models:
            if name not in model_names:
                raise UserInputError(f"{where}.models: no model named {name!r} in this experiment")
    fractions = _as_tuple(fields.get("fractions", (None,)))
    for fraction in fractions:
        if fraction is not None and not 0 < fraction < 1:
            raise UserInputError(f"{where}.fractions: {fraction} is not strictly between 0 and 1")
    rates = _as_tuple(fields["learning_rates"])
    if not rates or any(not isinstance(r, (int, float)) or r <= 0 for r in rates):
        raise UserInputError(f"{where}.learning_rates: expected positive numbers, got {rates}")
    return Setting(
        name=str(fields["name"]),
        tasks=_as_tuple(fields["tasks"]),
        models=models,
        fractions=fractions,
        sites=_as_tuple(fields.get("sites", (None,))),
        learning_rates=tuple(float(r) for r in rates),
        batch_size=fields["batch_size"],
    )


def experiment(
    name: str,
    models: Sequence[Mapping],
    settings: Sequence[Mapping],
    runs_dir: str = "runs",
    run_gin_files: Sequence[str] = ("runs/finetune.gin",),
    folds: Sequence[int] = tuple(range(NUM_FOLDS)),
    bindings: Mapping[str, Any] | None = None,
) -> Experiment:
    """An `Experiment` from the plain lists and dicts an experiment gin file binds."""
    specs = tuple(_model_spec(i, fields) for i, fields in enumerate(models))
    names = {spec.name for spec in specs}
    if len(names) != len(specs):
        raise UserInputError("grid.experiment.models: two models share a name")
    keys = {spec.key for spec in specs}
    if len(keys) != len(specs):
        raise UserInputError("grid.experiment.models: two model names give the same folder name")
    for fold in folds:
        if not 0 <= fold < NUM_FOLDS:
            raise UserInputError(f"grid.experiment.folds: {fold} is not in 0-{NUM_FOLDS - 1}")
    return Experiment(
        name=name,
        models=specs,
        settings=tuple(_setting(i, fields, names) for i, fields in enumerate(settings)),
        runs_dir=runs_dir,
        run_gin_files=tuple(run_gin_files),
        folds=tuple(folds),
        bindings=dict(bindings or {}),
    )


def gin_value(value: Any) -> str:
    """A Python value as a gin literal: strings double-quoted (kind to shell quoting), None as
    None, numbers with repr."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{gin_value(k)}: {gin_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(gin_value(v) for v in value) + "]"
    return repr(value)


def rate_label(rate: float) -> str:
    """1e-4 -> '0.0001', 5e-4 -> '0.0005': a learning rate as it appears in a folder name."""
    return f"{rate:g}" if rate >= 1e-4 else f"{rate:.0e}"


def expand(experiment: Experiment) -> list[Run]:
    """Every run of the grid, in the order the runner starts them (folds innermost)."""
    runs = []
    for setting in experiment.settings:
        models = [m for m in experiment.models
                  if setting.models is None or m.name in setting.models]
        for model in models:
            for base in setting.tasks:
                for site in setting.sites:
                    for fraction in setting.fractions:
                        for rate in setting.learning_rates:
                            for fold in experiment.folds:
                                runs.append(_run(experiment, setting, model, base, site,
                                                 fraction, rate, fold))
    seen = {}
    for run in runs:
        if run.model_dir in seen:
            raise UserInputError(
                f"experiment {experiment.name}: settings {seen[run.model_dir]!r} and "
                f"{run.setting!r} both contain run {run.model_dir}"
            )
        seen[run.model_dir] = run.setting
    return runs


def _run(experiment: Experiment, setting: Setting, model: ModelSpec, base: str,
         site: str | None, fraction: float | None, rate: float, fold: int) -> Run:
    variant = Variant(base, flan=model.prompt == "flan", deid=base in model.deid_tasks,
                      site=site, fold=fold, fraction=fraction)
    task = variant.name
    family = family_of_base(base)
    lengths = {"inputs": family.input_length_for(variant.flan), "targets": family.target_length}
    model_dir = f"{experiment.runs_dir}/{experiment.name}/{model.key}/{task}/lr{rate_label(rate)}"
    batch_size = setting.batch_size_for(fraction)
    macros = {
        "MODEL_DIR": model_dir,
        "MODEL_NAME": model.name,
        "MIXTURE_OR_TASK_NAME": task,
        "INITIAL_CHECKPOINT_PATH": model.checkpoint,
        "LEARNING_RATE": rate,
        "BATCH_SIZE": batch_size,
        "TASK_FEATURE_LENGTHS": lengths,
        # Shared by every run of the sweep (and the array tasks of a cluster on shared storage).
        "COMPILATION_CACHE_DIR": f"{experiment.runs_dir}/compilation_cache",
        **experiment.bindings,
        **model.bindings,
    }
    bindings = tuple(f"{name}={gin_value(value)}" for name, value in macros.items())
    return Run(
        experiment=experiment.name, model=model.name, setting=setting.name, task=task,
        base_task=base, fold=fold, fraction=fraction, site=site, learning_rate=rate,
        batch_size=batch_size, model_dir=model_dir,
        gin_files=(*([model.gin_file] if model.gin_file else []), *experiment.run_gin_files),
        bindings=bindings,
    )
