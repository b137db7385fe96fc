"""`make demo` / `ct5x demo`: the paper's question in miniature, on data the project makes itself.

Is a T5 pre-trained on clinical text better for a clinical task? The demo writes a synthetic
clinical corpus and a follow-up labelling task drawn from it (tasks/synthetic.py), trains a
SentencePiece vocabulary, pre-trains one tiny T5 on the notes with span corruption ("clinical")
and keeps the same network untrained ("general"), fine-tunes both on each of 5 folds through
`ct5x train` (the sweep runner), scores the best checkpoints on the untouched test split (`ct5x
evaluate`) and compares them (`ct5x report`: means, intervals, paired t-test, plot), beside the
majority-class baseline. Tiny models on synthetic data: the numbers show the pipeline works, not
what real clinical T5s do. `--data-dir DIR --task ncbi_disease` asks the same question of a real
dataset (the "clinical" model is then pre-trained on the task's own training text).

    python -m ct5x.demo --workdir demo_output [--gin "demo.DemoSettings.finetune_steps = 40"]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import pathlib
import sys
import time

from ct5x.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What the demo builds and how long it trains (bound in gin/demo.gin)."""

    task: str = "synthetic_followup"
    data_dir: str | None = None
    num_notes: int = 200
    num_folds: int = 5
    seed: int = 0
    vocabulary_size: int = 500
    pretrain_steps: int = 100
    pretrain_batch_size: int = 32
    pretrain_learning_rate: float = 0.01
    pretrain_lengths: tuple[int, int] = (64, 16)
    finetune_steps: int = 80
    batch_size: int = 32
    learning_rate: float = 3e-3
    eval_period: int = 40
    eval_examples: int = 64
    lengths: tuple[int, int] = (40, 24)
    # For a task outside the paper's (the synthetic one): the metric that picks checkpoints.
    selection_metric: str = "macro_f1"


@dataclasses.dataclass(frozen=True)
class Workspace:
    """Where each stage writes, all inside the demo's folder."""

    root: pathlib.Path

    def __getattr__(self, name: str) -> pathlib.Path:
        folders = {"data": "data", "notes": "pretrain_text", "vocabulary": "vocabulary",
                   "folds": "folds", "pretrain": "pretrain", "runs": "runs"}
        if name not in folders:
            raise AttributeError(name)
        return self.root / folders[name]


class Stages:
    """Numbered stage headers, each with the time the previous stage took."""

    def __init__(self, total: int):
        self.total, self.number, self.started = total, 0, time.monotonic()

    def next(self, text: str) -> None:
        now = time.monotonic()
        if self.number:
            print(f"   ({now - self.started:.0f} s)", flush=True)
        self.number, self.started = self.number + 1, now
        print(f"\n== {self.number}/{self.total} {text}", flush=True)

    def finish(self) -> None:
        print(f"   ({time.monotonic() - self.started:.0f} s)", flush=True)


def make_data(settings: DemoSettings, space: Workspace) -> tuple[pathlib.Path, pathlib.Path]:
    """(DATA_DIR, folder of pre-training text): the synthetic corpus, or the user's dataset."""
    if settings.data_dir is None:
        from ct5x_tasks.synthetic import write_corpus

        counts = write_corpus(space.data, seed=settings.seed, num_notes=settings.num_notes)
        print(f"{settings.num_notes} synthetic notes in {space.data / 'notes'}; task "
              f"{settings.task}: {counts['train']} train, {counts['dev']} dev, "
              f"{counts['test']} test sentences")
        return space.data, space.data / "notes"
    texts = [example["inputs"] for example in split_examples(settings, "train")]
    space.notes.mkdir(parents=True, exist_ok=True)
    from ct5x.jsonl import write_atomic

    write_atomic(space.notes / "train_text.jsonl", [{"text": text} for text in texts])
    print(f"{settings.task} in {settings.data_dir}: {len(texts)} training inputs to pre-train on")
    return pathlib.Path(settings.data_dir), space.notes


