"""One fold of NCBI-disease end to end: ct5x as a user runs it against the study's pipeline.

ct5x runs `ct5x train` with EVALUATE_AFTER_TRAINING, which scores the test split in the same
process as the study's script does (`--separate-evaluate`: `ct5x train` and then `ct5x evaluate`,
two processes); the study's pipeline is `finetune_ncbi.py` re-expressed with transformers'
Seq2SeqTrainer (benchmarks/fold_study.py, one process). Both get the same fold 0 of the registered
task `ncbi_disease_fold0` (folds.json, optionally a seeded subset of its training part and the
first examples of its validation part and of the test split), the same prompts (made by the task),
the same random-initialised checkpoint (a transformers T5 saved with `save_pretrained`), the same
SentencePiece vocabulary with T5's ids (trained here on the fold's text), batch size, epochs,
constant Adafactor at 1e-4, dropout 0.1, greedy validation each epoch, test prediction and CPU
cores (every process is pinned to `--threads` cores; PyTorch gets as many threads). Each decodes
at its own default: the study's script at its batch size, ct5x at its EVAL_BATCH_SIZE (4 x the
batch size unless `--eval-batch-size`); predictions do not depend on it. ct5x's
compilation cache is off unless `--compilation-cache` (then a warm-up fold fills it first).

Each process records its timeline (`ct5x.timing`; CT5X_TIMINGS for ct5x's commands) and the
benchmark splits every round's wall time into phases (benchmarks/fold_phases.py): start-up,
compile, training steps, validation, checkpoint save/load, test prediction and the rest. Rounds
interleave the two pipelines; the table gives medians and the per-round ratios (the study's time
over ct5x's: above 1, ct5x is faster), then a float32 matmul's rate measured between the rounds
(the machine's ceiling), and the last line is one JSON object. It measures; it asserts nothing.

    python benchmarks/fold.py [--shape small|tiny] [--lengths 128/128] [--train-examples 320]
        [--validation-examples 160] [--test-examples 160] [--rounds 2] [--separate-evaluate]
        [--quick]

The real NCBI-disease files are read from ../shared/data/NCBI_disease beside the project, or
from `--data`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from fold_phases import pipeline_phases, summarise, table

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_NCBI = REPO.parent / "shared" / "data" / "NCBI_disease"
TASK = "ncbi_disease_fold0"
# transformers T5 configurations: t5_1_1-small's shape, and a tiny one for --quick.
SHAPES = {
    "small": {"d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 8,
              "num_decoder_layers": 8, "num_heads": 6},
    "tiny": {"d_model": 128, "d_kv": 32, "d_ff": 256, "num_layers": 2,
             "num_decoder_layers": 2, "num_heads": 4},
}
VOCAB_SIZE = 32128  # T5's output layer; the SentencePiece model has fewer pieces, as T5's has


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--lengths", default="128/128", help="input/target tokens, e.g. 512/512")
    parser.add_argument("--train-examples", type=int, default=320,
                        help="a seeded subset of fold 0's training part (0: all of it)")
    parser.add_argument("--validation-examples", type=int, default=160,
                        help="the first of fold 0's validation part (0: all)")
    parser.add_argument("--test-examples", type=int, default=160,
                        help="the first lines of the test split (0: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int,
                        help="ct5x's EVAL_BATCH_SIZE (default: its own, 4 x --batch-size); the "
                             "study's pipeline decodes --batch-size rows, as its script does")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--vocabulary-size", type=int, default=8000,
                        help="SentencePiece pieces trained on the fold's text")
    parser.add_argument("--compilation-cache", action="store_true",
                        help="ct5x with a warm compilation cache (a warm-up fold fills it)")
    parser.add_argument("--separate-evaluate", action="store_true",
                        help="ct5x as two processes: `ct5x train`, then `ct5x evaluate`")
    parser.add_argument("--data", default=str(SHARED_NCBI), help="the NCBI_disease folder")
    parser.add_argument("--workdir", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny shape, 64/64, 48 training and 16 other examples")
    args = parser.parse_args(argv)
    if args.quick:
        args.shape, args.lengths, args.vocabulary_size = "tiny", "64/64", 2000
        args.train_examples, args.validation_examples, args.test_examples = 48, 16, 16
    inputs, _, targets = args.lengths.partition("/")
    args.input_length, args.target_length = int(inputs), int(targets or inputs)
    return args


def subset_folds(folds_file: pathlib.Path, train: int, validation: int, seed: int = 0) -> dict:
    """Fold 0 of folds.json cut to a seeded sample of `train` training ids (kept in file order)
    and its first `validation` validation ids; 0 keeps a part whole. Rewrites the file."""
    content = json.loads(folds_file.read_text(encoding="utf-8"))
    fold = content["folds"][0]
    if train:
        keep = set(random.Random(seed).sample(range(len(fold["train"])), train))
        fold["train"] = [name for i, name in enumerate(fold["train"]) if i in keep]
    if validation:
        fold["validation"] = fold["validation"][:validation]
    folds_file.write_text(json.dumps(content), encoding="utf-8")
    return {"train": len(fold["train"]), "validation": len(fold["validation"])}


def prepare(args: argparse.Namespace, work: pathlib.Path) -> dict:
    """Data (with the fold), vocabulary, checkpoint and the study's data files, made once."""
    source = pathlib.Path(args.data)
    if not all((source / f"{split}_blurb.tsv").is_file() for split in ("train", "dev", "test")):
        sys.exit(f"fold.py: the NCBI-disease files ({{train,dev,test}}_blurb.tsv) are not in "
                 f"{source}; pass --data FOLDER")
    from ct5x.startup import import_frameworks_quietly

    import_frameworks_quietly()  # the task registry needs TensorFlow: without its notices
    data_dir = work / "data"
    ncbi = data_dir / "NCBI_disease"
    ncbi.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        shutil.copyfile(source / f"{split}_blurb.tsv", ncbi / f"{split}_blurb.tsv")
    test = (source / "test_blurb.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (ncbi / "test_blurb.tsv").write_text("".join(test[:args.test_examples or None]),
                                         encoding="utf-8")
    from ct5x_tasks import write_folds

    folds = write_folds("ncbi_disease", str(ncbi), str(ncbi / "folds" / "ncbi_disease"))
    sizes = subset_folds(folds, args.train_examples, args.validation_examples)
    vocabulary = train_vocabulary(ncbi, work / "vocabulary", args.vocabulary_size)
    checkpoint = make_checkpoint(work / "checkpoint", SHAPES[args.shape], vocabulary)
    study_data = write_study_data(args, data_dir, vocabulary, work / "study_data")
    return {"data_dir": data_dir, "vocabulary": vocabulary, "checkpoint": checkpoint,
            "study_data": study_data, "sizes": {**sizes, "test": len(test[:args.test_examples
                                                                          or None])}}


