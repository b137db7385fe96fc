"""ct5x against transformers' PyTorch T5 on this machine, at the t5_1_1-small shape (vocab 32128).

Measures, in one run: a training step (forward, backward, Adafactor) at batch 8 x 128 input /
32 target tokens; greedy decoding of 32 tokens for 8 inputs; and a large float32 matmul in JAX and
in PyTorch, the hardware ceiling. Both models hold the same random weights (ct5x's are converted
from the PyTorch model), so both decode the same tokens. Prints a table, then one JSON line.

    python benchmarks/bench.py [--steps 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import transformers

from ct5x.checkpoints import load_checkpoint
from ct5x.config import T5Config
from ct5x.models import DecodingOptions, EncoderDecoderModel

BATCH, INPUT_LENGTH, TARGET_LENGTH, DECODE_LENGTH = 8, 128, 32, 32
SMALL = T5Config(dropout_rate=0.1)  # t5_1_1 small: d512, 6 heads, mlp 1024, 8+8 layers


def best_seconds(function, repeats: int) -> float:
    """The fastest of `repeats` timed calls (after one untimed warm-up call)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(repeats: int, size: int = 4096) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    jmm = jax.jit(jnp.matmul)
    jax_s = best_seconds(lambda: jmm(ja, jb).block_until_ready(), repeats)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    torch_s = best_seconds(lambda: torch.matmul(ta, tb), repeats)
    flops = 2.0 * size**3
    return flops / jax_s / 1e9, flops / torch_s / 1e9


def make_batch(rng: np.random.Generator) -> dict[str, np.ndarray]:
    inputs = rng.integers(2, SMALL.vocab_size, (BATCH, INPUT_LENGTH), dtype=np.int32)
    inputs[:, -1] = SMALL.eos_id
    targets = rng.integers(2, SMALL.vocab_size, (BATCH, TARGET_LENGTH), dtype=np.int32)
    targets[:, -1] = SMALL.eos_id
    decoder_inputs = np.concatenate([np.zeros((BATCH, 1), np.int32), targets[:, :-1]], axis=1)
    return {
        "encoder_input_tokens": inputs,
        "decoder_input_tokens": decoder_inputs,
        "decoder_target_tokens": targets,
        "decoder_loss_weights": np.ones_like(targets, np.float32),
    }


def hf_model() -> transformers.T5ForConditionalGeneration:
    torch.manual_seed(0)
    config = transformers.T5Config(**SMALL.to_hf_dict())
    model = transformers.T5ForConditionalGeneration(config)
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight) * 0.05)
    return model


def ct5x_train_seconds(params, batch, steps: int, repeats: int) -> float:
    model = EncoderDecoderModel(SMALL)
    optimizer = optax.adafactor(learning_rate=1e-4)
    state = optimizer.init(params)

    @jax.jit
    def train_step(params, state, batch, rng):
        grads, _ = jax.grad(model.loss_fn, has_aux=True)(params, batch, rng)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    carry = {"params": params, "state": state}
    batch = jax.device_put(batch)

    def run():
        for step in range(steps):
            new = train_step(carry["params"], carry["state"], batch, jax.random.PRNGKey(step))
            carry["params"], carry["state"] = new
        jax.block_until_ready(carry["params"])

    return best_seconds(run, repeats) / steps


def hf_train_seconds(model, batch, steps: int, repeats: int) -> float:
    model.train()
    optimizer = transformers.optimization.Adafactor(
        model.parameters(), lr=1e-4, relative_step=False, scale_parameter=False
    )
    inputs = {
        "input_ids": torch.from_numpy(batch["encoder_input_tokens"]).long(),
        "decoder_input_ids": torch.from_numpy(batch["decoder_input_tokens"]).long(),
        "labels": torch.from_numpy(batch["decoder_target_tokens"]).long(),
    }

    def run():
        for _ in range(steps):
            optimizer.zero_grad()
            model(**inputs).loss.backward()
            optimizer.step()

    return best_seconds(run, repeats) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is kept")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    batch = make_batch(rng)
    torch_model = hf_model()
    with tempfile.TemporaryDirectory() as saved:
        torch_model.save_pretrained(saved)
        params = jax.device_put(load_checkpoint(saved).params)

    jax_gflops, torch_gflops = matmul_gflops(args.repeats)

    eval_model = EncoderDecoderModel(SMALL.replace(dropout_rate=0.0))
    options = DecodingOptions(num_beams=1, max_decode_length=DECODE_LENGTH)
    encoder_only = {"encoder_input_tokens": jnp.asarray(batch["encoder_input_tokens"])}
    decode_s = best_seconds(
        lambda: eval_model.predict_batch(params, encoder_only, options).block_until_ready(),
        args.repeats,
    )
    torch_model.eval()
    input_ids = torch.from_numpy(batch["encoder_input_tokens"]).long()
    with torch.no_grad():
        hf_decode_s = best_seconds(
            lambda: torch_model.generate(
                input_ids=input_ids, max_new_tokens=DECODE_LENGTH, do_sample=False, num_beams=1
            ),
            args.repeats,
        )

    train_s = ct5x_train_seconds(params, batch, args.steps, args.repeats)
    hf_train_s = hf_train_seconds(torch_model, batch, args.steps, args.repeats)

    train_tokens = BATCH * (INPUT_LENGTH + TARGET_LENGTH)
    decode_tokens = BATCH * DECODE_LENGTH
    result = {
        "train_tokens_per_s": round(train_tokens / train_s, 1),
        "hf_train_tokens_per_s": round(train_tokens / hf_train_s, 1),
        "decode_tokens_per_s": round(decode_tokens / decode_s, 1),
        "hf_decode_tokens_per_s": round(decode_tokens / hf_decode_s, 1),
        "matmul_gflops": round(jax_gflops, 1),
        "torch_matmul_gflops": round(torch_gflops, 1),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    rows = [
        ("train step, tokens/s (8x(128+32))", result["train_tokens_per_s"],
         result["hf_train_tokens_per_s"]),
        ("greedy decode, tokens/s (8x32)", result["decode_tokens_per_s"],
         result["hf_decode_tokens_per_s"]),
        ("float32 matmul 4096^3, GFLOP/s", result["matmul_gflops"], result["torch_matmul_gflops"]),
    ]
    print(f"{'measure':<36} {'ct5x/JAX':>10} {'HF/PyTorch':>11} {'ratio':>6}")
    for name, ours, theirs in rows:
        print(f"{name:<36} {ours:>10.1f} {theirs:>11.1f} {ours / theirs:>6.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
