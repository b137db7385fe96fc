"""An experiment's grid — models x blocks x folds x learning rates — expanded into runs.

An experiment gin file (gin/experiments/*.gin) binds `EXPERIMENT = @grid.experiment()`; its
`settings` list holds the grid's blocks (tasks x fractions x sites at some rates, `GridBlock`).
This module turns it into one `GridRun` per fine-tuning job, each with its `ct5x train` command and
MODEL_DIR `<runs_dir>/<experiment>/<model key>/<task>/lr<rate>`, and checks every run's task
against the registry's facts (`ct5x_tasks.catalog`). Nothing here reads a checkpoint or data file,
so a grid can be planned before either exists.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ct5x.errors import UserInputError
from ct5x.gin_utils import gin_literal
from ct5x_tasks.catalog import TaskInfo, variant_info
from ct5x_tasks.naming import NUM_FOLDS, Variant
from ct5x_tasks.study_training import study_run_macros

PROMPTS = ("t5", "flan")
_MODEL_FIELDS = {"name", "gin_file", "checkpoint", "prompt", "deid_tasks", "bindings"}
_BLOCK_FIELDS = {
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
class GridBlock:
    """One block of the grid (an entry of `grid.experiment`'s `settings`): tasks x fractions x
    sites, for some models, at some rates.

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
    """An experiment of the paper: its models, grid blocks and what every run shares."""

    name: str
    models: tuple[ModelSpec, ...]
    blocks: tuple[GridBlock, ...]
    runs_dir: str
    run_gin_files: tuple[str, ...]
    folds: tuple[int, ...] = tuple(range(NUM_FOLDS))
    bindings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # True: every run reproduces the study's code (ANCHOR_COMPATIBLE) and trains each task as
    # its script did (micro-batches, NCBI's AdamW; ct5x_tasks.study_training).
    anchor_compatible: bool = False


@dataclasses.dataclass(frozen=True)
class GridRun:
    """One fine-tuning job of the grid."""

    experiment: str
    model: str
    block: str
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
        """What the learning-rate choice averages over folds within: model, block, task,
        fraction and site."""
        return (self.model, self.block, self.base_task, self.fraction, self.site)

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


def _block(index: int, fields: Mapping, model_names: set[str]) -> GridBlock:
    where = f"grid.experiment.settings[{index}]"
    if not isinstance(fields, Mapping):
        raise UserInputError(f"{where}: expected a dict, got {type(fields).__name__}")
    _check_fields(where, fields, _BLOCK_FIELDS, {"name", "tasks", "learning_rates", "batch_size"})
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
    return GridBlock(
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
    anchor_compatible: bool = False,
) -> Experiment:
    """An `Experiment` from the plain lists and dicts an experiment gin file binds (`settings`:
    the grid's blocks, each a dict of `GridBlock`'s fields)."""
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
        blocks=tuple(_block(i, fields, names) for i, fields in enumerate(settings)),
        runs_dir=runs_dir,
        run_gin_files=tuple(run_gin_files),
        folds=tuple(folds),
        bindings=dict(bindings or {}),
        anchor_compatible=bool(anchor_compatible),
    )


def rate_label(rate: float) -> str:
    """1e-4 -> '0.0001', 5e-4 -> '0.0005': a learning rate as it appears in a folder name."""
    return f"{rate:g}" if rate >= 1e-4 else f"{rate:.0e}"


def expand(experiment: Experiment) -> list[GridRun]:
    """Every run of the grid, in the order the runner starts them (folds innermost); a run whose
    task the registry does not offer is an error naming the block."""
    runs = []
    for block in experiment.blocks:
        models = [m for m in experiment.models
                  if block.models is None or m.name in block.models]
        for model in models:
            for base in block.tasks:
                for site in block.sites:
                    for fraction in block.fractions:
                        for rate in block.learning_rates:
                            for fold in experiment.folds:
                                runs.append(_run(experiment, block, model, base, site,
                                                 fraction, rate, fold))
    seen = {}
    for run in runs:
        if run.model_dir in seen:
            raise UserInputError(
                f"experiment {experiment.name}: blocks {seen[run.model_dir]!r} and "
                f"{run.block!r} both contain run {run.model_dir}"
            )
        seen[run.model_dir] = run.block
    return runs


def _task_info(block: GridBlock, model: ModelSpec, variant: Variant) -> TaskInfo:
    """The registry's facts of a run's task, or an error naming the block and the model."""
    try:
        info = variant_info(variant)
        if variant.fold is not None and variant.fold >= info.num_folds:
            raise UserInputError(f"task {info.name!r} has {info.num_folds} folds")
        return info
    except UserInputError as error:
        raise UserInputError(
            f"grid.experiment.settings[{block.name!r}], model {model.name!r}: {error}"
        ) from None


def _run(experiment: Experiment, block: GridBlock, model: ModelSpec, base: str,
         site: str | None, fraction: float | None, rate: float, fold: int) -> GridRun:
    variant = Variant(base, flan=model.prompt == "flan", deid=base in model.deid_tasks,
                      site=site, fold=fold, fraction=fraction)
    info = _task_info(block, model, variant)
    task = info.name
    lengths = {"inputs": info.input_length, "targets": info.target_length}
    model_dir = f"{experiment.runs_dir}/{experiment.name}/{model.key}/{task}/lr{rate_label(rate)}"
    batch_size = block.batch_size_for(fraction)
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
    if experiment.anchor_compatible:
        macros.update(ANCHOR_COMPATIBLE=True, **study_run_macros(base, batch_size))
    bindings = tuple(f"{name}={gin_literal(value)}" for name, value in macros.items())
    return GridRun(
        experiment=experiment.name, model=model.name, block=block.name, task=task,
        base_task=base, fold=fold, fraction=fraction, site=site, learning_rate=rate,
        batch_size=batch_size, model_dir=model_dir,
        gin_files=(*([model.gin_file] if model.gin_file else []), *experiment.run_gin_files),
        bindings=bindings,
    )
