"""Synthetic datasets written in each real distributed format (never real patient text)."""

import csv
import json
import pathlib

import pytest

import ct5x_tasks.registration  # noqa: F401  (SeqIO finds every task, as after T5X's import)
from tests.conftest import synthetic_sentences


def write_jsonl(path: pathlib.Path, rows: list) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: pathlib.Path, header: list[str], rows: list[list], delimiter=",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


def make_mednli(folder: pathlib.Path, per_split=(24, 9, 6)) -> pathlib.Path:
    """Premises shared by three hypotheses each, like MedNLI."""
    labels = ("entailment", "contradiction", "neutral")
    for split, count in zip(("train", "dev", "test"), per_split):
        rows = []
        premises = synthetic_sentences(count // 3 + 1, seed=len(split))
        hypotheses = synthetic_sentences(count, seed=7)
        for i in range(count):
            rows.append({"sentence1": premises[i // 3] + f" p{split}{i // 3}",
                         "sentence2": hypotheses[i].rstrip(" ."),
                         "gold_label": labels[i % 3], "pairID": f"{split}-{i}"})
        write_jsonl(folder / f"mli_{split}_v1.jsonl", rows)
    return folder


def make_radqa(folder: pathlib.Path, reports=(6, 3, 2), words=60) -> pathlib.Path:
    """SQuAD-2 files; each report has two sections, one answerable and one impossible question."""
    sentences = synthetic_sentences(400, seed=3)
    for split, count in zip(("train", "dev", "test"), reports):
        data = []
        for r in range(count):
            paragraphs = []
            for section in range(2):
                text = " ".join(sentences[(r * 7 + section * 3 + k) % 400] for k in range(40))
                context = " ".join(text.split()[:words]) + f" ANSWER{r}x{section} end ."
                start = context.index(f"ANSWER{r}x{section}")
                paragraphs.append({"context": context, "qas": [
                    {"id": f"q{r}-{section}", "question": "what is the finding ?",
                     "answers": [{"text": f"ANSWER{r}x{section}", "answer_start": start}],
                     "is_impossible": False},
                    {"id": f"q{r}-{section}-none", "question": "any fracture ?",
                     "answers": [], "is_impossible": True},
                ]})
            data.append({"title": f"report{r}", "paragraphs": paragraphs})
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{split}.json").write_text(json.dumps({"version": "v2.0", "data": data}))
    return folder


CLIP_TAGS = ("I-Lab-related followup", "I-Imaging-related followup",
             "I-Appointment-related followup")


def make_clip(folder: pathlib.Path, docs=(6, 3, 2), sentences_per_doc=12) -> pathlib.Path:
    """sentence_level.csv with list literals, and the three id files."""
    rows, doc = [], 0
    texts = synthetic_sentences(500, seed=5)
    ids = {}
    for split, count in zip(("train", "val", "test"), docs):
        ids[split] = []
        for _ in range(count):
            doc_id = str(1000 + doc)
            ids[split].append(doc_id)
            for s in range(sentences_per_doc):
                tokens = texts[(doc * sentences_per_doc + s) % 500].split()
                labels = [CLIP_TAGS[s % 3]] if s % 4 == 0 else []
                if s % 6 == 0:
                    labels.append(CLIP_TAGS[(s + 1) % 3])
                rows.append([doc_id, repr(tokens), repr(labels)])
            doc += 1
    write_csv(folder / "sentence_level.csv", ["doc_id", "sentence", "labels"], rows)
    for split, doc_ids in ids.items():
        (folder / f"{split}_ids.csv").write_text("".join(d + "\n" for d in doc_ids))
    return folder


def make_stigma(folder: pathlib.Path, name="annotations.csv", per_category=40) -> pathlib.Path:
    """One CSV with the three keyword categories, splits and fold_eval."""
    from ct5x_tasks.labels import STIGMA_LABELS

    texts = synthetic_sentences(per_category, seed=11)
    rows = []
    for category, labels in STIGMA_LABELS.items():
        for i in range(per_category):
            split = "test" if i % 5 == 4 else ("dev" if i % 5 == 3 else "train")
            fold = "" if split == "test" else str((i // 5) % 5)
            rows.append([category, split, fold, f"Patient {texts[i]}\nsecond line",
                         labels[i % len(labels)]])
    write_csv(folder / name, ["keyword_category", "split", "fold_eval", "note_text", "label"], rows)
    return folder


def make_hoc(folder: pathlib.Path) -> pathlib.Path:
    """Both HoC layouts: sentence-level JSONL (with document ids) and BLURB abstract TSV."""
    from ct5x_tasks.labels import HOC_LABELS

    texts = synthetic_sentences(60, seed=13)
    for split, count in (("train", 20), ("dev", 8), ("test", 6)):
        write_jsonl(folder / "sentence" / f"{split}.jsonl", [
            {"id": f"s{i}", "document_id": f"d{i // 2}", "text": texts[i],
             "labels": [HOC_LABELS[i % 10]] if i % 3 else []}
            for i in range(count)
        ])
        write_csv(folder / "blurb" / f"{split}.tsv", ["index", "sentence", "labels"], [
            [f"a{i}", texts[i] + " " + texts[i + 1], f"{i % 10},{(i + 3) % 10}" if i % 4 else "10"]
            for i in range(count)
        ], delimiter="\t")
    return folder


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> pathlib.Path:
    """A DATA_DIR holding every synthetic dataset; CT5X_DATA_DIR points at it."""
    root = tmp_path / "data"
    make_mednli(root / "mednli")
    make_radqa(root / "radqa")
    make_clip(root / "clip")
    make_stigma(root / "stigma")
    make_hoc(root / "hoc")
    monkeypatch.setenv("CT5X_DATA_DIR", str(root))
    for name in ("CT5X_FOLDS_DIR", "CT5X_ON_BAD_RECORD", "CT5X_VOCABULARY",
                 "CT5X_ANCHOR_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def vocabulary(spm_model_path):
    """The test SentencePiece model as every task's vocabulary, forgotten afterwards."""
    import ct5x_tasks

    ct5x_tasks.set_vocabulary_path(spm_model_path)
    yield spm_model_path
    ct5x_tasks.set_vocabulary_path(None)
