"""Label sets of the paper's classification tasks, in the order the study's code lists them."""

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

# The hallmarks in the study's class order (its `prompt_classes`): the FLAN instruction lists them
# in this order, and a target names its labels in this order.
HOC_LABELS = (
    "evading growth suppressors",
    "tumor promoting inflammation",
    "enabling replicative immortality",
    "cellular energetics",
    "resisting cell death",
    "activating invasion and metastasis",
    "genomic instability and mutation",
    "inducing angiogenesis",
    "sustaining proliferative signaling",
    "avoiding immune destruction",
)

# SciFive's and BLURB's abstract-level HoC number the hallmarks 0-9 alphabetically; 10 is "none".
HOC_BLURB_IDS = tuple(sorted(HOC_LABELS))
