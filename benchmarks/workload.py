"""What the benchmarks share: random-token batches and the matmul FLOPs of a decode's first
pass (a training step's are `T5Config.train_step_flops`).

FLOPs are counted by hand from the shapes: XLA's cost analysis counts the elementwise work too and
differs between backends, so model-FLOPs utilisation would not compare across machines.
"""

from __future__ import annotations

import numpy as np

from ct5x.config import T5Config


def random_batch(config: T5Config, batch: int, input_length: int, target_length: int,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Full-length rows of random tokens ending in EOS, teacher-forced targets, unit weights."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(2, config.vocab_size, (batch, input_length), dtype=np.int32)
    targets = rng.integers(2, config.vocab_size, (batch, target_length), dtype=np.int32)
    inputs[:, -1] = targets[:, -1] = config.eos_id
    decoder_inputs = np.concatenate([np.zeros((batch, 1), np.int32), targets[:, :-1]], axis=1)
    return {
        "encoder_input_tokens": inputs,
        "decoder_input_tokens": decoder_inputs,
        "decoder_target_tokens": targets,
        "decoder_loss_weights": np.ones_like(targets, np.float32),
    }


def encoder_flops(config: T5Config, batch: int, input_length: int) -> float:
    """Matmul FLOPs of a decode's first pass: the encoder and every layer's cross keys/values."""
    d, joined, mlp = config.emb_dim, config.num_heads * config.head_dim, config.mlp_dim
    rows = batch * input_length
    layer = rows * (4 * d * joined + (len(config.mlp_activations) + 1) * d * mlp)
    layer += 2 * batch * input_length**2 * joined
    cross = rows * 2 * d * joined
    return 2.0 * (config.num_encoder_layers * layer + config.num_decoder_layers * cross)
