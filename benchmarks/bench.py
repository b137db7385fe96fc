"""ct5x against transformers' PyTorch T5 on this machine, at the t5_1_1-small shape (vocab 32128).

Both frameworks run on the same CPU cores (the process is pinned to `--threads` cores, which sizes
XLA's thread pool, and `torch.set_num_threads` gets the same number), hold the same weights (ct5x
loads the PyTorch model's checkpoint) and see the same batches. Measured, each as the median and
spread of `--reps` timed repetitions, ct5x and transformers interleaved, with compilation and
warm-up timed separately and excluded:

- training step: forward, backward and Adafactor (transformers' `Adafactor(scale_parameter=False,
  relative_step=False, warmup_init=False, lr=1e-4)` against ct5x's `hf` flavour), batch 8 x (128
  input + 32 target tokens), dropout 0.1, float32; model-FLOPs utilisation against the float32
  matmul rate measured in the same run. ct5x trains through its `Trainer` as `ct5x train` does:
  8 steps per execution (the CPU default of STEPS_PER_EXECUTION), and apart one per execution;
- greedy decoding and beam search with 3 and 5 beams, 32 new tokens for 8 inputs, against
  `generate(num_beams=K)`; the EOS row of the output layer is zeroed so every row runs the full
  length, and the run checks that both produced the same tokens;
- teacher-forced scoring (`ct5x score`) against a transformers forward pass;
- the ceilings: a large float32 matmul; for greedy decoding, the encoder pass at that rate plus
  every step's bytes (decoder and output weights, cross-attention keys and values) at the memory
  read bandwidth, or plus steps that do only their matmuls (8 rows through every kernel).

Each ratio is transformers' median time over ct5x's; the table also gives the range of the
per-round ratios (the two frameworks' times from the same round), which says how far one run's
ratio can be trusted. Prints a table, then one JSON object on the last line. It measures; it
asserts no time.

    python benchmarks/bench.py [--threads N] [--reps 5] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from pinning import pin_threads

BATCH, INPUT_LENGTH, TARGET_LENGTH, DECODE_LENGTH = 8, 128, 32, 32


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU cores for both frameworks (default: all this process may use)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: a 2+2-layer model, 8 new tokens, 2 repetitions")
    return parser.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    pin_threads(ARGS.threads)

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers
from workload import encoder_flops, random_batch

from ct5x import partitioning
from ct5x.checkpoints import load_checkpoint
from ct5x.config import T5Config
from ct5x.models import DecodingOptions, EncoderDecoderModel, LossOptions
from ct5x.optimizers import OptimizerSettings, make_optimizer
from ct5x.run_settings import CPU_STEPS_PER_EXECUTION as STEPS_PER_EXECUTION
from ct5x.trainer import Trainer

SMALL = T5Config(dropout_rate=0.1)  # t5_1_1 small: d512, 6 heads, mlp 1024, 8+8 layers
QUICK = SMALL.replace(num_encoder_layers=2, num_decoder_layers=2)


class Timing:
    """Seconds of the timed repetitions of one measurement, plus its compile/warm-up call."""

    def __init__(self, warmup_s: float):
        self.warmup_s = warmup_s
        self.times: list[float] = []

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def spread(self) -> str:
        return f"{min(self.times):.3f}-{max(self.times):.3f}"


def paired_ratios(ours: Timing, theirs: Timing) -> list[float]:
    """transformers' time over ct5x's in each round: the two ran back to back, so a slow spell of
    the machine slows both and largely cancels, where the ratio of the medians keeps it."""
    return sorted(t / o for o, t in zip(ours.times, theirs.times))


def timed(function: Callable[[], object]) -> tuple[float, int]:
    """Seconds of one call, and the steps it ran: a function returning an int ran that many."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result if isinstance(result, int) else 1


def interleaved(functions: dict[str, Callable[[], object]], reps: int) -> dict[str, Timing]:
    """One warm-up call each (timed apart, whole), then `reps` rounds calling each once, in
    turn; the rounds' times are per step."""
    timings = {name: Timing(timed(function)[0]) for name, function in functions.items()}
    for _ in range(reps):
        for name, function in functions.items():
            seconds, steps = timed(function)
            timings[name].times.append(seconds / steps)
    return timings


