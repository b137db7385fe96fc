"""The frozen T5 configuration shared by the network, the converters and the gin files.

Field names follow T5X's `network.T5Config`; `from_hf_dict`/`to_hf_dict` map Hugging Face's
`config.json` onto it so a checkpoint directory fully describes its own network.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ct5x.errors import UserInputError

_HF_ACTIVATIONS = {
    "relu": ("relu",),
    "gated-gelu": ("gelu", "linear"),
    "gated-gelu_new": ("gelu", "linear"),
}

REMAT_POLICIES = ("none", "minimal", "full")


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Shape and numerics of a T5 encoder-decoder; defaults are t5_1_1 small."""

    vocab_size: int = 32128
    emb_dim: int = 512
    num_heads: int = 6
    head_dim: int = 64
    mlp_dim: int = 1024
    num_encoder_layers: int = 8
    num_decoder_layers: int = 8
    # ("relu",) is t5_1_0; ("gelu", "linear") is t5_1_1's gated GELU (tanh approximation).
    mlp_activations: tuple[str, ...] = ("gelu", "linear")
    # True: logits come from the shared embedding scaled by emb_dim**-0.5 (t5_1_0).
    logits_via_embedding: bool = False
    dropout_rate: float = 0.1
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    # Activation dtype; parameters are always float32.
    dtype: str = "float32"
    pad_id: int = 0
    eos_id: int = 1
    decoder_start_id: int = 0
    # Per-layer rematerialisation in training: "none", "minimal" (keep the dense layers' outputs,
    # T5X's "minimal") or "full" (keep only each layer's input). Trades compute for memory.
    remat_policy: str = "none"
    # Run each stack's identical layers as one lax.scan: deep models compile much faster. The
    # stored parameter tree is the same either way.
    scan_layers: bool = False

    def __post_init__(self) -> None:
        if self.mlp_activations not in (("relu",), ("gelu", "linear")):
            raise UserInputError(
                f"mlp_activations={self.mlp_activations!r}: "
                "expected ('relu',) or ('gelu', 'linear')"
            )
        if self.dtype not in ("float32", "bfloat16"):
            raise UserInputError(f"dtype={self.dtype!r}: expected 'float32' or 'bfloat16'")
        if self.remat_policy not in REMAT_POLICIES:
            raise UserInputError(
                f"remat_policy={self.remat_policy!r}: expected one of {', '.join(REMAT_POLICIES)}"
            )

    def replace(self, **changes: Any) -> T5Config:
        return dataclasses.replace(self, **changes)

    def train_step_flops(self, rows: int, input_length: int, target_length: int) -> float:
        """Matmul FLOPs of a training step on rows of these lengths, forward x 3 (forward and
        backward): the dense layers, the output layer and both attention products, each query
        against every key of its row. Counted from the shapes, not by XLA, so that figures
        compare across backends; packing plans its rows by it (`ct5x.packing`)."""
        joined = self.num_heads * self.head_dim
        attention_dense = 4 * self.emb_dim * joined
        mlp_dense = (len(self.mlp_activations) + 1) * self.emb_dim * self.mlp_dim
        input_positions, target_positions = rows * input_length, rows * target_length
        encoder = self.num_encoder_layers * (
            input_positions * (attention_dense + mlp_dense)
            + 2 * rows * input_length**2 * joined)
        decoder = self.num_decoder_layers * (
            target_positions * (attention_dense + 2 * self.emb_dim * joined + mlp_dense)
            + input_positions * 2 * self.emb_dim * joined  # cross-attention keys and values
            + 2 * rows * target_length * (target_length + input_length) * joined)
        decoder += target_positions * self.emb_dim * self.vocab_size
        return 3 * 2.0 * (encoder + decoder)

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], source: str = "config.json") -> T5Config:
        """Reads a Hugging Face T5 `config.json` (already parsed); `source` names it in errors."""
        model_type = hf.get("model_type")
        if model_type not in ("t5", "mt5", "umt5") and "T5ForConditionalGeneration" not in hf.get(
            "architectures", []
        ):
            raise UserInputError(f"{source}: model_type={model_type!r} is not a T5 model")
        proj = hf.get("feed_forward_proj", "relu")
        if proj not in _HF_ACTIVATIONS:
            raise UserInputError(f"{source}: feed_forward_proj={proj!r} is not supported")
        try:
            num_layers = int(hf["num_layers"])
            return cls(
                vocab_size=int(hf["vocab_size"]),
                emb_dim=int(hf["d_model"]),
                num_heads=int(hf["num_heads"]),
                head_dim=int(hf["d_kv"]),
                mlp_dim=int(hf["d_ff"]),
                num_encoder_layers=num_layers,
                num_decoder_layers=int(hf.get("num_decoder_layers") or num_layers),
                mlp_activations=_HF_ACTIVATIONS[proj],
                # transformers 5 writes tie_word_embeddings=true for every T5 and records the
                # t5_1_0 scaling separately; older configs use tie_word_embeddings for both.
                logits_via_embedding=bool(
                    hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True))
                ),
                dropout_rate=float(hf.get("dropout_rate", 0.1)),
                relative_attention_num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
                relative_attention_max_distance=int(hf.get("relative_attention_max_distance", 128)),
                layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-6)),
                pad_id=int(hf.get("pad_token_id", 0)),
                eos_id=int(hf.get("eos_token_id", 1)),
                decoder_start_id=int(hf.get("decoder_start_token_id", 0)),
            )
        except KeyError as missing:
            raise UserInputError(f"{source}: required T5 field {missing} is missing") from None

    def to_hf_dict(self) -> dict[str, Any]:
        """The `config.json` that transformers' T5ForConditionalGeneration loads."""
        gated = self.mlp_activations == ("gelu", "linear")
        return {
            "architectures": ["T5ForConditionalGeneration"],
            "model_type": "t5",
            "vocab_size": self.vocab_size,
            "d_model": self.emb_dim,
            "d_kv": self.head_dim,
            "d_ff": self.mlp_dim,
            "num_layers": self.num_encoder_layers,
            "num_decoder_layers": self.num_decoder_layers,
            "num_heads": self.num_heads,
            "feed_forward_proj": "gated-gelu" if gated else "relu",
            "dense_act_fn": "gelu_new" if gated else "relu",
            "is_gated_act": gated,
            "tie_word_embeddings": self.logits_via_embedding,
            "dropout_rate": self.dropout_rate,
            "relative_attention_num_buckets": self.relative_attention_num_buckets,
            "relative_attention_max_distance": self.relative_attention_max_distance,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_factor": 1.0,
            "is_encoder_decoder": True,
            "pad_token_id": self.pad_id,
            "eos_token_id": self.eos_id,
            "decoder_start_token_id": self.decoder_start_id,
        }
