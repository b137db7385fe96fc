"""`ct5x evaluate` and `ct5x report`: the evaluation package on the command line."""

from __future__ import annotations

import argparse
import sys

from ct5x.cli import EXIT_BAD_INPUT, positive_int
from ct5x.compilation_cache import DEFAULT_DIR as DEFAULT_CACHE_DIR


def evaluate_command(args: argparse.Namespace) -> int:
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
    )
    summary = evaluate_runs(args.runs, settings, show_progress=not args.no_progress)
    for directory, reason in summary.failed:
        print(f"ct5x evaluate: error: {directory}: {reason}", file=sys.stderr)
    print(f"{len(summary.scored)} scored, {len(summary.skipped)} skipped, "
          f"{len(summary.failed)} failed")
    return EXIT_BAD_INPUT if summary.failed else 0


def report_command(args: argparse.Namespace) -> int:
    from ct5x.evaluation.report import write_report
    from ct5x.evaluation.summary import ReportSettings

    settings = ReportSettings(
        bootstrap_resamples=args.bootstrap_resamples,
        seed=args.seed,
        paper=args.paper,
        num_folds=args.num_folds,
    )
    report = write_report(args.runs, args.out, settings)
    print(f"wrote {len(report['tables'])} tables to {args.out}")
    return 0


def register_command(commands) -> None:
    """Adds `evaluate` and `report` to the `ct5x` subcommands."""
    evaluate = commands.add_parser(
        "evaluate", help="decode and score every finished run's test split"
    )
    evaluate.add_argument("--runs", required=True, help="folder searched for run.json (any depth)")
    evaluate.add_argument("--split", default="test", choices=("train", "validation", "test"),
                          help="split to score (default test; others write metrics_<split>.json)")
    evaluate.add_argument("--batch-size", type=positive_int, default=8)
    evaluate.add_argument("--force", action="store_true", help="rescore runs already scored")
    evaluate.add_argument("--with-inputs", action="store_true",
                          help="also write each example's input text into predictions.jsonl")
    evaluate.add_argument("--data-dir", default=None,
                          help="data root to use instead of each run's data_settings.data_dir")
    evaluate.add_argument("--test-site", default=None,
                          help="score in-domain runs on this site's data (out-of-domain); "
                               "writes metrics_site_<site>.json")
    evaluate.add_argument("--anchor-compatible", action="store_true", default=None,
                          help="score as the study's code did (as `ct5x metrics "
                               "--anchor-compatible`); default: CT5X_ANCHOR_COMPATIBLE, else off")
    evaluate.add_argument("--length-penalty-style", choices=("hf", "t5x"), default="hf",
                          help="beam scoring convention (default hf, as the paper's runs)")
    evaluate.add_argument("--alpha", type=float, default=None,
                          help="length penalty: HF's exponent (1.0) or T5X's alpha (0.6)")
    evaluate.add_argument("--no-progress", action="store_true", help="draw no progress bars")
    evaluate.add_argument("--compilation-cache-dir", default=DEFAULT_CACHE_DIR,
                          help="JAX's persistent compilation cache (default %(default)s; "
                               "None: off)")
    evaluate.set_defaults(run=evaluate_command)

    report = commands.add_parser(
        "report", help="tables, statistics and plots from the scored runs"
    )
    report.add_argument("--runs", required=True, help="folder searched for metrics.json")
    report.add_argument("--out", required=True, help="folder to write the report into")
    report.add_argument("--bootstrap-resamples", type=positive_int, default=100,
                        help="resamples of the paper's bootstrap interval (default 100)")
    report.add_argument("--seed", type=int, default=42,
                        help="seed of the paper's bootstrap interval (default 42)")
    report.add_argument("--num-folds", type=positive_int, default=5,
                        help="folds every model must have in each table (default 5)")
    report.add_argument("--paper", action="store_true",
                        help="print the paper's published number beside each matching cell")
    report.set_defaults(run=report_command)