def ready(function: Callable[[], object]) -> Callable[[], object]:
    """Wraps a JAX call so that its timing includes the computation, not only the dispatch."""
    return lambda: jax.block_until_ready(function())


def matmul_functions(size: int) -> dict[str, Callable[[], object]]:
    """A float32 size^3 matmul in JAX and in PyTorch: the machine's compute ceiling."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    ja, jb, jmm = jnp.asarray(a), jnp.asarray(b), jax.jit(jnp.matmul)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return {"jax_matmul": ready(lambda: jmm(ja, jb)), "torch_matmul": lambda: ta @ tb}


def step_matmuls_function(params, steps: int) -> Callable[[], object]:
    """`steps` decoding steps that do nothing but a step's matmuls: 8 rows through every decoder
    kernel in order, in one `fori_loop` as ct5x decodes. No step doing real work can be faster."""
    decoder, kernels = params["decoder"], []
    for index in range(sum(name.startswith("layers_") for name in decoder)):
        layer = decoder[f"layers_{index}"]
        for block, names in (("self_attention", ("query", "key", "value", "out")),
                             ("encoder_decoder_attention", ("query", "out")),
                             ("mlp", tuple(layer["mlp"]))):
            kernels += [layer[block][name]["kernel"] for name in names]
    kernels.append(decoder["logits_dense"]["kernel"])

    def step(_, rows):
        x = rows
        for kernel in kernels:  # the previous product's columns, repeated to the kernel's width
            width = kernel.shape[0]
            x = jnp.concatenate([x] * -(-width // x.shape[1]), axis=1)[:, :width] @ kernel
        return rows + 1e-6 * x[:, : rows.shape[1]]

    loop = jax.jit(lambda rows: jax.lax.fori_loop(0, steps, step, rows))
    rows = jnp.ones((BATCH, kernels[0].shape[0]), jnp.float32)
    return ready(lambda: loop(rows))


def read_bandwidth(reps: int, megabytes: int = 512) -> float:
    """Bytes per second that XLA reads from memory (a sum over an array far larger than caches)."""
    x = jnp.ones((megabytes * 2**20 // 4,), jnp.float32)
    total = jax.jit(jnp.sum)
    timing = interleaved({"read": ready(lambda: total(x))}, reps)["read"]
    return x.nbytes / timing.median


def hf_model(config: T5Config) -> transformers.T5ForConditionalGeneration:
    """Random weights with an untied output layer whose EOS row is zero: no row stops early."""
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**config.to_hf_dict()))
    weight = torch.randn_like(model.shared.weight) * 0.05
    weight[config.eos_id] = 0.0
    model.lm_head.weight = torch.nn.Parameter(weight)
    return model


def decode_bytes_per_step(config: T5Config, params) -> float:
    """Bytes a cached greedy step must read at least: the decoder's and output layer's weights
    once for the batch, and every layer's cross-attention keys and values."""
    weights = sum(x.size for x in jax.tree.leaves(params["decoder"]))
    joined = config.num_heads * config.head_dim
    cross = config.num_decoder_layers * 2 * BATCH * INPUT_LENGTH * joined
    return 4.0 * (weights + cross)


