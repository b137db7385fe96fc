"""The demo's clinical task: which follow-up does a discharge plan sentence ask for?

`write_corpus(folder, seed)` writes synthetic discharge notes (tasks/synthetic_notes.py) in two
sets that share no note:
- `<folder>/clinical_notes/notes.jsonl`: notes for span-corruption pre-training (one per line,
  field "text"): they use every medication, lab, imaging and procedure name in the contexts of
  its kind, and carry no labels;
- `<folder>/synthetic_followup/{train,dev,test}.jsonl` (id, note_id, text, labels): the plan
  sentences of other notes, each labelled with the follow-ups it asks for in CLIP's label set,
  split by note.

Most plan sentences name a term in words that fit every kind ("Please follow up troponin in
2 weeks."): the label (here "Lab-related followup") depends on the term alone. Knowing the kind
of a term that no labelled example shows takes what the notes teach, which is the demo's question.
Appointments, instructions, other information and sentences with no follow-up are told apart by
their wording; some sentences ask for two follow-ups. Every term is drawn uniformly, so a small
sample of the training data leaves many terms of the test split unseen. Registered as
`synthetic_followup[_fold<k>[_pct<p>]]`, a user's task scored as CLIP (macro-F1 over its 7 labels).
"""

from __future__ import annotations

import pathlib
import random

from ct5x.jsonl import write_atomic
from ct5x_tasks.synthetic_notes import (
    APPOINTMENT,
    INSTRUCTIONS,
    KIND_OF,
    OTHER,
    PROBLEMS,
    SPECIALTIES,
    SYMPTOMS,
    TERMS,
    note_text,
)
from ct5x_tasks.task_settings import CustomTaskSettings

TASK = "synthetic_followup"
NOTES_FOLDER = "clinical_notes"
SETTINGS = CustomTaskSettings(
    file_format="jsonl", input_field="text", target_field="labels", id_field="id",
    group_field="note_id", prefix="followup: ", score_as="clip", input_length=64,
    target_length=64,
)
# Training fractions registered for the low-resource experiment (`_pct<p>` task variants).
FRACTIONS = (0.02, 0.05, 0.1, 0.25, 0.5)
SPLITS = {"train": 0.6, "dev": 0.2, "test": 0.2}

_WHEN = ("in 1 week", "in 2 weeks", "in 3 days", "in one month", "within 48 hours",
         "after discharge", "at the next visit")
# Sentences whose label is the kind of the term(s) they name: the wording fits every kind.
_ONE_TERM = (
    "Please follow up {a} {when}.",
    "Outstanding at discharge: {a}, to be reviewed {when}.",
    "The outpatient team will coordinate {a} {when}.",
    "Remaining issue is {a}; revisit {when}.",
    "Make sure {a} is taken care of {when}.",
)
_TWO_TERMS = ("Please follow up {a} and {b} {when}.",
              "Outstanding at discharge: {a} and {b}, to be reviewed {when}.")
# Sentences whose wording decides the label (or that ask for nothing).
_WORDED = {
    (APPOINTMENT,): ("Schedule a visit with {specialty} clinic {when}.",
                     "Follow up with her primary care physician {when}."),
    (INSTRUCTIONS,): ("Return to the emergency department for {symptom} or fever.",
                      "Patient instructed to weigh daily and call if up 3 pounds."),
    (OTHER,): ("Daughter is the health care proxy and prefers calls in the evening.",
               "Lives alone; home services were arranged {when}."),
    (): ("Discussed {problem} with the patient at length.",
         "Tolerating a regular diet and ambulating independently.",
         "Improved with treatment of {problem}, now afebrile."),
}
# How often each kind of plan sentence is drawn.
_SHAPES = (("one term", 55), ("two terms", 10), ((APPOINTMENT,), 9), ((INSTRUCTIONS,), 9),
           ((OTHER,), 8), ((), 9))


def plan_sentence(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    """One assessment-and-plan sentence and its follow-up labels (sorted, as CLIP's targets)."""
    shape = rng.choices([s for s, _ in _SHAPES], weights=[w for _, w in _SHAPES])[0]
    when = rng.choice(_WHEN)
    names = sorted(KIND_OF)
    if shape == "one term":
        name = rng.choice(names)
        return rng.choice(_ONE_TERM).format(a=name, when=when), (KIND_OF[name],)
    if shape == "two terms":
        first, second = rng.sample(sorted(TERMS), 2)
        a, b = rng.choice(TERMS[first]), rng.choice(TERMS[second])
        return rng.choice(_TWO_TERMS).format(a=a, b=b, when=when), tuple(sorted((first, second)))
    text = rng.choice(_WORDED[shape]).format(
        specialty=rng.choice(SPECIALTIES), when=when, symptom=rng.choice(SYMPTOMS),
        problem=rng.choice(PROBLEMS))
    return text, shape


def make_note(rng: random.Random, note_id: int) -> tuple[str, list[dict]]:
    """A note's text and its plan sentences as labelled examples."""
    plan = [plan_sentence(rng) for _ in range(rng.randint(4, 7))]
    examples = [
        {"id": f"{note_id}:{index}", "note_id": str(note_id), "text": sentence,
         "labels": ", ".join(labels)}
        for index, (sentence, labels) in enumerate(plan)
    ]
    return note_text(rng, [sentence for sentence, _ in plan]), examples


def write_corpus(folder: str | pathlib.Path, seed: int = 0, num_notes: int = 200,
                 pretrain_notes: int = 400) -> dict[str, int]:
    """Write the pre-training notes and the task's splits; returns the example counts per split
    and the number of pre-training notes ("notes"). The same seed writes the same bytes."""
    folder = pathlib.Path(folder)
    rng = random.Random(seed)
    rows: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for note_id in range(num_notes):
        _, examples = make_note(rng, note_id)
        position = note_id / num_notes
        name = ("train" if position < SPLITS["train"]
                else "dev" if position < SPLITS["train"] + SPLITS["dev"] else "test")
        rows[name] += examples
    notes = [{"text": make_note(rng, num_notes + index)[0]} for index in range(pretrain_notes)]
    for subfolder in (NOTES_FOLDER, TASK):
        (folder / subfolder).mkdir(parents=True, exist_ok=True)
    write_atomic(folder / NOTES_FOLDER / "notes.jsonl", notes)
    for name, examples in rows.items():
        write_atomic(folder / TASK / f"{name}.jsonl", examples)
    return {**{name: len(examples) for name, examples in rows.items()}, "notes": len(notes)}
