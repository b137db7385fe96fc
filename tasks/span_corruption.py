"""T5's span-corruption pre-training objective as a SeqIO task over any notes folder or JSONL.

How T5, SciFive and MIMIC-T5 were pre-trained, and what a hospital with its own notes does next.
seqio 0.0.20 ships no span-corruption preprocessor (it lived in `t5.data`, which is not
installable here), so this module implements it, following T5's definition:

- each document is tokenized and cut into chunks of `tokens_length` tokens, the longest length
  whose corrupted input still fits the task's `inputs` length with EOS (T5's
  `random_spans_helper`: 568 tokens for inputs of 512, targets of 114);
- in each chunk round(length * noise_density) tokens are noise, in round(noise / mean span
  length) spans; noise and kept spans alternate, kept first, their lengths a random
  segmentation seeded per example;
- inputs: each noise span replaced by one sentinel; targets: each kept span replaced by one
  sentinel, followed by the noise it hides. Sentinels count down from the top of the vocabulary
  (vocab_size - 1, vocab_size - 2, ...), T5's `<extra_id_0>`, `<extra_id_1>`, ...: a T5
  spiece.model has 32,000 pieces and 100 extra ids (bind `ct5x_tasks.vocabulary_settings.extra_ids
  = 100`, as gin/runs/pretrain.gin does).

Data: `<dir>/*.txt` (one document per file) or `<dir>/*.jsonl` (one document per line, in the
field `text_field`), where `<dir>` is `data_settings.dataset_dirs[name]` or DATA_DIR/<name>. Every
`validation_every`-th document (in file-name and line order) is held out for validation.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Iterator, Mapping, Sequence

import seqio
import tensorflow as tf

from ct5x.errors import UserInputError
from ct5x_tasks import squad, task_settings
from ct5x_tasks.catalog import Selection, TaskInfo
from ct5x_tasks.naming import Variant
from ct5x_tasks.vocabulary import output_features

DEFAULT_TASK = "span_corruption"
# T5's pre-training lengths: 568-token chunks corrupt into 512 input and 114 target tokens.
INPUTS_LENGTH, TARGETS_LENGTH = 512, 114


@dataclasses.dataclass(frozen=True)
class SpanCorruptionSettings:
    """The objective's parameters (T5's defaults) and where the text is."""

    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    text_field: str = "text"
    validation_every: int = 20


def corrupted_lengths(tokens_length: int, noise_density: float,
                      mean_noise_span_length: float) -> tuple[int, int]:
    """(inputs, targets) lengths, each with EOS, of a corrupted chunk of `tokens_length` tokens."""
    num_noise = noise_token_count(tokens_length, noise_density)
    num_spans = noise_span_count(num_noise, mean_noise_span_length)
    return tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1


def noise_token_count(length: int, noise_density: float) -> int:
    """round(length * density), at least 1 and leaving at least one kept token."""
    return min(max(round(length * noise_density), 1), max(length - 1, 1))


def noise_span_count(num_noise: int, mean_noise_span_length: float) -> int:
    return max(round(num_noise / mean_noise_span_length), 1)


def chunk_length(inputs_length: int, noise_density: float, mean_noise_span_length: float) -> int:
    """The longest chunk whose corrupted inputs (with EOS) fit in `inputs_length`."""
    length = inputs_length
    while corrupted_lengths(length + 1, noise_density, mean_noise_span_length)[0] <= inputs_length:
        length += 1
    return length


def _segment_lengths(num_items: tf.Tensor, num_segments: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Lengths of a random split of `num_items` items into `num_segments` non-empty runs."""
    # Choose num_segments - 1 of the num_items - 1 gaps between items as segment boundaries.
    is_boundary = tf.cast(tf.range(num_items - 1) < num_segments - 1, tf.int32)
    is_boundary = tf.random.experimental.stateless_shuffle(is_boundary, seed=seed)
    segment_of_item = tf.cumsum(tf.concat([[0], is_boundary], axis=0))
    return tf.math.unsorted_segment_sum(tf.ones_like(segment_of_item), segment_of_item,
                                        num_segments)


def noise_mask(length: tf.Tensor, noise_density: float, mean_noise_span_length: float,
               seeds: tf.Tensor) -> tf.Tensor:
    """A [length] bool mask: alternating kept and noise spans, the first span kept."""
    padded = tf.maximum(length, 2)  # a one-token chunk still gets one noise token, then is cut
    lengths = tf.cast(padded, tf.float32)
    num_noise = tf.cast(tf.round(lengths * noise_density), tf.int32)
    num_noise = tf.clip_by_value(num_noise, 1, padded - 1)
    num_spans = tf.maximum(
        tf.cast(tf.round(tf.cast(num_noise, tf.float32) / mean_noise_span_length), tf.int32), 1)
    num_spans = tf.minimum(num_spans, tf.minimum(num_noise, padded - num_noise))
    noise_lengths = _segment_lengths(num_noise, num_spans, seeds[0])
    kept_lengths = _segment_lengths(padded - num_noise, num_spans, seeds[1])
    # [2 * spans]: kept, noise, kept, noise, ...
    span_lengths = tf.reshape(tf.stack([kept_lengths, noise_lengths], axis=1), [-1])
    span_of_token = tf.repeat(tf.range(2 * num_spans), span_lengths)
    return tf.equal(span_of_token % 2, 1)[:length]


