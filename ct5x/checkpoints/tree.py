"""The T5X parameter tree: its expected shapes for a config, validation, and config inference.

Every reader ends here, so that a checkpoint in any format is checked against the same table
before the network sees it, and a T5X checkpoint without a `config.json` still describes itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ct5x.config import T5Config
from ct5x.errors import UserInputError

FlatParams = dict[str, np.ndarray]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> FlatParams:
    """{"a": {"b": x}} -> {"a/b": x}."""
    flat: FlatParams = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, path + "/"))
        else:
            flat[path] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"a/b": x} -> {"a": {"b": x}}."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _mlp_names(config: T5Config) -> tuple[str, ...]:
    return ("wi_0", "wi_1") if config.mlp_activations == ("gelu", "linear") else ("wi",)


def expected_shapes(config: T5Config) -> dict[str, tuple[int, ...]]:
    """Every parameter path of the T5X network for `config`, with its shape."""
    d, inner = config.emb_dim, config.num_heads * config.head_dim
    shapes: dict[str, tuple[int, ...]] = {"token_embedder/embedding": (config.vocab_size, d)}

    def attention(prefix: str) -> None:
        for name in ("query", "key", "value"):
            shapes[f"{prefix}/{name}/kernel"] = (d, inner)
        shapes[f"{prefix}/out/kernel"] = (inner, d)

    def mlp(prefix: str) -> None:
        for name in _mlp_names(config):
            shapes[f"{prefix}/mlp/{name}/kernel"] = (d, config.mlp_dim)
        shapes[f"{prefix}/mlp/wo/kernel"] = (config.mlp_dim, d)

    buckets = (config.num_heads, config.relative_attention_num_buckets)
    shapes["encoder/relpos_bias/rel_embedding"] = buckets
    for i in range(config.num_encoder_layers):
        layer = f"encoder/layers_{i}"
        shapes[f"{layer}/pre_attention_layer_norm/scale"] = (d,)
        attention(f"{layer}/attention")
        shapes[f"{layer}/pre_mlp_layer_norm/scale"] = (d,)
        mlp(layer)
    shapes["encoder/encoder_norm/scale"] = (d,)

    shapes["decoder/relpos_bias/rel_embedding"] = buckets
    for i in range(config.num_decoder_layers):
        layer = f"decoder/layers_{i}"
        shapes[f"{layer}/pre_self_attention_layer_norm/scale"] = (d,)
        attention(f"{layer}/self_attention")
        shapes[f"{layer}/pre_cross_attention_layer_norm/scale"] = (d,)
        attention(f"{layer}/encoder_decoder_attention")
        shapes[f"{layer}/pre_mlp_layer_norm/scale"] = (d,)
        mlp(layer)
    shapes["decoder/decoder_norm/scale"] = (d,)
    if not config.logits_via_embedding:
        shapes["decoder/logits_dense/kernel"] = (d, config.vocab_size)
    return shapes


def as_float32(array: Any, name: str, source: str) -> np.ndarray:
    """A float32 copy-free view where possible; non-float data is refused, never coerced."""
    array = np.asarray(array)
    if array.dtype.kind != "f" and array.dtype.name != "bfloat16":
        raise UserInputError(f"{source}: {name} has dtype {array.dtype}, expected a float type")
    return array.astype(np.float32, copy=False)


def check_params(flat: Mapping[str, Any], config: T5Config, source: str) -> FlatParams:
    """Float32 flat params after checking names and shapes against `config`; names `source`."""
    shapes = expected_shapes(config)
    for name in flat:
        if name not in shapes:
            raise UserInputError(f"{source}: unexpected parameter {name} for this T5 config")
    checked: FlatParams = {}
    for name, shape in shapes.items():
        if name not in flat:
            raise UserInputError(f"{source}: parameter {name} is missing")
        array = as_float32(flat[name], name, source)
        if array.shape != shape:
            raise UserInputError(
                f"{source}: {name} has shape {array.shape}, the config expects {shape}"
            )
        checked[name] = array
    return checked


def _count_layers(flat: Mapping[str, Any], stack: str) -> int:
    pattern = re.compile(rf"{stack}/layers_(\d+)/")
    indices = {int(m.group(1)) for name in flat if (m := pattern.match(name))}
    return max(indices) + 1 if indices else 0


def infer_config(flat: Mapping[str, Any], source: str, **overrides: Any) -> T5Config:
    """The config a bare T5X parameter tree implies (T5X checkpoints carry no config).

    Sizes come from shapes; what shapes cannot tell (dropout, max distance, ids) keeps T5X's
    defaults unless given in `overrides`.
    """
    required = (
        "token_embedder/embedding",
        "encoder/relpos_bias/rel_embedding",
        "encoder/layers_0/attention/query/kernel",
        "encoder/layers_0/mlp/wo/kernel",
    )
    for name in required:
        if name not in flat:
            raise UserInputError(f"{source}: parameter {name} is missing; not a T5 checkpoint")
    vocab_size, emb_dim = np.shape(flat["token_embedder/embedding"])
    num_heads, num_buckets = np.shape(flat["encoder/relpos_bias/rel_embedding"])
    inner = np.shape(flat["encoder/layers_0/attention/query/kernel"])[1]
    mlp_dim = np.shape(flat["encoder/layers_0/mlp/wo/kernel"])[0]
    if inner % num_heads:
        raise UserInputError(
            f"{source}: attention width {inner} is not a multiple of {num_heads} heads"
        )
    gated = "encoder/layers_0/mlp/wi_0/kernel" in flat
    fields: dict[str, Any] = {
        "vocab_size": int(vocab_size),
        "emb_dim": int(emb_dim),
        "num_heads": int(num_heads),
        "head_dim": int(inner // num_heads),
        "mlp_dim": int(mlp_dim),
        "num_encoder_layers": _count_layers(flat, "encoder"),
        "num_decoder_layers": _count_layers(flat, "decoder"),
        "mlp_activations": ("gelu", "linear") if gated else ("relu",),
        "logits_via_embedding": "decoder/logits_dense/kernel" not in flat,
        "relative_attention_num_buckets": int(num_buckets),
    }
    fields.update(overrides)
    return T5Config(**fields)
