"""Builds a run from its settings: network, initial parameters, vocabulary, mesh, data, run.json.

When INITIAL_CHECKPOINT_PATH is a Hugging Face or T5X directory, the network configuration and the
vocabulary come from it, unless a model gin file (the MODEL macro) or VOCABULARY_PATH says
otherwise; a model whose shapes do not fit the checkpoint is refused with the mismatched parameters
listed.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
from typing import Any

import jax
import numpy as np

from ct5x import multihost, partitioning, storage
from ct5x.checkpoints import TOKENIZER_FILES, VOCABULARY_FILE, load_checkpoint
from ct5x.checkpoints import train_state as saved
from ct5x.checkpoints.hf import CONFIG_FILE, config_json
from ct5x.checkpoints.tree import flatten
from ct5x.config import T5Config
from ct5x.data_pipeline import DataSettings, TrainingStream
from ct5x.errors import UserInputError
from ct5x.length_buckets import LengthBuckets
from ct5x.models import DecodingOptions, EncoderDecoderModel, LossOptions
from ct5x.optimizers import make_optimizer, make_schedule
from ct5x.run_directory import RunDirectory
from ct5x.run_record import (
    CONFIG_GIN,
    DATA_SETTING_KEYS,
    SCHEMA_VERSION,
    DataLocations,
    RunRecord,
)
from ct5x.run_settings import RunSettings
from ct5x.trainer import Trainer, training_data_layout
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


def _install_vocabulary(directory: RunDirectory, settings: RunSettings, checkpoint: Any) -> Any:
    """Copies the vocabulary (and its tokenizer settings) into MODEL_DIR and selects it."""
    import ct5x_tasks

    source = settings.vocabulary_path or (checkpoint.vocabulary_path if checkpoint else None)
    if source is None:
        raise UserInputError(
            "gin: no vocabulary: INITIAL_CHECKPOINT_PATH has no spiece.model; set VOCABULARY_PATH"
        )
    if not storage.path(source).is_file():
        raise UserInputError(f"VOCABULARY_PATH={source}: no such file")
    target = directory.copy_in(source, VOCABULARY_FILE)
    for name in TOKENIZER_FILES:
        if (storage.path(source).parent / name).is_file():
            directory.copy_in(storage.path(source).parent / name, name)
    extra_ids = ct5x_tasks.current_settings().extra_ids  # a gin file's sentinels (pre-training)
    ct5x_tasks.set_vocabulary_path(target, extra_ids)
    return target


def _version() -> str:
    try:
        return importlib.metadata.version("ct5x")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _selection(settings: RunSettings, info):
    """SELECTION_METRIC with its direction, else the task's (`TaskInfo.selection`)."""
    return info.selection_for(settings.selection_metric)


def _checkpoint_name(path: str | None) -> str:
    """The initial checkpoint's folder name (a T5X model directory's, not `checkpoint_<step>`)."""
    if not path:
        return "scratch"
    folder = storage.absolute(path)
    return folder.parent.name if folder.name.startswith("checkpoint_") else folder.name


def _run_record(settings: RunSettings, info: Any, checkpoint_path: str | None,
                lengths: dict, vocabulary: Any, train_examples: int, train_steps: int,
                eval_batch_size: int) -> dict:
    """run.json's fixed fields (`ct5x.run_record.RunRecord`); the loop fills in the progress."""
    import ct5x_tasks

    task_settings = ct5x_tasks.current_settings()
    record = RunRecord(
        model=settings.model_name or _checkpoint_name(checkpoint_path), task=info.name,
        variant=info.variant, initial_checkpoint=checkpoint_path,
        learning_rate=settings.optimizer.learning_rate, seed=settings.random_seed,
        train_examples=train_examples, train_steps=train_steps,
        task_feature_lengths=dict(lengths),
        data_settings=DataLocations(**{key: getattr(task_settings, key)
                                       for key in DATA_SETTING_KEYS}),
        vocabulary=str(vocabulary), ct5x_version=_version(),
        latest_step=0, best_step=None, best_metric=None, finished=False,
        anchor_compatible=task_settings.anchor_compatible, selection=_selection(settings, info),
        scored_as=info.scored_as, batch_size=settings.batch_size,
        eval_batch_size=eval_batch_size, pack=settings.pack,
        num_folds=info.num_folds, schema_version=SCHEMA_VERSION,
    )
    return record.to_json()


def _loss_options(settings: RunSettings, info: Any, lengths: dict, anchor: bool) -> LossOptions:
    """The run's loss; under the anchor switch also the study's feature lengths for the task
    (`lengths` is updated: CLIP's T5 inputs, FLAN Stigma's padded labels) and, where its labels
    were padded with the pad id, a loss over that padding."""
    from ct5x_tasks.study_training import study_features

    if not anchor:
        return settings.loss
    study = study_features(info.variant)
    changes = {key: value for key, value in (("inputs", study.input_length),
                                             ("targets", study.target_length)) if value}
    if changes:
        print(f"{info.name} (anchor-compatible): feature lengths {changes} as the study "
              "tokenised them" + (", the loss over the label padding"
                                  if study.loss_on_padding else ""), flush=True)
        lengths.update(changes)
    return dataclasses.replace(settings.loss, loss_on_padding=study.loss_on_padding)


def _length_buckets(settings: RunSettings, lengths: dict, loss: LossOptions
                    ) -> LengthBuckets | None:
    """LENGTH_BUCKETS for the run's feature lengths; the targets stay at their full length when
    the loss counts padded target positions (a loss over the label padding, or a divisor of
    batch x target length), which a shorter bucket would change."""
    if settings.length_buckets is None:
        return None
    return LengthBuckets.for_lengths(settings.length_buckets, lengths,
                                     fixed_targets=loss.counts_padding)


