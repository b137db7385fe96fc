"""`ct5x evaluate` and `ct5x report`: the evaluation package on the command line."""

from __future__ import annotations

import argparse
import sys

from ct5x.arguments import positive_int
from ct5x.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK


def evaluate_command(args: argparse.Namespace) -> int:
    """Exit 1 when scoring a run hit a bug (its traceback with --verbose), else 2 when a run's
    input could not be used, else 0."""
    from ct5x import compilation_cache
    from ct5x.evaluation.scoring import EvaluationSettings, evaluate_runs

    compilation_cache.configure(None if args.compilation_cache_dir in ("", "None")
                                else args.compilation_cache_dir)
    settings = EvaluationSettings(
        split=args.split,
        batch_size=args.batch_size,
        force=args.force,
        with_inputs=args.with_inputs,
        data_dir=args.data_dir,
        test_site=args.test_site,
        anchor_compatible=args.anchor_compatible,
        length_penalty_style=args.length_penalty_style,
        alpha=args.alpha,
        max_input_length=args.max_input_length,
        max_decode_length=args.max_decode_length,
    )
    outcome = evaluate_runs(args.runs, settings, show_progress=not args.no_progress)
    for directory, reason in outcome.failed:
        print(f"ct5x evaluate: error: {directory}: {reason}", file=sys.stderr)
    for directory, reason, trace in outcome.internal_errors:
        if args.verbose:
            print(trace, file=sys.stderr, end="")
        print(f"ct5x evaluate: internal error: {directory}: {reason}"
              + ("" if args.verbose else " (--verbose shows the traceback)"), file=sys.stderr)
    print(f"{len(outcome.scored)} scored, {len(outcome.skipped)} skipped, "
          f"{len(outcome.failed)} failed, {len(outcome.internal_errors)} internal errors")
    if outcome.internal_errors:
        return EXIT_FAILED
    return EXIT_BAD_INPUT if outcome.failed else EXIT_OK


def report_command(args: argparse.Namespace) -> int:
    """Writes the report; exit 2 after writing it when some files or rows could not be used."""
    from ct5x.evaluation.collect import find_metrics_files
    from ct5x.evaluation.report import write_report
    from ct5x.evaluation.report_numbers import ReportSettings

    settings = ReportSettings(
        bootstrap_resamples=args.bootstrap_resamples,
        seed=args.seed,
        paper=args.paper,
        num_folds=args.num_folds,
    )
    report = write_report(find_metrics_files(args.runs), args.out, settings)
    print(f"wrote {len(report['tables'])} tables to {args.out}")
    for problem in report["problems"]:
        print(f"ct5x report: error: {problem['where']}: {problem['reason']}", file=sys.stderr)
    return EXIT_BAD_INPUT if report["problems"] else EXIT_OK


def register_command(commands) -> None:
    """Adds `evaluate` and `report` to the `ct5x` subcommands."""
    evaluate = commands.add_parser(
        "evaluate", help="decode and score every finished run's test split"
    )
    evaluate.add_argument("--runs", required=True, help="folder searched for run.json (any depth)")
    evaluate.add_argument("--split", default="test", choices=("train", "validation", "test"),
                          help="split to score (default test; others write metrics_<split>.json)")
    evaluate.add_argument("--batch-size", type=positive_int, default=None,
                          help="rows per decoding batch (default: each run's EVAL_BATCH_SIZE)")
    evaluate.add_argument("--force", action="store_true", help="rescore runs already scored")
    evaluate.add_argument("--with-inputs", action="store_true",
                          help="also write each example's input text into predictions.jsonl")
    evaluate.add_argument("--data-dir", default=None,
                          help="data root to use instead of each run's data_settings.data_dir")
    evaluate.add_argument("--test-site", default=None,
                          help="score in-domain runs on this site's data (out-of-domain); "
                               "writes metrics_site_<site>.json")
    evaluate.add_argument("--anchor-compatible", action="store_true", default=None,
                          help="expect runs trained in the study's mode: every run is scored in "
                               "the mode its run.json records, and one that disagrees is an "
                               "error (runs recorded before the mode was: this mode)")
    evaluate.add_argument("--length-penalty-style", default=None,
                          help="beam scoring convention: hf (transformers' generate, the default), "
                               "hf_4.22 (the study's transformers: the default for a run trained "
                               "in its mode) or t5x")
    evaluate.add_argument("--alpha", type=float, default=None,
                          help="length penalty: HF's exponent (1.0) or T5X's alpha (0.6)")
    evaluate.add_argument("--max-input-length", type=positive_int, default=None,
                          help="truncate inputs to this many tokens (default: each run's "
                               "TASK_FEATURE_LENGTHS inputs, as it trained)")
    evaluate.add_argument("--max-decode-length", type=positive_int, default=None,
                          help="decode up to this many tokens (default: each run's "
                               "TASK_FEATURE_LENGTHS targets; either way capped at the task's "
                               "decoding length, the study's cap in anchor mode)")
    evaluate.add_argument("--no-progress", action="store_true", help="draw no progress bars")
    evaluate.add_argument("--compilation-cache-dir", default=None,
                          help="a folder for JAX's persistent compilation cache, so that a later "
                               "evaluation with the same shapes loads its programs (default: "
                               "none)")
    evaluate.set_defaults(run=evaluate_command)

    report = commands.add_parser(
        "report", help="tables, statistics and plots from the scored runs"
    )
    report.add_argument("--runs", required=True,
                        help="folder searched for metrics.json (an experiment folder of "
                             "`ct5x sweep run`, or any folder of scored runs)")
    report.add_argument("--out", required=True, help="folder to write the report into")
    report.add_argument("--bootstrap-resamples", type=positive_int, default=100,
                        help="resamples of the paper's bootstrap interval (default 100)")
    report.add_argument("--seed", type=int, default=42,
                        help="seed of the paper's bootstrap interval (default 42)")
    report.add_argument("--num-folds", type=positive_int, default=None,
                        help="folds every model must have in each table (default: the task's)")
    report.add_argument("--paper", action="store_true",
                        help="print the paper's published number beside each matching cell, "
                             "marked where the cell was computed in another mode")
    report.set_defaults(run=report_command, frameworks=False)
