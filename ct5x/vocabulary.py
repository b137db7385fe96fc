"""The checkpoint's own SentencePiece vocabulary as a SeqIO vocabulary, checked against its config.

How many sentinel ids (`<extra_id_N>`) sit above the SentencePiece pieces: the count a Hugging Face
`tokenizer_config.json` beside the vocabulary gives; otherwise 100, the T5 and HF tokenizer default,
when the embedding has room for them; otherwise none.
"""

from __future__ import annotations

import json

import seqio
from etils import epath

from ct5x import storage
from ct5x.checkpoints import Checkpoint
from ct5x.checkpoints.bad_input import bad_input
from ct5x.errors import UserInputError

T5_EXTRA_IDS = 100
TOKENIZER_CONFIG = "tokenizer_config.json"


def _declared_extra_ids(vocabulary_path: epath.Path) -> int | None:
    """`extra_ids` from a tokenizer_config.json beside the vocabulary, if it states one."""
    config_path = vocabulary_path.parent / TOKENIZER_CONFIG
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserInputError(
            f"{config_path}:{error.lineno}: not valid JSON ({error.msg})"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise bad_input(config_path, "cannot be read", error) from None
    extra_ids = config.get("extra_ids") if isinstance(config, dict) else None
    if extra_ids is None:
        return None
    if not isinstance(extra_ids, int) or extra_ids < 0:
        raise UserInputError(f"{config_path}: extra_ids={extra_ids!r} is not a count")
    return extra_ids


def load_vocabulary(checkpoint: Checkpoint,
                    extra_ids: int | None = None) -> seqio.SentencePieceVocabulary:
    """The checkpoint's `spiece.model`; UserInputError if missing, unreadable, or larger than the
    model's embedding. `extra_ids` overrides the sentinel count described in the module doc.
    SeqIO reads it through TensorFlow's file system: one in a bucket is read from a local copy."""
    if checkpoint.vocabulary_path is None:
        where = checkpoint.source or "the checkpoint"
        raise UserInputError(f"{where}: no spiece.model found beside the checkpoint")
    path = storage.path(checkpoint.vocabulary_path)
    if not path.is_file():
        raise UserInputError(f"{path}: vocabulary file is missing")
    vocab_size = checkpoint.config.vocab_size
    if extra_ids is None:
        extra_ids = _declared_extra_ids(path)
    try:
        local = storage.local_copy(path)
        pieces = seqio.SentencePieceVocabulary(local).tokenizer.GetPieceSize()
    except Exception as error:  # noqa: BLE001 -- sentencepiece/TF raise varied errors on bad files
        raise bad_input(path, "not a readable SentencePiece model", error) from None
    if extra_ids is None:
        extra_ids = T5_EXTRA_IDS if pieces + T5_EXTRA_IDS <= vocab_size else 0
    vocabulary = seqio.SentencePieceVocabulary(local, extra_ids=extra_ids)
    if vocabulary.vocab_size > vocab_size:
        raise UserInputError(
            f"{path}: {pieces} pieces + {extra_ids} extra ids exceed the model's vocab_size "
            f"{vocab_size}; this vocabulary does not belong to this checkpoint"
        )
    if vocabulary.eos_id != checkpoint.config.eos_id:
        raise UserInputError(
            f"{path}: end-of-sequence id {vocabulary.eos_id} differs from the config's "
            f"eos_id {checkpoint.config.eos_id}"
        )
    return vocabulary
