"""A synthetic clinical corpus, and a labelled task drawn from it, for the demo and the tests.

`write_corpus(folder, seed)` writes notes with a discharge summary's structure (chief complaint,
history, past history, medications, vitals, exam, assessment and plan) and, from their plans, a
CLIP-like task: each plan sentence labelled with the follow-up actions it asks for (CLIP's seven
labels, none, or two at once). Everything is made from templates and a seeded `random.Random`, so
the same seed writes the same bytes; no real patient text is involved.

Files: `<folder>/notes/note<k>.txt` (one note each, the span-corruption corpus) and
`<folder>/synthetic_followup/{train,dev,test}.jsonl` (id, note_id, text, labels), split by note.
The task is registered as `synthetic_followup[_fold<k>]` (a user's task, scored as CLIP).
"""

from __future__ import annotations

import json
import pathlib
import random
from collections.abc import Callable

from ct5x_tasks.labels import CLIP_LABELS
from ct5x_tasks.task_settings import CustomTaskSettings

TASK = "synthetic_followup"
SETTINGS = CustomTaskSettings(
    file_format="jsonl", input_field="text", target_field="labels", id_field="id",
    group_field="note_id", prefix="followup: ", score_as="clip", input_length=64,
    target_length=24,
)
APPOINTMENT, MEDICATION, OTHER, LAB, INSTRUCTIONS, PROCEDURE, IMAGING = CLIP_LABELS

_DRUGS = {
    "metoprolol": (25, "mg", "twice daily"), "lisinopril": (10, "mg", "daily"),
    "atorvastatin": (40, "mg", "at bedtime"), "metformin": (500, "mg", "twice daily"),
    "furosemide": (20, "mg", "daily"), "apixaban": (5, "mg", "twice daily"),
    "amoxicillin": (500, "mg", "three times daily"), "prednisone": (40, "mg", "daily"),
    "insulin glargine": (20, "units", "at bedtime"), "pantoprazole": (40, "mg", "daily"),
}
_PROBLEMS = {
    "community acquired pneumonia": ("cough", "fever", "chest x-ray", "pulmonology"),
    "acute decompensated heart failure": ("dyspnea", "leg swelling", "echocardiogram",
                                          "cardiology"),
    "diabetic ketoacidosis": ("nausea", "polyuria", "abdominal ultrasound", "endocrinology"),
    "acute kidney injury": ("fatigue", "decreased urine output", "renal ultrasound",
                            "nephrology"),
    "cellulitis of the left leg": ("leg redness", "fever", "venous doppler",
                                   "infectious disease"),
    "atrial fibrillation with rapid ventricular response": ("palpitations", "dizziness",
                                                            "echocardiogram", "cardiology"),
    "copd exacerbation": ("wheezing", "dyspnea", "ct chest", "pulmonology"),
    "upper gastrointestinal bleed": ("melena", "lightheadedness", "ct abdomen",
                                     "gastroenterology"),
}
_HISTORY = ["hypertension", "type 2 diabetes", "hyperlipidemia", "coronary artery disease",
            "chronic kidney disease", "asthma", "obesity", "hypothyroidism", "depression"]
_LABS = ["cbc", "basic metabolic panel", "potassium", "creatinine", "inr", "hemoglobin a1c",
         "liver function tests", "lipid panel"]
_PROCEDURES = ["colonoscopy", "cardiac catheterization", "upper endoscopy", "thoracentesis",
               "skin biopsy"]
_WHEN = ["in 1 week", "in 2 weeks", "in 3 days", "in one month", "within 48 hours",
         "after discharge", "at the next visit"]


def _plan_sentence(rng: random.Random, problem: str, drug: str, specialty: str,
                   imaging: str) -> tuple[str, tuple[str, ...]]:
    """One assessment-and-plan sentence and its follow-up labels (sorted, as CLIP's targets)."""
    when, lab = rng.choice(_WHEN), rng.choice(_LABS)
    dose, unit, frequency = _DRUGS[drug]
    options: list[tuple[Callable[[], str], tuple[str, ...]]] = [
        (lambda: f"Follow up with {specialty} clinic {when}.", (APPOINTMENT,)),
        (lambda: f"Schedule an appointment with her primary care physician {when}.",
         (APPOINTMENT,)),
        (lambda: f"Continue {drug} {dose} {unit} {frequency} and titrate as tolerated.",
         (MEDICATION,)),
        (lambda: f"Start {drug} {dose} {unit} {frequency}; pharmacy to confirm coverage.",
         (MEDICATION,)),
        (lambda: f"Repeat {lab} {when} to monitor.", (LAB,)),
        (lambda: f"Please check {lab} and fax results to the clinic {when}.", (LAB,)),
        (lambda: f"Obtain outpatient {imaging} {when} to reassess.", (IMAGING,)),
        (lambda: f"Outpatient {rng.choice(_PROCEDURES)} to be arranged {when}.", (PROCEDURE,)),
        (lambda: "Return to the emergency department for chest pain or shortness of breath.",
         (INSTRUCTIONS,)),
        (lambda: f"Patient instructed to weigh daily and call {when} if up 3 pounds.",
         (INSTRUCTIONS,)),
        (lambda: "Daughter is the health care proxy and prefers calls in the evening.", (OTHER,)),
        (lambda: f"Lives alone; home services were arranged {when}.", (OTHER,)),
        (lambda: f"Repeat {lab} and follow up with {specialty} {when}.", (APPOINTMENT, LAB)),
        (lambda: f"Discussed {problem} with the patient at length.", ()),
        (lambda: f"Improved with treatment of {problem}, now afebrile.", ()),
        (lambda: "Tolerating a regular diet and ambulating independently.", ()),
    ]
    make, labels = rng.choice(options)
    return make(), tuple(sorted(labels))


