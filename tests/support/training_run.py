"""Small training runs for the `ct5x train` tests: NCBI-format data, a vocabulary trained on it, a
tiny Hugging Face T5 written by transformers' `save_pretrained`, and the gin flags of a run."""

import os
import pathlib
import random
import subprocess
import sys

from synthetic_text import synthetic_sentences

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_HF_CONFIG = {
    "d_model": 32, "d_kv": 8, "d_ff": 48, "num_layers": 2, "num_decoder_layers": 2,
    "num_heads": 4, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
    "dropout_rate": 0.1, "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1,
}
# The run test_train.py and test_storage.py kill and compare: 24 steps, a checkpoint every 4,
# evaluations at 12 and 24.
REFERENCE_MACROS = {"TRAIN_STEPS": 24, "EVAL_PERIOD": 12, "LOG_PERIOD": 1, "CHECKPOINT_PERIOD": 4,
                    "EVAL_EXAMPLES": 16}
DISEASES = ["diabetes", "hypertension", "cancer", "tumour", "syndrome", "deficiency"]


def synthetic_ncbi_lines(count: int, seed: int) -> list[str]:
    """`sentence TAB target` lines in the BLURB form: disease words wrapped
    `disease* .. *disease`."""
    rng = random.Random(seed)
    lines = []
    for sentence in synthetic_sentences(count, seed):
        words = sentence.split()
        if rng.random() < 0.5:
            words.insert(rng.randrange(len(words)), rng.choice(DISEASES))
        target = " ".join(f"disease* {w} *disease" if w in DISEASES else w for w in words)
        lines.append(f"{' '.join(words)}\t{target}")
    return lines


def write_ncbi(data_dir: pathlib.Path, splits: dict[str, list[str]]) -> pathlib.Path:
    """DATA_DIR/NCBI_disease/{split}_blurb.tsv and its folds (in the default folds place)."""
    from ct5x_tasks import write_folds

    folder = data_dir / "NCBI_disease"
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in splits.items():
        (folder / f"{split}_blurb.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_folds("ncbi_disease", str(folder), str(folder / "folds" / "ncbi_disease"), seed=42)
    return data_dir


def train_vocabulary(text_file: pathlib.Path, out_dir: pathlib.Path, size: int = 120) -> str:
    """A unigram SentencePiece model with T5's ids and the NER markers as single pieces."""
    import sentencepiece

    out_dir.mkdir(parents=True, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        input=str(text_file), model_prefix=str(out_dir / "spiece"), vocab_size=size,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        user_defined_symbols=["disease*", "*disease"], character_coverage=1.0, num_threads=1,
        minloglevel=2, hard_vocab_limit=False,
    )
    return str(out_dir / "spiece.model")


def make_hf_checkpoint(out: pathlib.Path, spiece: str, vocab_size: int = 128, seed: int = 0,
                       **fields) -> pathlib.Path:
    """A freshly initialised tiny transformers T5 saved with `save_pretrained`, plus spiece."""
    import shutil

    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.T5Config(vocab_size=vocab_size, **{**TINY_HF_CONFIG, **fields})
    model = transformers.T5ForConditionalGeneration(config)
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone() * 0.05)
    model.save_pretrained(out)
    shutil.copy(spiece, out / "spiece.model")
    return out


def fixture_data(root: pathlib.Path, splits: dict[str, list[str]]) -> tuple[pathlib.Path,
                                                                          pathlib.Path]:
    """(DATA_DIR with folds, initial HF checkpoint with a vocabulary trained on the data)."""
    data_dir = write_ncbi(root / "data", splits)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(line.split("\t")[-1] for lines in splits.values()
                                for line in lines) + "\n")
    spiece = train_vocabulary(corpus, root / "vocabulary")
    return data_dir, make_hf_checkpoint(root / "hf_tiny", spiece)


def gin_flags(model_dir, data_dir, checkpoint, **macros) -> list[str]:
    """`ct5x train` flags for a tiny run of ncbi_disease_fold0, with the test session's
    compilation cache (conftest); macros are Python values."""
    values = {
        "MODEL_DIR": str(model_dir), "DATA_DIR": str(data_dir),
        "INITIAL_CHECKPOINT_PATH": str(checkpoint),
        "MIXTURE_OR_TASK_NAME": "ncbi_disease_fold0",
        "TASK_FEATURE_LENGTHS": {"inputs": 32, "targets": 32},
        "BATCH_SIZE": 8, "LEARNING_RATE": 1e-2, "LOG_PERIOD": 5,
        "COMPILATION_CACHE_DIR": os.environ.get(TEST_COMPILATION_CACHE),
        **macros,
    }
    return ["--gin_file=runs/finetune.gin",
            *[f"--gin.{name}={value!r}" for name, value in values.items()]]


# The environment variable that names the test session's compilation cache (tests/conftest.py).
TEST_COMPILATION_CACHE = "CT5X_TEST_COMPILATION_CACHE"
# XLA:CPU without its slower optimisations: compiling is most of a tiny run's time.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
EXPERIMENT = """
from __gin__ import dynamic_registration
from ct5x.sweep import grid

RUNS_DIR = None
EXPERIMENT = @grid.experiment()
grid.experiment:
  name = '{name}'
  runs_dir = %RUNS_DIR
  run_gin_files = ['runs/finetune.gin']
  folds = {folds}
  models = {models}
  settings = [{{'name': 'full', 'tasks': ['ncbi_disease'], 'learning_rates': [0.01],
               'batch_size': 8}}]
  bindings = {bindings}
"""


def write_experiment(path: pathlib.Path, models: list[dict], folds: list[int],
                     **bindings) -> pathlib.Path:
    """A one-task experiment gin file (ncbi_disease, learning rate 0.01, batch 8) whose runs go
    under the RUNS_DIR binding; `bindings` are every run's macros (Python values)."""
    path.write_text(EXPERIMENT.format(name=path.stem, folds=folds, models=models,
                                      bindings=bindings))
    return path


def subprocess_env(devices: int = 1) -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")
    if devices > 1:  # beside the test session's flags (conftest: FAST_COMPILE)
        env["XLA_FLAGS"] = (f"{env.get('XLA_FLAGS', '')} "
                            f"--xla_force_host_platform_device_count={devices}").strip()
    return env


def train_command(flags: list[str]) -> list[str]:
    return [sys.executable, "-m", "ct5x.train", *flags]


def run_train(flags: list[str], devices: int = 1, timeout: int = 300):
    """`python -m ct5x.train` in a fresh process (own device count); CompletedProcess."""
    return subprocess.run(train_command(flags), check=False, cwd=REPO,
                          env=subprocess_env(devices), capture_output=True, text=True,
                          timeout=timeout)
