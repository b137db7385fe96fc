"""The `ct5x` command: convert, predict, score, and the subcommands of the modules in
`COMMAND_MODULES` (tasks, folds, metrics, train, evaluate, report, sweep, demo).

Each subcommand is a small function; heavy imports happen inside them, so `ct5x --help` and the
subcommands that need neither JAX nor TensorFlow (`sweep plan`, `report`, `folds`; their parsers set
`frameworks=False`) never import them. Bad input raises `UserInputError`, printed as one line with
exit code 2 (a traceback only with --verbose); `ct5x.errors` lists every exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from ct5x import storage, timing
from ct5x.arguments import positive_int
from ct5x.errors import EXIT_BAD_INPUT, UserInputError
from ct5x.startup import import_frameworks_quietly

# Modules that add their own subcommands: each defines `register_command(commands)`, which adds a
# subparser to `commands` and sets its `run` default to a function(args) -> exit code (and
# `frameworks=False` when it imports neither JAX nor TensorFlow).
COMMAND_MODULES: tuple[str, ...] = (
    "ct5x.task_commands", "ct5x.train", "ct5x.sweep.command", "ct5x.demo",
    "ct5x.evaluation.commands",
)


def _load_model(checkpoint_dir: str):
    """Checkpoint directory -> (model, params on device, vocabulary)."""
    import jax

    from ct5x.checkpoints import load_checkpoint
    from ct5x.models import EncoderDecoderModel
    from ct5x.vocabulary import load_vocabulary

    checkpoint = load_checkpoint(checkpoint_dir)
    vocabulary = load_vocabulary(checkpoint)
    model = EncoderDecoderModel(checkpoint.config.replace(dropout_rate=0.0))
    return model, jax.device_put(checkpoint.params), vocabulary


def convert_command(args: argparse.Namespace) -> int:
    from ct5x.checkpoints import convert_checkpoint

    convert_checkpoint(args.src, args.dst, to=args.to, t5x_layout=args.t5x_layout)
    print(f"wrote {args.to} checkpoint to {args.dst}")
    return 0


def predict_command(args: argparse.Namespace) -> int:
    from ct5x.inference import predict_file
    from ct5x.models import DecodingOptions

    options = DecodingOptions(
        num_beams=args.beams,
        max_decode_length=args.max_decode_length,
        length_penalty_style=args.length_penalty_style,
        alpha=args.alpha,
    )
    model, params, vocabulary = _load_model(args.checkpoint)
    outputs = predict_file(
        model, params, vocabulary, args.input, args.output, options,
        batch_size=args.batch_size, max_input_length=args.max_input_length,
        with_scores=args.with_scores,
    )
    print(f"wrote {len(outputs)} predictions to {args.output}")
    return 0


def score_command(args: argparse.Namespace) -> int:
    from ct5x.inference import score_file

    model, params, vocabulary = _load_model(args.checkpoint)
    outputs = score_file(
        model, params, vocabulary, args.input, args.output,
        batch_size=args.batch_size, max_input_length=args.max_input_length,
    )
    print(f"wrote {len(outputs)} scores to {args.output}")
    return 0


def _add_model_io(parser: argparse.ArgumentParser, needs: str) -> None:
    parser.add_argument("--checkpoint", required=True, help="HF directory or T5X checkpoint")
    parser.add_argument("--input", required=True, help=f"JSONL with {needs}")
    parser.add_argument("--output", required=True, help="JSONL to write")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument(
        "--max-input-length", type=positive_int, default=None,
        help="truncate longer inputs (counted and reported); default: the longest input",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ct5x", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and library logs")
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="convert a checkpoint between HF and T5X")
    convert.add_argument("src")
    convert.add_argument("dst")
    convert.add_argument("--to", choices=("hf", "t5x"), required=True)
    convert.add_argument(
        "--t5x-layout", choices=("orbax", "orbax_zarr", "legacy"), default="orbax",
        help="with --to t5x: Orbax with OCDBT (what T5X writes today), Orbax with one zarr "
        "array per directory (older Orbax), or the pre-Orbax msgpack + TensorStore layout",
    )
    convert.set_defaults(run=convert_command)

    predict = commands.add_parser("predict", help="decode each input line")
    _add_model_io(predict, '"inputs"')
    predict.add_argument("--beams", type=positive_int, default=1)
    predict.add_argument("--max-decode-length", type=positive_int, default=64)
    predict.add_argument("--length-penalty-style", choices=("hf", "t5x"), default="hf")
    predict.add_argument(
        "--alpha", type=float, default=None,
        help="length penalty: HF's exponent (default 1.0) or T5X's alpha (default 0.6)",
    )
    predict.add_argument(
        "--with-scores", action="store_true",
        help="add a 'score' field: the summed token log-probability (greedy) or the beam's "
        "final length-penalised score, as T5X's predict_batch_with_aux",
    )
    predict.set_defaults(run=predict_command)

    score = commands.add_parser("score", help="log-likelihood of each target given its input")
    _add_model_io(score, '"inputs" and "targets"')
    score.set_defaults(run=score_command)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    storage.configure()  # STORAGE_EMULATOR_HOST, before any library first reaches a bucket
    timing.record_from_environment(args.command)
    if getattr(args, "frameworks", True) and not args.verbose:
        import_frameworks_quietly()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args)
    except UserInputError as error:
        if args.verbose:
            traceback.print_exc()
        print(f"ct5x {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
