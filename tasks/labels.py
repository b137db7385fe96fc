"""Label sets of the paper's classification tasks (SPEC §4), in the order each dataset defines them."""

MEDNLI_LABELS = ("entailment", "contradiction", "neutral")

CLIP_LABELS = (
    "Appointment-related followup",
    "Medication-related followups",
    "Other helpful contextual information",
    "Lab-related followup",
    "Case-specific instructions for patient",
    "Procedure-related followup",
    "Imaging-related followup",
)

STIGMA_LABELS = {
    "adamant": ("difficult", "disbelief", "exclude"),
    "compliance": ("negative", "neutral", "positive"),
    "other": ("exclude", "negative", "neutral", "positive"),
}

STIGMA_ASPECTS = {
    "adamant": "the credibility and obstinacy of the patient",
    "compliance": "the patient's compliance with medical advice",
    "other": "the patient's behavior and demeanor",
}

# BLURB's abstract-level HoC numbers the hallmarks 0-9 alphabetically and uses 10 for "none".
HOC_LABELS = (
    "activating invasion and metastasis",
    "avoiding immune destruction",
    "cellular energetics",
    "enabling replicative immortality",
    "evading growth suppressors",
    "genomic instability and mutation",
    "inducing angiogenesis",
    "resisting cell death",
    "sustaining proliferative signaling",
    "tumor promoting inflammation",
)