def split_examples(settings: DemoSettings, split: str) -> list[dict]:
    """A split of the task as distributed (train, validation = dev, test), prompts applied."""
    from ct5x_tasks.catalog import family_of_base
    from ct5x_tasks.naming import Variant
    from ct5x_tasks.sources import examples_of

    previous = os.environ.get("CT5X_DATA_DIR")
    os.environ["CT5X_DATA_DIR"] = str(settings.data_dir)
    try:
        return examples_of(family_of_base(settings.task), Variant(settings.task), split)
    finally:
        if previous is None:
            os.environ.pop("CT5X_DATA_DIR")
        else:
            os.environ["CT5X_DATA_DIR"] = previous


def train_vocabulary(settings: DemoSettings, texts_dir: pathlib.Path, out: pathlib.Path) -> str:
    """A unigram SentencePiece model with T5's ids (pad 0, eos 1, unk 2, no bos); kept when it
    exists, so that a rerun resumes its runs with the vocabulary they started with."""
    import sentencepiece

    from ct5x_tasks.span_corruption import documents

    prefix = out / "spiece"
    if pathlib.Path(f"{prefix}.model").is_file():
        print(f"vocabulary {prefix}.model kept from an earlier run")
        return f"{prefix}.model"
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(documents(texts_dir, "text")) + "\n", encoding="utf-8")
    symbols = ["disease*", "*disease"] if "disease" in settings.task else []
    partial = out / "spiece.partial"  # renamed when complete: a rerun never keeps half a model
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(partial), vocab_size=settings.vocabulary_size,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
        user_defined_symbols=symbols, num_threads=2, minloglevel=2,
    )
    corpus.unlink()
    pathlib.Path(f"{partial}.vocab").replace(f"{prefix}.vocab")
    pathlib.Path(f"{partial}.model").replace(f"{prefix}.model")
    return f"{prefix}.model"


SENTINELS = 100  # T5's extra ids above the pieces, for span corruption (gin/runs/pretrain.gin)


