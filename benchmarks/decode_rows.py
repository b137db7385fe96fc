"""Greedy decoding's time per example against the rows of a batch: ct5x beside transformers.

What EVAL_BATCH_SIZE's default rests on. A decoding step reads every decoder weight once for all
the rows of its batch, so more rows share that read; each row still reads its own key/value cache.
At the t5_1_1-small shape (random weights, the output layer's EOS row zeroed so that no row stops
early), `--rows` batches of `--input-length` random input tokens are decoded greedily for
`--length` new tokens by ct5x (`EncoderDecoderModel.predict_batch`, jitted, compiled before it is
timed) and by transformers' `generate`, in turn, `--reps` times each; the same tokens are checked.
Every process is pinned to `--threads` cores, and PyTorch gets as many threads. The table gives
the median seconds per decoded example, the per-example speed-up over each framework's smallest
batch, and transformers' time over ct5x's; then a float32 matmul's rate (the machine's ceiling),
and the last line is one JSON object. It measures; it asserts nothing.

    python benchmarks/decode_rows.py [--rows 16,32,64] [--length 512] [--input-length 96]
        [--reps 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

from pinning import pin_threads


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="16,32,64", help="rows per batch, comma-separated")
    parser.add_argument("--length", type=int, default=512, help="new tokens per example")
    parser.add_argument("--input-length", type=int, default=96)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    return parser.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    pin_threads(ARGS.threads)

import jax
import numpy as np
import torch
from bench import SMALL, hf_model, matmul_functions
from workload import random_batch

from ct5x.checkpoints import load_checkpoint
from ct5x.models import DecodingOptions, EncoderDecoderModel


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(args, params, torch_model, predict, options, matmul, rows: int,
            rates: list[float]) -> dict:
    """One batch of `rows`: ct5x's compile, then ct5x and transformers in turn, `--reps` each."""
    tokens = random_batch(SMALL, rows, args.input_length, 2)["encoder_input_tokens"]
    batch = {"encoder_input_tokens": jax.numpy.asarray(tokens)}
    compile_s = seconds(lambda: predict.lower(params, batch, options=options).compile())
    input_ids = torch.from_numpy(tokens).long()
    outputs = {}

    def ct5x_decode():
        outputs["ct5x"] = np.asarray(predict(params, batch, options=options))

    def hf_decode():
        with torch.no_grad():
            outputs["hf"] = torch_model.generate(
                input_ids=input_ids, max_new_tokens=args.length, do_sample=False
            ).numpy()[:, 1:]

    times = {"ct5x": [], "hf": []}
    for _ in range(args.reps):
        times["ct5x"].append(seconds(ct5x_decode))
        times["hf"].append(seconds(hf_decode))
        rates.append(2.0 * 4096**3 / seconds(matmul) / 1e9)
    same = outputs["ct5x"].shape == outputs["hf"].shape and bool(
        (outputs["ct5x"] == outputs["hf"]).all())
    return {
        "ct5x_s_per_example": statistics.median(times["ct5x"]) / rows,
        "hf_s_per_example": statistics.median(times["hf"]) / rows,
        "ct5x_times": times["ct5x"], "hf_times": times["hf"],
        "ct5x_compile_s": compile_s, "same_tokens": same,
    }


def main() -> None:
    args = ARGS
    torch.set_num_threads(args.threads)
    rows_list = sorted({int(rows) for rows in args.rows.split(",")})
    torch_model = hf_model(SMALL).eval()
    with tempfile.TemporaryDirectory() as saved:
        torch_model.save_pretrained(saved)
        params = jax.device_put(load_checkpoint(saved).params)
    model = EncoderDecoderModel(SMALL.replace(dropout_rate=0.0))
    options = DecodingOptions(max_decode_length=args.length)
    predict = jax.jit(model.predict_batch, static_argnames="options")
    matmul = matmul_functions(4096)["jax_matmul"]
    matmul()
    rates, results = [], {}
    for rows in rows_list:
        results[rows] = measure(args, params, torch_model, predict, options, matmul, rows, rates)
        print(f"rows {rows}: ct5x {results[rows]['ct5x_s_per_example']:.3f} s, transformers "
              f"{results[rows]['hf_s_per_example']:.3f} s per example", file=sys.stderr,
              flush=True)
    first = results[rows_list[0]]
    print(f"greedy decoding, t5_1_1-small, {args.input_length} input tokens, {args.length} new "
          f"tokens, {args.threads} threads, median of {args.reps}")
    print("| rows | ct5x s/example | vs its 1st row | transformers s/example | vs its 1st row "
          "| transformers / ct5x | same tokens |")
    print("|---|---|---|---|---|---|---|")
    for rows, found in results.items():
        ours, theirs = found["ct5x_s_per_example"], found["hf_s_per_example"]
        print(f"| {rows} | {ours:.3f} | {first['ct5x_s_per_example'] / ours:.2f}x | "
              f"{theirs:.3f} | {first['hf_s_per_example'] / theirs:.2f}x | "
              f"{theirs / ours:.2f}x | {found['same_tokens']} |")
    print(f"float32 matmul 4096^3 (JAX, between decodes): {statistics.median(rates):.1f} GFLOP/s")
    print(json.dumps({
        "length": args.length, "input_length": args.input_length, "reps": args.reps,
        "threads": args.threads, "rows": {str(rows): found for rows, found in results.items()},
        "matmul_gflops": round(statistics.median(rates), 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }))


if __name__ == "__main__":
    main()
