"""Builds a run from its settings: network, initial parameters, vocabulary, mesh, data, run.json.

When INITIAL_CHECKPOINT_PATH is a Hugging Face or T5X directory, the network configuration and the
vocabulary come from it, unless a model gin file (the MODEL macro) or VOCABULARY_PATH says
otherwise; a model whose shapes do not fit the checkpoint is refused with the mismatched parameters
listed.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from ct5x import partitioning
from ct5x.checkpoints import TOKENIZER_FILES, VOCABULARY_FILE, load_checkpoint
from ct5x.checkpoints.hf import CONFIG_FILE, config_json
from ct5x.checkpoints.tree import flatten
from ct5x.config import T5Config
from ct5x.data_pipeline import DataSettings, TrainingStream
from ct5x.errors import UserInputError
from ct5x.models import DecodingOptions, EncoderDecoderModel
from ct5x.optimizers import make_optimizer, make_schedule
from ct5x.run_directory import CONFIG_GIN, RunDirectory
from ct5x.run_settings import RunSettings
from ct5x.trainer import Trainer
from ct5x.training_loop import Run
from ct5x.validation import Validator

MISMATCHES_SHOWN = 8


def network_config(settings: RunSettings, gin_model: Any, checkpoint: Any) -> T5Config:
    """The model gin file's config, else the checkpoint's; then the run's overrides."""
    if gin_model is not None:
        config = gin_model.config
    elif checkpoint is not None:
        config = checkpoint.config
    else:
        raise UserInputError(
            "gin: set INITIAL_CHECKPOINT_PATH, or include a model gin file (e.g. "
            "--gin_file=models/t5_1_1/small.gin) and set VOCABULARY_PATH"
        )
    names = {field.name for field in dataclasses.fields(config)}
    changes = {"dropout_rate": settings.dropout_rate,
               "dtype": settings.activation_dtype,
               "remat_policy": settings.remat_policy,
               "scan_layers": settings.scan_layers}
    return config.replace(**{key: value for key, value in changes.items() if key in names})


