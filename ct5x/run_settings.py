"""Everything one fine-tuning run is told, as one frozen dataclass bound in gin/runs/finetune.gin.

Field names are T5X's run macros in lower case (MODEL_DIR -> model_dir); the checks name the macro.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from ct5x.errors import UserInputError
from ct5x.length_buckets import DEFAULT_LENGTH_BUCKETS, check_buckets
from ct5x.models import LossOptions
from ct5x.optimizers import OptimizerSettings

REQUIRED_MACROS = ("MODEL_DIR", "MIXTURE_OR_TASK_NAME")
# Steps per execution on the CPU backend when STEPS_PER_EXECUTION is None (measured on a 2-core
# machine: 8 steps per execution took a t5_1_1-small step 8-12% faster than one).
CPU_STEPS_PER_EXECUTION = 8
# EVAL_BATCH_SIZE when None: this many training microbatches' rows per decoding batch. A greedy
# step reads every decoder weight once for all its rows, so rows are cheap: t5_1_1-small decoded
# 512 tokens 1.25x faster per example at 32 rows than at 16, and 1.55x at 64, on a 2-core CPU
# (benchmarks/decode_rows.py). Scoring still runs one microbatch's rows at a time
# (`scoring_rows`), so memory grows only by the decoding caches (about 25 MB a row at
# t5_1_1-small, 512 + 512 tokens, float32).
EVAL_BATCH_MICROBATCHES = 4


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """A run's data, schedule, evaluation, partitioning and initial checkpoint."""

    model_dir: str | None = None
    mixture_or_task_name: str | None = None
    mixture_or_task_module: str = "ct5x_tasks"
    # None: the task's own lengths (the paper's).
    task_feature_lengths: Mapping[str, int] | None = None
    train_steps: int | None = None
    epochs: float | None = 30
    batch_size: int = 64
    initial_checkpoint_path: str | None = None
    vocabulary_path: str | None = None
    random_seed: int = 42
    # None: save at every evaluation only.
    checkpoint_period: int | None = None
    # None: evaluate once per epoch.
    eval_period: int | None = None
    log_period: int = 10
    num_partitions: int = 1
    num_microbatches: int = 1
    # None: CPU_STEPS_PER_EXECUTION on the CPU backend, 1 on accelerators.
    steps_per_execution: int | None = None
    model_name: str | None = None
    pack: bool = False
    # Each step's examples packed into as few rows as hold them (ct5x.packing), where the loss
    # allows it (ct5x.run_setup); False: a row per example.
    pack_batches: bool = True
    # A packed row count gets its own compiled training program only where that saves more than
    # this many rows built over the run (ct5x.packing.plan_row_counts).
    packing_program_cost: float = 64
    # Each batch is padded to the smallest of these lengths (and the feature length) that holds
    # its longest input and target (ct5x.length_buckets); None: always the feature lengths.
    length_buckets: tuple[int, ...] | None = DEFAULT_LENGTH_BUCKETS
    # Newest checkpoints kept besides the best one.
    keep_checkpoints: int = 1
    # Stop after this many evaluations without a better selection metric (None: never).
    early_stopping_patience: int | None = None
    # None: the task's selection metric (ct5x_tasks.metrics.SELECTION_METRIC).
    selection_metric: str | None = None
    # Validation examples decoded at each evaluation (None: all).
    eval_examples: int | None = None
    # Rows per validation decoding batch, scored a microbatch's rows at a time (None:
    # EVAL_BATCH_MICROBATCHES x BATCH_SIZE / NUM_MICROBATCHES).
    eval_batch_size: int | None = None
    # Applied to the network whether it comes from the checkpoint or a model gin file.
    dropout_rate: float = 0.1
    activation_dtype: str = "float32"
    remat_policy: str = "none"
    scan_layers: bool = False
    use_hardware_rng: bool = False
    activation_partitioning_dims: int = 1
    parameter_partitioning_dims: int = 1
    # Multi-host: join the other processes by jax.distributed.initialize(), which finds them in the
    # environment (SLURM, TPU VM); `ct5x train --multiprocess_gpu ...` names them instead.
    initialize_distributed: bool = False
    # JAX's persistent compilation cache (ct5x.compilation_cache); None: off.
    compilation_cache_dir: str | None = None
    # Programs needed after the first training step compiled on a background thread meanwhile
    # (ct5x.compile_ahead); False: each when first called.
    compile_ahead: bool = True
    # After training, the best checkpoint's test split decoded and scored in this process, as
    # `ct5x evaluate --runs MODEL_DIR` would (one process start-up, its imports and exit fewer).
    evaluate_after_training: bool = False
    optimizer: OptimizerSettings = dataclasses.field(default_factory=OptimizerSettings)
    # The paper's objective: plain cross-entropy (no z-loss), the mean over real target tokens.
    loss: LossOptions = dataclasses.field(
        default_factory=lambda: LossOptions(z_loss=0.0,
                                            loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
    )

    def check(self) -> None:
        """One line naming the macro for the first setting that cannot work."""
        for name in REQUIRED_MACROS:
            if getattr(self, name.lower()) in (None, ""):
                raise UserInputError(
                    f"gin: required macro {name} is not set (e.g. --gin.{name}=\"'value'\")"
                )
        positive = {
            "BATCH_SIZE": self.batch_size, "LOG_PERIOD": self.log_period,
            "NUM_PARTITIONS": self.num_partitions, "NUM_MICROBATCHES": self.num_microbatches,
            "TRAIN_STEPS": self.train_steps, "EPOCHS": self.epochs,
            "EVAL_PERIOD": self.eval_period, "CHECKPOINT_PERIOD": self.checkpoint_period,
            "KEEP_CHECKPOINTS": self.keep_checkpoints,
            "STEPS_PER_EXECUTION": self.steps_per_execution,
            "EVAL_BATCH_SIZE": self.eval_batch_size,
        }
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise UserInputError(f"gin: {name}={value} must be positive")
        rows = self.scoring_rows()
        if self.evaluation_batch_size() % rows:
            raise UserInputError(
                f"gin: EVAL_BATCH_SIZE={self.eval_batch_size} must be at most, or a multiple of, "
                f"BATCH_SIZE / NUM_MICROBATCHES = {rows} (validation scores that many rows at a "
                "time)")
        if not self.packing_program_cost >= 0:
            raise UserInputError(
                f"gin: PACKING_PROGRAM_COST={self.packing_program_cost} must be zero or more")
        check_buckets(self.length_buckets)
        if self.train_steps is None and self.epochs is None:
            raise UserInputError("gin: set TRAIN_STEPS or EPOCHS")
        if self.task_feature_lengths is not None and (
            set(self.task_feature_lengths) != {"inputs", "targets"}
        ):
            raise UserInputError(
                "gin: TASK_FEATURE_LENGTHS must be {'inputs': n, 'targets': m}, got "
                f"{dict(self.task_feature_lengths)}"
            )

    def steps_for(self, train_examples: int) -> int:
        """TRAIN_STEPS, or ceil(EPOCHS x training examples / BATCH_SIZE)."""
        if self.train_steps is not None:
            return int(self.train_steps)
        return max(1, math.ceil(self.epochs * train_examples / self.batch_size))

    def steps_per_execution_for(self, backend: str) -> int:
        """STEPS_PER_EXECUTION, or CPU_STEPS_PER_EXECUTION on "cpu" (XLA:CPU maps fresh scratch
        memory at every execution: a tenth of a small model's step) and 1 elsewhere."""
        if self.steps_per_execution is not None:
            return int(self.steps_per_execution)
        return CPU_STEPS_PER_EXECUTION if backend == "cpu" else 1

    def evaluation_batch_size(self) -> int:
        """EVAL_BATCH_SIZE, or EVAL_BATCH_MICROBATCHES training microbatches' rows."""
        if self.eval_batch_size is not None:
            return int(self.eval_batch_size)
        return EVAL_BATCH_MICROBATCHES * self.scoring_rows()

    def scoring_rows(self) -> int:
        """Rows per teacher-forced scoring call: one training microbatch's (what fitted in memory
        with the backward pass), or fewer when EVAL_BATCH_SIZE is smaller."""
        rows = max(1, self.batch_size // self.num_microbatches)
        if self.eval_batch_size is not None:
            return min(rows, int(self.eval_batch_size))
        return rows

    def eval_period_for(self, train_examples: int) -> int:
        """EVAL_PERIOD, or the steps of one epoch."""
        if self.eval_period is not None:
            return int(self.eval_period)
        return max(1, math.ceil(train_examples / self.batch_size))
