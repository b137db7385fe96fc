"""The tasks' vocabulary: the model's own spiece.model, chosen after the tasks are registered.

Tasks are registered long before a run knows its checkpoint, so every task holds the one
`VOCABULARY` object below, which finds its SentencePiece model when used: the `vocabulary_path`
(and `extra_ids`) of the task settings in force (`ct5x_tasks.settings(...)`, the trainer's
`set_vocabulary_path`, the gin binding `ct5x_tasks.vocabulary_settings.path`, or the environment
variable CT5X_VOCABULARY).
"""

from collections.abc import Sequence

import seqio
import tensorflow as tf

from ct5x import storage
from ct5x.errors import UserInputError
from ct5x_tasks import task_settings


def vocabulary_source() -> tuple[str | None, int]:
    """The configured (path, extra_ids), or (None, 0) when nothing is set."""
    path, extra_ids = task_settings.vocabulary()
    return (path, extra_ids) if path else (None, 0)


class ModelVocabulary(seqio.Vocabulary):
    """A seqio vocabulary that delegates to the SentencePiece model configured when it is used."""

    def __init__(self):
        super().__init__(extra_ids=0)
        self._loaded: dict[tuple[str, int], seqio.SentencePieceVocabulary] = {}

    @tf.autograph.experimental.do_not_convert
    def resolve(self) -> seqio.SentencePieceVocabulary:
        """The SentencePiece vocabulary for the current setting; raises if none is set."""
        path, extra_ids = vocabulary_source()
        if path is None:
            raise UserInputError(
                "no vocabulary: use ct5x_tasks.settings(vocabulary_path=...) or "
                "ct5x_tasks.set_vocabulary_path(spiece.model), bind "
                "ct5x_tasks.vocabulary_settings.path in gin, or set CT5X_VOCABULARY"
            )
        if not storage.path(path).is_file():
            raise UserInputError(f"{path}: vocabulary file not found")
        key = (path, extra_ids)
        if key not in self._loaded:
            # SeqIO reads through TensorFlow's file system: a bucket's file from a local copy.
            self._loaded[key] = seqio.SentencePieceVocabulary(storage.local_copy(path),
                                                              extra_ids=extra_ids)
        return self._loaded[key]

    def is_configured(self) -> bool:
        """True when a vocabulary path is set (the file may still be missing)."""
        return vocabulary_source()[0] is not None

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text (no EOS), encoded in one SentencePiece call."""
        return [len(ids) for ids in self.resolve().tokenizer.encode(list(texts))]

    @property
    def extra_ids(self) -> int:
        return self.resolve().extra_ids

    @property
    def eos_id(self) -> int | None:
        return self.resolve().eos_id

    @property
    def unk_id(self) -> int | None:
        return self.resolve().unk_id

    @property
    def pad_id(self) -> int:
        return self.resolve().pad_id

    @property
    def bos_id(self) -> int | None:
        return self.resolve().bos_id

    @property
    def vocab_size(self) -> int:
        # SentencePieceVocabulary's pieces already include its extra ids; do not add them twice.
        return self.resolve().vocab_size

    @property
    def _base_vocab_size(self) -> int:
        return self.resolve()._base_vocab_size

    def _encode(self, s: str) -> Sequence[int]:
        return self.resolve()._encode(s)

    def _decode(self, ids):
        return self.resolve()._decode(ids)

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        return self.resolve()._encode_tf(s)

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        return self.resolve()._decode_tf(ids)

    def decode(self, ids):
        return self.resolve().decode(ids)

    def decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        return self.resolve().decode_tf(ids)


VOCABULARY = ModelVocabulary()


def output_features() -> dict[str, seqio.Feature]:
    """The encoder-decoder features every task emits; both end with EOS."""
    return {
        "inputs": seqio.Feature(vocabulary=VOCABULARY, add_eos=True, required=True),
        "targets": seqio.Feature(vocabulary=VOCABULARY, add_eos=True, required=True),
    }
