"""What JAX's persistent compilation cache saves a second `ct5x train` with the same shapes.

Three kinds of process train the same short run (one execution of STEPS_PER_EXECUTION steps,
then one validation of one batch) on fold 0 of NCBI-disease, the checkpoint and vocabulary
made as benchmarks/fold.py makes them: without the cache (COMPILATION_CACHE_DIR=None), with an
empty cache (the first process of a sweep, which fills it) and with the cache that process
filled (every later process with the same shapes). Each reports, from its timeline
(MODEL_DIR/timings.jsonl): the time from the process's start to the end of its first training
step and to the end of its first validation decode, and the compilation inside. Rounds
interleave the three; medians are printed, then one JSON line. It measures; it asserts nothing.

    python benchmarks/compile_cache.py [--shape small|tiny] [--lengths 128/128] [--rounds 2]
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile

from fold import TASK, launch, parse_args, prepare

KINDS = ("no cache", "empty cache", "filled cache")


def train_once(args, prepared: dict, folder: pathlib.Path, cache: str | None) -> dict:
    """One short `ct5x train`; its timeline record."""
    macros = {"MODEL_DIR": str(folder), "DATA_DIR": str(prepared["data_dir"]),
              "INITIAL_CHECKPOINT_PATH": str(prepared["checkpoint"]),
              "MIXTURE_OR_TASK_NAME": TASK, "TRAIN_STEPS": 8, "EVAL_PERIOD": 8,
              "EVAL_EXAMPLES": args.batch_size, "BATCH_SIZE": args.batch_size,
              "COMPILATION_CACHE_DIR": cache,
              "TASK_FEATURE_LENGTHS": {"inputs": args.input_length,
                                       "targets": args.target_length}}
    command = [sys.executable, "-m", "ct5x.cli", "train", "--gin_file=runs/finetune.gin",
               *[f"--gin.{name}={value!r}" for name, value in macros.items()]]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1")
    launch(command, env, folder.parent / f"{folder.name}.log")
    record = json.loads((folder / "timings.jsonl").read_text().splitlines()[-1])
    validation = record["phases"]["validation"]
    return {"first_step_s": record["marks"]["first_step"]["at"],
            "first_validation_s": validation["last_end"],
            "compile_to_first_step_s": record["marks"]["first_step"]["compile_before"],
            "compile_s": record["compile_seconds"],
            "xla_compile_s": record["compile_by_step"]["xla"],
            "tracing_and_lowering_s": record["compile_by_step"]["tracing"]
            + record["compile_by_step"]["lowering"], "cache_hits": record["cache_hits"],
            "programs": record["programs_compiled"]}


def main() -> None:
    args = parse_args()
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="ct5x_cache_"))
    prepared = prepare(args, work)
    results = {kind: [] for kind in KINDS}
    for index in range(args.rounds):
        round_dir = work / f"round{index}"
        round_dir.mkdir(parents=True)
        cache = str(round_dir / "cache")
        results["no cache"].append(train_once(args, prepared, round_dir / "none", None))
        results["empty cache"].append(train_once(args, prepared, round_dir / "empty", cache))
        results["filled cache"].append(train_once(args, prepared, round_dir / "filled", cache))
        print(f"round {index}: " + ", ".join(
            f"{kind} {results[kind][-1]['first_step_s']:.1f} s" for kind in KINDS),
            file=sys.stderr, flush=True)
    summary = {kind: {key: round(statistics.median(r[key] for r in rows), 2)
                      for key in rows[0]} for kind, rows in results.items()}
    print(f"{'process (median of ' + str(args.rounds) + ')':<26} {'first step s':>13} "
          f"{'first validation s':>19} {'compile s':>10} {'cache hits':>11}")
    for kind, row in summary.items():
        print(f"{kind:<26} {row['first_step_s']:>13.1f} {row['first_validation_s']:>19.1f} "
              f"{row['compile_s']:>10.1f} {row['cache_hits']:>11.0f}")
    print(json.dumps({"shape": args.shape, "lengths": [args.input_length, args.target_length],
                      "rounds": args.rounds, "threads": args.threads, "medians": summary,
                      "per_round": results}))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
