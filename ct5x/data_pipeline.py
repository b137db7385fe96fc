"""SeqIO task -> feature converter -> batches, with an exact data position for resume.

The training split of a fold is small enough to hold in memory once tokenized, so the batch of
step k is a pure function of (seed, k): the examples form an endless stream of epochs, epoch e in
the order `default_rng([seed, e]).permutation(n)`, and step k takes the stream's examples
k*B .. k*B+B-1. The data position saved beside a checkpoint is therefore just the step, and batch k
after a resume is batch k of an uninterrupted run. With packing, each epoch's shuffled examples go
through SeqIO's packing `EncDecFeatureConverter` and the stream runs over packed rows.

Every process reads the whole training split, so the global batch of step k does not depend on
the number of processes or the mesh; a process builds only its data shard of it (the rows
`partitioning.DataLayout` gives it), and processes of one model-parallel group build the same rows.
A run on N processes therefore sees the batches a run on one process sees.

Rows are built at the full feature lengths; `TrainingStream.execution` cuts the batches of one
execution to the smallest bucket pair (`ct5x.length_buckets`) that holds the first of them, found
from the whole global batch so that every process pads alike. With PACK_BATCHES, it packs each
global batch's examples into as few rows as hold them (`ct5x.packing`), as many as one of the
run's planned row counts, and the batches of one execution share the largest of theirs. Either
way padding changes how much is computed, never which examples make batch k.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import seqio
import tensorflow as tf

from ct5x.errors import UserInputError
from ct5x.length_buckets import BucketPair, LengthBuckets, used_lengths
from ct5x.packing import (
    Batch,
    BatchPacker,
    cheapest_row,
    execution_length,
    plan_row_counts,
    row_candidates,
)

# The packed rows' length pair is chosen on at most this many of a run's steps (`plan_packing`).
ROW_CHOICE_STEPS = 256


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Which task, split lengths and batching, and which data shard of every global batch of
    `batch_size` rows this process builds (`partitioning.DataLayout`); `buckets` None: every
    batch at the full feature lengths."""

    task_name: str
    feature_lengths: Mapping[str, int]
    batch_size: int
    seed: int = 0
    pack: bool = False
    shard_index: int = 0
    num_shards: int = 1
    buckets: LengthBuckets | None = None
    # PACK_BATCHES: each global batch's examples packed into rows (`ct5x.packing`), as many as
    # a multiple of `row_multiple` (the data-parallel devices); False: a row per example.
    pack_batches: bool = False
    row_multiple: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserInputError(f"BATCH_SIZE={self.batch_size}: must be at least 1")
        if self.batch_size % self.num_shards:
            raise UserInputError(
                f"BATCH_SIZE={self.batch_size} does not split into {self.num_shards} data shards"
            )

    @property
    def host_batch_size(self) -> int:
        return self.batch_size // self.num_shards


def _as_arrays(dataset: tf.data.Dataset) -> Batch:
    """A finite dataset of fixed-length features -> one [n, length] array per feature."""
    rows = list(dataset.as_numpy_iterator())
    if not rows:
        return {}
    return {key: np.stack([row[key] for row in rows]) for key in rows[0]}


def _token_dataset(examples: list[dict[str, np.ndarray]]) -> tf.data.Dataset:
    def generate():
        yield from examples

    signature = {
        "inputs": tf.TensorSpec([None], tf.int32),
        "targets": tf.TensorSpec([None], tf.int32),
    }
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def task_examples(task_name: str, split: str, feature_lengths: Mapping[str, int],
                  seed: int | None = None) -> list[dict]:
    """The split's tokenized, trimmed examples in source order (pretokenized text included).

    `seed` seeds the task's random preprocessors (span corruption), so a resumed run sees the
    same examples as the uninterrupted one.
    """
    task = seqio.get_mixture_or_task(task_name)
    dataset = task.get_dataset(
        dict(feature_lengths), split=split, shuffle=False, num_epochs=1,
        use_cached=False, seed=seed,
    )
    return list(dataset.as_numpy_iterator())


def _pad(sequences: list[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(sequences), length), np.int32)
    for row, sequence in enumerate(sequences):
        out[row, :len(sequence)] = sequence[:length]
    return out


