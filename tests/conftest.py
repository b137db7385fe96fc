"""Shared fixtures: a tiny SentencePiece vocabulary with T5's ids and random tiny HF T5 checkpoints.

Nothing is downloaded: the vocabulary is trained here and models are built from a `T5Config`.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib
import sys

import pytest

# Test-only helper modules (oracle wrappers, synthetic text) live in tests/support.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "support"))

from synthetic_text import synthetic_sentences
from training_run import FAST_COMPILE, TEST_COMPILATION_CACHE

# Every test, and every process a test starts, compiles without XLA:CPU's slower optimisations
# (before JAX is imported): compiling is most of a tiny model's test time, and programs compared
# with each other compile alike.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

# One compilation cache for the session's training runs (`training_run.gin_flags`), as a sweep's
# runs share one under RUNS_DIR: a run with the shapes of an earlier one (a killed run's restart,
# the second of two runs compared) loads its programs instead of compiling them. Made here, in
# the process that starts pytest-xdist's workers, so that they inherit it.
if TEST_COMPILATION_CACHE not in os.environ:
    os.environ[TEST_COMPILATION_CACHE] = tempfile.mkdtemp(prefix="ct5x_test_programs_")
    atexit.register(shutil.rmtree, os.environ[TEST_COMPILATION_CACHE], ignore_errors=True)


@pytest.fixture(scope="session")
def spm_model_path(tmp_path_factory) -> str:
    """A 64-piece unigram SentencePiece model with T5's ids: pad 0, eos 1, unk 2, no bos."""
    import sentencepiece as spm

    workdir = tmp_path_factory.mktemp("spm")
    corpus = workdir / "corpus.txt"
    corpus.write_text("\n".join(synthetic_sentences(2000)) + "\n")
    prefix = workdir / "spiece"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=64,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return str(prefix) + ".model"


TINY_T5_1_1 = {
    "vocab_size": 96, "d_model": 16, "d_kv": 8, "d_ff": 24, "num_layers": 2,
    "num_decoder_layers": 3, "num_heads": 3,
    "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
}
TINY_T5_1_0 = {
    "vocab_size": 96, "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 2,
    "num_decoder_layers": 2, "num_heads": 2,
    "feed_forward_proj": "relu", "tie_word_embeddings": True,
}


@pytest.fixture(scope="session")
def make_hf_t5(tmp_path_factory, spm_model_path):
    """Factory: a random transformers T5 saved with `save_pretrained`, plus the test
    spiece.model."""
    import shutil

    import torch
    import transformers

    def make(seed: int = 0, **config_fields) -> pathlib.Path:
        torch.manual_seed(seed)
        fields = dict(TINY_T5_1_1)
        fields.update(config_fields)
        fields.setdefault("decoder_start_token_id", 0)
        fields.setdefault("dropout_rate", 0.0)
        config = transformers.T5Config(pad_token_id=0, eos_token_id=1, **fields)
        model = transformers.T5ForConditionalGeneration(config).eval()
        # transformers 5 always ties lm_head to the embedding; t5_1_1 checkpoints as published have
        # their own lm_head, so give untied configs one (it then loads untied and unscaled).
        if not fields.get("tie_word_embeddings", True):
            model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.shared.weight))
        # Random init leaves some weights tiny; widen them so tests see realistic logit spreads.
        with torch.no_grad():
            for param in model.parameters():
                param.normal_(0.0, 0.5)
        out = tmp_path_factory.mktemp("hf_t5")
        model.save_pretrained(out)
        shutil.copy(spm_model_path, out / "spiece.model")
        return out

    return make


@pytest.fixture(autouse=True)
def _fresh_gin_config():
    """Each test starts without gin bindings: in-process runs (ct5x.train.run, the sweep) leave
    their config bound, as T5X's do, and a DATA_DIR from one test must not reach the next."""
    import gin

    yield
    gin.clear_config()


@pytest.fixture(scope="module", autouse=True)
def _process_vocabulary_undone():
    """Undoes what a test file (its tests and its fixtures) did to the process-wide vocabulary
    (`ct5x_tasks.set_vocabulary_path`, which a trainer or sweep run in-process sets for the rest
    of the process), so that no file depends on which files ran before it in the same worker."""
    before = dict(_process_vocabulary() or {})
    yield
    after = _process_vocabulary()
    if after is not None:
        after.clear()
        after.update(before)


def _process_vocabulary() -> dict | None:
    """The task settings' process-wide vocabulary, once ct5x_tasks is imported (not before: most
    tests never import it)."""
    module = sys.modules.get("ct5x_tasks.task_settings")
    return None if module is None else module._process
