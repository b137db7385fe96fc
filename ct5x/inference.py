"""`predict` and `score` over JSONL files: read, tokenize, batch by length, write atomically.

Examples are sorted by input length and batched; each batch is padded to the smallest length
bucket (`ct5x.length_buckets`) that holds its longest row, with dummy all-padding rows filling the
last one, so the file compiles one program per bucket that occurs (the model's functions are jitted
here). Padding is masked, so an example's result does not depend on its neighbours; the results
are written in the file's order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from ct5x.errors import UserInputError
from ct5x.jsonl import read_values, write_atomic
from ct5x.length_buckets import (
    DEFAULT_LENGTH_BUCKETS,
    feature_buckets,
    length_sorted_batches,
    smallest_fit,
)

log = logging.getLogger(__name__)


def read_jsonl(path: str | os.PathLike, required: Sequence[str]) -> list[dict[str, Any]]:
    """Objects of a JSONL file, each with the `required` string fields; else file:line stops."""
    records = []
    for number, record in read_values(path):
        if not isinstance(record, dict):
            raise UserInputError(f"{path}:{number}: not a JSON object")
        for field in required:
            if not isinstance(record.get(field), str):
                raise UserInputError(f"{path}:{number}: missing string field {field!r}")
        records.append(record)
    return records


def tokenize(vocabulary, texts: Sequence[str], eos_id: int) -> list[list[int]]:
    """T5 tokenization: the checkpoint's SentencePiece ids with EOS appended."""
    return [list(vocabulary.encode(text)) + [eos_id] for text in texts]


def pad_rows(rows: Sequence[Sequence[int]], length: int, count: int) -> np.ndarray:
    """[count, length] int32, right-padded with 0; rows past len(rows) are all padding."""
    out = np.zeros((count, length), np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def truncate(token_rows: list[list[int]], max_length: int | None, what: str) -> int:
    """Cuts rows longer than `max_length` (keeping EOS last); returns the longest length left."""
    if max_length is None:
        return max((len(row) for row in token_rows), default=1)
    cut = 0
    for i, row in enumerate(token_rows):
        if len(row) > max_length:
            token_rows[i] = row[: max_length - 1] + row[-1:]
            cut += 1
    if cut:
        log.warning("%d of %d %s were longer than %d tokens and were truncated",
                    cut, len(token_rows), what, max_length)
    return max_length


def round_up(length: int, multiple: int = 8) -> int:
    return -(-length // multiple) * multiple


def bucket_rows(rows: Sequence[Sequence[int]], indices: np.ndarray, lengths: Sequence[int],
                batch_size: int) -> np.ndarray:
    """[batch_size, length] of the rows at `indices` (then all-padding rows), `length` the
    smallest of the ascending `lengths` that holds the longest of them."""
    picked = [rows[i] for i in indices]
    return pad_rows(picked, smallest_fit(max(len(row) for row in picked), lengths), batch_size)


def predict_file(
    model,
    params,
    vocabulary,
    input_path: str,
    output_path: str,
    options,
    batch_size: int = 8,
    max_input_length: int | None = None,
    with_scores: bool = False,
    buckets: Sequence[int] | None = DEFAULT_LENGTH_BUCKETS,
) -> list[dict[str, Any]]:
    """Writes each input object plus "prediction" (and with `with_scores`, "score": the
    sequence score of `predict_batch_with_aux`), and returns those objects."""
    records = read_jsonl(input_path, ["inputs"])
    config = model.config
    inputs = tokenize(vocabulary, [r["inputs"] for r in records], config.eos_id)
    lengths = feature_buckets(buckets, round_up(truncate(inputs, max_input_length, "inputs")))
    predict = jax.jit(model.predict_batch_with_aux, static_argnames="options")
    outputs: list[dict[str, Any]] = [{} for _ in records]
    for indices in length_sorted_batches([len(row) for row in inputs], batch_size):
        encoder_tokens = bucket_rows(inputs, indices, lengths, batch_size)
        decoded, aux = predict(params, {"encoder_input_tokens": encoder_tokens}, options)
        decoded, scores = np.asarray(decoded), np.asarray(aux["scores"])
        for index, ids, score in zip(indices, decoded, scores):
            outputs[index] = {**records[index], "prediction": vocabulary.decode(ids.tolist())}
            if with_scores:
                outputs[index]["score"] = float(score)
    write_atomic(output_path, outputs)
    return outputs


def score_file(
    model,
    params,
    vocabulary,
    input_path: str,
    output_path: str,
    batch_size: int = 8,
    max_input_length: int | None = None,
    buckets: Sequence[int] | None = DEFAULT_LENGTH_BUCKETS,
) -> list[dict[str, Any]]:
    """Writes each input object plus "log_likelihood" of its targets (EOS included), and returns
    those objects."""
    records = read_jsonl(input_path, ["inputs", "targets"])
    config = model.config
    inputs = tokenize(vocabulary, [r["inputs"] for r in records], config.eos_id)
    targets = tokenize(vocabulary, [r["targets"] for r in records], config.eos_id)
    input_lengths = feature_buckets(
        buckets, round_up(truncate(inputs, max_input_length, "inputs")))
    target_lengths = feature_buckets(buckets, round_up(truncate(targets, None, "targets")))
    decoder_inputs = [[config.decoder_start_id] + row[:-1] for row in targets]
    score_batch = jax.jit(model.score_batch)
    outputs: list[dict[str, Any]] = [{} for _ in records]
    for indices in length_sorted_batches([len(row) for row in inputs], batch_size):
        batch = {
            key: bucket_rows(rows, indices, bucket_lengths, batch_size)
            for key, rows, bucket_lengths in (
                ("encoder_input_tokens", inputs, input_lengths),
                ("decoder_input_tokens", decoder_inputs, target_lengths),
                ("decoder_target_tokens", targets, target_lengths))
        }
        batch["decoder_loss_weights"] = (batch["decoder_target_tokens"] > 0).astype(np.float32)
        scores = np.asarray(score_batch(params, batch))
        for index, score in zip(indices, scores):
            outputs[index] = {**records[index], "log_likelihood": float(score)}
    write_atomic(output_path, outputs)
    return outputs
