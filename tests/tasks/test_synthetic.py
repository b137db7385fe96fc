"""The synthetic clinical corpus: deterministic, structured like a note, split by note, and
labelled so that the labels can be learnt from the text (a bag-of-words classifier as oracle)."""

import collections
import hashlib
import json

import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

import ct5x_tasks
from ct5x_tasks.labels import CLIP_LABELS
from ct5x_tasks.synthetic import TASK, write_corpus

SECTIONS = ("CHIEF COMPLAINT:", "HISTORY OF PRESENT ILLNESS:", "PAST MEDICAL HISTORY:",
            "MEDICATIONS ON ADMISSION:", "VITALS:", "PHYSICAL EXAM:", "ASSESSMENT AND PLAN:")


def _digest(folder):
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def _rows(folder, split):
    lines = (folder / TASK / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    counts = write_corpus(folder, seed=5, num_notes=150)
    return folder, counts


def test_same_seed_same_bytes_other_seed_other_notes(corpus, tmp_path):
    folder, counts = corpus
    assert write_corpus(tmp_path / "again", seed=5, num_notes=150) == counts
    assert _digest(tmp_path / "again") == _digest(folder)
    write_corpus(tmp_path / "other", seed=6, num_notes=150)
    assert _digest(tmp_path / "other") != _digest(folder)


def test_notes_have_a_discharge_summarys_sections(corpus):
    folder, _ = corpus
    notes = sorted((folder / "notes").glob("*.txt"))
    assert len(notes) == 150
    for path in notes:
        text = path.read_text()
        positions = [text.index(section) for section in SECTIONS]
        assert positions == sorted(positions)
        assert "mg" in text and "BP " in text and "SpO2" in text


def test_labelled_sentences_come_from_the_plans_and_split_by_note(corpus):
    folder, counts = corpus
    notes_of = {}
    for split in ("train", "dev", "test"):
        rows = _rows(folder, split)
        assert len(rows) == counts[split] > 0
        notes_of[split] = {row["note_id"] for row in rows}
        for row in rows:
            plan = (folder / "notes" / f"note{int(row['note_id']):05d}.txt").read_text()
            assert row["text"] in plan.split("ASSESSMENT AND PLAN:")[1]
            labels = [label for label in row["labels"].split(", ") if label]
            assert labels == sorted(labels) and set(labels) <= set(CLIP_LABELS)
    assert not notes_of["train"] & notes_of["dev"] and not notes_of["train"] & notes_of["test"]
    every = collections.Counter(row["labels"] for split in ("train", "dev", "test")
                                for row in _rows(folder, split))
    assert {label for key in every for label in key.split(", ") if label} == set(CLIP_LABELS)
    assert "" in every and any(", " in key for key in every)  # none, and two labels at once


def test_labels_are_learnable_from_the_text(corpus):
    folder, _ = corpus
    train, test = _rows(folder, "train"), _rows(folder, "test")
    vectorizer = CountVectorizer(ngram_range=(1, 2))
    features = vectorizer.fit_transform([row["text"] for row in train])
    classifier = LogisticRegression(max_iter=2000).fit(features, [r["labels"] for r in train])
    predicted = classifier.predict(vectorizer.transform([row["text"] for row in test]))
    accuracy = sum(p == r["labels"] for p, r in zip(predicted, test)) / len(test)
    majority = collections.Counter(r["labels"] for r in train).most_common(1)[0][0]
    baseline = sum(r["labels"] == majority for r in test) / len(test)
    assert accuracy > 0.9 and baseline < 0.3


def test_registered_with_group_aware_folds(corpus, tmp_path):
    folder, counts = corpus
    assert ct5x_tasks.task_info(f"{TASK}_fold4").variant.fold == 4
    path = ct5x_tasks.write_folds(TASK, str(folder / TASK), str(tmp_path))
    folds = json.loads(path.read_text())
    assert len(folds["test"]) == counts["test"]
    note_of = {row["id"]: row["note_id"] for s in ("train", "dev") for row in _rows(folder, s)}
    for fold in folds["folds"]:
        assert len(fold["train"]) + len(fold["validation"]) == counts["train"] + counts["dev"]
        train_notes = {note_of[i.split(":", 1)[1]] for i in fold["train"]}
        validation_notes = {note_of[i.split(":", 1)[1]] for i in fold["validation"]}
        assert not train_notes & validation_notes
