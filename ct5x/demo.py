"""`make demo` / `ct5x demo`: the paper's question in miniature, on data the project makes itself.

Is a T5 pre-trained on clinical text better for a clinical task than one pre-trained on general
text, and most of all when labelled data is scarce? The demo writes synthetic discharge notes, a
follow-up labelling task whose labels depend on what the notes teach (tasks/synthetic.py) and
general-domain news articles of the same size (tasks/general_text.py); trains one SentencePiece
vocabulary on both corpora; pre-trains two tiny T5s with span corruption, same budget, shape and
seed, one per corpus ("clinical", "general"; the untrained network is a third row on request);
fine-tunes them at several training fractions on 5 folds through the sweep runner (`ct5x train`),
choosing each learning rate by mean validation score over folds; scores the chosen runs on the
untouched test split (`ct5x evaluate`, `ct5x report`); and prints a table per fraction with t
intervals, the paired t-tests and the majority baseline, then a conclusion computed from those
numbers (ct5x/demo_conclusion.py). Tiny models on synthetic data: the numbers show the protocol at
work, not what real clinical T5s do. `--data-dir DIR --task ncbi_disease` asks the same question
of a real dataset (the "clinical" model is then pre-trained on the task's own training text).

    python -m ct5x.demo --workdir demo_output [--gin_bindings="demo.DemoSettings.num_folds = 3"]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import json
import pathlib
import sys

from ct5x import demo_data
from ct5x.demo_conclusion import conclusion, format_table, fraction_rows, metric_name
from ct5x.demo_stages import Stages, duration, stage_estimates
from ct5x.errors import EXIT_BAD_INPUT, EXIT_OK, UserInputError
from ct5x.gin_utils import gin_literal
from ct5x_tasks.naming import NUM_FOLDS

MODELS = ("clinical", "general")


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What the demo builds and how long it trains (bound in gin/demo.gin)."""

    task: str = "synthetic_followup"
    data_dir: str | None = None
    num_notes: int = 400
    pretrain_notes: int = 400
    num_folds: int = NUM_FOLDS
    seed: int = 0
    vocabulary_size: int = 1000
    pretrain_steps: int = 150
    pretrain_batch_size: int = 32
    pretrain_learning_rate: float = 0.1
    # T5's inverse-square-root schedule holds the rate for this many steps, then decays it.
    pretrain_warmup_steps: int = 150
    pretrain_lengths: tuple[int, int] = (64, 16)
    models: tuple[str, ...] = MODELS
    fractions: tuple[float, ...] = (0.05, 0.25)
    finetune_steps: int = 200
    batch_size: int = 32
    low_resource_batch_size: int = 16
    learning_rates: tuple[float, ...] = (1e-2,)
    low_resource_learning_rates: tuple[float, ...] = (1e-2,)
    dropout_rate: float = 0.0
    eval_period: int = 100
    eval_examples: int = 64
    # None: the longest input and target in tokens (nothing truncated).
    lengths: tuple[int, int] | None = None


@dataclasses.dataclass(frozen=True)
class Workspace:
    """Where each stage writes, all inside the demo's folder."""

    root: pathlib.Path

    def __getattr__(self, name: str) -> pathlib.Path:
        folders = {"data": "data", "task_text": "pretrain_text/task",
                   "general_text": "pretrain_text/general", "vocabulary": "vocabulary",
                   "folds": "folds", "pretrain": "pretrain", "runs": "runs",
                   # The sweep's runs use <RUNS_DIR>/compilation_cache; pre-training too.
                   "compilation_cache": "runs/compilation_cache"}
        if name not in folders:
            raise AttributeError(name)
        return self.root / folders[name]


def make_corpora(settings: DemoSettings, space: Workspace) -> tuple[pathlib.Path, dict]:
    """(DATA_DIR, pre-training folder per model): the synthetic task and notes, or the user's
    dataset and its training inputs; the general articles match the clinical text in size."""
    if settings.data_dir is None:
        from ct5x_tasks.synthetic import NOTES_FOLDER, write_corpus

        counts = write_corpus(space.data, seed=settings.seed, num_notes=settings.num_notes,
                              pretrain_notes=settings.pretrain_notes)
        data_dir, clinical = space.data, space.data / NOTES_FOLDER
        print(f"{counts['notes']} synthetic discharge notes to pre-train on; task "
              f"{settings.task} from {settings.num_notes} other notes: {counts['train']} train, "
              f"{counts['dev']} dev, {counts['test']} test sentences")
    else:
        data_dir = data_root(settings.task, pathlib.Path(settings.data_dir))
        settings = dataclasses.replace(settings, data_dir=str(data_dir))
        texts = [example["inputs"] for example in split_examples(settings, "train")]
        clinical = demo_data.write_texts(space.task_text, texts)
        print(f"{settings.task} in {settings.data_dir}: {len(texts)} training inputs to "
              "pre-train the 'clinical' model on")
    characters = demo_data.corpus_characters(clinical)
    articles = demo_data.write_general_corpus(space.general_text, settings.seed, characters)
    print(f"{articles} general-domain news articles, {characters:,} characters like the "
          "clinical text")
    return data_dir, {"clinical": clinical, "general": space.general_text}


