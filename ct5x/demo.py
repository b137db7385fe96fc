"""`make demo`: the whole data-to-metrics path on real NCBI-disease data with a tiny T5.

Steps (each a function below): train a SentencePiece vocabulary with T5's ids on the training
sentences; write 5-fold cross-validation folds; fine-tune a tiny t5_1_1 with Adafactor on fold 0
through the registered SeqIO task (packed batches); save it as a T5X (Orbax) checkpoint and convert
that to a Hugging Face directory; decode and score test sentences from the converted checkpoint;
compute the task's entity-level metrics. Configured by gin/demo.gin.

    python -m ct5x.demo --workdir demo_output [--gin_file demo.gin]
        [--gin "demo.DemoSettings.train_steps = 10"]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

from ct5x.errors import UserInputError
from ct5x.startup import import_frameworks_quietly


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What the demo trains on and for how long (bound in gin/demo.gin)."""

    task: str = "ncbi_disease"
    fold: int = 0
    vocabulary_size: int = 2000
    train_steps: int = 200
    batch_size: int = 16
    input_length: int = 128
    target_length: int = 128
    learning_rate: float = 3e-3
    eval_examples: int = 32
    max_decode_length: int = 64
    seed: int = 42


def train_vocabulary(settings: DemoSettings, data_dir: pathlib.Path, out: pathlib.Path) -> str:
    """A unigram SentencePiece model with T5's ids (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece

    source = data_dir / "NCBI_disease" / "train_blurb.tsv"
    if not source.is_file():
        raise UserInputError(f"{source}: not found; set DATA_DIR in gin/demo.gin")
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / "spiece"
    sentencepiece.SentencePieceTrainer.train(
        input=str(source), model_prefix=str(prefix), vocab_size=settings.vocabulary_size,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        user_defined_symbols=["disease*", "*disease"], num_threads=2, minloglevel=2,
    )
    return f"{prefix}.model"


def write_cv_folds(settings: DemoSettings, data_dir: pathlib.Path, folds_dir: pathlib.Path) -> dict:
    from ct5x_tasks import write_folds

    path = write_folds(settings.task, str(data_dir), str(folds_dir / settings.task), seed=settings.seed)
    return json.loads(path.read_text())


def training_batches(settings: DemoSettings):
    """Packed, tokenized batches of the fold's training part, from the registered SeqIO task."""
    import seqio

    from ct5x_tasks import get_provider

    dataset = get_provider(f"{settings.task}_fold{settings.fold}").get_dataset(
        {"inputs": settings.input_length, "targets": settings.target_length},
        split="train", shuffle=True, seed=settings.seed, num_epochs=None,
    )
    converter = seqio.EncDecFeatureConverter(pack=True)
    dataset = converter(dataset, {"inputs": settings.input_length, "targets": settings.target_length})
    return dataset.batch(settings.batch_size, drop_remainder=True).as_numpy_iterator()


def fine_tune(model, params, settings: DemoSettings) -> tuple[dict, list[float], float]:
    """Adafactor at a constant learning rate; returns params, losses and target tokens/s."""
    import jax
    import optax

    optimizer = optax.adafactor(learning_rate=settings.learning_rate)
    state = optimizer.init(params)

    @jax.jit
    def train_step(params, state, batch, rng):
        (_, aux), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, rng)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, aux["loss"] / aux["weight_sum"]

    losses, tokens, started = [], 0, None
    batches = training_batches(settings)
    for step in range(settings.train_steps):
        batch = next(batches)
        rng = jax.random.fold_in(jax.random.PRNGKey(settings.seed), step)
        params, state, loss = train_step(params, state, batch, rng)
        losses.append(float(loss))
        if step == 0:
            started = time.perf_counter()  # time steady-state steps, not compilation
        else:
            tokens += int(batch["decoder_loss_weights"].sum())
        if step % 25 == 0 or step == settings.train_steps - 1:
            print(f"  step {step:4d}  loss/token {losses[-1]:.3f}", flush=True)
    seconds = time.perf_counter() - started
    return params, losses, tokens / seconds if seconds > 0 else 0.0


def write_test_inputs(settings: DemoSettings, path: pathlib.Path) -> list[str]:
    """The first test examples as the task formats them (prompt included); returns targets."""
    from ct5x_tasks import get_provider, task_info

    info = task_info(settings.task)  # the paper's lengths for this task
    dataset = get_provider(settings.task).get_dataset(
        {"inputs": info.input_length, "targets": info.target_length}, split="test", shuffle=False
    )
    from ct5x.jsonl import write_atomic

    records = [
        {"inputs": example["inputs_pretokenized"].decode(),
         "targets": example["targets_pretokenized"].decode()}
        for example in dataset.take(settings.eval_examples).as_numpy_iterator()
    ]
    write_atomic(path, records)
    return [record["targets"] for record in records]


