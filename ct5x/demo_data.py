"""The demo's data: the two pre-training corpora, the shared vocabulary and the task's lengths.

The "clinical" corpus is the synthetic notes (tasks/synthetic.py), or with `--data-dir` the
task's own training inputs; the "general" corpus is news articles (tasks/general_text.py) of the
same size in characters. One SentencePiece vocabulary is trained on both and on the task's
training split (its inputs and label names), so that the two models differ only in what they
were pre-trained on.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Iterator, Sequence

from ct5x.jsonl import write_atomic

SENTINELS = 100  # T5's extra ids above the pieces, for span corruption (gin/runs/pretrain.gin)


def corpus_characters(folder: pathlib.Path) -> int:
    """Characters of the documents span corruption reads from `folder`."""
    from ct5x_tasks.span_corruption import documents

    return sum(len(text) for text in documents(folder, "text"))


def write_texts(folder: pathlib.Path, texts: Sequence[str]) -> pathlib.Path:
    """`texts` as `<folder>/texts.jsonl` (field "text"), a corpus span corruption reads."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "texts.jsonl", [{"text": text} for text in texts])
    return folder


def write_general_corpus(folder: pathlib.Path, seed: int, num_characters: int) -> int:
    """News articles of `num_characters` characters in `<folder>/articles.jsonl`; returns how
    many articles."""
    from ct5x_tasks.general_text import write_general_corpus as write

    return write(folder / "articles.jsonl", seed, num_characters)


def corpus_texts(corpora: Iterable[pathlib.Path]) -> Iterator[str]:
    """Every document of every corpus folder, as span corruption reads them."""
    from ct5x_tasks.span_corruption import documents

    for folder in corpora:
        yield from documents(folder, "text")


def train_vocabulary(texts: Iterable[str], out: pathlib.Path, size: int,
                     symbols: Sequence[str] = ()) -> str:
    """A unigram SentencePiece model with T5's ids (pad 0, eos 1, unk 2, no bos) trained on
    `texts`; kept when it exists, so that a rerun resumes its runs with the vocabulary they
    started with. `symbols` are pieces kept whole (NER markers)."""
    import sentencepiece

    prefix = out / "spiece"
    if pathlib.Path(f"{prefix}.model").is_file():
        print(f"vocabulary {prefix}.model kept from an earlier run")
        return f"{prefix}.model"
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    with corpus.open("w", encoding="utf-8") as stream:
        for text in texts:
            stream.write(text + "\n")
    partial = out / "spiece.partial"  # renamed when complete: a rerun never keeps half a model
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(partial), vocab_size=size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
        user_defined_symbols=list(symbols), num_threads=2, minloglevel=2,
    )
    corpus.unlink()
    pathlib.Path(f"{partial}.vocab").replace(f"{prefix}.vocab")
    pathlib.Path(f"{partial}.model").replace(f"{prefix}.model")
    return f"{prefix}.model"


def model_vocab_size(pieces: int) -> int:
    """Pieces and sentinels rounded up to a multiple of 128, as T5's 32,000 + 100 -> 32,128."""
    return -(-(pieces + SENTINELS) // 128) * 128


def fitting_lengths(vocabulary: str, examples: Iterable[dict]) -> tuple[int, int]:
    """(inputs, targets) lengths that hold every example's tokens and EOS, rounded up to a
    multiple of 8: nothing is truncated."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=vocabulary)
    longest = [1, 1]
    for example in examples:
        for index, key in enumerate(("inputs", "targets")):
            longest[index] = max(longest[index], len(processor.encode(example[key])) + 1)
    return tuple(-(-length // 8) * 8 for length in longest)