def data_root(task: str, given: pathlib.Path) -> pathlib.Path:
    """The DATA_DIR holding the task's folder, from --data-dir given as either."""
    from ct5x_tasks.catalog import family_of_base
    from ct5x_tasks.folds import resolve_folder

    family = family_of_base(task)
    folder = resolve_folder(family, given)
    if folder.name != family.folder:
        raise UserInputError(f"--data-dir {given}: put the {task} files in a folder named "
                             f"{family.folder}/ (DATA_DIR/{family.folder}, as ct5x reads them)")
    return folder.parent


def split_examples(settings: DemoSettings, split: str) -> list[dict]:
    """A split of the task as distributed (train, validation = dev, test), prompts applied."""
    import ct5x_tasks
    from ct5x_tasks.catalog import family_of_base
    from ct5x_tasks.naming import Variant
    from ct5x_tasks.sources import examples_of

    with ct5x_tasks.settings(data_dir=str(settings.data_dir)):
        return examples_of(family_of_base(settings.task), Variant(settings.task), split)


def task_lengths(settings: DemoSettings, vocabulary: str) -> tuple[int, int]:
    """DemoSettings.lengths, else the lengths that fit every example of every split."""
    if settings.lengths is not None:
        return tuple(settings.lengths)
    examples = [e for split in ("train", "validation", "test")
                for e in split_examples(settings, split)]
    return demo_data.fitting_lengths(vocabulary, examples)