def train_vocabulary(ncbi: pathlib.Path, out: pathlib.Path, size: int) -> str:
    """A unigram SentencePiece model with T5's ids (pad 0, EOS 1, unk 2, no BOS) on train+dev."""
    import sentencepiece

    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    with corpus.open("w", encoding="utf-8") as stream:
        for split in ("train", "dev"):
            for line in (ncbi / f"{split}_blurb.tsv").read_text(encoding="utf-8").splitlines():
                stream.write(line.replace("\t", "\n") + "\n")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out / "spiece"), vocab_size=size,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        num_threads=2, minloglevel=2, hard_vocab_limit=False,
    )
    return str(out / "spiece.model")


def make_checkpoint(out: pathlib.Path, shape: dict, vocabulary: str) -> pathlib.Path:
    """A randomly initialised t5_1_1-style transformers T5 (gated GELU, its own output layer),
    saved with `save_pretrained`, with the vocabulary beside it: both pipelines start from it."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=VOCAB_SIZE, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        dropout_rate=0.1, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **shape)
    model = transformers.T5ForConditionalGeneration(config)
    # transformers 5 ties the output layer to the embedding; t5_1_1 has its own.
    weight = torch.randn_like(model.shared.weight) * shape["d_model"] ** -0.5
    model.lm_head.weight = torch.nn.Parameter(weight)
    model.save_pretrained(out)
    shutil.copy(vocabulary, out / "spiece.model")
    return out


def write_study_data(args: argparse.Namespace, data_dir: pathlib.Path, vocabulary: str,
                     out: pathlib.Path) -> dict[str, str]:
    """The fold's prompts and targets as the registered task makes them, one JSONL per split."""
    os.environ.update(CT5X_DATA_DIR=str(data_dir), CT5X_VOCABULARY=vocabulary)
    import ct5x_tasks.registration  # noqa: F401  (registers the tasks with SeqIO)
    from ct5x.data_pipeline import task_examples

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    lengths = {"inputs": args.input_length, "targets": args.target_length}
    for split in ("train", "validation", "test"):
        paths[split] = str(out / f"{split}.jsonl")
        lines = [json.dumps({"inputs": example["inputs_pretokenized"].decode(),
                             "targets": example["targets_pretokenized"].decode()}) + "\n"
                 for example in task_examples(TASK, split, lengths)]
        pathlib.Path(paths[split]).write_text("".join(lines), encoding="utf-8")
    return paths