def make_note(rng: random.Random, note_id: int) -> tuple[str, list[dict]]:
    """A note's text and its labelled plan sentences."""
    problem = rng.choice(sorted(_PROBLEMS))
    symptom_a, symptom_b, imaging, specialty = _PROBLEMS[problem]
    history = rng.sample(_HISTORY, 3)
    drugs = rng.sample(sorted(_DRUGS), 3)
    age, sex = rng.randint(24, 92), rng.choice(["male", "female"])
    plan = [_plan_sentence(rng, problem, rng.choice(drugs), specialty, imaging)
            for _ in range(rng.randint(4, 7))]
    medications = "\n".join(f"- {d} {_DRUGS[d][0]} {_DRUGS[d][1]} {_DRUGS[d][2]}" for d in drugs)
    vitals = (f"T {rng.uniform(36.2, 39.4):.1f} HR {rng.randint(58, 128)} "
              f"BP {rng.randint(96, 178)}/{rng.randint(52, 98)} RR {rng.randint(12, 28)} "
              f"SpO2 {rng.randint(88, 100)}% on {rng.choice(['room air', '2L nasal cannula'])}")
    text = "\n".join([
        f"CHIEF COMPLAINT: {symptom_a}",
        (f"HISTORY OF PRESENT ILLNESS: {age} year old {sex} with a history of {history[0]} and "
        f"{history[1]} presenting with {symptom_a} and {symptom_b} for {rng.randint(1, 14)} days. "
        f"Found to have {problem}."),
        "PAST MEDICAL HISTORY: " + ", ".join(history) + ".",
        "MEDICATIONS ON ADMISSION:\n" + medications,
        f"VITALS: {vitals}",
        (f"PHYSICAL EXAM: {rng.choice(['Alert and oriented', 'Mildly distressed'])}. "
        f"{rng.choice(['Lungs with crackles at the bases', 'Lungs clear bilaterally'])}. "
        f"{rng.choice(['Regular rate and rhythm', 'Irregularly irregular rhythm'])}."),
        "ASSESSMENT AND PLAN: " + " ".join(sentence for sentence, _ in plan),
    ])
    examples = [
        {"id": f"{note_id}:{index}", "note_id": str(note_id), "text": sentence,
         "labels": ", ".join(labels)}
        for index, (sentence, labels) in enumerate(plan)
    ]
    return text, examples


def write_corpus(folder: str | pathlib.Path, seed: int = 0, num_notes: int = 300,
                 split: tuple[float, float] = (0.6, 0.2)) -> dict[str, int]:
    """Write the notes and the task's train/dev/test files; returns the example counts."""
    folder = pathlib.Path(folder)
    rng = random.Random(seed)
    notes_dir, task_dir = folder / "notes", folder / TASK
    notes_dir.mkdir(parents=True, exist_ok=True)
    task_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for note_id in range(num_notes):
        text, examples = make_note(rng, note_id)
        (notes_dir / f"note{note_id:05d}.txt").write_text(text + "\n", encoding="utf-8")
        position = note_id / num_notes
        name = ("train" if position < split[0]
                else "dev" if position < split[0] + split[1] else "test")
        rows[name] += examples
    for name, examples in rows.items():
        temp = task_dir / f".{name}.jsonl.tmp"
        temp.write_text("".join(json.dumps(row) + "\n" for row in examples), encoding="utf-8")
        temp.replace(task_dir / f"{name}.jsonl")
    return {name: len(examples) for name, examples in rows.items()}


def register_synthetic_task() -> None:
    """Register `synthetic_followup` and its fold variants (files read when a dataset is built)."""
    from ct5x_tasks.registration import register_custom_task

    register_custom_task(TASK, SETTINGS)