def pretrain(settings: DemoSettings, space: Workspace, name: str, texts_dir: pathlib.Path,
             vocabulary: str, vocab_size: int) -> pathlib.Path:
    """Span-corruption pre-training of one model on one corpus; returns its checkpoint."""
    from ct5x.train import run

    inputs, targets = settings.pretrain_lengths
    steps = settings.pretrain_steps
    macros = {
        "MODEL_DIR": str(space.pretrain / name), "PRETRAIN_DATA_DIR": str(texts_dir),
        "VOCABULARY_PATH": vocabulary, "VOCAB_SIZE": vocab_size,
        "TASK_FEATURE_LENGTHS": {"inputs": inputs, "targets": targets}, "TRAIN_STEPS": steps,
        "BATCH_SIZE": settings.pretrain_batch_size,
        "LEARNING_RATE": settings.pretrain_learning_rate,
        "WARMUP_STEPS": settings.pretrain_warmup_steps, "EVAL_PERIOD": steps,
        "LOG_PERIOD": max(1, steps // 5), "CHECKPOINT_PERIOD": steps, "EVAL_EXAMPLES": 32,
        "RANDOM_SEED": settings.seed, "MODEL_NAME": name,
        "COMPILATION_CACHE_DIR": str(space.compilation_cache),
    }
    record = run(["demo/model.gin", "runs/pretrain.gin"], gin_bindings(macros))
    return space.pretrain / name / f"checkpoint_{record['latest_step']}"


def experiment_bindings(settings: DemoSettings, space: Workspace, data_dir: pathlib.Path,
                        vocabulary: str, vocab_size: int, checkpoints: dict[str, pathlib.Path],
                        fractions: tuple[float, ...], lengths: tuple[int, int]) -> list[str]:
    """The macros of gin/demo/experiment.gin for this demo (checkpoints are selected by the
    task's own selection metric)."""
    inputs, targets = lengths
    values = {
        "RUNS_DIR": str(space.runs), "DATA_DIR": str(data_dir), "FOLDS_DIR": str(space.folds),
        "VOCABULARY_PATH": vocabulary, "VOCAB_SIZE": vocab_size,
        **{f"{name.upper()}_CHECKPOINT": str(checkpoints[name]) if name in checkpoints else None
           for name in ("clinical", "general")},
        "DEMO_MODELS": list(settings.models), "DEMO_TASK": settings.task,
        "FRACTIONS": list(fractions),
        "LOW_RESOURCE_LEARNING_RATES": list(settings.low_resource_learning_rates),
        "LOW_RESOURCE_BATCH_SIZE": settings.low_resource_batch_size,
        "LEARNING_RATES": list(settings.learning_rates), "BATCH_SIZE": settings.batch_size,
        "TRAIN_STEPS": settings.finetune_steps, "EVAL_PERIOD": settings.eval_period,
        "DROPOUT_RATE": settings.dropout_rate,
        "EVAL_EXAMPLES": settings.eval_examples,
        "TASK_FEATURE_LENGTHS": {"inputs": inputs, "targets": targets},
        "FOLDS": list(range(settings.num_folds)),
    }
    return gin_bindings(values)


def gin_bindings(macros: dict) -> list[str]:
    """`NAME = value` gin bindings, each value written as a gin literal."""
    return [f"{name} = {gin_literal(value)}" for name, value in macros.items()]


def majority_baselines(settings: DemoSettings, folds: dict, fractions: tuple[float, ...],
                       scored_as: str, metric: str) -> dict[str, float]:
    """Per setting ('pct5', ..., 'full'): the most frequent target of each fold's training part,
    predicted for every test example, scored as the models are; the mean over folds."""
    from ct5x_tasks.metrics import compute_metrics
    from ct5x_tasks.naming import fraction_key, percent_label

    pool = split_examples(settings, "train") + split_examples(settings, "validation")
    target_of = {e["id"]: e["targets"] for e in pool}
    test = split_examples(settings, "test")
    gold = [e["targets"] for e in test]
    baselines = {}
    for fraction in (*fractions, None):
        scores = []
        for fold in folds["folds"][:settings.num_folds]:
            ids = fold["train"] if fraction is None else fold["fractions"][fraction_key(fraction)]
            counts = collections.Counter(target_of[i] for i in ids)
            majority = counts.most_common(1)[0][0]
            scores.append(compute_metrics(scored_as, gold, [majority] * len(test))[metric])
        setting = "full" if fraction is None else f"pct{percent_label(fraction)}"
        baselines[setting] = sum(scores) / len(scores)
    return baselines


def run(workdir: pathlib.Path, settings: DemoSettings) -> dict:
    """Every stage in order; returns the summary also written to summary.json."""
    import ct5x_tasks
    from ct5x.evaluation import EvaluationSettings, ReportSettings
    from ct5x.evaluation.plots import curve_groups, low_resource_curve
    from ct5x.gin_utils import macro, parse_gin
    from ct5x.sweep import runner
    from ct5x.sweep.grid import expand
    from ct5x_tasks.catalog import family_of_base, variant_info
    from ct5x_tasks.naming import Variant

    space = Workspace(workdir)
    registered = family_of_base(settings.task).fractions
    fractions = tuple(f for f in settings.fractions if f in registered)
    if len(fractions) < len(settings.fractions):
        left_out = ", ".join(f"{100 * f:g}%" for f in settings.fractions if f not in fractions)
        print(f"{settings.task} has no {left_out} training-fraction variants (it has "
              f"{', '.join(f'{100 * f:g}%' for f in registered) or 'none'}): left out")
    stages = Stages(stage_estimates(settings, fractions))
    stages.next("data: clinical notes and task, general-domain articles")
    data_dir, corpora = make_corpora(settings, space)
    settings = dataclasses.replace(settings, data_dir=str(data_dir))
    stages.next("vocabulary (both corpora and the task's training split), lengths, folds")
    symbols = ["disease*", "*disease"] if "disease" in settings.task else []
    task_text = [text for example in split_examples(settings, "train")
                 for text in (example["inputs"], example["targets"])]
    vocabulary = demo_data.train_vocabulary(
        itertools.chain(demo_data.corpus_texts(corpora.values()), task_text), space.vocabulary,
        settings.vocabulary_size, symbols)
    vocab_size = demo_data.model_vocab_size(_piece_count(vocabulary))
    lengths = task_lengths(settings, vocabulary)
    path = ct5x_tasks.write_folds(settings.task, str(data_dir), str(space.folds / settings.task),
                                  seed=settings.seed, fractions=fractions)
    folds = json.loads(path.read_text())
    print(f"{vocab_size - demo_data.SENTINELS} pieces (model vocabulary {vocab_size}); lengths "
          f"{lengths[0]} input / {lengths[1]} target tokens fit every example; "
          f"{settings.num_folds} folds, training fractions {list(fractions)} nested in them")
    pretrained = [name for name in ("general", "clinical") if name in settings.models]
    stages.next(f"pre-train {' and '.join(repr(n) for n in pretrained)}: span corruption, "
                f"{settings.pretrain_steps} steps each, same shape and seed")
    checkpoints = {name: pretrain(settings, space, name, corpora[name], vocabulary, vocab_size)
                   for name in pretrained}
    parse_gin(["demo/experiment.gin"], experiment_bindings(
        settings, space, data_dir, vocabulary, vocab_size, checkpoints, fractions, lengths))
    experiment = macro("EXPERIMENT")
    runs = expand(experiment)
    stages.next(f"fine-tune {', '.join(settings.models)} at "
                f"{', '.join(f'{100 * f:g}%' for f in fractions) or 'no'} low-resource "
                f"fraction(s) and 100%, {settings.num_folds} folds: {len(runs)} runs")
    trained = runner.train_runs(runs)
    if trained.failed:
        raise UserInputError(f"{len(trained.failed)} fine-tuning runs failed, first: "
                             f"{trained.failed[0][0].model_dir}: {trained.failed[0][1]}")
    stages.next("choose learning rates, score the test split (ct5x evaluate), report")
    result = runner.evaluate_and_report(
        experiment, runs, report_settings=ReportSettings(num_folds=settings.num_folds),
        evaluation_settings=EvaluationSettings(batch_size=64))
    report = result["report"]
    metric = report["tables"][0]["selection_metric"]
    stages.next("majority baseline, table, curve, conclusion")
    scored_as = variant_info(Variant(settings.task)).scored_as
    baselines = majority_baselines(settings, folds, fractions, scored_as, metric)
    rows = fraction_rows(report, metric, baselines)
    curves = [low_resource_curve(group, workdir / "low_resource_curve")
              for group in curve_groups(report["tables"]).values()]
    summary = {
        "metric": metric, "models": list(settings.models), "lengths": list(lengths),
        "fractions": [dataclasses.asdict(row) | {"label": row.label} for row in rows],
        "conclusion": conclusion(rows, metric),
        "report": str(result["report_dir"] / "report.md"),
        "curve": [str(path) for group in curves for path in group],
        "learning_rates": [choice.as_record() for choice in result["choices"]],
    }
    summary["seconds"] = round(stages.finish(), 1)
    print_summary(summary, rows)
    return summary


def _piece_count(vocabulary: str) -> int:
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=vocabulary).get_piece_size()


