r"""`ct5x train` / `python -m ct5x.train`: gin-configured fine-tuning, as T5X's train script.

    ct5x train --gin_file=runs/finetune.gin \
      --gin.INITIAL_CHECKPOINT_PATH="'/models/flan-t5-large'" \
      --gin.MIXTURE_OR_TASK_NAME="'ncbi_disease_flan_fold0'" \
      --gin.MODEL_DIR="'/runs/flan_large/ncbi_fold0'" --gin.DATA_DIR="'/data/clinical'"

Flags: --gin_file (repeatable), --gin.NAME=VALUE (a binding; VALUE is a gin expression, so strings
are quoted), --gin_bindings, --gin_search_paths (comma-separated), --verbose, --log_examples.
Several processes as one run (T5X's flags; on CPU hosts through gloo collectives):
--multiprocess_gpu --coordinator_address=HOST:PORT --process_count=N --process_index=I
[--initialization_timeout=SECONDS, default 300]; or --gin.MULTIHOST=True to find them in the
environment (SLURM, TPU VM).
Re-running the command on the same MODEL_DIR resumes the run, or says it has finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
import traceback
from typing import Any

from ct5x import process_flags, storage, timing
from ct5x.errors import EXIT_BAD_INPUT, EXIT_FAILED, UserInputError

# The macro of gin/runs/finetune.gin that builds the run's `RunSettings`.
RUN_FILE_MACRO = "RUN"


@dataclasses.dataclass(frozen=True)
class Flags:
    gin_files: list[str]
    gin_bindings: list[str]
    search_paths: list[str]
    verbose: bool = False
    log_examples: bool = False
    processes: process_flags.ProcessFlags = dataclasses.field(
        default_factory=process_flags.ProcessFlags)


def parse_flags(argv: list[str]) -> Flags:
    """T5X's flag names (`gin_utils.parse_gin_flags`: --gin_file, --gin.NAME=VALUE, ...), its
    multi-process flags (`ct5x.process_flags`), --verbose and --log_examples."""
    from ct5x.gin_utils import parse_gin_flags

    gin_flags, rest = parse_gin_flags(argv)
    verbose, examples = False, False
    processes: dict[str, str | bool] = {}
    while rest:
        arg = rest.pop(0)
        name, has_value, value = arg.partition("=")
        if name in process_flags.VALUE_FLAGS:
            if not has_value:
                if not rest:
                    raise UserInputError(f"{arg}: needs a value")
                value = rest.pop(0)
            processes[name] = value
        elif arg == "--multiprocess_gpu":
            processes[arg] = True
        elif arg == "--verbose":
            verbose = True
        elif arg == "--log_examples":
            examples = True
        elif arg in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        else:
            raise UserInputError(f"unknown flag {arg} (see ct5x train --help)")
    if not gin_flags.files:
        raise UserInputError("no --gin_file given (e.g. --gin_file=runs/finetune.gin)")
    return Flags(list(gin_flags.files), list(gin_flags.bindings), list(gin_flags.search_paths),
                 verbose, examples, process_flags.ProcessFlags.from_flags(processes))


def _macro_name(binding: str) -> str | None:
    """`NAME = value` binds a macro when NAME has no dot or slash."""
    name = binding.partition("=")[0].strip()
    return name if name and "." not in name and "/" not in name else None


def _name_bad_binding(files: list[str], gin_bindings: list[str], search_paths: list[str]) -> None:
    """Raises naming the first binding that gin cannot take on its own, if any."""
    from ct5x import gin_utils

    for binding in gin_bindings:
        try:
            gin_utils.parse_gin(files, [binding], search_paths)
        except UserInputError as error:
            name, _, value = (part.strip() for part in binding.partition("="))
            hint = ""
            if value[:1] not in ("'", '"', "%", "@", "{", "[", "(") and not value[:1].isdigit():
                hint = f"; strings need quotes: --gin.{name}=\"'{value}'\""
            raise UserInputError(f"--gin.{name}={value}: {error}{hint}") from None


def load_settings(gin_files: list[str], gin_bindings: list[str],
                  search_paths: list[str] = ()) -> tuple[Any, Any]:
    """(RunSettings, the MODEL a model gin file describes or None), checked."""
    from ct5x import gin_utils

    files, search_paths = list(gin_files), list(search_paths)
    gin_utils.parse_gin(files, (), search_paths)
    for binding in gin_bindings:
        name = _macro_name(binding)
        if name is not None and not gin_utils.is_bound(name):
            raise UserInputError(
                f"gin: unknown macro {name} (not defined by {', '.join(gin_files)})"
            )
    try:
        gin_utils.parse_gin(files, gin_bindings, search_paths)
    except UserInputError:
        _name_bad_binding(files, gin_bindings, search_paths)
        raise
    settings = gin_utils.macro(RUN_FILE_MACRO)
    settings.check()
    model = gin_utils.macro("MODEL") if gin_utils.is_bound("MODEL") else None
    return settings, model


def _configure_process(settings: Any, processes: process_flags.ProcessFlags | None) -> None:
    """Random-number implementation, compilation cache and the start of several processes,
    before any array exists: the flags' processes, else MULTIHOST's (found in the environment)."""
    import jax

    from ct5x import compilation_cache, multihost

    compilation_cache.configure(settings.compilation_cache_dir)
    jax.config.update("jax_default_prng_impl",
                      "unsafe_rbg" if settings.use_hardware_rng else "threefry2x32")
    if processes is None or not processes.wanted:
        processes = process_flags.ProcessFlags(detect=settings.initialize_distributed)
    multihost.start(processes, "ct5x train")


def run(gin_files: list[str], gin_bindings: list[str] = (), search_paths: list[str] = (),
        log_examples: bool = False, processes: process_flags.ProcessFlags | None = None) -> dict:
    """Trains (or resumes) the run the gin files describe; returns the final run.json contents."""
    from ct5x import multihost
    from ct5x.run_directory import RunDirectory
    from ct5x.run_setup import build_run

    timeline = timing.begin("train")
    timeline.mark("run_start")
    settings, gin_model = load_settings(list(gin_files), list(gin_bindings), list(search_paths))
    _configure_process(settings, processes)
    if settings.evaluate_after_training and multihost.is_multiprocess():
        raise UserInputError("gin: EVALUATE_AFTER_TRAINING=True scores in one process; with "
                             "several, run `ct5x evaluate --runs MODEL_DIR` after training")
    importlib.import_module(settings.mixture_or_task_module)
    timeline.mark("tasks_imported")
    existing = RunDirectory(settings.model_dir).read_run()
    if existing and existing.get("finished"):
        multihost.say(f"{settings.model_dir}: run already finished at step "
                      f"{existing['latest_step']} (best step {existing['best_step']})"
                      + ("" if settings.evaluate_after_training else "; nothing to do"))
        record = existing
    else:
        from ct5x.training_loop import train

        run_state, initial_params = build_run(settings, gin_model, log_examples)
        timeline.mark("set_up")
        record = train(run_state, initial_params)
    if settings.evaluate_after_training:
        evaluate_test_split(settings.model_dir)
    _write_timings(settings.model_dir, timeline)
    return record


def evaluate_test_split(model_dir: str) -> None:
    """`ct5x evaluate --runs MODEL_DIR` with its defaults, in this process
    (EVALUATE_AFTER_TRAINING); a run scored before at its best step is left as it is."""
    from ct5x import multihost
    from ct5x.evaluation import EvaluationSettings, evaluate_runs
    from ct5x.run_record import TEST_METRICS_FILE

    outcome = evaluate_runs(model_dir, EvaluationSettings(), show_progress=sys.stderr.isatty())
    if outcome.failed:
        directory, reason = outcome.failed[0]
        raise UserInputError(f"scoring the test split: {directory}: {reason}")
    if outcome.internal_errors:
        directory, reason, trace = outcome.internal_errors[0]
        raise RuntimeError(f"scoring the test split of {directory} failed: {reason}\n{trace}")
    path = storage.path(model_dir) / TEST_METRICS_FILE
    scores = json.loads(path.read_text())["metrics"]
    multihost.say("test split: " + ", ".join(f"{name} {value:.4f}" for name, value
                                             in sorted(scores.items())) + f" ({path})")


def _write_timings(model_dir: str, timeline: timing.Timeline) -> None:
    """The run's timeline into MODEL_DIR/timings.jsonl (process 0's) and the console."""
    from ct5x import multihost
    from ct5x.run_record import TIMINGS_FILE

    if multihost.is_primary():
        timing.append_record(os.path.join(model_dir, TIMINGS_FILE), timeline.record())
    multihost.say(timeline.summary())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verbose = "--verbose" in argv
    from ct5x.startup import import_frameworks_quietly

    timing.record_from_environment("train")
    storage.configure()  # STORAGE_EMULATOR_HOST, before any library first reaches a bucket
    if not verbose:
        import_frameworks_quietly()
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from ct5x import multihost
    from ct5x.training_loop import Preempted, TrainingDiverged

    try:
        flags = parse_flags(argv)
        record = run(flags.gin_files, flags.gin_bindings, flags.search_paths, flags.log_examples,
                     flags.processes)
    except UserInputError as error:
        # gin appends "In call to configurable ..." lines to errors raised inside a binding.
        first_line = (str(error).splitlines() or [""])[0]
        return _failed(EXIT_BAD_INPUT, f"error: {first_line}", verbose)
    except TrainingDiverged as error:
        return _failed(EXIT_FAILED, f"stopped: {error}", verbose)
    except Preempted as error:  # every process stops here together: nobody to tell
        return _failed(EXIT_FAILED, f"stopped: {error}", verbose, tell_the_others=False)
    except Exception as error:
        if not multihost.is_multiprocess():
            raise
        traceback.print_exc()
        return _failed(EXIT_FAILED, f"crashed: {type(error).__name__}: "
                       f"{(str(error).splitlines() or [''])[0]}", verbose=False)
    best = record.get("best_metric") or {}
    multihost.say(f"finished: step {record['latest_step']}, best step {record['best_step']}"
                  + (f" ({best['name']} {best['value']:.4f})" if best else ""))
    return 0


def _failed(code: int, message: str, verbose: bool, tell_the_others: bool = True) -> int:
    """One line on standard error; in a multi-process run the others stop too (this process
    then exits here)."""
    from ct5x import multihost

    if verbose:
        traceback.print_exc()
    print(f"ct5x train: {multihost.line_prefix()}{message}", file=sys.stderr, flush=True)
    if tell_the_others:
        multihost.stop_every_process(code, message)
    return code


def register_command(commands: argparse._SubParsersAction) -> None:
    """`ct5x train ...`: its T5X-style flags go through untouched to `main`."""
    parser = commands.add_parser("train", help="fine-tune a checkpoint on a task (gin)",
                                 add_help=False, prefix_chars="+")
    parser.add_argument("flags", nargs=argparse.REMAINDER)
    parser.set_defaults(run=lambda args: main(args.flags + (["--verbose"] if args.verbose
                                                             else [])))


if __name__ == "__main__":
    sys.exit(main())
