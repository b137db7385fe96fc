"""The study's published numbers (Li et al., ML4H 2024: 5-fold test means, Large models, percent).

A report cell matches a published number when its table is a task's `full` setting, the metric is
the one the paper reports for that task, and the model name is one of the paper's five names,
compared case-insensitively without punctuation or spaces ("flan-t5", "FLAN_T5" and "Flan T5"
all match FLAN-T5). Prompt style and de-identification are not part of the match.
"""

from __future__ import annotations

import re

PAPER_MODELS = ("T5-Den", "T5-Sup", "FLAN-T5", "MIMIC-T5", "SciFive+MIMIC-T5")

# (base task, metric) -> published means in the order of PAPER_MODELS.
_PUBLISHED = {
    ("mednli", "accuracy"): (85.89, 84.94, 86.03, 86.75, 85.64),
    ("radqa", "f1"): (68.90, 68.68, 70.62, 73.40, 70.37),
    ("clip", "macro_f1"): (63.86, 62.42, 64.33, 66.09, 63.46),
    ("hoc", "f1"): (84.81, 84.76, 84.79, 82.75, 85.10),
    ("bc5cdr_disease", "f1"): (82.90, 82.94, 83.30, 81.17, 83.61),
    ("ncbi_disease", "f1"): (85.08, 84.58, 84.44, 79.10, 85.43),
}

PAPER_SETTING = "full"


def normalise_model_name(name: str) -> str:
    """Lower case, letters and digits only: how model names are compared with the paper's."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


_MODEL_INDEX = {normalise_model_name(name): i for i, name in enumerate(PAPER_MODELS)}


def paper_model(name: str) -> str | None:
    """The paper's spelling of a model name, or None if it is not one of the paper's models."""
    index = _MODEL_INDEX.get(normalise_model_name(name))
    return None if index is None else PAPER_MODELS[index]


def published_percent(base_task: str, setting: str, metric: str, model: str) -> float | None:
    """The paper's number (percent) for this cell, or None when the paper has none."""
    index = _MODEL_INDEX.get(normalise_model_name(model))
    row = _PUBLISHED.get((base_task, metric))
    if index is None or row is None or setting != PAPER_SETTING:
        return None
    return row[index]