def launch(command: list[str], env: dict, log: pathlib.Path) -> tuple[float, float]:
    """Runs a process to its end with its output in `log`; its wall seconds and the CPU seconds
    (user + system) it used. Exits on failure."""
    start = time.time()
    with log.open("w") as stream:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=stream,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.time() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"fold.py: {' '.join(command[:4])} ... failed ({code}); see {log}")
    return wall, usage.ru_utime + usage.ru_stime


def timeline(path: pathlib.Path) -> dict:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return records[-1]


def ct5x_fold(args, prepared: dict, folder: pathlib.Path, cache: str | None) -> tuple:
    """`ct5x train` scoring the test split itself, or then `ct5x evaluate`
    (--separate-evaluate); ([(timeline, wall, CPU seconds)] per process, test metrics)."""
    folder.mkdir(parents=True)
    model_dir = folder / "run"
    ct5x = [sys.executable, "-m", "ct5x.cli"]
    macros = {"MODEL_DIR": str(model_dir), "DATA_DIR": str(prepared["data_dir"]),
              "INITIAL_CHECKPOINT_PATH": str(prepared["checkpoint"]),
              "MIXTURE_OR_TASK_NAME": TASK, "EPOCHS": args.epochs,
              "BATCH_SIZE": args.batch_size, "EVAL_BATCH_SIZE": args.eval_batch_size,
              "COMPILATION_CACHE_DIR": cache,
              "EVALUATE_AFTER_TRAINING": not args.separate_evaluate,
              "TASK_FEATURE_LENGTHS": {"inputs": args.input_length,
                                       "targets": args.target_length}}
    train = [*ct5x, "train", "--gin_file=runs/finetune.gin",
             *[f"--gin.{name}={value!r}" for name, value in macros.items()]]
    evaluate = [*ct5x, "evaluate", "--runs", str(model_dir), "--no-progress",
                "--compilation-cache-dir", str(cache)]
    processes = []
    commands = [("train", train), ("evaluate", evaluate)] if args.separate_evaluate else [
        ("train", train)]
    for name, command in commands:
        timings = folder / f"{name}_timings.jsonl"
        env = dict(os.environ, CT5X_TIMINGS=str(timings), TF_CPP_MIN_LOG_LEVEL="3",
                   HF_HUB_OFFLINE="1")
        wall, cpu = launch(command, env, folder / f"{name}.log")
        processes.append((timeline(timings), wall, cpu))
    metrics = json.loads((model_dir / "metrics.json").read_text())
    record = json.loads((model_dir / "run.json").read_text())
    return processes, {"test_f1": metrics["metrics"].get("f1"),
                       "eval_batch_size": record["eval_batch_size"]}


