"""Data pipeline throughput: raw NCBI-disease training lines to packed, tokenized batches.

Measures examples per second through the `ncbi_disease` task: reading the TSV, prompting,
SentencePiece tokenization, packing with seqio's EncDecFeatureConverter and batching, at the
task's own lengths (512/512) and at the t5_1_1-small benchmark shape (128/32). Without --spm it
trains a small SentencePiece model on the fly (T5 ids) from the training inputs.

    python benchmarks/data_throughput.py [--spm spiece.model] [--epochs 2] [--batch-size 64]

Prints a table, then one JSON line: {"data_examples_per_s": <at 512/512>, ...}.
"""

import argparse
import json
import os
import pathlib
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
SHAPES = {"task 512/512": (512, 512), "small 128/32": (128, 32)}


def train_vocabulary(workdir: pathlib.Path, train_file: pathlib.Path) -> str:
    """A 1,000-piece unigram model with T5's ids (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece as spm

    corpus = workdir / "corpus.txt"
    lines = train_file.read_text(encoding="utf-8").splitlines()
    corpus.write_text("\n".join(line.split("\t")[0] for line in lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(workdir / "spiece"), vocab_size=1000,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=2,
        minloglevel=2,
    )
    return str(workdir / "spiece.model")


def measure(lengths: tuple[int, int], epochs: int, batch_size: int) -> dict[str, float]:
    """Examples/s and batches/s over `epochs` passes, dataset construction included."""
    import seqio

    start = time.perf_counter()
    dataset = seqio.get_dataset(
        "ncbi_disease", {"inputs": lengths[0], "targets": lengths[1]},
        seqio.EncDecFeatureConverter(pack=True), dataset_split="train", shuffle=False,
        num_epochs=epochs,
    )
    batches = examples = 0
    for batch in dataset.batch(batch_size).as_numpy_iterator():
        batches += 1
        # A packed row holds several examples: count segments (ids restart at 1 per row).
        examples += int(batch["encoder_segment_ids"].max(axis=1).sum())
    seconds = time.perf_counter() - start
    return {"examples": examples, "batches": batches, "seconds": seconds,
            "examples_per_s": examples / seconds, "batches_per_s": batches / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spm", help="spiece.model to use instead of training one")
    parser.add_argument("--data-dir", default=str(DATA), help="folder holding NCBI_disease/")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import ct5x_tasks.registration  # registers every task with SeqIO

    with tempfile.TemporaryDirectory() as workdir:
        train_file = pathlib.Path(args.data_dir) / "NCBI_disease" / "train_blurb.tsv"
        spm_path = args.spm or train_vocabulary(pathlib.Path(workdir), train_file)
        with ct5x_tasks.settings(data_dir=args.data_dir, vocabulary_path=spm_path):
            results = {name: measure(shape, args.epochs, args.batch_size)
                       for name, shape in SHAPES.items()}

    print(f"{'shape':<14} {'examples':>9} {'batches':>8} {'seconds':>8} {'ex/s':>9} {'batch/s':>8}")
    for name, row in results.items():
        print(f"{name:<14} {row['examples']:>9} {row['batches']:>8} {row['seconds']:>8.2f} "
              f"{row['examples_per_s']:>9.0f} {row['batches_per_s']:>8.2f}")
    print(json.dumps({
        "data_examples_per_s": round(results["task 512/512"]["examples_per_s"], 1),
        "data_examples_per_s_small_128_32": round(results["small 128/32"]["examples_per_s"], 1),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "vocabulary": "given" if args.spm else "trained 1000-piece unigram",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
