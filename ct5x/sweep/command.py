"""`ct5x sweep plan|run|slurm|tpu EXPERIMENT.gin [--gin.NAME=VALUE ...]`.

- plan: every run of the grid with its MODEL_DIR and `ct5x train` command, and the total; needs no
  checkpoint or data.
- run: trains the runs here one after another (resumable), chooses learning rates by mean
  validation score over folds, scores the chosen runs and writes the report. With T5X's
  multi-process flags (--multiprocess_gpu ...) or --multihost, every process runs this command and
  they train each run together; process 0 alone writes the report, and a run that fails on one
  process stops every process.
- slurm / tpu: write launch scripts that run the same grid on a SLURM cluster or a TPU VM.
"""

from __future__ import annotations

import argparse
import sys

from ct5x import multihost
from ct5x.sweep import launchers
from ct5x.sweep.plan import load_runs, plan_jsonl, plan_table, select

GIN_FLAG = "--gin."


class GinFlagParser(argparse.ArgumentParser):
    """Accepts T5X's `--gin.NAME=VALUE` flags (any NAME) into `args.gin_bindings`."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        bindings = [arg[len(GIN_FLAG):] for arg in args if arg.startswith(GIN_FLAG)]
        for binding in bindings:
            if "=" not in binding:
                self.error(f"{GIN_FLAG}{binding}: expected {GIN_FLAG}NAME=VALUE")
        rest = [arg for arg in args if not arg.startswith(GIN_FLAG)]
        namespace, extras = super().parse_known_args(rest, namespace)
        namespace.gin_bindings = bindings
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
    return 0


def _train_together(gin_files, bindings) -> dict:
    """One run of a multi-process sweep: a failure on this process stops every process (the
    others would wait for it in the run's next collective)."""
    from ct5x.errors import UserInputError
    from ct5x.sweep.runner import default_train_fn
    from ct5x.training_loop import Preempted

    try:
        return default_train_fn(gin_files, bindings)
    except Preempted as error:  # every process stops here together, the sweep with them
        print(f"ct5x sweep: {multihost.line_prefix()}stopped: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        kind = "error" if isinstance(error, UserInputError) else type(error).__name__
        print(f"ct5x sweep: {multihost.line_prefix()}{kind}: {first_line}", file=sys.stderr)
        multihost.stop_every_process(1, f"{kind}: {first_line}")
        raise


def run_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ct5x.sweep import runner

    experiment, all_runs = load_runs(args.experiment, args.gin_bindings)
    processes = multihost.from_namespace(args)
    if args.multihost and not processes.wanted:
        processes = multihost.ProcessFlags(detect=True)
    if not args.report_only:
        runs = select(all_runs, args.only, args.index)
        runner.check_checkpoints(experiment, runs)
        multihost.start(processes, "ct5x sweep")
        together = multihost.is_multiprocess()
        train_fn = _train_together if together else runner.default_train_fn
        console = Console(stderr=True, quiet=together and not multihost.is_primary())
        summary = runner.train_runs(runs, train_fn, console)
        multihost.say(f"trained {len(summary.trained)}, skipped {len(summary.skipped)} "
                      f"finished, failed {len(summary.failed)}")
        for run, message in summary.failed:
            multihost.say(f"failed: {run.model_dir}: {message}")
        if args.no_report or not multihost.is_primary():
            return 1 if summary.failed else 0
    from ct5x.evaluation import ReportSettings

    report_runs = select(all_runs, args.only)
    # Statistics over the experiment's folds (the demo's grid and smaller ones have fewer than 5).
    result = runner.evaluate_and_report(experiment, report_runs,
                                        report_settings=ReportSettings(
                                            num_folds=len(experiment.folds)))
    print(f"report: {result['report_dir']}")
    return 1 if result["unresolved"] or result["evaluation_failures"] else 0


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
    return 0


def tpu_command(args: argparse.Namespace) -> int:
    experiment, runs, out = _launcher_args(args)
    settings = launchers.TpuSettings(args.tpu, args.zone, args.project, args.remote_setup)
    paths = launchers.write_tpu(out, experiment.name, len(runs), args.experiment,
                                args.gin_bindings, settings)
    print(f"wrote {paths[0]}; start with: bash {paths[0]}")
    return 0


def register_command(commands) -> None:
    """Adds `ct5x sweep` and its subcommands."""
    sweep = commands.add_parser("sweep", help="plan and run an experiment's grid of runs")
    actions = sweep.add_subparsers(dest="sweep_command", required=True,
                                   parser_class=GinFlagParser)

    plan = actions.add_parser("plan", help="list every run, its MODEL_DIR and command")
    _add_experiment(plan)
    plan.add_argument("--format", choices=("table", "jsonl"), default="table")
    plan.add_argument("--no-commands", action="store_true", help="table without commands")
    plan.set_defaults(run=plan_command)

    run = actions.add_parser("run", help="train the runs here, then evaluate and report")
    _add_experiment(run)
    run.add_argument("--index", type=int, help="only run number INDEX of the plan (0-based)")
    run.add_argument("--no-report", action="store_true", help="train only")
    run.add_argument("--report-only", action="store_true", help="choose, evaluate and report")
    run.add_argument("--multihost", action="store_true",
                     help="join the other processes found in the environment (SLURM, TPU VM)")
    multihost.add_arguments(run)
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
    slurm.set_defaults(run=slurm_command)

    tpu = actions.add_parser("tpu", help="write a script running the grid on a TPU VM")
    _add_experiment(tpu, only=False)
    tpu.add_argument("--out", help="folder for the script (default launch/generated/<exp>)")
    tpu.add_argument("--tpu", required=True, help="TPU VM name")
    tpu.add_argument("--zone", required=True)
    tpu.add_argument("--project", required=True)
    tpu.add_argument("--remote-setup", default=launchers.TpuSettings.remote_setup,
                     help="shell command run first on every worker (enter the repository)")
    tpu.set_defaults(run=tpu_command)