def train_functions(config: T5Config, params, torch_model, batch):
    """ct5x's `Trainer` (the jitted, buffer-donating step of `ct5x train`, batch transfer
    included) one step per execution and `STEPS_PER_EXECUTION` per execution, and transformers'
    eager step. Each function returns the number of steps it ran."""
    model = EncoderDecoderModel(config, LossOptions(z_loss=0.0))
    optimizer = make_optimizer(OptimizerSettings(flavour="hf", learning_rate=1e-4,
                                                 max_grad_norm=None))
    trainers = {count: Trainer(model, optimizer,
                               partitioning.Partitioner(1, devices=jax.devices()[:1]), seed=0,
                               steps_per_execution=count)
                for count in (1, STEPS_PER_EXECUTION)}
    states = {count: trainer.create_state(params) for count, trainer in trainers.items()}

    def ct5x_steps(count: int) -> Callable[[], int]:
        def run() -> int:
            states[count], _ = trainers[count].train(states[count], [batch] * count)
            jax.block_until_ready(states[count])
            return count
        return run

    torch_model = copy.deepcopy(torch_model).train()  # the decoders keep the initial weights
    torch_optimizer = transformers.optimization.Adafactor(
        torch_model.parameters(), lr=1e-4, scale_parameter=False, relative_step=False,
        warmup_init=False,
    )
    inputs = {
        "input_ids": torch.from_numpy(batch["encoder_input_tokens"]).long(),
        "decoder_input_ids": torch.from_numpy(batch["decoder_input_tokens"]).long(),
        "labels": torch.from_numpy(batch["decoder_target_tokens"]).long(),
    }

    def hf_step() -> int:
        torch_optimizer.zero_grad()
        torch_model(**inputs).loss.backward()
        torch_optimizer.step()
        return 1

    return {"ct5x": ct5x_steps(STEPS_PER_EXECUTION), "ct5x_one_per_execution": ct5x_steps(1),
            "hf": hf_step}


def decode_functions(config: T5Config, params, torch_model, batch, num_beams: int, length: int):
    model = EncoderDecoderModel(config.replace(dropout_rate=0.0))
    options = DecodingOptions(num_beams=num_beams, max_decode_length=length)
    predict = jax.jit(model.predict_batch, static_argnames="options")
    encoder_only = {"encoder_input_tokens": jnp.asarray(batch["encoder_input_tokens"])}
    input_ids = torch.from_numpy(batch["encoder_input_tokens"]).long()
    outputs = {}

    def ct5x_decode():
        outputs["ct5x"] = np.asarray(predict(params, encoder_only, options=options))

    def hf_decode():
        with torch.no_grad():
            outputs["hf"] = torch_model.generate(
                input_ids=input_ids, max_new_tokens=length, do_sample=False, num_beams=num_beams
            ).numpy()[:, 1:]

    return ct5x_decode, hf_decode, outputs


def decode_check(outputs: dict[str, np.ndarray], config: T5Config, length: int) -> dict:
    ours, theirs = outputs["ct5x"], outputs["hf"]
    full_length = bool(
        theirs.shape[1] == length and not np.isin(ours, [config.eos_id, config.pad_id]).any()
    )
    same = ours.shape == theirs.shape and bool((ours == theirs).all())
    differing = int((ours != theirs).any(axis=1).sum()) if ours.shape == theirs.shape else BATCH
    return {"same_tokens": same, "full_length": full_length, "differing_rows": differing}


def score_functions(config: T5Config, params, torch_model, batch):
    model = EncoderDecoderModel(config.replace(dropout_rate=0.0))
    score = jax.jit(model.score_batch)
    device_batch = jax.device_put(batch)
    inputs = {
        "input_ids": torch.from_numpy(batch["encoder_input_tokens"]).long(),
        "decoder_input_ids": torch.from_numpy(batch["decoder_input_tokens"]).long(),
    }
    targets = torch.from_numpy(batch["decoder_target_tokens"]).long()

    def hf_score():
        with torch.no_grad():
            logits = torch_model(**inputs).logits
            log_probs = torch.log_softmax(logits, dim=-1)
            return log_probs.gather(-1, targets[..., None])[..., 0].sum(-1)

    return ready(lambda: score(params, device_batch)), hf_score


