"""How many token positions a training step of an NCBI-disease fold computes: fixed shapes,
LENGTH_BUCKETS, PACK_BATCHES (each step's examples packed into few rows) and the study's
collator (each batch padded to its own longest row).

It builds fold 0's training split of `ncbi_disease_fold0` with the same SentencePiece vocabulary
as benchmarks/fold.py (trained here on the fold's text), goes through the run's steps (2 epochs
of batch 16, the run's shuffled order) and counts, per step, the positions of inputs + targets
each way, as the training loop builds them (`TrainingStream.execution`): fixed; bucketed, with
the bucket pairs that occur (one compilation each) and the executions of up to
STEPS_PER_EXECUTION = 8 steps that share one pair; packed, with the run's planned row counts
(one compilation each, PACKING_PROGRAM_COST's default) and its executions. Real tokens (EOS
included) are the floor. It computes no step: the table is the padding each pipeline pays, per
feature length, and the training step's matmul FLOPs at t5_1_1-small's shape that it implies
(`T5Config.train_step_flops`, the step benchmark's count: packed steps, the collator's, and each
example alone at its own length), whose ratio bounds how much faster than the collator's steps
packed steps of the same speed per operation can be.

    python benchmarks/padding.py [--lengths 512/512 128/128] [--epochs 2]
        [--buckets 32,64,96,128 ...]
        [--data ../shared/data/NCBI_disease]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import pathlib
import shutil
import sys
import tempfile

import numpy as np
from fold import SHARED_NCBI, TASK, train_vocabulary

from ct5x.config import T5Config
from ct5x.length_buckets import DEFAULT_LENGTH_BUCKETS, LengthBuckets, used_lengths

SMALL = T5Config()  # t5_1_1-small's shape: the config's defaults


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", nargs="+", default=["512/512", "128/128"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--buckets", nargs="*", default=[],
                        help="other bucket sets to compare, e.g. 32,64,96,128")
    parser.add_argument("--epochs", type=int, default=2, help="the study's 2 by default")
    parser.add_argument("--steps-per-execution", type=int, default=8)
    parser.add_argument("--vocabulary-size", type=int, default=8000)
    parser.add_argument("--data", default=str(SHARED_NCBI), help="the NCBI_disease folder")
    return parser.parse_args()


def loop_executions(stream, steps: int, steps_per_execution: int) -> list[list[dict]]:
    """The executions the training loop asks `stream` for over `steps` steps (its own grouping:
    bucket pairs, or packed rows)."""
    step, found = 0, []
    while step < steps:
        found.append(stream.execution(step, min(steps_per_execution, steps - step)))
        step += len(found[-1])
    return found


def _positions(execution: list[dict]) -> int:
    return sum(batch["encoder_input_tokens"].size + batch["decoder_target_tokens"].size
               for batch in execution)


def _flops(execution: list[dict]) -> float:
    return sum(SMALL.train_step_flops(*batch["encoder_input_tokens"].shape,
                                      batch["decoder_target_tokens"].shape[1])
               for batch in execution)


def run_positions(lengths: dict, bucket_sets: dict, batch_size: int, epochs: int,
                  steps_per_execution: int) -> list[dict]:
    """Per bucket set: positions per step (fixed, bucketed, packed, the collator's) as the
    training loop builds them, real tokens, the bucket pairs that occur and their executions,
    and, packed, the planned row counts and executions, over `epochs` epochs of the fold's
    training stream."""
    from ct5x.data_pipeline import DataSettings, TrainingStream
    from ct5x.run_settings import RunSettings

    stream = TrainingStream(DataSettings(TASK, lengths, batch_size, 42))
    steps = epochs * stream.num_examples // batch_size
    used = [[used_lengths(batch[key]) for key in ("encoder_input_tokens", "decoder_target_tokens")]
            for batch in (stream.batch(step) for step in range(steps))]
    collator = np.mean([batch_size * (int(i.max()) + int(t.max())) for i, t in used])
    real = np.mean([int(i.sum() + t.sum()) for i, t in used])
    collator_flops = np.mean([SMALL.train_step_flops(batch_size, i.max(), t.max())
                              for i, t in used])
    alone_flops = np.mean([sum(map(functools.partial(SMALL.train_step_flops, 1), i, t))
                           for i, t in used])
    rows = []
    for name, values in bucket_sets.items():
        buckets = LengthBuckets.for_lengths(values, lengths)
        bucketed = loop_executions(
            TrainingStream(dataclasses.replace(stream.settings, buckets=buckets), stream.examples),
            steps, steps_per_execution)
        packed_stream = TrainingStream(dataclasses.replace(stream.settings, buckets=buckets,
                                                           pack_batches=True), stream.examples)
        packed_stream.plan_packing(steps, RunSettings().packing_program_cost,
                                   functools.partial(SMALL.train_step_flops, 1))
        packed = loop_executions(packed_stream, steps, steps_per_execution)
        row = packed_stream.packer.row
        rows.append({"buckets": name, "steps": steps,
                     "fixed": batch_size * (lengths["inputs"] + lengths["targets"]),
                     "bucketed": sum(map(_positions, bucketed)) / steps,
                     "collator": float(collator),
                     "packed": sum(map(_positions, packed)) / steps, "real": float(real),
                     "packed_gflops": sum(map(_flops, packed)) / steps / 1e9,
                     "collator_gflops": float(collator_flops) / 1e9,
                     "alone_gflops": float(alone_flops) / 1e9,
                     "row": f"{row.inputs}+{row.targets}",
                     "row_counts": ",".join(map(str, packed_stream.packer.counts)),
                     "packed_executions": len(packed),
                     "pairs": len({execution[0]["encoder_input_tokens"].shape[1:]
                                   + execution[0]["decoder_target_tokens"].shape[1:]
                                   for execution in bucketed}),
                     "executions": len(bucketed)})
    return rows


def main() -> None:
    args = parse_args()
    from ct5x.startup import import_frameworks_quietly

    import_frameworks_quietly()
    work = pathlib.Path(tempfile.mkdtemp(prefix="ct5x_padding_"))
    ncbi = work / "data" / "NCBI_disease"
    ncbi.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        shutil.copyfile(pathlib.Path(args.data) / f"{split}_blurb.tsv", ncbi / f"{split}_blurb.tsv")
    from ct5x_tasks import write_folds

    write_folds("ncbi_disease", str(ncbi), str(ncbi / "folds" / "ncbi_disease"))
    vocabulary = train_vocabulary(ncbi, work / "vocabulary", args.vocabulary_size)
    os.environ.update(CT5X_DATA_DIR=str(work / "data"), CT5X_VOCABULARY=vocabulary)
    import ct5x_tasks.registration  # noqa: F401  (registers the tasks with SeqIO)

    print(f"| lengths | LENGTH_BUCKETS | steps ({args.epochs} epochs) | fixed | bucketed | packed "
          "| collator (study) | real tokens | bucketed / collator | packed / collator "
          f"| bucket pairs | their executions of <= {args.steps_per_execution} | packed rows "
          "| planned row counts | packed executions | GFLOP/step: packed, collator, "
          "each example alone | collator / packed GFLOP |")
    print("|---" * 17 + "|")
    bucket_sets = {"default": DEFAULT_LENGTH_BUCKETS, **{
        text: tuple(int(v) for v in text.split(",")) for text in args.buckets}}
    for text in args.lengths:
        inputs, _, targets = text.partition("/")
        lengths = {"inputs": int(inputs), "targets": int(targets or inputs)}
        for found in run_positions(lengths, bucket_sets, args.batch_size, args.epochs,
                                   args.steps_per_execution):
            print(f"| {text} | {found['buckets']} | {found['steps']} | {found['fixed']} "
                  f"| {found['bucketed']:.0f} | {found['packed']:.0f} | {found['collator']:.0f} "
                  f"| {found['real']:.0f} | {found['bucketed'] / found['collator']:.2f} "
                  f"| {found['packed'] / found['collator']:.2f} | {found['pairs']} "
                  f"| {found['executions']} | {found['row']} | {found['row_counts']} "
                  f"| {found['packed_executions']} | {found['packed_gflops']:.0f}, "
                  f"{found['collator_gflops']:.0f}, {found['alone_gflops']:.0f} "
                  f"| {found['collator_gflops'] / found['packed_gflops']:.2f} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
