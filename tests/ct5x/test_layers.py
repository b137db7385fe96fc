"""Relative-position buckets, float32 attention numerics and T5X's dropout broadcasting."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from ct5x.layers import (
    MultiHeadAttention,
    RelativePositionBiases,
    dropout,
    relative_position_bucket,
)

BUCKET_SETTINGS = [(32, 128), (8, 20), (64, 256), (32, 64), (16, 100), (4, 9)]


def integer_bucket(relative: int, bidirectional: bool, num_buckets: int, max_distance: int) -> int:
    """T5's bucket of one relative position, by exact integer comparison instead of a logarithm.

    For distance d >= max_exact the bucket is max_exact + the largest k <= n with
    (d / max_exact) ** n >= (max_distance / max_exact) ** k, n = num_buckets - max_exact.
    """
    offset = 0
    if bidirectional:
        num_buckets //= 2
        offset = num_buckets if relative > 0 else 0
        distance = abs(relative)
    else:
        distance = max(-relative, 0)
    max_exact = num_buckets // 2
    if distance < max_exact:
        return offset + distance
    n = num_buckets - max_exact
    k = 0
    while k < n and distance**n * max_exact ** (k + 1) >= max_distance ** (k + 1) * max_exact**n:
        k += 1
    return offset + min(max_exact + k, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets, max_distance", BUCKET_SETTINGS)
def test_buckets_match_exact_integers_and_transformers(bidirectional, num_buckets, max_distance):
    relative = np.arange(-3000, 3001)
    ours = relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    exact = [integer_bucket(r, bidirectional, num_buckets, max_distance) for r in relative.tolist()]
    np.testing.assert_array_equal(ours, exact)
    theirs = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
        torch.from_numpy(relative), bidirectional, num_buckets, max_distance
    )
    np.testing.assert_array_equal(ours, theirs.numpy())


def test_bucket_boundaries_are_exact():
    # Bidirectional, 32 buckets over 128: 16 per direction, 8 exact, then 8 log buckets spanning
    # 8..128, i.e. two per doubling: distances 16, 32 and 64 sit exactly on bucket boundaries.
    distances = np.array([15, 16, 31, 32, 63, 64])
    np.testing.assert_array_equal(
        relative_position_bucket(-distances, True, 32, 128), [9, 10, 11, 12, 13, 14]
    )
    np.testing.assert_array_equal(
        relative_position_bucket(distances, True, 32, 128), [25, 26, 27, 28, 29, 30]
    )


def test_decode_step_bias_matches_full_causal_bias():
    module = RelativePositionBiases(8, 20, num_heads=3)
    length = 40
    variables = module.init(jax.random.PRNGKey(0), length, length, False)
    table = np.asarray(nn.unbox(variables["params"]["rel_embedding"]))
    full = np.asarray(module.apply(variables, length, length, False))
    step = jax.jit(
        lambda p: module.apply(variables, p, length, method=RelativePositionBiases.at_position)
    )
    for position in range(length):
        row = np.asarray(step(jnp.int32(position)))
        np.testing.assert_array_equal(row[0, :, 0], full[0, :, position])
        exact = [integer_bucket(k - position, False, 8, 20) for k in range(length)]
        np.testing.assert_array_equal(row[0, :, 0], table[:, exact])


def test_bfloat16_attention_keeps_logits_and_softmax_in_float32():
    attention = MultiHeadAttention(num_heads=2, head_dim=4, emb_dim=8, dtype=jnp.bfloat16)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 8), jnp.bfloat16)

    def self_attend(module, x):
        return module(x, module.project_kv(x), None, None)

    def run(variables, x):
        return attention.apply(variables, x, method=self_attend)

    variables = attention.init(jax.random.PRNGKey(0), x, method=self_attend)
    jaxpr = jax.make_jaxpr(run)(variables, x).jaxpr
    equations = [eqn for eqn in jaxpr.eqns]
    for eqn in jaxpr.eqns:  # flatten one level of nested calls (pjit)
        for sub in eqn.params.values():
            if hasattr(sub, "jaxpr"):
                equations.extend(getattr(sub.jaxpr, "eqns", []))
    logits = [e for e in equations if e.primitive.name == "dot_general"
              and e.outvars[0].aval.shape == (2, 2, 5, 5)]
    exps = [e for e in equations if e.primitive.name == "exp"]
    assert logits and exps
    assert all(e.outvars[0].aval.dtype == jnp.float32 for e in logits + exps)
    assert all(v.aval.dtype == jnp.float32 for e in logits for v in e.invars)
    assert run(variables, x).dtype == jnp.bfloat16


def test_dropout_broadcasts_masks_and_rescales():
    x = jnp.ones((4, 64, 32))
    out = np.asarray(dropout(x, 0.25, jax.random.PRNGKey(0), (-2,)))
    # One mask per (row, feature), shared by every position along the length axis.
    assert (out == out[:, :1, :]).all()
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    kept = (out[:, 0, :] > 0).mean()
    assert 0.6 < kept < 0.9
    assert dropout(x, 0.25, None, (-2,)) is x
    full = np.asarray(dropout(x, 0.25, jax.random.PRNGKey(0), ()))
    assert not (full == full[:, :1, :]).all()


def test_attention_dropout_masks_of_the_real_keys_do_not_depend_on_the_padded_length():
    weights = jnp.ones((2, 3, 4, 16))
    short = np.asarray(dropout(weights[..., :8], 0.5, jax.random.PRNGKey(3), (-2,)))
    padded = np.asarray(dropout(weights, 0.5, jax.random.PRNGKey(3), (-2,)))
    np.testing.assert_array_equal(padded[..., :8], short)
    assert 0 < (short > 0).mean() < 1


def test_attention_dropout_is_t5x_weight_dropout_shared_by_every_query():
    """The network's attention dropout is T5X's: the weights times a mask drawn once per example,
    head and key, broadcast over the queries and rescaled by 1 / keep, then times the values."""
    rate, key = 0.3, jax.random.PRNGKey(7)
    attention = MultiHeadAttention(num_heads=3, head_dim=4, emb_dim=8, dropout_rate=rate)
    queries = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 8))
    keys = jax.random.normal(jax.random.PRNGKey(2), (2, 6, 8))

    def attend(module, queries, keys, dropout_key):
        return module(queries, module.project_kv(keys), None, dropout_key)

    variables = nn.unbox(attention.init(jax.random.PRNGKey(0), queries, keys, None, method=attend))
    out = np.asarray(attention.apply(variables, queries, keys, key, method=attend), np.float64)

    p = {name: np.asarray(v["kernel"], np.float64) for name, v in variables["params"].items()}

    def heads(x: np.ndarray) -> np.ndarray:  # [b, length, 12] -> [b, 3 heads, length, 4]
        return x.reshape(*x.shape[:2], 3, 4).transpose(0, 2, 1, 3)

    q = heads(np.asarray(queries, np.float64) @ p["query"])
    k = heads(np.asarray(keys, np.float64) @ p["key"])
    v = heads(np.asarray(keys, np.float64) @ p["value"])
    logits = q @ k.transpose(0, 1, 3, 2)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    # Drawn keys first (a mask that padding the keys to a longer bucket leaves as it is).
    keep = np.moveaxis(np.asarray(jax.random.bernoulli(key, 1 - rate, (6, 2, 3, 1))), 0, -1)
    dropped = weights * keep / (1 - rate)
    expected = (dropped @ v).transpose(0, 2, 1, 3).reshape(2, 5, 12) @ p["out"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert 0 < keep.mean() < 1
    without = attention.apply(variables, queries, keys, None, method=attend)
    assert not np.allclose(out, np.asarray(without), atol=1e-3)
