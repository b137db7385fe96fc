"""Evaluation during training: teacher-forced loss and decoding of the fold's validation split.

The decoded text and the targets go through the task's own SeqIO postprocessor and metric
functions, so every registered task (the user's included) is scored as `ct5x metrics` scores it.
Every process holds the whole split and goes through it in batches of EVAL_BATCH_SIZE rows (the
last with as few multiples of the scoring rows as hold its examples), scored a training
microbatch's rows at a time and decoded whole; each process works on its data shard of a batch
(the training data layout), and every process gets the whole batch's results back, so all
compute the same metrics. The batches hold examples of about one input length (sorted once), each
padded to its length bucket, so that a batch computes about what its longest example needs and
its greedy or beam search ends as soon as its own rows have; the predictions go back to the
split's order. When the run packs its training batches, the loss is scored on the whole split
packed into rows (`ct5x.packing.pack_split`) if they compute less than the batches: the loss is a
sum over examples, whichever rows hold them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import seqio

from ct5x import data_pipeline
from ct5x.errors import UserInputError
from ct5x.jsonl import write_atomic
from ct5x.length_buckets import (
    LengthBuckets,
    batch_rows,
    length_sorted_batches,
    used_lengths,
)
from ct5x.models import DecodingOptions
from ct5x.packing import Batch, pack_split
from ct5x.trainer import Trainer


@dataclasses.dataclass(frozen=True)
class ValidationResult:
    metrics: dict[str, float]
    # One {"id", "target", "prediction"} per example, for MODEL_DIR/validation/ only.
    predictions: list[dict[str, Any]]


class Validator:
    """Holds one task's validation examples and scores parameters on them."""

    def __init__(self, task_name: str, feature_lengths: Mapping[str, int], eval_batch_size: int,
                 options: DecodingOptions, limit: int | None = None,
                 buckets: LengthBuckets | None = None, scoring_rows: int | None = None,
                 row_cost: Callable[[int, int], float] | None = None):
        self.task = seqio.get_mixture_or_task(task_name)
        # A fixed seed: random preprocessors (span corruption) give every evaluation the same set.
        examples = data_pipeline.task_examples(task_name, "validation", feature_lengths, seed=0)
        if limit is not None:
            examples = examples[:limit]
        if not examples:
            raise UserInputError(f"task {task_name}: its validation split has no examples")
        self.examples = examples
        self.options = options
        # Teacher-forced scoring holds [rows, length, vocabulary] logits: it runs this many rows
        # (a divisor of every batch's) at a time, decoding the whole batch.
        self.scoring_rows = scoring_rows or eval_batch_size
        buckets = buckets or LengthBuckets.for_lengths(None, feature_lengths)
        features = data_pipeline.convert(examples, feature_lengths, pack=False)
        self.target_tokens = int(np.sum(features["decoder_loss_weights"] > 0))
        # [(example indices, batch cut to its bucket pair, real rows)], by input length, and the
        # scoring parts (`scoring_rows` rows each): both cut once, here, not at every evaluation.
        self.batches = []
        for indices in length_sorted_batches(used_lengths(features["encoder_input_tokens"]),
                                             eval_batch_size):
            rows = {key: value[indices] for key, value in features.items()}
            size = batch_rows(len(indices), eval_batch_size, self.scoring_rows)
            (batch, real), = data_pipeline.pad_batches(rows, size)
            self.batches.append((indices, buckets.fit(batch).trim(batch), real))
        self.scored = scoring_parts(features, [batch for _, batch, _ in self.batches], buckets,
                                    self.scoring_rows, row_cost)
        self.vocabulary = self.task.output_features["targets"].vocabulary

    def _decode(self, tokens: np.ndarray) -> str:
        return self.vocabulary.decode([int(token) for token in tokens])

    def metric_names(self) -> set[str]:
        """The names `run` reports, found by scoring the targets as their own predictions."""
        postprocess = self.task.postprocess_fn
        texts = [example["targets_pretokenized"] for example in self.examples]
        targets = [postprocess(text, example=example, is_target=True)
                   for text, example in zip(texts, self.examples)]
        predictions = [postprocess(_text(text), example=example, is_target=False)
                       for text, example in zip(texts, self.examples)]
        names = {"loss"}
        for metric_fn in self.task.predict_metric_fns:
            names.update(metric_fn(targets, predictions))
        return names

    def compile_ahead(self, trainer: Trainer, params: Any) -> None:
        """Starts compiling the programs `run` calls (scoring and decoding, per batch shape) in
        the background; `params` may be abstract (`ct5x.compile_ahead.abstract`)."""
        # One placement per program: the scoring parts share a few shapes.
        shapes = {tuple((key, value.shape) for key, value in part.items()): part
                  for part in self.scored}
        for part in shapes.values():
            trainer.compile_score_ahead(params, part)
        for _, batch, _ in self.batches:
            trainer.compile_predict_ahead(params, batch, self.options)

    def run(self, trainer: Trainer, params: Any) -> ValidationResult:
        """validation loss (mean negative log-likelihood per target token) and task metrics."""
        # Padding rows carry no loss weight: they add 0.
        log_likelihood = sum(float(np.sum(trainer.score(params, part))) for part in self.scored)
        decoded = [""] * len(self.examples)
        for indices, batch, real in self.batches:
            predicted = trainer.predict(params, batch, self.options)[:real]
            for index, row in zip(indices, predicted):
                decoded[index] = self._decode(row)
        targets, predictions, records = [], [], []
        postprocess = self.task.postprocess_fn
        for example, text in zip(self.examples, decoded):
            target_text = example["targets_pretokenized"]
            target = postprocess(target_text, example=example, is_target=True)
            targets.append(target)
            predictions.append(postprocess(text, example=example, is_target=False))
            records.append({"id": _text(example.get("id", b"")), "target": _text(target_text),
                            "prediction": text})
        metrics = {"loss": -log_likelihood / max(self.target_tokens, 1)}
        for metric_fn in self.task.predict_metric_fns:
            metrics.update({name: float(value)
                            for name, value in metric_fn(targets, predictions).items()})
        return ValidationResult(metrics, records)


def scoring_parts(features: Batch, batches: list[Batch], buckets: LengthBuckets, rows: int,
                  row_cost: Callable[[int, int], float] | None = None) -> list[Batch]:
    """The parts of `rows` rows that the loss is scored on: the decoding batches' own, or, given
    `row_cost` (a run that packs), the whole split's unpacked `features` packed
    (`ct5x.packing.pack_split`) where those rows compute less. They need not: a split of mostly
    long examples fills each row with one, at the longest example's length, where its batches of
    short ones are cut to their own shorter bucket."""
    parts = [part for batch in batches for part, _ in data_pipeline.pad_batches(batch, rows)]
    if row_cost is None:
        return parts
    packed = [part for part, _ in data_pipeline.pad_batches(
        pack_split(features, buckets, rows, row_cost), rows)]
    return packed if _cost(packed, row_cost) < _cost(parts, row_cost) else parts


def _cost(parts: list[Batch], row_cost: Callable[[int, int], float]) -> float:
    return sum(len(part["encoder_input_tokens"]) * row_cost(part["encoder_input_tokens"].shape[1],
                                                            part["decoder_target_tokens"].shape[1])
               for part in parts)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def write_predictions(path, result: ValidationResult) -> None:
    """The validation predictions, inside MODEL_DIR (they may hold protected text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, result.predictions)