def replace_spans_with_sentinels(tokens: tf.Tensor, mask: tf.Tensor, vocab_size: int) -> tf.Tensor:
    """Each run of masked tokens becomes one sentinel: vocab_size - 1, vocab_size - 2, ..."""
    previous = tf.concat([[False], mask[:-1]], axis=0)
    first = tf.logical_and(mask, tf.logical_not(previous))
    later = tf.logical_and(mask, previous)
    sentinels = vocab_size - tf.cumsum(tf.cast(first, tokens.dtype))
    return tf.boolean_mask(tf.where(first, sentinels, tokens), tf.logical_not(later))


@seqio.map_over_dataset(num_seeds=2)
def corrupt_spans(example: Mapping[str, tf.Tensor], seeds, *, vocab_size: int,
                  noise_density: float, mean_noise_span_length: float) -> dict[str, tf.Tensor]:
    """{"targets": tokens} -> {"inputs": kept text with sentinels, "targets": the noise}."""
    tokens = example["targets"]
    mask = noise_mask(tf.size(tokens), noise_density, mean_noise_span_length, seeds)
    return {
        **{key: value for key, value in example.items() if key not in ("inputs", "targets")},
        "inputs": replace_spans_with_sentinels(tokens, mask, vocab_size),
        "targets": replace_spans_with_sentinels(tokens, tf.logical_not(mask), vocab_size),
    }


def span_corruption(dataset: tf.data.Dataset, sequence_length: Mapping[str, int],
                    output_features: Mapping[str, seqio.Feature],
                    config: SpanCorruptionSettings) -> tf.data.Dataset:
    """Tokenized documents -> chunks -> corrupted examples (EOS added later by seqio)."""
    tokens_length = chunk_length(sequence_length["inputs"], config.noise_density,
                                 config.mean_noise_span_length)

    def chunks(example):
        tokens = example["targets"]
        starts = tf.range(0, tf.size(tokens), tokens_length)
        return tf.data.Dataset.from_tensor_slices(starts).map(
            lambda start: {"targets": tokens[start:start + tokens_length]})

    dataset = dataset.filter(lambda example: tf.size(example["targets"]) > 0)
    dataset = dataset.flat_map(chunks)
    vocabulary = output_features["targets"].vocabulary
    dataset = corrupt_spans(
        dataset, vocab_size=vocabulary.vocab_size, noise_density=config.noise_density,
        mean_noise_span_length=config.mean_noise_span_length,
    )
    # Text of both sides, as the trainer's validation and `ct5x evaluate` compare text.
    return dataset.map(lambda example: {
        **example,
        "inputs_pretokenized": vocabulary.decode_tf(example["inputs"]),
        "targets_pretokenized": vocabulary.decode_tf(example["targets"]),
    })


def token_f1(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Mean bag-of-words F1 of each predicted noise text against the true one (a smooth score
    of how much hidden text the model restores; validation loss is reported beside it)."""
    scores = [squad.bag_f1(target.split(), prediction.split())
              for target, prediction in zip(targets, predictions)]
    return {"token_f1": sum(scores) / max(len(scores), 1)}


def _postprocess(output_or_target, example=None, is_target=False) -> str:
    del example, is_target
    if isinstance(output_or_target, bytes):
        output_or_target = output_or_target.decode("utf-8")
    return str(output_or_target).strip()


def documents(folder: pathlib.Path, text_field: str) -> Iterator[str]:
    """Every document of a folder of .txt files (one each) or .jsonl files (one per line)."""
    texts = sorted(folder.glob("*.txt"))
    jsonl = sorted(folder.glob("*.jsonl"))
    if not texts and not jsonl:
        raise UserInputError(f"{folder}: no .txt or .jsonl files for span corruption")
    for path in texts:
        yield path.read_text(encoding="utf-8")
    for path in jsonl:
        with path.open(encoding="utf-8") as stream:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)[text_field]
                except (json.JSONDecodeError, TypeError, KeyError):
                    raise UserInputError(
                        f"{path}:{number}: not a JSON object with a string field {text_field!r}"
                    ) from None
                if not isinstance(value, str):
                    raise UserInputError(f"{path}:{number}: field {text_field!r} is not a string")
                yield value


def document_source(name: str, config: SpanCorruptionSettings) -> seqio.FunctionDataSource:
    """Documents of the task's folder, split train/validation by position."""

    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        del shuffle_files, seed  # seqio shuffles examples later
        folder = task_settings.dataset_dir(name, name)
        held_out = split == "validation"

        def generate():
            for index, text in enumerate(documents(folder, config.text_field)):
                if (index % config.validation_every == 0) == held_out:
                    yield {"text": text}

        return tf.data.Dataset.from_generator(
            generate, output_signature={"text": tf.TensorSpec([], tf.string)})

    return seqio.FunctionDataSource(dataset_fn, splits=("train", "validation"),
                                    caching_permitted=False)


def register_span_corruption(name: str = DEFAULT_TASK,
                             config: SpanCorruptionSettings = SpanCorruptionSettings()) -> None:
    """Register (or replace) the span-corruption task `name` over DATA_DIR/<name>."""
    from ct5x_tasks.registration import register_task_info  # registers the rest first

    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name,
        source=document_source(name, config),
        output_features=output_features(),
        preprocessors=[
            functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
            seqio.preprocessors.tokenize,
            functools.partial(span_corruption, config=config),
            seqio.preprocessors.append_eos_after_trim,
        ],
        postprocess_fn=_postprocess,
        metric_fns=[token_f1],
    )
    # The trainer asks the registry for a task's lengths and decoding settings.
    register_task_info(TaskInfo(
        name, Variant(name), input_length=INPUTS_LENGTH, target_length=TARGETS_LENGTH, num_beams=1,
        selection=Selection("token_f1")))
