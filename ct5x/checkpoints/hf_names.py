"""Hugging Face (PyTorch) T5 tensor names <-> the T5X parameter tree.

PyTorch `Linear` weights are [out, in] and the relative-bias `Embedding` is [buckets, heads];
T5X kernels are [in, out] and `rel_embedding` is [heads, buckets], so those are transposed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ct5x.checkpoints.tree import FlatParams, as_float32, expected_shapes
from ct5x.config import T5Config
from ct5x.errors import UserInputError

_ATTENTION = (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"))
# Tensors transformers may store that carry no parameter of their own: tied copies of `shared`,
# and a cross-attention relative bias that old transformers versions saved but never used.
_EMBEDDING_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
_UNUSED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)


def name_pairs(config: T5Config) -> list[tuple[str, str, bool]]:
    """(HF name, T5X path, transposed) for every parameter except the untied logits."""
    mlp = ("wi_0", "wi_1", "wo") if config.mlp_activations == ("gelu", "linear") else ("wi", "wo")
    pairs = [("shared.weight", "token_embedder/embedding", False)]

    def attention(hf: str, t5x: str) -> None:
        pairs.extend((f"{hf}.{a}.weight", f"{t5x}/{b}/kernel", True) for a, b in _ATTENTION)

    for stack, depth in (("encoder", config.num_encoder_layers),
                         ("decoder", config.num_decoder_layers)):
        pairs.append((f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                      f"{stack}/relpos_bias/rel_embedding", True))
        for i in range(depth):
            hf, t5x = f"{stack}.block.{i}.layer", f"{stack}/layers_{i}"
            if stack == "encoder":
                pairs.append((f"{hf}.0.layer_norm.weight", f"{t5x}/pre_attention_layer_norm/scale",
                              False))
                attention(f"{hf}.0.SelfAttention", f"{t5x}/attention")
                ff = 1
            else:
                pairs.append((f"{hf}.0.layer_norm.weight",
                              f"{t5x}/pre_self_attention_layer_norm/scale", False))
                attention(f"{hf}.0.SelfAttention", f"{t5x}/self_attention")
                pairs.append((f"{hf}.1.layer_norm.weight",
                              f"{t5x}/pre_cross_attention_layer_norm/scale", False))
                attention(f"{hf}.1.EncDecAttention", f"{t5x}/encoder_decoder_attention")
                ff = 2
            pairs.append((f"{hf}.{ff}.layer_norm.weight", f"{t5x}/pre_mlp_layer_norm/scale", False))
            pairs.extend((f"{hf}.{ff}.DenseReluDense.{name}.weight", f"{t5x}/mlp/{name}/kernel",
                          True) for name in mlp)
        norm = "encoder_norm" if stack == "encoder" else "decoder_norm"
        pairs.append((f"{stack}.final_layer_norm.weight", f"{stack}/{norm}/scale", False))
    return pairs


def _tensor(tensors: Mapping[str, np.ndarray], name: str, source: str) -> np.ndarray:
    if name not in tensors:
        raise UserInputError(f"{source}: tensor {name} is missing")
    return as_float32(tensors[name], name, source)


def hf_to_t5x(
    tensors: Mapping[str, np.ndarray], config: T5Config, source: str, untied_by: str | None = None
) -> FlatParams:
    """Flat T5X params from a HF state dict; every tensor is used or accounted for.

    transformers 5.x ties `lm_head` to `shared` in memory for unscaled (t5_1_1-style) models,
    writes `tie_word_embeddings: true` and saves no `lm_head`: then the logits kernel is the
    embedding itself. When the config unties them (`untied_by` says where), a missing
    `lm_head` is an error: the logits would otherwise be silently wrong.
    """
    flat: FlatParams = {}
    used = set(_UNUSED)
    shapes = expected_shapes(config)
    for hf_name, path, transposed in name_pairs(config):
        array = _tensor(tensors, hf_name, source)
        expected = shapes[path][::-1] if transposed else shapes[path]
        if array.shape != expected:
            raise UserInputError(
                f"{source}: {hf_name} has shape {array.shape}, the config implies {expected}"
            )
        flat[path] = np.ascontiguousarray(array.T) if transposed else array
        used.add(hf_name)
    shared = flat["token_embedder/embedding"]
    for name in _EMBEDDING_COPIES:
        if name in tensors and not np.array_equal(_tensor(tensors, name, source), shared):
            raise UserInputError(f"{source}: {name} differs from shared.weight; T5 ties them")
        used.add(name)
    if config.logits_via_embedding:
        if "lm_head.weight" in tensors and not np.array_equal(
            _tensor(tensors, "lm_head.weight", source), shared
        ):
            raise UserInputError(
                f"{source}: lm_head.weight differs from shared.weight but the config ties them"
            )
    else:
        if "lm_head.weight" not in tensors and untied_by:
            raise UserInputError(
                f"{source}: tensor lm_head.weight is missing, but {untied_by} (untied logits); "
                "ct5x will not substitute the embedding"
            )
        lm_head = shared
        if "lm_head.weight" in tensors:
            lm_head = _tensor(tensors, "lm_head.weight", source)
            if lm_head.shape != shared.shape:
                raise UserInputError(f"{source}: lm_head.weight has shape {lm_head.shape}, "
                                     f"the config implies {shared.shape}")
        flat["decoder/logits_dense/kernel"] = np.ascontiguousarray(lm_head.T)
    used.add("lm_head.weight")
    unexpected = sorted(set(tensors) - used)
    if unexpected:
        raise UserInputError(f"{source}: unexpected tensor {unexpected[0]} for this T5 config")
    return flat


def t5x_to_hf(flat: Mapping[str, np.ndarray], config: T5Config) -> dict[str, np.ndarray]:
    """The HF state dict (contiguous, PyTorch orientation) that `save_pretrained` would write."""
    tensors = {}
    for hf_name, path, transposed in name_pairs(config):
        array = flat[path]
        tensors[hf_name] = np.ascontiguousarray(array.T) if transposed else array
    if not config.logits_via_embedding:
        tensors["lm_head.weight"] = np.ascontiguousarray(flat["decoder/logits_dense/kernel"].T)
    return tensors
