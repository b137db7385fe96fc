"""`predict` and `score` over JSONL files: read, tokenize, batch at fixed shapes, write atomically.

Every batch is padded to the same [batch_size, length] shape (dummy all-padding rows fill the last
one), so the whole file compiles once (the model's functions are jitted here) and an example's
result does not depend on its neighbours.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from ct5x.errors import UserInputError
from ct5x.jsonl import read_values, write_atomic

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


def batches(count: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


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
) -> list[dict[str, Any]]:
    """Writes each input object plus "prediction" (and with `with_scores`, "score": the
    sequence score of `predict_batch_with_aux`), and returns those objects."""
    records = read_jsonl(input_path, ["inputs"])
    config = model.config
    inputs = tokenize(vocabulary, [r["inputs"] for r in records], config.eos_id)
    length = round_up(truncate(inputs, max_input_length, "inputs"))
    predict = jax.jit(model.predict_batch_with_aux, static_argnames="options")
    outputs = []
    for part in batches(len(records), batch_size):
        encoder_tokens = pad_rows(inputs[part], length, batch_size)
        decoded, aux = predict(params, {"encoder_input_tokens": encoder_tokens}, options)
        decoded, scores = np.asarray(decoded), np.asarray(aux["scores"])
        for record, ids, score in zip(records[part], decoded, scores):
            output = {**record, "prediction": vocabulary.decode(ids.tolist())}
            if with_scores:
                output["score"] = float(score)
            outputs.append(output)
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
) -> list[dict[str, Any]]:
    """Writes each input object plus "log_likelihood" of its targets (EOS included), and returns
    those objects."""
    records = read_jsonl(input_path, ["inputs", "targets"])
    config = model.config
    inputs = tokenize(vocabulary, [r["inputs"] for r in records], config.eos_id)
    targets = tokenize(vocabulary, [r["targets"] for r in records], config.eos_id)
    input_length = round_up(truncate(inputs, max_input_length, "inputs"))
    target_length = round_up(truncate(targets, None, "targets"))
    decoder_inputs = [[config.decoder_start_id] + row[:-1] for row in targets]
    score_batch = jax.jit(model.score_batch)
    outputs = []
    for part in batches(len(records), batch_size):
        batch = {
            "encoder_input_tokens": pad_rows(inputs[part], input_length, batch_size),
            "decoder_input_tokens": pad_rows(decoder_inputs[part], target_length, batch_size),
            "decoder_target_tokens": pad_rows(targets[part], target_length, batch_size),
        }
        batch["decoder_loss_weights"] = (batch["decoder_target_tokens"] > 0).astype(np.float32)
        scores = np.asarray(score_batch(params, batch))
        for record, score in zip(records[part], scores):
            outputs.append({**record, "log_likelihood": float(score)})
    write_atomic(output_path, outputs)
    return outputs