def _packs_batches(settings: RunSettings, loss: LossOptions) -> bool:
    """PACK_BATCHES where packing leaves the step as it is: not with microbatches (split by
    rows) or a loss that counts padded positions or sequences (the stream itself never packs
    SeqIO's packed rows again)."""
    return (settings.pack_batches and settings.num_microbatches == 1 and not loss.counts_padding
            and loss.loss_normalizing_factor != "AVERAGE_PER_SEQUENCE")


def _state_bytes(model: EncoderDecoderModel, settings: RunSettings) -> int:
    """Bytes of one saved training state: parameters and optimizer state (its layout does not
    depend on the schedule's length)."""
    params = model.params_shapes
    state = jax.eval_shape(make_optimizer(settings.optimizer, total_steps=1).init, params)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves((params, state)))


def _summary_writers(directory: RunDirectory) -> dict:
    return directory.summary_writers() if multihost.is_primary() else {}


def build_run(settings: RunSettings, gin_model: Any, log_examples: bool) -> tuple[Run, Any]:
    """Everything `training_loop.train` needs, and the initial parameters (None: from scratch)."""
    import ct5x_tasks
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
    anchor = ct5x_tasks.current_settings().anchor_compatible
    loss = _loss_options(settings, info, lengths, anchor)
    checkpoint_path = settings.initial_checkpoint_path
    checkpoint = load_checkpoint(checkpoint_path) if checkpoint_path else None
    config = network_config(settings, gin_model, checkpoint)
    model = EncoderDecoderModel(config, loss)
    if checkpoint is not None:
        check_shapes(model.params_shapes, checkpoint.params, checkpoint_path)
    partitioner = partitioning.Partitioner(
        settings.num_partitions,
        partitioning.standard_logical_axis_rules(settings.activation_partitioning_dims,
                                                 settings.parameter_partitioning_dims))
    layout = training_data_layout(partitioner, settings.batch_size, settings.num_microbatches)
    eval_batch_size = settings.evaluation_batch_size()
    partitioner.get_data_layout(eval_batch_size, "EVAL_BATCH_SIZE")  # fails now, not at step 1k
    directory = RunDirectory(settings.model_dir)
    directory.prepare(_state_bytes(model, settings))
    vocabulary = _install_vocabulary(directory, settings, checkpoint)
    directory.write_text(CONFIG_FILE, config_json(config).decode())
    multihost.barrier("ct5x:vocabulary")  # every process reads the tasks with this vocabulary
    buckets = _length_buckets(settings, lengths, loss)
    stream = TrainingStream(DataSettings(
        info.name, lengths, settings.batch_size, settings.random_seed, settings.pack,
        layout.shard_id, layout.num_shards, buckets, _packs_batches(settings, loss),
        partitioner.mesh.shape["data"]))
    train_examples = stream.num_examples
    train_steps = settings.steps_for(train_examples)
    multihost.say(f"{info.name}: {train_examples} training examples, batch {settings.batch_size}"
                  + ("" if settings.train_steps else f", {settings.epochs:g} epochs")
                  + f" -> {train_steps} steps")
    row_cost = functools.partial(config.train_step_flops, 1)  # FLOPs of one row of this pair
    stream.plan_packing(train_steps, settings.packing_program_cost, row_cost)
    if stream.packer is not None:
        row = stream.packer.row
        multihost.say(f"packed rows of {row.inputs} + {row.targets} tokens, "
                      f"{' or '.join(map(str, stream.packer.counts))} per step "
                      f"(PACKING_PROGRAM_COST={settings.packing_program_cost:g})")
    # Under the anchor switch, microbatches are averaged as transformers' Trainer averages them.
    trainer = Trainer(model, make_optimizer(settings.optimizer, train_steps), partitioner,
                      settings.random_seed, settings.num_microbatches,
                      make_schedule(settings.optimizer, train_steps),
                      settings.steps_per_execution_for(jax.default_backend()),
                      microbatch_means=anchor,
                      packed_examples=stream.packer and stream.packer.batch_size)
    # The task's decoding length (capped under the anchor switch), never past the target length;
    # beams scored as transformers 4.22 scored them under the anchor switch.
    options = DecodingOptions(num_beams=info.num_beams,
                              max_decode_length=info.decode_length_for(lengths["targets"]),
                              length_penalty_style="hf_4.22" if anchor else "hf")
    validator = Validator(info.name, lengths, eval_batch_size, options, settings.eval_examples,
                          buckets, settings.scoring_rows(),
                          row_cost if stream.packer is not None else None)
    record = _run_record(settings, info, checkpoint_path, lengths, vocabulary, train_examples,
                         train_steps, eval_batch_size)
    previous = directory.read_run()
    if previous and saved.complete_steps(directory.path):
        # Resuming: run.json's fixed fields stay as first written (the checkpoint's data
        # position refuses changed data settings), its progress fields as last written; the
        # number of steps is this run's, which may train further.
        record = {**record, **previous, "train_steps": train_steps}
    directory.write_text(CONFIG_GIN, gin_utils.operative_config())
    multihost.barrier("ct5x:operative_config")
    run = Run(
        trainer=trainer, stream=stream, validator=validator, directory=directory, record=record,
        train_steps=train_steps, eval_period=settings.eval_period_for(train_examples),
        checkpoint_period=settings.checkpoint_period, log_period=settings.log_period,
        keep_checkpoints=settings.keep_checkpoints,
        selection=_selection(settings, info),
        early_stopping_patience=settings.early_stopping_patience, log_examples=log_examples,
        compile_ahead=settings.compile_ahead,
        summary_writers=_summary_writers(directory),
    )
    initial = None if checkpoint is None else checkpoint.params
    return run, initial