def check_shapes(shapes: Any, params: dict, source: str) -> None:
    """Refuses a checkpoint whose parameters do not fit the model's parameter `shapes`, naming
    them."""
    expected = {key: tuple(value.shape) for key, value in flatten(shapes).items()}
    found = {key: tuple(np.shape(value)) for key, value in flatten(params).items()}
    problems = [f"{key}: checkpoint {found[key]} vs model {shape}"
                for key, shape in expected.items() if key in found and found[key] != shape]
    problems += [f"{key}: missing in checkpoint" for key in expected if key not in found]
    problems += [f"{key}: not in the model" for key in found if key not in expected]
    if problems:
        more = len(problems) - MISMATCHES_SHOWN
        shown = "; ".join(problems[:MISMATCHES_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        raise UserInputError(
            f"INITIAL_CHECKPOINT_PATH={source} does not fit the model "
            f"({len(problems)} parameters): {shown}"
        )


def _install_vocabulary(directory: RunDirectory, settings: RunSettings, checkpoint: Any) -> Path:
    """Copies the vocabulary (and its tokenizer settings) into MODEL_DIR and selects it."""
    import ct5x_tasks
    from ct5x_tasks.settings import vocabulary_settings

    source = settings.vocabulary_path or (checkpoint.vocabulary_path if checkpoint else None)
    if source is None:
        raise UserInputError(
            "gin: no vocabulary: INITIAL_CHECKPOINT_PATH has no spiece.model; set VOCABULARY_PATH"
        )
    if not Path(source).is_file():
        raise UserInputError(f"VOCABULARY_PATH={source}: no such file")
    target = directory.copy_in(source, VOCABULARY_FILE)
    for name in TOKENIZER_FILES:
        if (Path(source).parent / name).is_file():
            directory.copy_in(Path(source).parent / name, name)
    _, extra_ids = vocabulary_settings()  # sentinel ids a gin file declares (pre-training)
    ct5x_tasks.set_vocabulary_path(target, extra_ids)
    return target


def _version() -> str:
    try:
        return importlib.metadata.version("ct5x")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _total_examples(local: int) -> int:
    if jax.process_count() == 1:
        return local
    return int(np.sum(multihost_utils.process_allgather(np.asarray(local))))


def _selection_metric(settings: RunSettings, info) -> str:
    """SELECTION_METRIC, else the paper task's, else that of the paper task a user's task is
    scored as."""
    from ct5x_tasks.metrics import SELECTION_METRIC
    from ct5x_tasks.registration import scored_as

    if settings.selection_metric:
        return settings.selection_metric
    base = info.variant.base
    for candidate in (base, scored_as(base)):
        if candidate in SELECTION_METRIC:
            return SELECTION_METRIC[candidate]
    raise UserInputError(f"no selection metric known for task {info.name}: set SELECTION_METRIC")


def _checkpoint_name(path: str | None) -> str:
    """The initial checkpoint's folder name (a T5X model directory's, not `checkpoint_<step>`)."""
    if not path:
        return "scratch"
    folder = Path(path).absolute()
    return folder.parent.name if folder.name.startswith("checkpoint_") else folder.name


def _run_record(settings: RunSettings, info: Any, checkpoint_path: str | None,
                lengths: dict, vocabulary: Path, train_examples: int, train_steps: int) -> dict:
    from ct5x_tasks.settings import data_settings

    variant = info.variant
    data = data_settings()
    name = settings.model_name or _checkpoint_name(checkpoint_path)
    return {
        "model": name, "task": info.name, "base_task": variant.base,
        "variant": {"flan": variant.flan, "deid": variant.deid, "site": variant.site,
                    "fold": variant.fold, "fraction": variant.fraction},
        "initial_checkpoint": checkpoint_path,
        "learning_rate": settings.optimizer.learning_rate, "seed": settings.random_seed,
        "train_examples": train_examples, "train_steps": train_steps,
        "latest_step": 0, "best_step": None, "best_metric": None, "finished": False,
        "ct5x_version": _version(), "task_feature_lengths": dict(lengths),
        "data_settings": {"data_dir": data.data_dir, "dataset_dirs": dict(data.dataset_dirs),
                          "site_dirs": dict(data.site_dirs), "folds_dir": data.folds_dir},
        "vocabulary": str(vocabulary),
    }


def _summary_writers(directory: RunDirectory) -> dict:
    if jax.process_index() != 0:
        return {}
    from clu.metric_writers import SummaryWriter

    return {name: SummaryWriter(str(directory.path / name)) for name in ("train", "validation")}


def build_run(settings: RunSettings, gin_model: Any, log_examples: bool) -> tuple[Run, Any]:
    """Everything `training_loop.train` needs, and the initial parameters (None: from scratch)."""
    from ct5x import gin_utils
    from ct5x_tasks import task_info, task_names

    name = settings.mixture_or_task_name
    try:
        info = task_info(name)  # unknown names get the nearest suggested
    except UserInputError:
        if name in task_names():
            raise UserInputError(
                f"MIXTURE_OR_TASK_NAME={name!r} is a mixture; ct5x train fine-tunes one task "
                "(ct5x sweep runs a grid of them)"
            ) from None
        raise
    lengths = dict(settings.task_feature_lengths or {"inputs": info.input_length,
                                                     "targets": info.target_length})
    checkpoint_path = settings.initial_checkpoint_path
    checkpoint = load_checkpoint(checkpoint_path) if checkpoint_path else None
    config = network_config(settings, gin_model, checkpoint)
    model = EncoderDecoderModel(config, settings.loss)
    mesh = partitioning.make_mesh(settings.num_partitions)
    rules = partitioning.standard_logical_axis_rules(settings.activation_partitioning_dims,
                                                     settings.parameter_partitioning_dims)
    trainer = Trainer(model, make_optimizer(settings.optimizer), mesh, rules,
                      settings.random_seed, settings.num_microbatches,
                      make_schedule(settings.optimizer),
                      settings.steps_per_execution_for(jax.default_backend()))
    if checkpoint is not None:  # the trainer has traced the parameter shapes once already
        check_shapes(trainer.params_shapes, checkpoint.params, checkpoint_path)
    directory = RunDirectory(settings.model_dir)
    state_bytes = sum(leaf.size * leaf.dtype.itemsize
                      for leaf in jax.tree.leaves(trainer.state_shapes))
    directory.prepare(state_bytes)
    vocabulary = _install_vocabulary(directory, settings, checkpoint)
    directory.write_text(CONFIG_FILE, config_json(config).decode())
    stream = TrainingStream(DataSettings(
        info.name, lengths, settings.batch_size, settings.random_seed, settings.pack,
        jax.process_index(), jax.process_count()))
    train_examples = _total_examples(stream.num_examples)
    train_steps = settings.steps_for(train_examples)
    print(f"{info.name}: {train_examples} training examples, batch {settings.batch_size}"
          + ("" if settings.train_steps else f", {settings.epochs:g} epochs")
          + f" -> {train_steps} steps", flush=True)
    # The task's decoding length (capped under the anchor switch), never past the target length.
    options = DecodingOptions(num_beams=info.num_beams,
                              max_decode_length=min(lengths["targets"], info.decode_length))
    validator = Validator(info.name, lengths, settings.batch_size, options,
                          settings.eval_examples)
    record = _run_record(settings, info, checkpoint_path, lengths, vocabulary, train_examples,
                         train_steps)
    previous = directory.read_run() or {}
    for key in ("latest_step", "best_step", "best_metric", "evaluations_without_improvement"):
        if key in previous:
            record[key] = previous[key]
    directory.write_text(CONFIG_GIN, gin_utils.operative_config())
    run = Run(
        trainer=trainer, stream=stream, validator=validator, directory=directory, record=record,
        train_steps=train_steps, eval_period=settings.eval_period_for(train_examples),
        checkpoint_period=settings.checkpoint_period, log_period=settings.log_period,
        keep_checkpoints=settings.keep_checkpoints,
        selection_metric=_selection_metric(settings, info),
        early_stopping_patience=settings.early_stopping_patience, log_examples=log_examples,
        summary_writers=_summary_writers(directory),
    )
    initial = None if checkpoint is None else checkpoint.params
    return run, initial
