"""What a checkpoint save costs training: the loop's stall per save, and the training time it adds.

Two kinds of `ct5x train` run the same steps on fold 0 of NCBI-disease (checkpoint, vocabulary
and data made as benchmarks/fold.py makes them), with STEPS_PER_EXECUTION equal to the checkpoint
period so both run the same executions: one saves every CHECKPOINT_PERIOD steps (and prunes to
KEEP_CHECKPOINTS=1), the other only at its one evaluation, at the end. From each run's timeline
(MODEL_DIR/timings.jsonl):

- stall per save: the loop's time in the phases `checkpoint_save` (starting a save) and
  `checkpoint_wait` (waiting for one to commit where it must) divided by the saves;
- added per save: the training time (training_start to training_end, less validation) of the
  saving run minus the other's, divided by the extra saves: what a save costs training, with
  whatever the background writing takes from the training steps on the same cores.

Rounds interleave the two; medians are printed, then one JSON line. It measures; it asserts
nothing.

    python benchmarks/checkpoint_stall.py [--shape small|tiny] [--lengths 64/64] [--steps 24]
        [--period 4] [--rounds 2] [--model-dir-root gs://bucket/stall]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile

from fold import TASK, launch, parse_args, prepare

KINDS = ("saves", "one save")


def stall_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--period", type=int, default=4)
    parser.add_argument("--model-dir-root", default=None,
                        help="where the runs' MODEL_DIRs go (default: the work folder)")
    own, rest = parser.parse_known_args()
    args = parse_args(["--lengths", "64/64", "--batch-size", "8", "--train-examples", "256",
                       "--validation-examples", "8", "--test-examples", "8", *rest])
    args.steps, args.period, args.model_dir_root = own.steps, own.period, own.model_dir_root
    return args


def train_once(args, prepared: dict, model_dir: str, log: pathlib.Path, saves: bool) -> dict:
    """One `ct5x train`; its stall and training time from its timeline."""
    macros = {"MODEL_DIR": model_dir, "DATA_DIR": str(prepared["data_dir"]),
              "INITIAL_CHECKPOINT_PATH": str(prepared["checkpoint"]),
              "MIXTURE_OR_TASK_NAME": TASK, "TRAIN_STEPS": args.steps,
              "EVAL_PERIOD": args.steps, "EVAL_EXAMPLES": args.batch_size,
              "BATCH_SIZE": args.batch_size, "STEPS_PER_EXECUTION": args.period,
              "CHECKPOINT_PERIOD": args.period if saves else None, "KEEP_CHECKPOINTS": 1,
              "TASK_FEATURE_LENGTHS": {"inputs": args.input_length,
                                       "targets": args.target_length}}
    timings = log.with_suffix(".timings.jsonl")
    command = [sys.executable, "-m", "ct5x.cli", "train", "--gin_file=runs/finetune.gin",
               *[f"--gin.{name}={value!r}" for name, value in macros.items()]]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1", CT5X_TIMINGS=str(timings))
    launch(command, env, log)
    record = json.loads(timings.read_text().splitlines()[-1])
    phases = record["phases"]
    # Earlier ct5x versions saved synchronously and had no checkpoint_wait.
    stall = sum(phases.get(name, {}).get("seconds", 0.0)
                for name in ("checkpoint_save", "checkpoint_wait"))
    training = (record["marks"]["training_end"]["at"] - record["marks"]["training_start"]["at"]
                - phases["validation"]["seconds"])
    return {"saves": phases["checkpoint_save"]["count"], "stall_s": stall,
            "training_s": training}


def main() -> None:
    args = stall_args()
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="ct5x_stall_"))
    import ct5x_tasks

    ct5x_tasks.register_all()  # prepare() reads the task's examples
    prepared = prepare(args, work)
    root = args.model_dir_root or str(work)
    results = {kind: [] for kind in KINDS}
    for index in range(args.rounds):
        for kind in KINDS:
            name = f"round{index}_{kind.replace(' ', '_')}"
            results[kind].append(train_once(args, prepared, f"{root}/{name}", work / f"{name}.log",
                                            saves=kind == "saves"))
        print(f"round {index}: " + ", ".join(
            f"{kind} {results[kind][-1]['training_s']:.1f} s" for kind in KINDS),
            file=sys.stderr, flush=True)
    rounds = []
    for saving, single in zip(results["saves"], results["one save"]):
        extra = saving["saves"] - single["saves"]
        rounds.append({"stall_per_save_s": saving["stall_s"] / saving["saves"],
                       "added_per_save_s": (saving["training_s"] - single["training_s"]) / extra,
                       "saves": saving["saves"]})
    medians = {key: round(statistics.median(r[key] for r in rounds), 3)
               for key in ("stall_per_save_s", "added_per_save_s")}
    print(f"{'shape':<8} {'saves':>6} {'stall per save s':>17} {'added per save s':>17}")
    print(f"{args.shape:<8} {rounds[0]['saves']:>6} {medians['stall_per_save_s']:>17.3f} "
          f"{medians['added_per_save_s']:>17.3f}")
    print(json.dumps({"shape": args.shape, "lengths": [args.input_length, args.target_length],
                      "steps": args.steps, "period": args.period, "rounds": args.rounds,
                      "threads": args.threads, "model_dir_root": root, "medians": medians,
                      "per_round": results}))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
