"""Packing one step's examples into as few rows as hold them (PACK_BATCHES).

The paper trains on BATCH_SIZE examples per step, each in its own row padded to the longest one.
On NCBI-disease at 128/128 a step of 16 examples then holds 1,400 real tokens in 2,900 positions
(the study's collator) or 3,400 (ct5x's length buckets). Packed, the same 16 examples fill 6-8 rows
of 128 + 128 positions: about 1,800.

The step stays the paper's: the same examples, the same loss (a sum over their target tokens
divided by their count) and the same dropout masks. Each position carries its example's segment
id, which is the example's index in the batch + 1 (unique across rows, so that dropout can give
every example the masks its own row gets unpacked: `ct5x.layers.PackedRows`), and its position
in the example; attention never crosses examples, and T5's relative position bias depends only
on distances inside an example. What changes is the order of floating-point sums.

Rows are the run's length pair, one that holds the split's longest input and target, so one row
holds any example. Before the first step a run chooses it (`cheapest_row`) from the bucket
lengths up to the longer feature length, by the model's training FLOPs over the rows each step
needs: a side much shorter than the other fills its rows first (NCBI-disease at 512/64: rows of
192 + 64 tokens need 11.6 a step, of 192 + 192 4.4, at two thirds of the work), so its rows may
outgrow its feature length. Each row count compiles its own training program, so a run then plans
its counts (`plan_row_counts`, from every step's need: the stream is a function of the step),
trading rows built against programs compiled (PACKING_PROGRAM_COST), and groups steps into
executions that build few rows (`execution_length`). The validation loss, a sum over a whole
split, is scored on the split packed the same way (`pack_split`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ct5x.length_buckets import BucketPair, LengthBuckets, batch_rows, used_lengths

# A batch on the host: feature name -> array ([rows, length] tokens, or [steps, rows, length]).
Batch = dict[str, np.ndarray]
# What one more execution costs on XLA:CPU, in rows built: each execution maps and first-touches
# fresh scratch memory. Measured on t5_1_1-small, 7 rows of 128 + 128, 2 cores: 8 steps took
# 2.31-2.55 s each in one execution and 2.71-2.91 s each in eight, about one row's time per
# execution (accelerators run one step per execution, where this never matters).
EXECUTION_COST_ROWS = 1.0


def first_fit(input_lengths: np.ndarray, target_lengths: np.ndarray, row: BucketPair
              ) -> list[list[int]]:
    """Example indices per row: longest first (inputs + targets), each into the first row with
    room for both its input and its target. Every example fits a row of `row`."""
    rows: list[list[int]] = []
    used: list[list[int]] = []
    for index in np.argsort(-(input_lengths + target_lengths), kind="stable"):
        need_inputs, need_targets = int(input_lengths[index]), int(target_lengths[index])
        for members, room in zip(rows, used):
            if room[0] + need_inputs <= row.inputs and room[1] + need_targets <= row.targets:
                members.append(int(index))
                room[0], room[1] = room[0] + need_inputs, room[1] + need_targets
                break
        else:
            rows.append([int(index)])
            used.append([need_inputs, need_targets])
    return rows


def cheapest_row(step_lengths: Sequence[tuple[np.ndarray, np.ndarray]],
                 candidates: Sequence[BucketPair], row_cost: Callable[[int, int], float],
                 batch_size: int, multiple: int = 1) -> BucketPair:
    """The candidate pair whose rows cost least over these steps ((input lengths, target
    lengths) of each step's examples): each step in the rows first fit needs, rounded as the run
    rounds them, at `row_cost(inputs, targets)` a row. The first of equally cheap candidates
    wins."""
    def cost(row: BucketPair) -> float:
        packer = BatchPacker(row, batch_size, multiple)
        rows = sum(packer.needed_rows(inputs, targets) for inputs, targets in step_lengths)
        return rows * row_cost(row.inputs, row.targets)

    return min(candidates, key=cost)


def row_candidates(buckets: LengthBuckets, smallest: BucketPair) -> list[BucketPair]:
    """The pairs `cheapest_row` chooses from for a split whose longest input and target
    `smallest` holds: either feature's bucket lengths from the smallest's, up to the longer
    feature length."""
    values = sorted(set(buckets.inputs) | set(buckets.targets))
    return [BucketPair(inputs, targets) for inputs in values if inputs >= smallest.inputs
            for targets in values if targets >= smallest.targets]


def pack_split(features: Mapping[str, np.ndarray], buckets: LengthBuckets, multiple: int,
               row_cost: Callable[[int, int], float]) -> Batch:
    """A whole split's unpacked rows packed into the cheapest rows (`cheapest_row`, the split as
    one step), as many as a multiple of `multiple`: for teacher-forced scoring, where what
    counts is the sum over the examples, so rows need not keep one step's examples apart. The
    rows stay within the feature lengths, so that a call of `multiple` rows holds no larger
    logits than the unpacked rows it was sized for."""
    inputs = used_lengths(features["encoder_input_tokens"])
    targets = used_lengths(features["decoder_target_tokens"])
    rows = -(-len(inputs) // multiple) * multiple
    smallest = buckets.pair(int(np.max(inputs)), int(np.max(targets)))
    candidates = [pair for pair in row_candidates(buckets, smallest) if buckets.full.holds(pair)]
    row = cheapest_row([(inputs, targets)], candidates, row_cost, rows, multiple)
    packer = BatchPacker(row, rows, multiple)
    return packer.pack(features, *packer.plan(features))


def plan_row_counts(needed: Sequence[int], program_cost: float) -> tuple[int, ...]:
    """The row counts a run compiles, given the rows each of its steps needs: every step takes the
    smallest planned count that holds it, and the plan is the one that builds the fewest rows over
    the run when each count also costs `program_cost` rows (its compilation). The largest need is
    always planned; ties go to fewer counts.

    Exact by dynamic programming over the distinct needs in order: `best[i]` is the cheapest plan
    for the steps needing one of the first i values, with the i-th value planned.
    """
    values, steps = zip(*sorted(Counter(needed).items()))
    covered = [0, *itertools.accumulate(steps)]  # steps needing one of the first i values
    best, previous = [0.0] + [math.inf] * len(values), [0] * (len(values) + 1)
    for i in range(1, len(values) + 1):
        for j in range(i):  # the values j..i-1 take count values[i - 1]
            cost = best[j] + program_cost + (covered[i] - covered[j]) * values[i - 1]
            if cost < best[i]:
                best[i], previous[i] = cost, j
    counts, i = [], len(values)
    while i:
        counts.append(values[i - 1])
        i = previous[i]
    return tuple(sorted(counts))


def execution_length(counts: Sequence[int], overhead: float = EXECUTION_COST_ROWS) -> int:
    """How many of the next steps, given their planned row counts, the first execution takes: of
    the splits of these steps into executions, each built at its largest count, the one that
    builds the fewest rows when each execution also costs `overhead` rows."""
    best, first = [0.0] * (len(counts) + 1), [0] * (len(counts) + 1)
    for start in range(len(counts) - 1, -1, -1):
        best[start], rows = math.inf, 0
        for length in range(1, len(counts) - start + 1):
            rows = max(rows, counts[start + length - 1])
            cost = rows * length + overhead + best[start + length]
            if cost < best[start]:
                best[start], first[start] = cost, length
    return first[0]


def _place(side: str, features: Mapping[str, np.ndarray], used: np.ndarray,
           members: list[list[int]], rows: int, length: int) -> Batch:
    """One side's features (`encoder_*` or `decoder_*`) laid out by `members`: each example's
    first `used` positions one after the other, with its segment id (example index + 1) and its
    positions. An unpacked row already holds the example's own decoder inputs (its targets
    shifted right from 0) and loss weights, so they are carried over as they are."""
    out = {key: np.zeros((rows, length), value.dtype) for key, value in features.items()}
    out[f"{side}segment_ids"] = np.zeros((rows, length), np.int32)
    out[f"{side}positions"] = np.zeros((rows, length), np.int32)
    for row, indices in enumerate(members):
        start = 0
        for index in indices:
            where = slice(start, start + int(used[index]))
            for key, value in features.items():
                out[key][row, where] = value[index, :where.stop - start]
            out[f"{side}segment_ids"][row, where] = index + 1
            out[f"{side}positions"][row, where] = np.arange(where.stop - start)
            start = where.stop
    return out


@dataclasses.dataclass(frozen=True)
class BatchPacker:
    """Packs global batches of `batch_size` unpacked rows into rows of `row`."""

    row: BucketPair
    batch_size: int
    multiple: int = 1
    # The run's planned row counts (`plan_row_counts`); empty: every batch gets the rows it needs.
    counts: tuple[int, ...] = ()

    def needed_rows(self, input_lengths: np.ndarray, target_lengths: np.ndarray) -> int:
        """The rows first fit needs for a batch of examples of these lengths, rounded up to the
        device multiple."""
        members = first_fit(input_lengths, target_lengths, self.row)
        return batch_rows(len(members), self.batch_size, self.multiple)

    def plan(self, batch: Mapping[str, np.ndarray]) -> tuple[list[list[int]], int]:
        """(example indices per row, the number of rows to build: the smallest planned count that
        holds them) for an unpacked batch."""
        members = self._members(batch)
        needed = batch_rows(len(members), self.batch_size, self.multiple)
        return members, next((count for count in self.counts if count >= needed), needed)

    def _members(self, batch: Mapping[str, np.ndarray]) -> list[list[int]]:
        return first_fit(used_lengths(batch["encoder_input_tokens"]),
                         used_lengths(batch["decoder_target_tokens"]), self.row)

    def pack(self, batch: Mapping[str, np.ndarray], members: list[list[int]], rows: int
             ) -> Batch:
        """The batch's examples laid out by `members` in `rows` rows, with SeqIO's packed
        features."""
        packed: Batch = {}
        for side, tokens, length in (("encoder_", "encoder_input_tokens", self.row.inputs),
                                     ("decoder_", "decoder_target_tokens", self.row.targets)):
            features = {key: value for key, value in batch.items() if key.startswith(side)}
            packed.update(_place(side, features, used_lengths(batch[tokens]), members, rows,
                                 length))
        return packed