def model_vocab_size(settings: DemoSettings) -> int:
    """Pieces and sentinels rounded up to a multiple of 128, as T5's 32,000 + 100 -> 32,128."""
    return -(-(settings.vocabulary_size + SENTINELS) // 128) * 128


def pretrain(settings: DemoSettings, space: Workspace, texts_dir: pathlib.Path,
             vocabulary: str) -> pathlib.Path:
    """Span-corruption pre-training of the "clinical" model; returns its checkpoint."""
    from ct5x.train import run

    inputs, targets = settings.pretrain_lengths
    record = run(["demo/model.gin", "runs/pretrain.gin"], [
        f"MODEL_DIR = {json.dumps(str(space.pretrain))}",
        f"PRETRAIN_DATA_DIR = {json.dumps(str(texts_dir))}",
        f"VOCABULARY_PATH = {json.dumps(vocabulary)}",
        f"VOCAB_SIZE = {model_vocab_size(settings)}",
        f"TASK_FEATURE_LENGTHS = {{'inputs': {inputs}, 'targets': {targets}}}",
        f"TRAIN_STEPS = {settings.pretrain_steps}",
        f"BATCH_SIZE = {settings.pretrain_batch_size}",
        f"LEARNING_RATE = {settings.pretrain_learning_rate}",
        f"WARMUP_STEPS = {max(1, settings.pretrain_steps // 10)}",
        f"EVAL_PERIOD = {settings.pretrain_steps}",
        f"LOG_PERIOD = {max(1, settings.pretrain_steps // 10)}",
        f"CHECKPOINT_PERIOD = {settings.pretrain_steps}",
        "EVAL_EXAMPLES = 32",
        f"RANDOM_SEED = {settings.seed}",
        "MODEL_NAME = 'clinical'",
    ])
    return space.pretrain / f"checkpoint_{record['latest_step']}"


def experiment_bindings(settings: DemoSettings, space: Workspace, data_dir: pathlib.Path,
                        vocabulary: str, checkpoint: pathlib.Path) -> list[str]:
    """The macros of gin/demo/experiment.gin for this demo."""
    from ct5x_tasks.metrics import SELECTION_METRIC

    inputs, targets = settings.lengths
    metric = None if settings.task in SELECTION_METRIC else settings.selection_metric
    values = {
        "RUNS_DIR": str(space.runs), "DATA_DIR": str(data_dir), "FOLDS_DIR": str(space.folds),
        "VOCABULARY_PATH": vocabulary, "VOCAB_SIZE": model_vocab_size(settings),
        "CLINICAL_CHECKPOINT": str(checkpoint), "DEMO_TASK": settings.task,
        "LEARNING_RATE": settings.learning_rate, "BATCH_SIZE": settings.batch_size,
        "TRAIN_STEPS": settings.finetune_steps, "EVAL_PERIOD": settings.eval_period,
        "EVAL_EXAMPLES": settings.eval_examples,
        "TASK_FEATURE_LENGTHS": {"inputs": inputs, "targets": targets},
        "SELECTION_METRIC": metric, "FOLDS": list(range(settings.num_folds)),
    }
    return [f"{name} = {json.dumps(value)}".replace("null", "None") for name, value in
            values.items()]


def majority_baseline(settings: DemoSettings, folds: dict, scored_as: str,
                      metric: str) -> dict[str, float | str]:
    """The most frequent target of fold 0's training part, predicted for every test example."""
    from ct5x_tasks.metrics import compute_metrics

    train_ids = set(folds["folds"][0]["train"])
    pool = split_examples(settings, "train") + split_examples(settings, "validation")
    counts = collections.Counter(e["targets"] for e in pool if e["id"] in train_ids)
    majority = counts.most_common(1)[0][0]
    test = split_examples(settings, "test")
    scores = compute_metrics(scored_as, [e["targets"] for e in test], [majority] * len(test))
    return {"prediction": majority, metric: scores[metric]}


def summarise(report: dict, baseline: dict, metric: str) -> dict:
    """Mean test score (with the t interval) per model, the paired t-test, the baseline."""
    table = report["tables"][0]
    rows = {row["model"]: row["metrics"][metric] for row in table["rows"]}
    tests = table["comparisons"].get(metric, [])
    return {
        "metric": metric,
        "models": {name: {"mean": cell["mean"], "t_interval": cell["t_interval"],
                          "folds": cell["scores"]} for name, cell in rows.items()},
        "paired_t_test": tests[0] if tests else None,
        "majority_baseline": baseline,
    }


def print_summary(summary: dict) -> None:
    metric = summary["metric"]
    folds = len(next(iter(summary["models"].values()))["folds"])
    print(f"\nTest {metric} over {folds} folds (tiny models, synthetic or small data: this shows "
          "the pipeline, not what real clinical T5s do):")
    for name, cell in summary["models"].items():
        low, high = cell["t_interval"] or (float("nan"), float("nan"))
        print(f"  {name:<10} {cell['mean']:.3f}  (95% t interval {low:.3f}-{high:.3f})")
    print(f"  majority-class baseline  {summary['majority_baseline'][metric]:.3f}")
    test = summary["paired_t_test"]
    if test and test["t"] is None:  # NaN in the report: the same difference in every fold
        print(f"  paired t-test {test['a']} vs {test['b']}: mean difference "
              f"{test['mean_difference']:+.3f} in every fold, t and p undefined")
    elif test:
        print(f"  paired t-test {test['a']} vs {test['b']}: mean difference "
              f"{test['mean_difference']:+.3f}, t = {test['t']:.2f}, p = {test['p']:.3g}")


def run(workdir: pathlib.Path, settings: DemoSettings) -> dict:
    """Every stage in order; returns the summary also written to summary.json."""
    import ct5x_tasks
    from ct5x.evaluation import EvaluationSettings, ReportSettings
    from ct5x.gin_utils import macro, parse_gin
    from ct5x.sweep import runner
    from ct5x.sweep.grid import expand

    space = Workspace(workdir)
    started = time.monotonic()
    stages = Stages(6)
    stages.next("data")
    data_dir, texts_dir = make_data(settings, space)
    settings = dataclasses.replace(settings, data_dir=str(data_dir))
    stages.next("vocabulary and folds")
    vocabulary = train_vocabulary(settings, texts_dir, space.vocabulary)
    path = ct5x_tasks.write_folds(settings.task, str(data_dir), str(space.folds / settings.task),
                                  seed=settings.seed)
    folds = json.loads(path.read_text())
    stages.next(f"pre-train the 'clinical' tiny T5: span corruption, {settings.pretrain_steps} "
                "steps")
    checkpoint = pretrain(settings, space, texts_dir, vocabulary)
    stages.next(f"fine-tune 'clinical' and 'general' on {settings.num_folds} folds (ct5x train, "
                "one run after another)")
    parse_gin(["demo/experiment.gin"],
              experiment_bindings(settings, space, data_dir, vocabulary, checkpoint))
    experiment = macro("EXPERIMENT")
    runs = expand(experiment)
    trained = runner.train_runs(runs)
    if trained.failed:
        raise UserInputError(f"{len(trained.failed)} fine-tuning runs failed, first: "
                             f"{trained.failed[0][0].model_dir}: {trained.failed[0][1]}")
    stages.next("score the best checkpoints on the test split (ct5x evaluate), compare them")
    result = runner.evaluate_and_report(
        experiment, runs, report_settings=ReportSettings(num_folds=settings.num_folds),
        evaluation_settings=EvaluationSettings(batch_size=64))
    table = result["report"]["tables"][0]
    metric = table["selection_metric"]
    stages.next("majority-class baseline")
    scored_as = "clip" if settings.task == "synthetic_followup" else settings.task
    baseline = majority_baseline(settings, folds, scored_as, metric)
    summary = summarise(result["report"], baseline, metric)
    summary["report"] = str(result["report_dir"] / "report.md")
    summary["seconds"] = round(time.monotonic() - started, 1)
    stages.finish()
    print_summary(summary)
    print(f"\nreport: {summary['report']}; plots: {result['report_dir'] / 'plots'}; "
          f"{summary['seconds']:.0f} s in all")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="demo_output", help="where everything is written")
    parser.add_argument("--data-dir", help="a real dataset's folder (or DATA_DIR) instead")
    parser.add_argument("--task", help="its base task, e.g. ncbi_disease (with --data-dir)")
    parser.add_argument("--gin_file", action="append", default=None, help="default demo.gin")
    parser.add_argument("--gin", action="append", default=[], help="extra gin binding")


def run_command(args: argparse.Namespace) -> int:
    from ct5x.startup import import_frameworks_quietly

    import_frameworks_quietly()
    from ct5x.gin_utils import macro, operative_config, parse_gin

    if bool(args.data_dir) != bool(args.task):
        print("ct5x demo: error: --data-dir and --task go together", file=sys.stderr)
        return 2
    try:
        parse_gin(args.gin_file or ["demo.gin"], args.gin)
        settings = macro("DEMO")
        if args.data_dir:
            settings = dataclasses.replace(settings, data_dir=args.data_dir, task=args.task)
        workdir = pathlib.Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "demo_config.gin").write_text(operative_config())
        summary = run(workdir, settings)
    except UserInputError as error:
        print(f"ct5x demo: error: {error}", file=sys.stderr)
        return 2
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def register_command(commands) -> None:
    """Adds `ct5x demo`."""
    parser = commands.add_parser("demo", help="the paper's question in miniature (make demo)")
    add_arguments(parser)
    parser.set_defaults(run=run_command)


if __name__ == "__main__":
    sys.exit(main())
