"""The lazily chosen vocabulary."""

import gin
import pytest
import sentencepiece

import ct5x_tasks
from ct5x.errors import UserInputError
from ct5x_tasks.vocabulary import VOCABULARY


def test_unset_vocabulary_names_the_three_ways(monkeypatch):
    monkeypatch.delenv("CT5X_VOCABULARY", raising=False)
    ct5x_tasks.set_vocabulary_path(None)
    with pytest.raises(UserInputError, match="set_vocabulary_path.*vocabulary_settings.path.*"
                                             "CT5X_VOCABULARY"):
        VOCABULARY.encode("x")


def test_explicit_gin_and_environment(spm_model_path, monkeypatch, tmp_path):
    monkeypatch.setenv("CT5X_VOCABULARY", str(tmp_path / "absent.model"))
    with pytest.raises(UserInputError, match="absent.model: vocabulary file not found"):
        VOCABULARY.encode("x")
    with gin.unlock_config():
        gin.bind_parameter("ct5x_tasks.vocabulary_settings.path", spm_model_path)
    try:
        ids = VOCABULARY.encode("patient denies fever")
    finally:
        gin.clear_config()
    ct5x_tasks.set_vocabulary_path(spm_model_path)
    try:
        assert VOCABULARY.encode("patient denies fever") == ids
        assert VOCABULARY.decode(ids + [1, 5]) == "patient denies fever"
        assert (VOCABULARY.eos_id, VOCABULARY.pad_id, VOCABULARY.unk_id) == (1, 0, 2)
        pieces = sentencepiece.SentencePieceProcessor(model_file=spm_model_path).get_piece_size()
        assert VOCABULARY.vocab_size == pieces
        assert VOCABULARY.token_lengths(["patient", "denies fever"]) == [
            len(VOCABULARY.encode("patient")), len(VOCABULARY.encode("denies fever"))]
    finally:
        ct5x_tasks.set_vocabulary_path(None)