def run(workdir: pathlib.Path, settings: DemoSettings, model_config) -> dict:
    import jax
    import numpy as np

    import ct5x_tasks
    from ct5x.checkpoints import Checkpoint, convert_checkpoint, load_checkpoint, save_t5x
    from ct5x.gin_utils import bind
    from ct5x.inference import predict_file, score_file
    from ct5x.models import DecodingOptions, EncoderDecoderModel
    from ct5x.vocabulary import load_vocabulary
    from ct5x_tasks.metrics import compute_metrics
    from ct5x_tasks.settings import data_settings

    data_dir = pathlib.Path(data_settings().data_dir or "")
    print(f"1/6 vocabulary: SentencePiece on {data_dir / 'NCBI_disease'} train text")
    vocabulary_path = train_vocabulary(settings, data_dir, workdir / "vocabulary")
    ct5x_tasks.set_vocabulary_path(vocabulary_path)

    print("2/6 folds: 5-fold, grouped, seeded")
    folds = write_cv_folds(settings, data_dir, workdir / "folds")
    bind("ct5x_tasks.data_settings.folds_dir", str(workdir / "folds"))

    vocab_size = -(-settings.vocabulary_size // 128) * 128
    config = model_config.replace(vocab_size=vocab_size)
    model = EncoderDecoderModel(config)
    params = model.init_params(jax.random.PRNGKey(settings.seed))
    print(f"3/6 fine-tune: t5_1_1 tiny ({sum(x.size for x in jax.tree.leaves(params)):,} params), "
          f"{settings.train_steps} Adafactor steps on {settings.task}_fold{settings.fold}")
    params, losses, tokens_per_s = fine_tune(model, params, settings)

    print("4/6 checkpoints: T5X (Orbax) -> Hugging Face")
    checkpoint = Checkpoint(config, jax.tree.map(np.asarray, params), vocabulary_path)
    save_t5x(checkpoint, workdir / "t5x", step=settings.train_steps)
    convert_checkpoint(workdir / "t5x", workdir / "hf", to="hf")

    print(f"5/6 predict and score {settings.eval_examples} test sentences from the HF checkpoint")
    loaded = load_checkpoint(workdir / "hf")
    eval_model = EncoderDecoderModel(loaded.config.replace(dropout_rate=0.0))
    vocabulary = load_vocabulary(loaded)
    inputs = workdir / "test_inputs.jsonl"
    targets = write_test_inputs(settings, inputs)
    options = DecodingOptions(max_decode_length=settings.max_decode_length)
    predicted = predict_file(eval_model, loaded.params, vocabulary, str(inputs),
                             str(workdir / "predictions.jsonl"), options, batch_size=16)
    scored = score_file(eval_model, loaded.params, vocabulary, str(inputs),
                        str(workdir / "scores.jsonl"), batch_size=16)
    predictions = [record["prediction"] for record in predicted]
    scores = [record["log_likelihood"] for record in scored]

    print("6/6 metrics (entity-level, fixed scoring)")
    metrics = compute_metrics(settings.task, targets, predictions)
    return {
        "task": settings.task,
        "train_examples_fold0": len(folds["folds"][settings.fold]["train"]),
        "first_loss": round(losses[0], 3),
        "last_loss": round(float(np.mean(losses[-10:])), 3),
        "train_target_tokens_per_s": round(tokens_per_s, 1),
        "mean_test_log_likelihood": round(float(np.mean(scores)), 2),
        **{key: round(value, 4) for key, value in metrics.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="demo_output")
    parser.add_argument("--gin_file", action="append", default=None)
    parser.add_argument("--gin", action="append", default=[], help="extra gin bindings")
    args = parser.parse_args(argv)
    import_frameworks_quietly()

    from ct5x.gin_utils import macro, operative_config, parse_gin

    try:
        parse_gin(args.gin_file or ["demo.gin"], args.gin)
        settings, model = macro("DEMO"), macro("MODEL")
        workdir = pathlib.Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        summary = run(workdir, settings, model.config)
    except UserInputError as error:
        print(f"ct5x demo: error: {error}", file=sys.stderr)
        return 2
    (workdir / "config.gin").write_text(operative_config())
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