def convert(examples: list[dict], feature_lengths: Mapping[str, int], pack: bool) -> Batch:
    """Model features (encoder_input_tokens, decoder_*, segment ids when packed) as arrays.

    Unpacked rows are built here exactly as SeqIO's `EncDecFeatureConverter(pack=False)` builds
    them (without its per-call tf.function tracing); packing goes through SeqIO's converter.
    """
    if not pack:
        targets = _pad([e["targets"] for e in examples], feature_lengths["targets"])
        decoder_inputs = np.zeros_like(targets)
        decoder_inputs[:, 1:] = targets[:, :-1]
        return {
            "encoder_input_tokens": _pad([e["inputs"] for e in examples],
                                         feature_lengths["inputs"]),
            "decoder_target_tokens": targets,
            "decoder_input_tokens": decoder_inputs,
            "decoder_loss_weights": (targets > 0).astype(np.int32),
        }
    tokens = [
        {key: example[key].astype(np.int32) for key in ("inputs", "targets")}
        for example in examples
    ]
    converter = seqio.EncDecFeatureConverter(pack=True)
    return _as_arrays(converter(_token_dataset(tokens), dict(feature_lengths)))


class TrainingStream:
    """This process's data shard of batch k of the endless, epoch-by-epoch shuffled stream of the
    training examples."""

    def __init__(self, settings: DataSettings, examples: list[dict] | None = None):
        self.settings = settings
        if examples is None:
            examples = task_examples(settings.task_name, "train", settings.feature_lengths,
                                     seed=settings.seed)
        if not examples:
            raise UserInputError(f"task {settings.task_name}: its train split has no examples")
        self.examples = [{"inputs": e["inputs"], "targets": e["targets"]} for e in examples]
        self.num_examples = len(self.examples)
        self._unpacked = None if settings.pack else convert(
            self.examples, settings.feature_lengths, pack=False
        )
        self.packer = self._packer() if settings.pack_batches and not settings.pack else None
        self._epoch_starts = [0]  # stream offset of each epoch's first row, grown lazily
        self._cache: dict[int, Batch] = {}
        self._buckets: dict[int, BucketPair] = {}  # the last batch's, asked for twice in a row

    def _packer(self) -> BatchPacker:
        """Rows of the smallest bucket pair that holds the split's longest input and target,
        until `plan_packing` chooses the run's pair."""
        lengths = self.settings.feature_lengths
        longest = {feature: min(lengths[feature], max(len(e[feature]) for e in self.examples))
                   for feature in ("inputs", "targets")}
        return BatchPacker(self._row_buckets().pair(longest["inputs"], longest["targets"]),
                           self.settings.batch_size, self.settings.row_multiple)

    def _row_buckets(self) -> LengthBuckets:
        return self.settings.buckets or LengthBuckets.for_lengths(None,
                                                                  self.settings.feature_lengths)

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.settings.seed, epoch]).permutation(self.num_examples)

    def epoch_rows(self, epoch: int) -> Batch:
        """The rows of one epoch, in its shuffled order (packed rows when packing)."""
        if epoch not in self._cache:
            order = self.epoch_order(epoch)
            if self._unpacked is not None:
                rows = {key: value[order] for key, value in self._unpacked.items()}
            else:
                rows = convert([self.examples[i] for i in order], self.settings.feature_lengths,
                               pack=True)
            self._cache = {e: r for e, r in self._cache.items() if e >= epoch - 1}
            self._cache[epoch] = rows
        return self._cache[epoch]

    def rows_per_epoch(self, epoch: int) -> int:
        if self._unpacked is not None:
            return self.num_examples
        return len(self.epoch_rows(epoch)["encoder_input_tokens"])

    def _epoch_start(self, epoch: int) -> int:
        while len(self._epoch_starts) <= epoch:
            last = len(self._epoch_starts) - 1
            self._epoch_starts.append(self._epoch_starts[-1] + self.rows_per_epoch(last))
        return self._epoch_starts[epoch]

    def _locate(self, offset: int) -> tuple[int, int]:
        """(epoch, row within the epoch) of a stream offset."""
        if self._unpacked is not None:
            return divmod(offset, self.num_examples)
        epoch = max(0, bisect.bisect_right(self._epoch_starts, offset) - 1)
        while self._epoch_start(epoch + 1) <= offset:
            epoch += 1
        return epoch, offset - self._epoch_start(epoch)

    def epoch_of_step(self, step: int) -> float:
        """How many epochs the stream has gone through before `step` (fractional)."""
        epoch, row = self._locate(step * self.settings.batch_size)
        return epoch + row / self.rows_per_epoch(epoch)

    def _rows(self, offset: int, size: int) -> Batch:
        """`size` consecutive rows of the stream from `offset`, across epoch boundaries."""
        pieces, wanted = [], size
        while wanted:
            epoch, row = self._locate(offset)
            rows = self.epoch_rows(epoch)
            take = min(wanted, self.rows_per_epoch(epoch) - row)
            pieces.append({key: value[row:row + take] for key, value in rows.items()})
            offset, wanted = offset + take, wanted - take
        return {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}

    def batch(self, step: int) -> Batch:
        """This process's data shard of global batch `step`, at the full feature lengths."""
        size = self.settings.host_batch_size
        return self._rows(step * self.settings.batch_size + self.settings.shard_index * size,
                          size)

    def bucket(self, step: int) -> BucketPair:
        """The smallest bucket pair that holds global batch `step` (every process finds the same:
        each reads the whole training split)."""
        buckets = self.settings.buckets
        if buckets is None:
            lengths = self.settings.feature_lengths
            return BucketPair(lengths["inputs"], lengths["targets"])
        if step not in self._buckets:
            size = self.settings.batch_size
            self._buckets = {step: buckets.fit(self._rows(step * size, size))}
        return self._buckets[step]

    def plan_packing(self, steps: int, program_cost: float,
                     row_cost: Callable[[int, int], float] | None = None) -> None:
        """Chooses the packed rows' length pair (`packing.cheapest_row`, a row of (inputs,
        targets) tokens at `row_cost`: the model's training FLOPs, or None: its positions) and
        plans their counts for a run of
        `steps` steps from every step's need (`packing.plan_row_counts`): a function of the data,
        the model and the run's length alone, so every process, and a resumed run, plans the
        same."""
        if self.packer is None:
            return
        size = self.settings.batch_size
        lengths = []
        for step in range(steps):
            batch = self._rows(step * size, size)
            lengths.append((used_lengths(batch["encoder_input_tokens"]),
                            used_lengths(batch["decoder_target_tokens"])))
        if lengths:
            # First fit over every candidate and every step of a long run would take seconds:
            # the choice sees at most ROW_CHOICE_STEPS steps, evenly spaced.
            sample = lengths[::-(-len(lengths) // ROW_CHOICE_STEPS)]
            candidates = row_candidates(self._row_buckets(), self._packer().row)
            row = cheapest_row(sample, candidates, row_cost or _positions, size,
                               self.settings.row_multiple)
            self.packer = dataclasses.replace(self.packer, row=row)
        needed = [self.packer.needed_rows(inputs, targets) for inputs, targets in lengths]
        counts = plan_row_counts(needed, program_cost) if needed else ()
        self.packer = dataclasses.replace(self.packer, counts=counts)

    def execution(self, step: int, count: int) -> list[Batch]:
        """This process's shards of batches `step`, `step` + 1, ... for one execution: at most
        `count` of them, as long as each fits the first one's bucket pair, all cut to that pair
        (packed: as many as `packing.execution_length` groups, all with the largest of their
        planned row counts)."""
        if self.packer is not None:
            return self._packed_execution(step, count)
        pair = self.bucket(step)
        steps = 1
        while steps < count and pair.holds(self.bucket(step + steps)):
            steps += 1
        return [pair.trim(self.batch(index)) for index in range(step, step + steps)]

    def packed_shapes(self, first: Batch) -> list[Batch]:
        """A batch of zeros shaped as this process's shard of each planned packed row count
        but `first`'s (a packed execution's batch): the shapes of the other training programs a
        packed run compiles."""
        if self.packer is None:
            return []
        shard_rows = {rows // self.settings.num_shards for rows in self.packer.counts}
        shard_rows.discard(len(first["encoder_input_tokens"]))
        return [{key: np.zeros((rows, *value.shape[1:]), value.dtype)
                 for key, value in first.items()} for rows in sorted(shard_rows)]

    def _packed_execution(self, step: int, count: int) -> list[Batch]:
        settings, packer = self.settings, self.packer
        size = settings.batch_size
        batches = [self._rows((step + offset) * size, size) for offset in range(count)]
        plans = [packer.plan(batch) for batch in batches]
        taken = execution_length([rows for _, rows in plans])
        rows = max(rows for _, rows in plans[:taken])
        shard = rows // settings.num_shards
        own = slice(settings.shard_index * shard, (settings.shard_index + 1) * shard)
        return [{key: value[own] for key, value in packer.pack(batch, members, rows).items()}
                for batch, (members, _) in zip(batches[:taken], plans)]


def _positions(inputs: int, targets: int) -> float:
    return float(inputs + targets)


def pad_batches(features: Batch, batch_size: int) -> list[tuple[Batch, int]]:
    """Fixed-size batches of `features` in order; the last is padded with empty rows.

    Returns (batch, number of real rows) pairs; empty rows carry no loss weight.
    """
    total = len(next(iter(features.values())))
    batches = []
    for start in range(0, total, batch_size):
        real = min(batch_size, total - start)
        batch = {}
        for key, value in features.items():
            chunk = value[start:start + real]
            if real < batch_size:
                padding = np.zeros((batch_size - real, *chunk.shape[1:]), chunk.dtype)
                chunk = np.concatenate([chunk, padding])
            batch[key] = chunk
        batches.append((batch, real))
    return batches
