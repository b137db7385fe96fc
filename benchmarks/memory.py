"""Peak resident memory of a training step: ct5x with and without per-layer remat, transformers.

Each measurement runs in its own Python process (so no run inherits another's peak) at the
t5_1_1-base shape, batch 8 x (512 input + 128 target tokens), dropout 0.1, float32, Adafactor
(ct5x's `hf` flavour; transformers' `Adafactor(scale_parameter=False, relative_step=False)`).
A process builds the model, runs one step (for ct5x: compiles it first) and a second step, and
reports its `ru_maxrss` and its resident memory before the first step (weights and optimizer
state). ct5x trains through its `Trainer`, as `ct5x train` does (the state's buffers donated to
the step); without remat it is also measured running 8 steps per execution (one loop, the
CPU default), one execution. Takes several minutes; prints a table and one JSON object on the
last line.

    python benchmarks/memory.py [--size base|small] [--policies none,minimal,full]
        [--skip-steps-per-execution] [--skip-transformers]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

from workload import random_batch

BATCH, INPUT_LENGTH, TARGET_LENGTH = 8, 512, 128


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _config(size: str, policy: str):
    from ct5x.gin_utils import build_model

    return build_model([f"models/t5_1_1/{size}.gin"], [f"REMAT_POLICY = '{policy}'"]).config


def ct5x_worker(size: str, policy: str, steps_per_execution: int) -> dict:
    """Through the `Trainer`, as `ct5x train` runs: jitted with the state's buffers donated."""
    import jax

    from ct5x import partitioning
    from ct5x.models import EncoderDecoderModel
    from ct5x.optimizers import OptimizerSettings, make_optimizer
    from ct5x.trainer import Trainer

    model = EncoderDecoderModel(_config(size, policy))
    optimizer = make_optimizer(OptimizerSettings(flavour="hf", learning_rate=1e-4,
                                                 max_grad_norm=None))
    trainer = Trainer(model, optimizer, partitioning.Partitioner(1, devices=jax.devices()[:1]),
                      seed=0, steps_per_execution=steps_per_execution)
    state = trainer.create_state(None)
    batches = [random_batch(model.config, BATCH, INPUT_LENGTH, TARGET_LENGTH)]
    batches *= steps_per_execution
    resident = current_rss_mb()
    scratch = trainer.lower_train(state, batches).compile().memory_analysis()
    for _ in range(2 if steps_per_execution == 1 else 1):
        state, _ = trainer.train(state, batches)
    jax.block_until_ready(state)
    return {
        "resident_before_step_mb": round(resident, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "xla_temp_mb": round(scratch.temp_size_in_bytes / 2**20, 1) if scratch else None,
    }


def hf_worker(size: str) -> dict:
    import torch
    import transformers

    config = _config(size, "none")
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**config.to_hf_dict()))
    model.train()
    optimizer = transformers.optimization.Adafactor(
        model.parameters(), lr=1e-4, scale_parameter=False, relative_step=False, warmup_init=False
    )
    batch = {k: torch.from_numpy(v).long()
             for k, v in random_batch(config, BATCH, INPUT_LENGTH, TARGET_LENGTH).items()}
    inputs = {
        "input_ids": batch["encoder_input_tokens"],
        "decoder_input_ids": batch["decoder_input_tokens"],
        "labels": batch["decoder_target_tokens"],
    }
    resident = current_rss_mb()
    for _ in range(2):
        optimizer.zero_grad()
        model(**inputs).loss.backward()
        optimizer.step()
    return {"resident_before_step_mb": round(resident, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


def measure(size: str, framework: str, policy: str, steps_per_execution: int = 1) -> dict:
    command = [sys.executable, __file__, "--worker", framework, "--size", size,
               "--policies", policy, "--steps-per-execution", str(steps_per_execution)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="base", choices=["tiny", "small", "base", "large"])
    parser.add_argument("--policies", default="none,minimal,full",
                        help="ct5x remat policies to measure, comma-separated")
    parser.add_argument("--skip-steps-per-execution", action="store_true",
                        help="do not measure ct5x's 8 steps per execution")
    parser.add_argument("--skip-transformers", action="store_true",
                        help="do not measure transformers")
    parser.add_argument("--worker", choices=["ct5x", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--steps-per-execution", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "ct5x":
        print(json.dumps(ct5x_worker(args.size, args.policies, args.steps_per_execution)))
        return
    if args.worker == "hf":
        print(json.dumps(hf_worker(args.size)))
        return

    results = {f"ct5x_remat_{p}": measure(args.size, "ct5x", p) for p in args.policies.split(",")}
    if not args.skip_steps_per_execution:
        results["ct5x_8_steps_per_execution"] = measure(args.size, "ct5x", "none", 8)
    if not args.skip_transformers:
        results["transformers"] = measure(args.size, "hf", "none")
    print(f"t5_1_1-{args.size}, batch {BATCH} x ({INPUT_LENGTH} + {TARGET_LENGTH}), "
          "one process each")
    print(f"{'run':<26} {'peak RSS MiB':>13} {'before step MiB':>16} {'XLA temp MiB':>13}")
    for name, figures in results.items():
        if "error" in figures:
            print(f"{name:<26} failed: {figures['error']}")
            continue
        temp = figures.get("xla_temp_mb") or 0
        print(f"{name:<26} {figures['peak_rss_mb']:>13.0f} "
              f"{figures['resident_before_step_mb']:>16.0f} {temp:>13.0f}")
    print(json.dumps({"size": args.size, "batch": [BATCH, INPUT_LENGTH, TARGET_LENGTH], **results}))


if __name__ == "__main__":
    main()
