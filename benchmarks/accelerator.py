"""Training-step speed and model-FLOPs utilisation on one accelerator: ct5x beside transformers.

The model comes from ct5x's gin files (`models/t5_1_1/{size}.gin`, ACTIVATION_DTYPE='bfloat16':
bfloat16 activations; float32 parameters, attention logits, softmax and output logits), dropout
0.1, Adafactor at 1e-4 (ct5x's `hf` flavour against transformers' `Adafactor(scale_parameter=False,
relative_step=False, warmup_init=False)`), and sees batches of random tokens, B x (512 input + 128
target) by default. ct5x runs through its `Trainer`, the jitted, sharded, buffer-donating step that
`ct5x train` runs, batch transfer included. transformers runs eagerly under
`torch.autocast(bfloat16)` with float32 weights, which is what its `bf16=True` training does.

Each (framework, size, random-number implementation) runs in a process of its own, so each reports
its own peak device memory. A process measures a bfloat16 8192^3 matmul first (the ceiling in the
same run), then times compilation and the first step apart, two warm-up steps, and `--reps`
repetitions of `--steps` back-to-back steps; it reports the median and spread of the per-step time.
Model-FLOPs utilisation counts the matmul FLOPs of the step (forward x 3) and is given against both
that measured matmul rate and the card's datasheet peak (`--peak-tflops`, known for H100 and H200).

Prints a table, then one JSON object on the last line. It measures; it asserts no time.

    python benchmarks/accelerator.py [--sizes base,large] [--batch 32] [--rng-impls threefry2x32]
        [--binding "SCAN_LAYERS = True"] [--budget-s 400] [--profile-steps 3]

With `--profile-steps N`, each ct5x run then traces N more steps with `jax.profiler` and reports
how busy the device was and its kernel time per step by kind (matmul, reduction, random bits,
copies and transposes, other fusions), by op, by op instance and by kernel name; `--profile-dir`
keeps the traces for TensorBoard.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from workload import random_batch

# Dense bfloat16 TFLOP/s by datasheet, matched against the device's name in this order.
DATASHEET_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4),
                         ("H200", 989.4), ("A100", 312.0))
MATMUL_SIZE = 8192


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="base,large", help="t5_1_1 sizes, comma-separated")
    parser.add_argument("--frameworks", default="ct5x,transformers")
    parser.add_argument("--rng-impls", default="threefry2x32",
                        help="ct5x dropout PRNGs to measure (threefry2x32, unsafe_rbg)")
    parser.add_argument("--binding", action="append", default=[],
                        help="extra gin binding for ct5x's model, e.g. \"SCAN_LAYERS = True\"")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--input-length", type=int, default=512)
    parser.add_argument("--target-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed repetition")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="datasheet bfloat16 peak (default: known cards by name)")
    parser.add_argument("--matmul-size", type=int, default=MATMUL_SIZE)
    parser.add_argument("--budget-s", type=float, default=None,
                        help="skip measurements that would start after this many seconds")
    parser.add_argument("--json-out", help="also write the JSON summary here")
    parser.add_argument("--profile-steps", type=int, default=0,
                        help="after timing, trace this many ct5x steps and report where their "
                             "device time went (ops and kinds, busy fraction)")
    parser.add_argument("--profile-dir", help="keep the traces here (default: a temporary dir)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def back_to_back(step, finish, count: int) -> tuple[float, object]:
    """`count` steps dispatched back to back, waited for once: (seconds, the last one finished)."""
    start = time.perf_counter()
    for _ in range(count - 1):
        step()
    last = finish(step())
    return time.perf_counter() - start, last


def seconds_per_call(call, finish, count: int = 10) -> float:
    """One warm-up call, then `count` back-to-back calls, waited for once at the end."""
    finish(call())
    return back_to_back(call, finish, count)[0] / count


def repeat_timed(step, finish, args: argparse.Namespace) -> dict:
    """Compilation with the first step, two warm-up steps, then the timed repetitions."""
    first_s, _ = back_to_back(step, finish, 1)
    back_to_back(step, finish, 2)
    per_step = []
    for _ in range(args.reps):
        seconds, last = back_to_back(step, finish, args.steps)
        per_step.append(seconds / args.steps)
    return {"first_step_s": round(first_s, 2), "step_s": per_step, "loss": float(last)}


def ct5x_worker(size: str, rng_impl: str, args: argparse.Namespace) -> dict:
    import jax
    import jax.numpy as jnp

    from ct5x import partitioning
    from ct5x.gin_utils import build_model
    from ct5x.optimizers import OptimizerSettings, make_optimizer
    from ct5x.trainer import Trainer

    jax.config.update("jax_default_prng_impl", rng_impl)
    a = jnp.ones((args.matmul_size,) * 2, jnp.bfloat16)
    matmul = jax.jit(jnp.matmul)
    matmul_s = seconds_per_call(lambda: matmul(a, a), jax.block_until_ready)

    model = build_model([f"models/t5_1_1/{size}.gin"],
                        ["ACTIVATION_DTYPE = 'bfloat16'", *args.binding])
    optimizer = make_optimizer(OptimizerSettings(flavour="hf", learning_rate=1e-4,
                                                 max_grad_norm=None))
    trainer = Trainer(model, optimizer, partitioning.Partitioner(), seed=0)
    carry = {"state": trainer.create_state(None)}
    batch = random_batch(model.config, args.batch, args.input_length, args.target_length)

    def step():
        carry["state"], metrics = trainer.train(carry["state"], [batch])
        return metrics

    def finish(metrics):
        return metrics.fetch()["loss"]

    timing = repeat_timed(step, finish, args)
    stats = jax.local_devices()[0].memory_stats() or {}
    if args.profile_steps > 0:
        timing["profile"] = profile_steps(step, finish, f"ct5x_{size}_{rng_impl}", args)
    return {**timing, "matmul_s": matmul_s, "device": jax.local_devices()[0].device_kind,
            "peak_memory_gib": round(stats.get("peak_bytes_in_use", 0) / 2**30, 2),
            "versions": {"jax": jax.__version__}}


def profile_steps(step, finish, name: str, args: argparse.Namespace) -> dict:
    """`--profile-steps` back-to-back steps under `jax.profiler`, summarised by op."""
    import jax
    from trace_summary import summarise_trace

    directory = os.path.join(args.profile_dir or tempfile.mkdtemp(), name)
    jax.profiler.start_trace(directory)
    wall_s, _ = back_to_back(step, finish, args.profile_steps)
    jax.profiler.stop_trace()
    return {**summarise_trace(directory, args.profile_steps, wall_s), "trace_dir": directory}


def transformers_worker(size: str, args: argparse.Namespace) -> dict:
    import torch
    import transformers

    from ct5x.gin_utils import build_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    def synchronize(_) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def matmul_seconds() -> float:  # its operand is freed before the model is built
        a = torch.ones((args.matmul_size,) * 2, dtype=torch.bfloat16, device=device)
        return seconds_per_call(lambda: a @ a, synchronize)

    matmul_s = matmul_seconds()

    config = build_model([f"models/t5_1_1/{size}.gin"]).config
    torch.manual_seed(0)
    hf_config = transformers.T5Config(**config.to_hf_dict())
    model = transformers.T5ForConditionalGeneration(hf_config).to(device).train()
    optimizer = transformers.optimization.Adafactor(
        model.parameters(), lr=1e-4, scale_parameter=False, relative_step=False, warmup_init=False)
    batch = random_batch(config, args.batch, args.input_length, args.target_length)
    inputs = {name: torch.from_numpy(batch[key]).long().to(device) for name, key in (
        ("input_ids", "encoder_input_tokens"), ("decoder_input_ids", "decoder_input_tokens"),
        ("labels", "decoder_target_tokens"))}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    timing = repeat_timed(step, lambda loss: loss.item(), args)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    return {**timing, "matmul_s": matmul_s, "device": name,
            "peak_memory_gib": round(peak / 2**30, 2),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def run_worker(name: str, args: argparse.Namespace, timeout_s: float | None) -> dict:
    """One measurement in a fresh process; its last stdout line is its JSON result."""
    command = [sys.executable, __file__, *sys.argv[1:], "--worker", name]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1")
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout_s:.0f} s"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        print("\n".join(lines[-15:]), file=sys.stderr)
        return {"error": lines[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(result: dict, flops: float, tokens: int, peak_tflops: float | None,
              matmul_size: int) -> dict:
    step_s = statistics.median(result["step_s"])
    matmul_tflops = 2.0 * matmul_size**3 / result["matmul_s"] / 1e12
    achieved = flops / step_s / 1e12
    row = {
        "step_ms": round(step_s * 1e3, 1),
        "step_ms_spread": [round(min(result["step_s"]) * 1e3, 1),
                           round(max(result["step_s"]) * 1e3, 1)],
        "tokens_per_s": round(tokens / step_s),
        "model_tflops": round(achieved, 1),
        "matmul_tflops": round(matmul_tflops, 1),
        "mfu_vs_matmul": round(achieved / matmul_tflops, 3),
        "mfu_vs_datasheet": round(achieved / peak_tflops, 3) if peak_tflops else None,
        **{key: result[key] for key in ("first_step_s", "loss", "peak_memory_gib", "device",
                                         "versions")},
    }
    if "profile" in result:
        # The traced wall time includes the profiler's own overhead; the timed step does not, so
        # op time against the timed step says better how busy the device is in training.
        share = round(result["profile"]["op_ms_per_step"] / step_s / 1e3, 3)
        row["profile"] = {**result["profile"], "op_share_of_timed_step": share}
    return row


def print_profile(profile: dict) -> None:
    print(f"  traced {profile['steps']} steps: ops ran {profile['busy_fraction']:.1%} of the "
          f"traced time; {profile['op_ms_per_step']:.1f} ms of op time per step, "
          f"{profile['op_share_of_timed_step']:.1%} of the timed step; by kind (ms/step): "
          + ", ".join(f"{kind} {ms}" for kind, ms in profile["by_kind_ms_per_step"].items()))
    for heading, key in (("by op", "top_ops"), ("by kernel", "top_kernels")):
        print(f"  {heading}:")
        for name, ms, share in profile[key][:10]:
            print(f"    {ms:>8.2f} ms {share:>6.1%}  {name[:80]}")


def datasheet_peak(device: str) -> float | None:
    return next((tflops for name, tflops in DATASHEET_BF16_TFLOPS if name in device), None)


def measure_size(size: str, args: argparse.Namespace, started: float) -> dict[str, dict]:
    """Every requested run at one model size, each in its own process, printed as it ends."""
    from ct5x.gin_utils import build_model

    flops = build_model([f"models/t5_1_1/{size}.gin"]).config.train_step_flops(
        args.batch, args.input_length, args.target_length)
    tokens = args.batch * (args.input_length + args.target_length)
    names = [f"ct5x:{size}:{rng}" for rng in args.rng_impls.split(",")
             if "ct5x" in args.frameworks]
    names += [f"transformers:{size}"] if "transformers" in args.frameworks else []
    results = {}
    for name in names:
        left = None if args.budget_s is None else args.budget_s - (time.perf_counter() - started)
        raw = run_worker(name, args, left) if left is None or left > 0 else {
            "error": "skipped: --budget-s spent"}
        if "error" in raw:
            results[name] = raw
            print(f"{name:<34} {raw['error']}", flush=True)
            continue
        peak = args.peak_tflops or datasheet_peak(raw["device"])
        row = results[name] = summarise(raw, flops, tokens, peak, args.matmul_size)
        mfu = f"{row['mfu_vs_datasheet']:.1%}" if row["mfu_vs_datasheet"] else "-"
        print(f"{name:<34} {row['step_ms']:>8.1f} {'-'.join(map(str, row['step_ms_spread'])):>13} "
              f"{row['tokens_per_s']:>9} {mfu:>6} {row['mfu_vs_matmul']:>7.1%} "
              f"{row['peak_memory_gib']:>9.2f} {row['first_step_s']:>10.1f}", flush=True)
        if "profile" in row:
            print_profile(row["profile"])
    reference = results.get(f"transformers:{size}", {}).get("step_ms")
    for name, row in results.items():
        if reference and name.startswith("ct5x") and "step_ms" in row:
            row["speedup_vs_transformers"] = round(reference / row["step_ms"], 2)
            print(f"{name:<34} {row['speedup_vs_transformers']:.2f}x transformers' tokens/s")
    return results


def main() -> None:
    args = parse_args()
    if args.worker:
        framework, size, *rng = args.worker.split(":")
        result = (ct5x_worker(size, rng[0], args) if framework == "ct5x"
                  else transformers_worker(size, args))
        print(json.dumps(result))
        return

    started, results = time.perf_counter(), {}
    print(f"batch {args.batch} x ({args.input_length} + {args.target_length}), bfloat16 "
          f"activations, dropout 0.1, Adafactor; {args.reps} x {args.steps} timed steps; "
          f"ct5x bindings: {args.binding or 'none'}")
    print(f"{'run':<34} {'step ms':>8} {'spread':>13} {'tokens/s':>9} {'MFU':>6} {'MFU/mm':>7} "
          f"{'peak GiB':>9} {'1st step s':>10}")
    for size in args.sizes.split(","):
        results.update(measure_size(size, args, started))
    summary = {"batch": [args.batch, args.input_length, args.target_length],
               "bindings": args.binding, "runs": results}
    if args.json_out:
        with open(args.json_out, "w") as out:
            json.dump(summary, out, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