def study_fold(args, prepared: dict, folder: pathlib.Path) -> tuple:
    """benchmarks/fold_study.py in its own process; ([(timeline, wall, CPU seconds)], test
    metrics)."""
    folder.mkdir(parents=True)
    config = {"checkpoint": str(prepared["checkpoint"]), "vocabulary": prepared["vocabulary"],
              "data": prepared["study_data"], "input_length": args.input_length,
              "target_length": args.target_length, "batch_size": args.batch_size,
              "epochs": args.epochs, "seed": 42, "threads": args.threads,
              "output_dir": str(folder / "run"), "record": str(folder / "record.json")}
    (folder / "config.json").write_text(json.dumps(config))
    command = [sys.executable, str(REPO / "benchmarks" / "fold_study.py"),
               str(folder / "config.json")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1")
    wall, cpu = launch(command, env, folder / "study.log")
    record = json.loads((folder / "record.json").read_text())
    return [(record, wall, cpu)], {"test_f1": record["test_metrics"].get("test_f1")}


def matmul_gflops(size: int = 4096, reps: int = 3) -> float:
    """The float32 rate of a size^3 matmul (numpy, this process's cores): the ceiling."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2.0 * size**3 / statistics.median(times) / 1e9


def main() -> None:
    args = parse_args()
    # Every process inherits these cores; XLA sizes its thread pool from them.
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="ct5x_fold_"))
    print(f"workdir {work}; {args.shape} shape, {args.input_length}/{args.target_length}, "
          f"{args.threads} threads", file=sys.stderr, flush=True)
    started = time.time()
    prepared = prepare(args, work)
    print(f"prepared in {time.time() - started:.0f} s: {prepared['sizes']}", file=sys.stderr,
          flush=True)
    cache = str(work / "compilation_cache") if args.compilation_cache else None
    if cache:
        ct5x_fold(args, prepared, work / "warm_up", cache)
    ours, theirs, rates, checks = [], [], [], []
    for index in range(args.rounds):
        rates.append(matmul_gflops(1024 if args.quick else 4096))
        processes, ct5x_metrics = ct5x_fold(args, prepared, work / f"round{index}" / "ct5x",
                                            cache)
        ours.append(pipeline_phases(processes))
        processes, study_metrics = study_fold(args, prepared, work / f"round{index}" / "study")
        theirs.append(pipeline_phases(processes))
        checks.append({"ct5x": ct5x_metrics, "study": study_metrics})
        (work / f"round{index}" / "phases.json").write_text(json.dumps(
            {"ct5x": ours[-1], "study": theirs[-1], "checks": checks[-1]}))
        print(f"round {index}: ct5x {ours[-1]['whole']:.1f} s, study {theirs[-1]['whole']:.1f} s",
              file=sys.stderr, flush=True)
    summary = summarise(ours, theirs)
    print(table(summary, args.rounds))
    print(f"float32 matmul 4096^3 (numpy, between rounds): "
          f"{statistics.median(rates):.1f} GFLOP/s; test F1 per round {checks}")
    result = {
        "shape": args.shape, "lengths": [args.input_length, args.target_length],
        "examples": prepared["sizes"], "epochs": args.epochs, "batch_size": args.batch_size,
        "rounds": args.rounds, "threads": args.threads, "compilation_cache": args.compilation_cache,
        "ct5x_processes": 2 if args.separate_evaluate else 1,
        "phases": summary, "per_round": {"ct5x": ours, "study": theirs}, "checks": checks,
        "matmul_gflops": round(statistics.median(rates), 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "quick": args.quick, "workdir": str(work),
    }
    print(json.dumps(result))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
