"""How the study's scripts trained each task, for runs under the anchor switch.

Two kinds of facts, read from the study's `scripts/finetune_*.sh` and `src/finetune_*.py`:
- what its tokenisation did to a variant's features (`study_features`): CLIP T5 inputs truncated
  at 256 + 2 tokens, FLAN Stigma labels padded to 512 with the pad id (so the loss counts them);
- how its scripts batched and optimised each task (`study_run_macros`): the micro-batch size
  (per device, times devices or accumulation steps, made 64), and NCBI's optimizer, which its
  script left at the Trainer's default (AdamW, linear decay to 0) by omitting
  `--use-constant-adafactor`.
`ct5x train` applies the first under the anchor switch; an anchor-compatible experiment grid
binds the second for each run.
"""

import dataclasses

from ct5x_tasks import clip, stigma
from ct5x_tasks.naming import Variant

# Examples per micro-batch in the study's scripts: MedNLI and HoC 64 x 1, RadQA 4 devices x 8
# x 2 steps, CLIP 4 devices x 16, Stigma 4 x 16 steps, NCBI 16 x 4 steps, BC5CDR 8 x 8 steps.
STUDY_MICROBATCH_SIZE = {
    "mednli": 64, "hoc": 64, "radqa": 8, "clip": 16, "stigma_adamant": 4,
    "stigma_compliance": 4, "stigma_other": 4, "ncbi_disease": 16, "bc5cdr_disease": 8,
}
# The Trainer's default optimizer and schedule, which the study's NCBI runs got by accident.
STUDY_OPTIMIZER = {"ncbi_disease": {"OPTIMIZER_FLAVOUR": "adamw", "LR_SCHEDULE": "linear_decay"}}


@dataclasses.dataclass(frozen=True)
class StudyFeatures:
    """Feature lengths the study's tokenisation used instead of the task's (None: the task's),
    and whether its loss counted the label padding."""

    input_length: int | None = None
    target_length: int | None = None
    loss_on_padding: bool = False


def study_features(variant: Variant) -> StudyFeatures:
    """What the study's tokenisation did to this variant's features."""
    if variant.base == "clip" and not variant.flan:
        return StudyFeatures(input_length=clip.STUDY_T5_INPUT_LENGTH)
    padded = stigma.study_loss_target_length(variant)
    if padded is not None:
        return StudyFeatures(target_length=padded, loss_on_padding=True)
    return StudyFeatures()


def study_run_macros(base: str, batch_size: int) -> dict[str, object]:
    """The gin macros that make a run of `base` at `batch_size` train as the study's script:
    micro-batches of the study's size (where they divide the batch) and its optimizer."""
    macros: dict[str, object] = dict(STUDY_OPTIMIZER.get(base, {}))
    size = STUDY_MICROBATCH_SIZE.get(base)
    if size and batch_size > size and batch_size % size == 0:
        macros["NUM_MICROBATCHES"] = batch_size // size
    return macros