def print_summary(summary: dict, rows: list) -> None:
    metric = summary["metric"]
    folds = len(next(iter(rows[0].scores.values())).folds) if rows else 0
    print(f"\nTest {metric_name(metric)} (%) over {folds} folds: mean [95% t interval]; the "
          "paired t-test by fold of clinical against general (tiny models on synthetic or small "
          "data: this shows the protocol, not what real clinical T5s do):\n")
    for line in format_table(rows, metric, summary["models"]):
        print("  " + line)
    print(f"\nreport: {summary['report']}; curve: {', '.join(summary['curve']) or 'none'}; "
          f"{duration(summary['seconds'])} in all\n")
    print("Conclusion (computed from the table, paired t-test at 0.05):")
    for line in summary["conclusion"]:
        print("  " + line)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_arguments(argv)
    except UserInputError as error:
        print(f"ct5x demo: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_command(args)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """--workdir, --data-dir, --task, and T5X's gin flags (`gin_utils.parse_gin_flags`:
    --gin_file, --gin_bindings, --gin.NAME=VALUE, --gin_search_paths)."""
    from ct5x.gin_utils import parse_gin_flags

    parser = argparse.ArgumentParser(prog="ct5x demo", description=__doc__.splitlines()[0],
                                     allow_abbrev=False, epilog=(
                                         "Gin flags as T5X's: --gin_file=F (default demo.gin), "
                                         "--gin_bindings='NAME = VALUE', --gin.NAME=VALUE."))
    parser.add_argument("--workdir", default="demo_output", help="where everything is written")
    parser.add_argument("--data-dir", help="a real dataset's folder (or DATA_DIR) instead")
    parser.add_argument("--task", help="its base task, e.g. ncbi_disease (with --data-dir)")
    args, rest = parser.parse_known_args(argv)
    args.gin, unknown = parse_gin_flags(rest)
    if unknown:
        raise UserInputError(f"unknown argument {unknown[0]} (see ct5x demo --help)")
    if bool(args.data_dir) != bool(args.task):
        raise UserInputError("--data-dir and --task go together")
    return args


def run_command(args: argparse.Namespace) -> int:
    from ct5x.startup import import_frameworks_quietly

    import_frameworks_quietly()
    from ct5x.atomic import write_text
    from ct5x.gin_utils import macro, operative_config, parse_gin

    try:
        parse_gin(list(args.gin.files) or ["demo.gin"], args.gin.bindings,
                  args.gin.search_paths)
        settings = macro("DEMO")
        if args.data_dir:
            settings = dataclasses.replace(settings, data_dir=args.data_dir, task=args.task)
        workdir = pathlib.Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        write_text(workdir / "demo_config.gin", operative_config())
        summary = run(workdir, settings)
    except UserInputError as error:
        print(f"ct5x demo: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    write_text(workdir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return EXIT_OK


def register_command(commands) -> None:
    """Adds `ct5x demo`."""
    parser = commands.add_parser("demo", help="the paper's question in miniature (make demo)",
                                 add_help=False, prefix_chars="+")
    parser.add_argument("flags", nargs=argparse.REMAINDER)
    parser.set_defaults(run=lambda args: main(args.flags))


if __name__ == "__main__":
    sys.exit(main())
