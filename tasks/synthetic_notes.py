"""Synthetic discharge notes in which every medication, lab, imaging study and procedure name is
used in the contexts of its kind ("X 20 mg PO daily", "X pending", "X showed ...", "underwent X").

A model pre-trained on these notes can learn which kind each name is; a model that never read
them cannot tell "Please follow up troponin" from "Please follow up colonoscopy" without labelled
examples of both names. That knowledge is what the demo's follow-up task (tasks/synthetic.py)
asks for. The names are real terms written in lower case; what the notes say about patients is
made from templates and a seeded `random.Random`: no real patient text is involved.
"""

from __future__ import annotations

import random

from ct5x_tasks.labels import CLIP_LABELS

APPOINTMENT, MEDICATION, OTHER, LAB, INSTRUCTIONS, PROCEDURE, IMAGING = CLIP_LABELS

# One word each, so that nothing in a name's spelling gives its kind away to a tokenizer that
# keeps frequent words whole (the vocabulary the demo trains does).
TERMS: dict[str, tuple[str, ...]] = {
    MEDICATION: ("metoprolol", "lisinopril", "atorvastatin", "metformin", "furosemide",
                 "apixaban", "amoxicillin", "prednisone", "pantoprazole", "warfarin", "amlodipine",
                 "gabapentin"),
    LAB: ("potassium", "creatinine", "sodium", "magnesium", "hemoglobin", "platelets", "troponin",
          "lactate", "albumin", "tsh", "inr", "glucose"),
    IMAGING: ("echocardiogram", "mammogram", "mri", "ultrasound", "radiograph", "doppler", "dexa",
              "fluoroscopy", "angiogram", "venogram", "tomography", "sonogram"),
    PROCEDURE: ("colonoscopy", "endoscopy", "bronchoscopy", "thoracentesis", "paracentesis",
                "biopsy", "catheterization", "cardioversion", "dialysis", "ablation", "cystoscopy",
                "pacemaker"),
}
KIND_OF = {name: kind for kind, names in TERMS.items() for name in names}
KIND_NAMES = tuple(sorted(KIND_OF))

PROBLEMS = ("community acquired pneumonia", "acute decompensated heart failure",
            "diabetic ketoacidosis", "acute kidney injury", "cellulitis of the left leg",
            "atrial fibrillation", "copd exacerbation", "upper gastrointestinal bleed",
            "urinary tract infection", "syncope")
SYMPTOMS = ("cough", "fever", "dyspnea", "leg swelling", "nausea", "fatigue", "palpitations",
            "dizziness", "melena", "chest pain", "abdominal pain", "confusion")
HISTORY = ("hypertension", "type 2 diabetes", "hyperlipidemia", "coronary artery disease",
           "chronic kidney disease", "asthma", "obesity", "hypothyroidism", "depression")
SPECIALTIES = ("cardiology", "nephrology", "pulmonology", "endocrinology", "gastroenterology",
               "infectious disease", "neurology")
FINDINGS = ("no acute process", "a small effusion", "mild enlargement", "no change from prior",
            "a new lesion", "moderate narrowing")

# What the notes say about each kind of term: the contexts a pre-trained model learns from. In
# each the term comes first or after a verb of its kind, and the notes mix the kinds in one list,
# so that only the term tells what follows it, and only what surrounds it tells which term it is.
_CONTEXTS: dict[str, tuple[str, ...]] = {
    MEDICATION: (
        "{name} {dose} mg PO {frequency}",
        "{name} {dose} mg was continued",
        "started {name} {dose} mg {frequency}",
        "{name} dose increased to {dose} mg",
        "resumed home {name} {dose} mg",
    ),
    LAB: (
        "{name} level {value}",
        "{name} level pending",
        "{name} level trended down to {value}",
        "checked {name} level, {value}",
        "{name} level rechecked at {value}",
    ),
    IMAGING: (
        "{name} showed {finding}",
        "{name} of the {site} showed {finding}",
        "obtained {name} of the {site}",
        "{name} demonstrated {finding}",
        "reviewed {name} images with radiology",
    ),
    PROCEDURE: (
        "{name} performed on day {day} without complications",
        "{name} performed under sedation",
        "consented for {name} with {specialty}",
        "{name} performed by {specialty}",
        "scheduled {name} for day {day}",
    ),
}
_FREQUENCIES = ("daily", "twice daily", "three times daily", "at bedtime", "every other day")
_SITES = ("chest", "abdomen", "left leg", "pelvis", "neck", "right knee")


def mention(rng: random.Random, name: str) -> str:
    """One clause using `name` in a context of its kind."""
    template = rng.choice(_CONTEXTS[KIND_OF[name]])
    return template.format(
        name=name, dose=rng.choice((5, 10, 20, 25, 40, 50, 100, 500)),
        frequency=rng.choice(_FREQUENCIES), value=f"{rng.uniform(0.2, 9.8):.1f}",
        finding=rng.choice(FINDINGS), site=rng.choice(_SITES), day=rng.randint(1, 9),
        specialty=rng.choice(SPECIALTIES),
    )


def _sentence(clause: str) -> str:
    """A clause as a sentence, left in lower case: a capitalised name would be another token."""
    return clause + "."


def note_text(rng: random.Random, plan: list[str]) -> str:
    """A discharge note: history, a hospital course that mentions terms of every kind in mixed
    order, then the given plan."""
    problem = rng.choice(PROBLEMS)
    symptoms = rng.sample(SYMPTOMS, 2)
    history = rng.sample(HISTORY, 3)
    course = [mention(rng, rng.choice(KIND_NAMES)) for _ in range(rng.randint(10, 14))]
    age, sex = rng.randint(24, 92), rng.choice(["male", "female"])
    return "\n".join([
        f"CHIEF COMPLAINT: {symptoms[0]}",
        (f"HISTORY OF PRESENT ILLNESS: {age} year old {sex} with a history of {history[0]} and "
        f"{history[1]} presenting with {symptoms[0]} and {symptoms[1]} for "
        f"{rng.randint(1, 14)} days. Found to have {problem}."),
        "PAST MEDICAL HISTORY: " + ", ".join(history) + ".",
        "HOSPITAL COURSE: " + " ".join(_sentence(clause) for clause in course),
        "ASSESSMENT AND PLAN: " + " ".join(plan),
    ])
