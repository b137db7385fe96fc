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

Rows are the run's length pair (the smallest bucket pair that holds the split's longest input and
target, so one row holds any example), and their number is rounded up to a few counts, each a
multiple of the data-parallel devices: each count compiles its program once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from ct5x.length_buckets import BucketPair, used_lengths

Batch = dict[str, np.ndarray]
# Row counts, times the data-parallel devices: steps of about 1.5x, as the length buckets.
ROW_COUNT_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


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


def row_count(needed: int, batch_size: int, multiple: int) -> int:
    """The smallest allowed number of rows >= `needed`: `multiple` x ROW_COUNT_STEPS, at most
    `batch_size` (which the unpacked batch has, and which `multiple` divides)."""
    for step in ROW_COUNT_STEPS:
        if needed <= step * multiple < batch_size:
            return step * multiple
    return batch_size


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

    def plan(self, batch: Mapping[str, np.ndarray]) -> tuple[list[list[int]], int]:
        """(example indices per row, the number of rows to build) for an unpacked batch."""
        members = first_fit(used_lengths(batch["encoder_input_tokens"]),
                            used_lengths(batch["decoder_target_tokens"]), self.row)
        return members, row_count(len(members), self.batch_size, self.multiple)

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
