"""Helpers shared by the parity tests: random inputs and transformers' outputs on them."""

import numpy as np
import torch

# Shapes that exercise the network: heads*head_dim != d_model, unequal depths, tiny relative
# position tables whose logarithmic buckets the 40-token inputs reach, tied and untied logits.
PARITY_CONFIGS = {
    "t5_1_1": {},
    "t5_1_0": {
        "feed_forward_proj": "relu", "tie_word_embeddings": True,
        "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 2, "num_decoder_layers": 2,
        "num_heads": 2,
    },
    "odd_relu_untied": {
        "feed_forward_proj": "relu", "tie_word_embeddings": False,
        "d_model": 20, "d_kv": 3, "d_ff": 7, "num_layers": 1, "num_decoder_layers": 2,
        "num_heads": 5, "relative_attention_num_buckets": 8, "relative_attention_max_distance": 20,
    },
    "gated_tied": {
        "feed_forward_proj": "gated-gelu", "tie_word_embeddings": True,
        "d_model": 12, "d_kv": 6, "d_ff": 10, "num_layers": 3, "num_decoder_layers": 1,
        "num_heads": 2,
    },
}


def random_tokens(rng: np.random.Generator, rows: int, length: int, vocab: int = 96) -> np.ndarray:
    """Token ids 3..vocab-1 with ragged right padding (row 0 stays full length)."""
    tokens = rng.integers(3, vocab, (rows, length)).astype(np.int32)
    for row in range(1, rows):
        tokens[row, rng.integers(2, length) :] = 0
    return tokens


def hf_logits(model, encoder_tokens: np.ndarray, decoder_inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(
            input_ids=torch.from_numpy(encoder_tokens).long(),
            attention_mask=torch.from_numpy(encoder_tokens > 0).long(),
            decoder_input_ids=torch.from_numpy(decoder_inputs).long(),
        ).logits.numpy()


def hf_generate(model, encoder_tokens: np.ndarray, max_new_tokens: int, **kwargs) -> np.ndarray:
    """transformers' generate, start token dropped, right-padded to max_new_tokens.

    use_cache=False: transformers 5.24 sizes its decoder cache by the encoder depth and fails when
    the decoder is deeper; without the cache it computes the same tokens.
    """
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.from_numpy(encoder_tokens).long(),
            attention_mask=torch.from_numpy(encoder_tokens > 0).long(),
            max_new_tokens=max_new_tokens, do_sample=False, use_cache=False, **kwargs,
        ).numpy()[:, 1:]
    return np.pad(out, ((0, 0), (0, max_new_tokens - out.shape[1])))
