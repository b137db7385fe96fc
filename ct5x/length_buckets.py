"""Length buckets: the few lengths a batch is padded to, so that it computes about what its longest
example needs, and each bucket's program compiles once.

A batch of a feature of at most `max_length` tokens is padded to the smallest bucket that holds its
longest row; the feature's own length is always the last bucket. Padding is masked everywhere (the
attention, the loss, the scores), so the bucket changes how much is computed, not the result.
Evaluation sorts its examples by length first (`length_sorted_batches`), so that a batch holds
examples of about one length, and puts the results back in the examples' order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from ct5x.errors import UserInputError

# Steps of about 1.5x: a batch is padded to at most 1.5 times its longest row. On an NCBI-disease
# fold (benchmarks/padding.py) that is 1.2x the positions of padding each batch to its own longest
# row, against 1.4-1.5x with powers of two, for 7-10 bucket pairs (each compiles its programs once)
# instead of 4-7.
DEFAULT_LENGTH_BUCKETS = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


def check_buckets(buckets: Sequence[int] | None, name: str = "LENGTH_BUCKETS") -> None:
    """One line naming the setting when `buckets` is not None or ascending positive lengths."""
    if buckets is None:
        return
    values = list(buckets) if isinstance(buckets, (list, tuple)) else None
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                             for v in values) or values != sorted(set(values)):
        raise UserInputError(f"gin: {name}={buckets!r} must be None or ascending positive "
                             "lengths, e.g. (64, 128, 256, 512)")


def feature_buckets(buckets: Sequence[int] | None, max_length: int) -> tuple[int, ...]:
    """The lengths a feature of at most `max_length` tokens is padded to, ascending: the buckets
    below `max_length`, then `max_length` itself (only it when `buckets` is None)."""
    return (*(b for b in (buckets or ()) if b < max_length), max_length)


def smallest_fit(length: int, lengths: Sequence[int]) -> int:
    """The smallest of the ascending `lengths` that holds `length` tokens (the last if none)."""
    for bucket in lengths:
        if length <= bucket:
            return bucket
    return lengths[-1]


def used_lengths(tokens: np.ndarray) -> np.ndarray:
    """Per row of [rows, length] ids, the position after its last non-padding token (0 if none)."""
    present = np.asarray(tokens) != 0
    last = tokens.shape[-1] - np.argmax(present[:, ::-1], axis=-1)
    return np.where(present.any(axis=-1), last, 0)


@dataclasses.dataclass(frozen=True)
class BucketPair:
    """The padded lengths of one batch: encoder features to `inputs`, decoder features to
    `targets`."""

    inputs: int
    targets: int

    def holds(self, other: BucketPair) -> bool:
        return other.inputs <= self.inputs and other.targets <= self.targets

    def trim(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A batch padded to longer lengths (padding at the end of each row) cut to these."""
        return {key: value[:, :self.inputs] if key.startswith("encoder_")
                else value[:, :self.targets] for key, value in batch.items()}


@dataclasses.dataclass(frozen=True)
class LengthBuckets:
    """The buckets of a run's inputs and targets."""

    inputs: tuple[int, ...]
    targets: tuple[int, ...]

    @classmethod
    def for_lengths(cls, buckets: Sequence[int] | None, feature_lengths: Mapping[str, int],
                    fixed_targets: bool = False) -> LengthBuckets:
        """LENGTH_BUCKETS for these feature lengths; `fixed_targets` keeps the targets at their
        full length (a loss that counts every target position, padding included)."""
        check_buckets(buckets)
        return cls(feature_buckets(buckets, feature_lengths["inputs"]),
                   feature_buckets(None if fixed_targets else buckets,
                                   feature_lengths["targets"]))

    @property
    def full(self) -> BucketPair:
        return BucketPair(self.inputs[-1], self.targets[-1])

    def fit(self, batch: Mapping[str, np.ndarray]) -> BucketPair:
        """The smallest pair that holds every row of a batch padded to the full lengths."""
        longest_input = int(np.max(used_lengths(batch["encoder_input_tokens"]), initial=0))
        longest_target = int(np.max(used_lengths(batch["decoder_target_tokens"]), initial=0))
        return self.pair(longest_input, longest_target)

    def pair(self, input_length: int, target_length: int) -> BucketPair:
        """The smallest pair that holds an input and a target of these lengths."""
        return BucketPair(smallest_fit(input_length, self.inputs),
                          smallest_fit(target_length, self.targets))


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """The examples' indices in batches of at most `batch_size`, by ascending length (stable), so
    that each batch pads to about its own length; results go back to the examples by them."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def batch_rows(examples: int, batch_size: int, multiple: int) -> int:
    """Rows of a batch holding `examples` (or packed rows): the fewest multiples of `multiple` (the
    data-parallel devices, or the scoring rows) that hold them, at most `batch_size` (which
    `multiple` divides). A split's last, shorter batch gets no more padding rows than that: each
    costs a real row's decoding."""
    return min(batch_size, -(-examples // multiple) * multiple)
