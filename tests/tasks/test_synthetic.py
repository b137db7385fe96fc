"""The demo's synthetic task: deterministic; its notes teach each term's kind; its labels follow the
term's kind; small training samples and the test split hold terms their labelled data lacks."""

import collections
import hashlib
import json
import math
import re

import numpy as np
import pytest

import ct5x_tasks
from ct5x_tasks.labels import CLIP_LABELS
from ct5x_tasks.synthetic import NOTES_FOLDER, TASK, write_corpus
from ct5x_tasks.synthetic_notes import KIND_OF, TERMS

SECTIONS = ("CHIEF COMPLAINT:", "HISTORY OF PRESENT ILLNESS:", "PAST MEDICAL HISTORY:",
            "HOSPITAL COURSE:", "ASSESSMENT AND PLAN:")
TERM_PATTERN = re.compile(r"\b(" + "|".join(sorted(KIND_OF, key=len, reverse=True)) + r")\b")


def _digest(folder):
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def _rows(folder, split):
    lines = (folder / TASK / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _notes(folder):
    lines = (folder / NOTES_FOLDER / "notes.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    counts = write_corpus(folder, seed=5, num_notes=400, pretrain_notes=200)
    return folder, counts


def test_same_seed_same_bytes_other_seed_other_notes(corpus, tmp_path):
    folder, counts = corpus
    assert write_corpus(tmp_path / "again", seed=5, num_notes=400, pretrain_notes=200) == counts
    assert _digest(tmp_path / "again") == _digest(folder)
    write_corpus(tmp_path / "other", seed=6, num_notes=400, pretrain_notes=200)
    assert _digest(tmp_path / "other") != _digest(folder)


def test_notes_have_a_discharge_summarys_sections_and_share_none_with_the_task(corpus):
    folder, counts = corpus
    notes = _notes(folder)
    assert len(notes) == counts["notes"] == 200
    for text in notes:
        positions = [text.index(section) for section in SECTIONS]
        assert positions == sorted(positions)
    plans = {text.split("ASSESSMENT AND PLAN: ")[1] for text in notes}
    for split in ("train", "dev", "test"):
        by_note = collections.defaultdict(list)
        for row in _rows(folder, split):
            by_note[row["note_id"]].append(row["text"])
        assert all(" ".join(sentences) not in plans for sentences in by_note.values())


def test_the_notes_teach_every_terms_kind(corpus):
    """Leave one term out, give it the kind of the term whose note contexts (the words around its
    mentions) are most alike: right for every term. The task's wording cannot do this."""
    folder, _ = corpus
    contexts = collections.defaultdict(collections.Counter)
    for text in _notes(folder):
        words = re.findall(r"[a-z]+", text.split("ASSESSMENT AND PLAN:")[0].lower())
        for index, word in enumerate(words):
            if word in KIND_OF:
                around = words[max(0, index - 2):index] + words[index + 1:index + 3]
                contexts[word].update(w for w in around if w not in KIND_OF)
    vocabulary = sorted({word for counts in contexts.values() for word in counts})
    names = sorted(KIND_OF)
    vectors = np.array([[contexts[name][word] for word in vocabulary] for name in names], float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1)
    nearest = [names[i] for i in similarity.argmax(axis=1)]
    assert [KIND_OF[n] for n in nearest] == [KIND_OF[n] for n in names]


def test_labels_are_clip_labels_and_follow_the_kind_of_the_terms_named(corpus):
    folder, counts = corpus
    every = collections.Counter()
    wording_by_kind = collections.defaultdict(set)
    for split in ("train", "dev", "test"):
        rows = _rows(folder, split)
        assert len(rows) == counts[split] > 0
        for row in rows:
            labels = [label for label in row["labels"].split(", ") if label]
            assert labels == sorted(labels) and set(labels) <= set(CLIP_LABELS)
            every[row["labels"]] += 1
            terms = TERM_PATTERN.findall(row["text"])
            if terms:
                assert labels == sorted({KIND_OF[term] for term in terms}), row
                wording = TERM_PATTERN.sub("X", row["text"])
                for term in terms:
                    wording_by_kind[wording].add(KIND_OF[term])
    assert {label for key in every for label in key.split(", ") if label} == set(CLIP_LABELS)
    assert "" in every and any(", " in key for key in every)  # none, and two labels at once
    single = {wording: kinds for wording, kinds in wording_by_kind.items()
              if "X and X" not in wording}
    assert single and all(kinds == set(TERMS) for kinds in single.values())  # wording: no clue


def _terms(rows):
    return {term for row in rows for term in TERM_PATTERN.findall(row["text"])}


def test_small_samples_and_the_test_split_hold_terms_their_labelled_data_lacks(corpus, tmp_path):
    folder, counts = corpus
    path = ct5x_tasks.write_folds(TASK, str(folder / TASK), str(tmp_path), fractions=(0.05, 0.25))
    folds = json.loads(path.read_text())
    assert len(folds["test"]) == counts["test"]
    pool = {f"{split}:{row['id']}": row
            for split in ("train", "dev") for row in _rows(folder, split)}
    note_of = {key: row["note_id"] for key, row in pool.items()}
    test_terms = _terms(_rows(folder, "test"))
    assert test_terms == set(KIND_OF)
    for fold in folds["folds"]:
        train, validation = fold["train"], fold["validation"]
        assert not {note_of[i] for i in train} & {note_of[i] for i in validation}
        small, medium = fold["fractions"]["0.05"], fold["fractions"]["0.25"]
        assert set(small) < set(medium) < set(train)
        assert math.isclose(len(small), 0.05 * len(train), rel_tol=0.3)
        unseen = test_terms - _terms(pool[i] for i in small)
        assert len(unseen) >= 0.25 * len(test_terms)  # a third of the terms unseen at 5%
        assert _terms(pool[i] for i in train) == test_terms  # all seen with all the data


def test_registered_with_folds_and_training_fractions():
    info = ct5x_tasks.task_info(f"{TASK}_fold4_pct5")
    assert (info.variant.fold, info.variant.fraction) == (4, 0.05)
    assert ct5x_tasks.task_info(f"{TASK}_fold0_pct25").target_length == 64
