"""Tiny Hugging Face T5 directories of each family, shaped like the published ones."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

# Both have heads * head_dim != d_model and, for the odd one, unequal encoder/decoder depth.
T5_1_0_FIELDS = {
    "vocab_size": 96, "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 2,
    "num_decoder_layers": 2, "num_heads": 2,
    "feed_forward_proj": "relu", "tie_word_embeddings": True,
}
ODD_FIELDS = {
    "vocab_size": 96, "d_model": 12, "d_kv": 5, "d_ff": 20, "num_layers": 1,
    "num_decoder_layers": 3, "num_heads": 4,
    "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
}


def publish_untied(directory, seed):
    """Make a transformers-5 save look like google/t5-v1_1 or flan-t5 as published: a distinct
    `lm_head.weight` and `tie_word_embeddings: false` (transformers 5 writes true and keeps the
    switch in `scale_decoder_outputs`)."""
    weights = directory / "model.safetensors"
    tensors = load_file(weights)
    rng = np.random.default_rng(seed)
    tensors["lm_head.weight"] = rng.normal(size=tensors["shared.weight"].shape).astype(np.float32)
    save_file(tensors, weights, metadata={"format": "pt"})
    config = json.loads((directory / "config.json").read_text())
    config.pop("scale_decoder_outputs", None)
    config["tie_word_embeddings"] = False
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="session")
def hf_dirs(make_hf_t5):
    """family -> HF directory: t5_1_1 (untied, gated GELU) as published, t5_1_0 (tied, ReLU),
    and an odd untied gated model as transformers 5 saves it (tie_word_embeddings true,
    scale_decoder_outputs false, its own lm_head)."""
    return {
        "t5_1_1": publish_untied(make_hf_t5(seed=1), seed=1),
        "t5_1_0": make_hf_t5(seed=2, **T5_1_0_FIELDS),
        "odd": make_hf_t5(seed=3, **ODD_FIELDS),
    }


@pytest.fixture(params=("t5_1_1", "t5_1_0", "odd"))
def hf_dir(request, hf_dirs):
    """Each family's HF directory in turn."""
    return hf_dirs[request.param]


def _assert_same_params(left, right):
    from ct5x.checkpoints.tree import flatten

    left, right = flatten(left), flatten(right)
    assert sorted(left) == sorted(right)
    for name in left:
        assert left[name].dtype == right[name].dtype == np.float32, name
        assert np.array_equal(left[name], right[name]), name


@pytest.fixture
def assert_same_params():
    """Asserts two T5X trees hold the same names and bit-identical float32 arrays."""
    return _assert_same_params


def _copy_without_weights(src, dst):
    dst.mkdir()
    for name in ("config.json", "spiece.model"):
        shutil.copy(src / name, dst / name)
    return dst


@pytest.fixture
def copy_without_weights():
    """(src, dst) -> dst holding src's config.json and spiece.model only."""
    return _copy_without_weights
