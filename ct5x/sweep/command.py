"""`ct5x sweep plan|run|slurm|tpu EXPERIMENT.gin [--gin.NAME=VALUE ...]`.

- plan: every run of the grid with its MODEL_DIR and `ct5x train` command, and the total; needs no
  checkpoint or data.
- run: trains the runs here one after another (resumable), chooses learning rates by mean
  validation score over complete folds, scores the chosen runs and writes the report, which lists
  every failed or missing run (the exit code is then 1, after the report is written). With T5X's
  multi-process flags (--multiprocess_gpu ...) or --multihost, every process runs this command and
  they train each run together; process 0 alone writes the report, and a run that fails on one
  process stops every process.
- slurm / tpu: write launch scripts that run the same grid on a SLURM cluster or a TPU VM.
"""

from __future__ import annotations

import argparse
import sys

from ct5x import process_flags
from ct5x.errors import EXIT_FAILED, EXIT_OK, UserInputError
from ct5x.gin_utils import parse_gin_flags
from ct5x.sweep import launchers
from ct5x.sweep.plan import load_runs, plan_jsonl, plan_table, select


class GinFlagParser(argparse.ArgumentParser):
    """Takes T5X's gin bindings (`--gin.NAME=VALUE`, `--gin_bindings=...`; `gin_utils`) into
    `args.gin_bindings`; the experiment file is the positional argument."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        try:
            gin_flags, rest = parse_gin_flags(args)
        except UserInputError as error:
            self.error(str(error))
        if gin_flags.files or gin_flags.search_paths:
            self.error("give the experiment gin file as the argument, not --gin_file")
        namespace, extras = super().parse_known_args(rest, namespace)
        namespace.gin_bindings = list(gin_flags.bindings)
        return namespace, extras


def _add_experiment(parser: argparse.ArgumentParser, only: bool = True) -> None:
    parser.add_argument("experiment",
                        help="experiment gin file, e.g. gin/experiments/in_domain.gin")
    if only:
        parser.add_argument("--only", help="glob over task, model or MODEL_DIR, e.g. '*mednli*'")


def plan_command(args: argparse.Namespace) -> int:
    experiment, runs = load_runs(args.experiment, args.gin_bindings)
    runs = select(runs, args.only)
    if args.format == "jsonl":
        sys.stdout.write(plan_jsonl(runs))
    else:
        sys.stdout.write(plan_table(experiment, runs, commands=not args.no_commands))
    return EXIT_OK


def _train_together(gin_files, bindings) -> dict:
    """One run of a multi-process sweep: a failure on this process stops every process (the
    others would wait for it in the run's next collective)."""
    from ct5x import multihost
    from ct5x.sweep.runner import default_train_fn
    from ct5x.training_loop import Preempted

    try:
        return default_train_fn(gin_files, bindings)
    except Preempted as error:  # every process stops here together, the sweep with them
        print(f"ct5x sweep: {multihost.line_prefix()}stopped: {error}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    except Exception as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        kind = "error" if isinstance(error, UserInputError) else type(error).__name__
        print(f"ct5x sweep: {multihost.line_prefix()}{kind}: {first_line}", file=sys.stderr)
        multihost.stop_every_process(EXIT_FAILED, f"{kind}: {first_line}")
        raise


def run_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ct5x import multihost
    from ct5x.sweep import runner

    experiment, all_runs = load_runs(args.experiment, args.gin_bindings)
    processes = process_flags.from_namespace(args)
    if args.multihost and not processes.wanted:
        processes = process_flags.ProcessFlags(detect=True)
    if not args.report_only:
        runs = select(all_runs, args.only, args.index)
        runner.check_checkpoints(experiment, runs)
        multihost.start(processes, "ct5x sweep")
        together = multihost.is_multiprocess()
        train_fn = _train_together if together else runner.default_train_fn
        console = Console(stderr=True, soft_wrap=True,
                          quiet=together and not multihost.is_primary())
        outcome = runner.train_runs(runs, train_fn, console)
        multihost.say(f"trained {len(outcome.trained)}, skipped {len(outcome.skipped)} "
                      f"finished, failed {len(outcome.failed)}")
        for run, message in outcome.failed:
            multihost.say(f"failed: {run.model_dir}: {message}")
        if args.no_report or not multihost.is_primary():
            return EXIT_FAILED if outcome.failed else EXIT_OK
    report_runs = select(all_runs, args.only)
    result = runner.evaluate_and_report(experiment, report_runs,
                                        allow_incomplete=args.allow_incomplete)
    print(f"report: {result['report_dir']}")
    if result["problems"]:
        print(f"{len(result['problems'])} runs or rows are failed or missing; the report lists "
              "them under 'Failed and missing runs'")
        return EXIT_FAILED
    return EXIT_OK


def _launcher_args(args: argparse.Namespace):
    experiment, runs = load_runs(args.experiment, args.gin_bindings)
    out = args.out or f"launch/generated/{experiment.name}"
    return experiment, runs, out


def slurm_command(args: argparse.Namespace) -> int:
    experiment, runs, out = _launcher_args(args)
    settings = launchers.SlurmSettings(
        time=args.time, cpus=args.cpus, mem=args.mem, parallel=args.parallel, gpus=args.gpus,
        partition=args.partition, account=args.account, nodes=args.nodes,
        tasks_per_node=args.ntasks_per_node,
    )
    paths = launchers.write_slurm(out, experiment.name, len(runs), args.experiment,
                                  args.gin_bindings, settings)
    print(f"wrote {', '.join(map(str, paths))}; submit with: bash {paths[-1]}")
    return EXIT_OK


def tpu_command(args: argparse.Namespace) -> int:
    experiment, runs, out = _launcher_args(args)
    settings = launchers.TpuSettings(args.tpu, args.zone, args.project, args.remote_setup)
    paths = launchers.write_tpu(out, experiment.name, len(runs), args.experiment,
                                args.gin_bindings, settings)
    print(f"wrote {paths[0]}; start with: bash {paths[0]}")
    return EXIT_OK


def register_command(commands) -> None:
    """Adds `ct5x sweep` and its subcommands."""
    sweep = commands.add_parser("sweep", help="plan and run an experiment's grid of runs")
    actions = sweep.add_subparsers(dest="sweep_command", required=True,
                                   parser_class=GinFlagParser)

    plan = actions.add_parser("plan", help="list every run, its MODEL_DIR and command")
    _add_experiment(plan)
    plan.add_argument("--format", choices=("table", "jsonl"), default="table")
    plan.add_argument("--no-commands", action="store_true", help="table without commands")
    plan.set_defaults(run=plan_command, frameworks=False)

    run = actions.add_parser("run", help="train the runs here, then evaluate and report")
    _add_experiment(run)
    run.add_argument("--index", type=int, help="only run number INDEX of the plan (0-based)")
    run.add_argument("--no-report", action="store_true", help="train only")
    run.add_argument("--report-only", action="store_true", help="choose, evaluate and report")
    run.add_argument("--allow-incomplete", action="store_true",
                     help="choose a group's rate among its complete rates even when another "
                          "rate lost a fold (the choice is flagged in learning_rates.jsonl and "
                          "the report)")
    run.add_argument("--multihost", action="store_true",
                     help="join the other processes found in the environment (SLURM, TPU VM)")
    process_flags.add_arguments(run)
    run.set_defaults(run=run_command)

    slurm = actions.add_parser("slurm", help="write a SLURM job array (one task per run)")
    _add_experiment(slurm, only=False)
    slurm.add_argument("--out", help="folder for the scripts (default launch/generated/<exp>)")
    slurm.add_argument("--time", default="24:00:00", help="time limit of one run")
    slurm.add_argument("--cpus", type=int, default=8)
    slurm.add_argument("--mem", default="64G")
    slurm.add_argument("--gpus", type=int, default=1, help="GPUs per node of a run (0: none)")
    slurm.add_argument("--nodes", type=int, default=1, help="nodes per run (multi-host)")
    slurm.add_argument("--ntasks-per-node", type=int, default=1,
                       help="processes per node of a run (e.g. one per GPU)")
    slurm.add_argument("--parallel", type=int, default=8, help="runs at once")
    slurm.add_argument("--partition")
    slurm.add_argument("--account")
    slurm.set_defaults(run=slurm_command, frameworks=False)

    tpu = actions.add_parser("tpu", help="write a script running the grid on a TPU VM")
    _add_experiment(tpu, only=False)
    tpu.add_argument("--out", help="folder for the script (default launch/generated/<exp>)")
    tpu.add_argument("--tpu", required=True, help="TPU VM name")
    tpu.add_argument("--zone", required=True)
    tpu.add_argument("--project", required=True)
    tpu.add_argument("--remote-setup", default=launchers.TpuSettings.remote_setup,
                     help="shell command run first on every worker (enter the repository)")
    tpu.set_defaults(run=tpu_command, frameworks=False)
