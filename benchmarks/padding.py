"""How many token positions a training step of an NCBI-disease fold computes: fixed shapes,
LENGTH_BUCKETS, PACK_BATCHES (each step's examples packed into few rows) and the study's
collator (each batch padded to its own longest row).

It builds fold 0's training split of `ncbi_disease_fold0` with the same SentencePiece vocabulary
as benchmarks/fold.py (trained here on the fold's text), goes through one epoch of ct5x's
training stream (batch 16, the run's shuffled order) and counts, per step, the positions of
inputs + targets each way, the bucket pairs that occur (one compilation each), the executions
of up to STEPS_PER_EXECUTION = 8 steps that share one pair, and, packed, the positions per step and
the numbers of rows that occur (one compilation each). Real tokens (EOS included) are the
floor. It computes no step: the table is the padding each pipeline pays, per feature length.

    python benchmarks/padding.py [--lengths 512/512 128/128] [--buckets 32,64,96,128 ...]
        [--data ../shared/data/NCBI_disease]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import sys
import tempfile

import numpy as np
from fold import SHARED_NCBI, TASK, train_vocabulary

from ct5x.length_buckets import DEFAULT_LENGTH_BUCKETS, LengthBuckets, used_lengths


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", nargs="+", default=["512/512", "128/128"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--buckets", nargs="*", default=[],
                        help="other bucket sets to compare, e.g. 32,64,96,128")
    parser.add_argument("--steps-per-execution", type=int, default=8)
    parser.add_argument("--vocabulary-size", type=int, default=8000)
    parser.add_argument("--data", default=str(SHARED_NCBI), help="the NCBI_disease folder")
    return parser.parse_args()


def executions(pairs: list, steps_per_execution: int) -> int:
    """How many executions the training loop makes of these steps' bucket pairs: each takes up to
    `steps_per_execution` batches while they fit its first one's pair."""
    step, count = 0, 0
    while step < len(pairs):
        first, taken = pairs[step], 1
        while (taken < steps_per_execution and step + taken < len(pairs)
               and first.holds(pairs[step + taken])):
            taken += 1
        step, count = step + taken, count + 1
    return count


def epoch_positions(lengths: dict, bucket_sets: dict, batch_size: int,
                    steps_per_execution: int) -> list[dict]:
    """Per bucket set: positions per step (fixed, bucketed, packed, the collator's), real
    tokens, the pairs and packed row counts that occur and the executions, over epoch 0 of the
    fold's training stream."""
    from ct5x.data_pipeline import DataSettings, TrainingStream

    stream = TrainingStream(DataSettings(TASK, lengths, batch_size, 42))
    batches = [stream.batch(step) for step in range(stream.num_examples // batch_size)]
    used = [[used_lengths(batch[key]) for key in ("encoder_input_tokens",
                                                  "decoder_target_tokens")] for batch in batches]
    collator = np.mean([batch_size * (int(i.max()) + int(t.max())) for i, t in used])
    real = np.mean([int(i.sum() + t.sum()) for i, t in used])
    rows = []
    for name, values in bucket_sets.items():
        buckets = LengthBuckets.for_lengths(values, lengths)
        pairs = [buckets.fit(batch) for batch in batches]
        bucketed = np.mean([batch_size * (p.inputs + p.targets) for p in pairs])
        # The training run's own packer: rows of the bucket pair of the split's longest example.
        packer = TrainingStream(dataclasses.replace(stream.settings, buckets=buckets,
                                                    pack_batches=True), stream.examples).packer
        row_counts = [packer.plan(batch)[1] for batch in batches]
        packed = np.mean(row_counts) * (packer.row.inputs + packer.row.targets)
        rows.append({"buckets": name, "steps": len(batches),
                     "fixed": batch_size * (lengths["inputs"] + lengths["targets"]),
                     "bucketed": float(bucketed), "collator": float(collator),
                     "packed": float(packed), "row_counts": len(set(row_counts)),
                     "real": float(real), "pairs": len(set(pairs)),
                     "executions": executions(pairs, steps_per_execution)})
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

    print("| lengths | LENGTH_BUCKETS | steps/epoch | fixed | bucketed | packed | collator (study) "
          "| real tokens | bucketed / collator | packed / collator | bucket pairs "
          f"| executions of <= {args.steps_per_execution} | packed row counts |")
    print("|---" * 13 + "|")
    bucket_sets = {"default": DEFAULT_LENGTH_BUCKETS, **{
        text: tuple(int(v) for v in text.split(",")) for text in args.buckets}}
    for text in args.lengths:
        inputs, _, targets = text.partition("/")
        lengths = {"inputs": int(inputs), "targets": int(targets or inputs)}
        for found in epoch_positions(lengths, bucket_sets, args.batch_size,
                                     args.steps_per_execution):
            print(f"| {text} | {found['buckets']} | {found['steps']} | {found['fixed']} "
                  f"| {found['bucketed']:.0f} | {found['packed']:.0f} | {found['collator']:.0f} "
                  f"| {found['real']:.0f} | {found['bucketed'] / found['collator']:.2f} "
                  f"| {found['packed'] / found['collator']:.2f} | {found['pairs']} "
                  f"| {found['executions']} | {found['row_counts']} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