def main() -> None:
    args = ARGS
    torch.set_num_threads(args.threads)
    config = QUICK if args.quick else SMALL
    reps = 2 if args.quick else max(args.reps, 5)
    decode_length = 8 if args.quick else DECODE_LENGTH
    print(f"threads: {args.threads} (cores {sorted(os.sched_getaffinity(0))}; XLA_FLAGS="
          f"{os.environ.get('XLA_FLAGS', '')!r}; "
          f"torch.get_num_threads()={torch.get_num_threads()})",
          file=sys.stderr)

    batch = random_batch(config, BATCH, INPUT_LENGTH, TARGET_LENGTH)
    torch_model = hf_model(config)
    with tempfile.TemporaryDirectory() as saved:
        torch_model.save_pretrained(saved)
        params = jax.device_put(load_checkpoint(saved).params)

    rows, result, checks = [], {}, {}
    size = 1024 if args.quick else 4096
    # The matmuls run interleaved with the training steps and with scoring, so that the
    # utilisation and the ceilings compare figures taken under the same conditions.
    matmuls = matmul_functions(size)
    bandwidth = read_bandwidth(reps)

    def record(key: str, label: str, tokens: int, timings: dict[str, Timing]) -> None:
        ours, theirs = timings["ct5x"], timings["hf"]
        result[f"{key}_tokens_per_s"] = round(tokens / ours.median, 1)
        result[f"hf_{key}_tokens_per_s"] = round(tokens / theirs.median, 1)
        result[f"{key}_warmup_s"] = round(ours.warmup_s, 2)
        result[f"hf_{key}_warmup_s"] = round(theirs.warmup_s, 2)
        ratios = paired_ratios(ours, theirs)
        result[f"{key}_paired_ratio"] = [round(statistics.median(ratios), 3),
                                         round(ratios[0], 3), round(ratios[-1], 3)]
        rows.append((label, ours, theirs, tokens, ratios))
        print(f"done: {label}", file=sys.stderr, flush=True)

    train = interleaved({**train_functions(config, params, torch_model, batch), **matmuls}, reps)
    jax_gflops = 2.0 * size**3 / train["jax_matmul"].median / 1e9
    torch_gflops = 2.0 * size**3 / train["torch_matmul"].median / 1e9
    record("train", f"train step (8x(128+32)), {STEPS_PER_EXECUTION}/exec",
           BATCH * (INPUT_LENGTH + TARGET_LENGTH), train)
    record("train_one_per_execution", "train step, 1/exec",
           BATCH * (INPUT_LENGTH + TARGET_LENGTH),
           {"ct5x": train["ct5x_one_per_execution"], "hf": train["hf"]})
    torch_model.eval()
    # Beside greedy decoding: the large matmul (for the encoder pass) and a step's matmuls alone.
    beside = {1: {"jax_matmul": matmuls["jax_matmul"],
                  "step_matmuls": step_matmuls_function(params, decode_length)}}
    decodes = {}
    for beams, key in ((1, "decode"), (3, "beam3"), (5, "beam5")):
        ours, theirs, outputs = decode_functions(
            config, params, torch_model, batch, beams, decode_length
        )
        decodes[key] = interleaved({"ct5x": ours, "hf": theirs, **beside.get(beams, {})}, reps)
        record(key, f"{'greedy' if beams == 1 else f'beam {beams}'} (8x{decode_length} new)",
               BATCH * decode_length, decodes[key])
        checks[key] = decode_check(outputs, config, decode_length)
    greedy = decodes["decode"]
    ours, theirs = score_functions(config, params, torch_model, batch)
    score = interleaved({"ct5x": ours, "hf": theirs, "jax_matmul": matmuls["jax_matmul"]}, reps)
    record("score", "scoring (8x(128+32))", BATCH * (INPUT_LENGTH + TARGET_LENGTH), score)
    score_gflops = 2.0 * size**3 / score["jax_matmul"].median / 1e9

    flops = config.train_step_flops(BATCH, INPUT_LENGTH, TARGET_LENGTH)
    score_ceiling = BATCH * (INPUT_LENGTH + TARGET_LENGTH) / (flops / 3 / (score_gflops * 1e9))
    # A greedy decode at best: the encoder pass at the large matmul's rate, then every step reading
    # its bytes once at the read bandwidth, or doing only its matmuls.
    greedy_matmul_rate = 2.0 * size**3 / greedy["jax_matmul"].median
    encoder_s = encoder_flops(config, BATCH, INPUT_LENGTH) / greedy_matmul_rate
    step_bytes = decode_bytes_per_step(config, params)
    decode_ceiling = BATCH * decode_length / (encoder_s + decode_length * step_bytes / bandwidth)
    matmul_step_s = greedy["step_matmuls"].median / decode_length
    step_matmul_ceiling = BATCH * decode_length / (encoder_s + decode_length * matmul_step_s)
    result.update({
        "train_mfu": round(flops / train["ct5x"].median / (jax_gflops * 1e9), 3),
        "train_one_per_execution_mfu": round(
            flops / train["ct5x_one_per_execution"].median / (jax_gflops * 1e9), 3),
        "steps_per_execution": STEPS_PER_EXECUTION,
        "hf_train_mfu": round(flops / train["hf"].median / (jax_gflops * 1e9), 3),
        "train_model_gflop": round(flops / 1e9, 1),
        "train_ceiling_tokens_per_s": round(
            BATCH * (INPUT_LENGTH + TARGET_LENGTH) / (flops / (jax_gflops * 1e9)), 1
        ),
        "score_ceiling_tokens_per_s": round(score_ceiling, 1),
        "matmul_gflops": round(jax_gflops, 1),
        "torch_matmul_gflops": round(torch_gflops, 1),
        "read_bandwidth_gb_s": round(bandwidth / 1e9, 2),
        "decode_ceiling_tokens_per_s": round(decode_ceiling, 1),
        "decode_encoder_s_at_matmul_rate": round(encoder_s, 3),
        "decode_step_mb": round(step_bytes / 1e6, 1),
        "decode_step_matmuls_ms": round(1e3 * matmul_step_s, 2),
        "decode_step_matmul_ceiling_tokens_per_s": round(step_matmul_ceiling, 1),
        "decode_checks": checks,
        "threads": args.threads,
        "reps": reps,
        "quick": args.quick,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    })
    print(f"{'measure (tokens/s, median of ' + str(reps) + ')':<34} {'ct5x':>9} {'HF':>9} "
          f"{'ratio':>6} {'per round':>10}  {'ct5x s (spread)':>20} {'HF s (spread)':>20} "
          f"{'warm-up s':>12}")
    for label, ours, theirs, tokens, ratios in rows:
        print(f"{label:<34} {tokens / ours.median:>9.1f} {tokens / theirs.median:>9.1f} "
              f"{theirs.median / ours.median:>6.2f} {ratios[0]:>4.2f}-{ratios[-1]:<4.2f}  "
              f"{ours.median:>7.3f} ({ours.spread()}) {theirs.median:>7.3f} ({theirs.spread()}) "
              f"{ours.warmup_s:>5.1f}/{theirs.warmup_s:.1f}")
    print(f"float32 matmul {size}^3: JAX {jax_gflops:.1f} GFLOP/s, PyTorch {torch_gflops:.1f}; "
          f"train MFU ct5x {result['train_mfu']:.1%}, HF {result['hf_train_mfu']:.1%}")
    print(f"matmul ceilings (model FLOPs at the measured rate): train "
          f"{result['train_ceiling_tokens_per_s']:.0f} tokens/s, scoring {score_ceiling:.0f} "
          f"tokens/s ({score_ceiling / result['hf_score_tokens_per_s']:.2f}x transformers)")
    hf_decode = result["hf_decode_tokens_per_s"]
    print(f"greedy ceiling: the encoder pass at the matmul rate ({encoder_s:.3f} s), then "
          f"{decode_length} steps each reading {step_bytes / 1e6:.0f} MB at "
          f"{bandwidth / 1e9:.2f} GB/s -> {decode_ceiling:.0f} tokens/s "
          f"({decode_ceiling / hf_decode:.2f}x transformers); or "
          f"steps of only their matmuls ({1e3 * matmul_step_s:.1f} ms each) -> "
          f"{step_matmul_ceiling:.0f} tokens/s ({step_matmul_ceiling / hf_decode:.2f}x); ct5x "
          f"{1e3 * greedy['ct5x'].median / decode_length:.1f} ms per new token in all")
    print(f"decode checks {checks}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
