"""The parameter table every reader checks against, and config inference from shapes."""

import numpy as np
import pytest

from ct5x.checkpoints.tree import check_params, expected_shapes, infer_config
from ct5x.config import T5Config
from ct5x.errors import UserInputError

T5_1_1 = {"vocab_size": 32128, "head_dim": 64, "mlp_activations": ("gelu", "linear"),
              "logits_via_embedding": False}


@pytest.mark.parametrize("sizes, total", [
    ({"emb_dim": 512, "num_heads": 6, "mlp_dim": 1024, "num_encoder_layers": 8,
      "num_decoder_layers": 8},
     76_961_152),
    ({"emb_dim": 768, "num_heads": 12, "mlp_dim": 2048, "num_encoder_layers": 12,
      "num_decoder_layers": 12},
     247_577_856),
    ({"emb_dim": 1024, "num_heads": 16, "mlp_dim": 2816, "num_encoder_layers": 24,
          "num_decoder_layers": 24}, 783_150_080),
])
def test_parameter_counts_of_published_t5_1_1_sizes(sizes, total):
    shapes = expected_shapes(T5Config(**T5_1_1, **sizes))
    assert sum(int(np.prod(shape)) for shape in shapes.values()) == total


def _random_params(config):
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=shape).astype(np.float32)
            for name, shape in expected_shapes(config).items()}


@pytest.mark.parametrize("config", [
    T5Config(vocab_size=50, emb_dim=8, num_heads=3, head_dim=5, mlp_dim=6, num_encoder_layers=1,
             num_decoder_layers=4),
    T5Config(vocab_size=40, emb_dim=6, num_heads=2, head_dim=4, mlp_dim=10, num_encoder_layers=3,
             num_decoder_layers=2, mlp_activations=("relu",), logits_via_embedding=True,
             relative_attention_num_buckets=16),
])
def test_infer_config_recovers_every_size(config):
    assert infer_config(_random_params(config), "ckpt") == config


def test_check_params_names_the_problem():
    config = T5Config(vocab_size=20, emb_dim=4, num_heads=2, head_dim=2, mlp_dim=6,
                      num_encoder_layers=1, num_decoder_layers=1)
    params = _random_params(config)
    assert check_params(params, config, "ckpt").keys() == params.keys()

    missing = dict(params)
    del missing["decoder/decoder_norm/scale"]
    with pytest.raises(UserInputError, match=r"ckpt: parameter decoder/decoder_norm/scale is"):
        check_params(missing, config, "ckpt")
    extra = {**params, "encoder/layers_1/attention/query/kernel": np.zeros((4, 4), np.float32)}
    with pytest.raises(UserInputError, match=r"unexpected parameter encoder/layers_1/attention"):
        check_params(extra, config, "ckpt")
    integers = {**params, "encoder/encoder_norm/scale": np.ones(4, np.int32)}
    with pytest.raises(UserInputError, match=r"encoder_norm/scale has dtype int32"):
        check_params(integers, config, "ckpt")


def test_infer_config_refuses_a_non_t5_tree():
    with pytest.raises(UserInputError, match=r"ckpt: parameter token_embedder/embedding is"):
        infer_config({"dense/kernel": np.zeros((2, 2))}, "ckpt")
