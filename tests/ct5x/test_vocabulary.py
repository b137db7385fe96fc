"""The checkpoint's own SentencePiece vocabulary, loaded for SeqIO and checked against the model."""

import json
import shutil

import numpy as np
import pytest
import sentencepiece as spm

from ct5x.checkpoints import Checkpoint
from ct5x.config import T5Config
from ct5x.errors import UserInputError
from ct5x.vocabulary import load_vocabulary


@pytest.fixture(scope="module")
def vocabulary_file(tmp_path_factory):
    """A small unigram model with T5's ids (pad 0, eos 1, unk 2, no bos)."""
    workdir = tmp_path_factory.mktemp("vocabulary")
    rng = np.random.default_rng(0)
    words = ("patient", "denies", "chest", "pain", "fever", "cough", "history", "of",
             "diabetes", "follow", "up", "clinic")
    (workdir / "corpus.txt").write_text(
        "\n".join(" ".join(rng.choice(words, size=8)) + " ." for _ in range(500)) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(workdir / "corpus.txt"), model_prefix=str(workdir / "spiece"), vocab_size=64,
        hard_vocab_limit=False, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        character_coverage=1.0, num_threads=1, minloglevel=2,
    )
    return workdir / "spiece.model"


@pytest.fixture
def pieces(vocabulary_file):
    return spm.SentencePieceProcessor(model_file=str(vocabulary_file)).get_piece_size()


def _checkpoint(vocabulary_path, vocab_size, source="/models/t5"):
    return Checkpoint(config=T5Config(vocab_size=vocab_size), params={},
                      vocabulary_path=None if vocabulary_path is None else str(vocabulary_path),
                      source=source)


def test_loads_and_round_trips_text(vocabulary_file, pieces):
    vocabulary = load_vocabulary(_checkpoint(vocabulary_file, vocab_size=pieces))
    assert vocabulary.vocab_size == pieces and vocabulary.extra_ids == 0
    ids = vocabulary.encode("patient denies chest pain .")
    assert ids and max(ids) < pieces and 1 not in ids
    assert vocabulary.decode(ids) == "patient denies chest pain ."
    assert (vocabulary.pad_id, vocabulary.eos_id, vocabulary.unk_id) == (0, 1, 2)


def test_hundred_sentinels_when_the_embedding_has_room(vocabulary_file, pieces):
    vocabulary = load_vocabulary(_checkpoint(vocabulary_file, vocab_size=pieces + 128))
    assert vocabulary.extra_ids == 100 and vocabulary.vocab_size == pieces + 100


def test_sentinel_count_from_tokenizer_config(vocabulary_file, pieces, tmp_path):
    shutil.copy(vocabulary_file, tmp_path / "spiece.model")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"extra_ids": 7}))
    vocabulary = load_vocabulary(_checkpoint(tmp_path / "spiece.model", vocab_size=pieces + 128))
    assert vocabulary.extra_ids == 7
    assert load_vocabulary(_checkpoint(tmp_path / "spiece.model", pieces + 128),
                           extra_ids=0).extra_ids == 0


def test_vocabulary_larger_than_the_model(vocabulary_file, pieces):
    with pytest.raises(UserInputError,
                       match=rf"spiece.model: {pieces} pieces \+ 0 extra ids exceed the model's "
                             rf"vocab_size {pieces - 1}"):
        load_vocabulary(_checkpoint(vocabulary_file, vocab_size=pieces - 1))


def test_missing_vocabulary_names_the_checkpoint():
    with pytest.raises(UserInputError, match=r"/models/t5: no spiece.model found"):
        load_vocabulary(_checkpoint(None, vocab_size=100))


def test_vanished_vocabulary_file(tmp_path):
    with pytest.raises(UserInputError, match=r"gone/spiece.model: vocabulary file is missing"):
        load_vocabulary(_checkpoint(tmp_path / "gone" / "spiece.model", vocab_size=100))


def test_unreadable_vocabulary(tmp_path):
    (tmp_path / "spiece.model").write_bytes(b"this is not a sentencepiece model")
    with pytest.raises(UserInputError, match=r"spiece.model: not a readable SentencePiece model"):
        load_vocabulary(_checkpoint(tmp_path / "spiece.model", vocab_size=100))


def test_bad_tokenizer_config(vocabulary_file, tmp_path):
    shutil.copy(vocabulary_file, tmp_path / "spiece.model")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"extra_ids": "many"}))
    with pytest.raises(UserInputError, match=r"tokenizer_config.json: extra_ids='many'"):
        load_vocabulary(_checkpoint(tmp_path / "spiece.model", vocab_size=200))
