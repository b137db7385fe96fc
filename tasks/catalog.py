"""Every fact about a task that the trainer, the evaluation and the sweep share, in one place.

`FAMILIES` holds the paper's dataset families, the user's `custom` ones and the demo's synthetic
task by base task name;
`SCORING` says how each paper task is scored: the metric that selects checkpoints (and whether
higher is better), the metrics that count things rather than score them, and the study's decoding
cap under the anchor switch. `variant_info` puts these together for one task variant as a
`TaskInfo`, the registry's answer to "what is this task?". Nothing here imports SeqIO or
TensorFlow, so `ct5x sweep plan` can check a grid against it cheaply.
"""

import dataclasses
import functools
from collections.abc import Iterator

from ct5x.errors import UserInputError
from ct5x_tasks import clip, hoc, mednli, ner, radqa, stigma, synthetic, task_settings
from ct5x_tasks.custom import custom_family
from ct5x_tasks.family import Family
from ct5x_tasks.naming import NUM_FOLDS, Variant
from ct5x_tasks.suggest import nearest

# Metrics where a lower value is better, whatever the task.
LOWER_IS_BETTER = frozenset({"loss"})
# The study's evaluation fell back to transformers' default generation `max_length` of 20 for
# MedNLI, RadQA, CLIP and Stigma; that length counts the decoder start token, so at most 19 tokens
# were generated. The anchor switch reproduces it.
ANCHOR_DECODE_LENGTH = 19


@dataclasses.dataclass(frozen=True)
class Selection:
    """The validation metric that picks the best checkpoint, and its direction."""

    metric: str
    higher_is_better: bool = True

    def improves(self, value: float, best: float | None) -> bool:
        """True when `value` beats `best` (None: nothing to beat yet)."""
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best


@dataclasses.dataclass(frozen=True)
class Scoring:
    """How a paper task is scored (see the module docstring)."""

    selection: Selection
    count_metrics: tuple[str, ...] = ()
    anchor_decode_length: int | None = None


_LABEL = Scoring(Selection("macro_f1"), ("invalid_predictions",), ANCHOR_DECODE_LENGTH)
_MULTI_LABEL = Scoring(Selection("f1"), ("unknown_labels",))
_ENTITIES = Scoring(Selection("f1"))

SCORING: dict[str, Scoring] = {
    "mednli": Scoring(Selection("accuracy"), ("invalid_predictions",), ANCHOR_DECODE_LENGTH),
    "radqa": Scoring(Selection("f1"), anchor_decode_length=ANCHOR_DECODE_LENGTH),
    "clip": Scoring(Selection("macro_f1"), ("unknown_labels",), ANCHOR_DECODE_LENGTH),
    "stigma_adamant": _LABEL,
    "stigma_compliance": _LABEL,
    "stigma_other": _LABEL,
    "hoc": _MULTI_LABEL,
    "hoc_blurb": _MULTI_LABEL,
    "ncbi_disease": _ENTITIES,
    "bc5cdr_disease": _ENTITIES,
}


def _custom_settings() -> task_settings.CustomTaskSettings:
    return task_settings.current().custom_task


def custom_task_family(name: str, config: task_settings.CustomTaskSettings,
                       fractions: tuple[float, ...] = ()) -> Family:
    """A user's dataset with fixed settings (`registration.register_custom_task`) as a family,
    with low-resource variants (`_fold<k>_pct<p>`) for each of `fractions`."""
    return dataclasses.replace(custom_family(name, lambda: config),
                               input_length=config.input_length,
                               target_length=config.target_length,
                               fractions=tuple(fractions))


FAMILIES: dict[str, Family] = {
    family.base: family
    for family in (
        mednli.FAMILY,
        radqa.FAMILY,
        clip.FAMILY,
        *stigma.FAMILIES,
        *hoc.FAMILIES,
        *ner.FAMILIES,
        custom_family("custom", _custom_settings, flan_prompt=False),
        custom_task_family(synthetic.TASK, synthetic.SETTINGS, synthetic.FRACTIONS),
    )
}


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What a run needs to know about a registered task besides its data.

    `decode_length` is how many tokens decoding may generate (EOS included): the target length, or
    under the anchor switch the study's cap. `scored_as` is the paper task whose metrics score this
    one (itself for a paper task; None: the task's own SeqIO metric functions). `selection` is
    None when nothing names a selection metric (a user's task without `score_as`).
    """

    name: str
    variant: Variant
    input_length: int
    target_length: int
    num_beams: int
    decode_length: int | None = None
    scored_as: str | None = None
    selection: Selection | None = None
    count_metrics: tuple[str, ...] = ()
    num_folds: int = NUM_FOLDS

    def decode_length_for(self, target_length: int) -> int:
        """The decoding length of a run whose target feature length is `target_length`."""
        return min(target_length, self.decode_length or self.target_length)

    def selection_for(self, metric: str | None) -> Selection:
        """The run's selection: the task's, or a metric a run names (SELECTION_METRIC), lower
        being better for a loss or one of the task's count metrics."""
        if metric is None or (self.selection is not None and metric == self.selection.metric):
            if self.selection is None:
                raise UserInputError(f"no selection metric known for task {self.name}: set "
                                     "SELECTION_METRIC")
            return self.selection
        return Selection(metric, metric not in LOWER_IS_BETTER | set(self.count_metrics))


def family_of_base(base: str) -> Family:
    """The family of a base task name; unknown names get the nearest ones suggested."""
    if base not in FAMILIES:
        raise UserInputError(f"unknown base task {base!r}{nearest(base, FAMILIES)}")
    return FAMILIES[base]


def family_variants(family: Family) -> Iterator[Variant]:
    """Every variant registered for a family: prompt x de-id x (source splits, folds,
    fractions, sites)."""
    flans = (False, True) if family.flan_prompt else (False,)
    deids = (False, True) if family.mimic else (False,)
    for flan in flans:
        for deid in deids:
            for site in (None, *family.sites):
                yield Variant(family.base, flan, deid, site=site)
                for fold in range(NUM_FOLDS):
                    yield Variant(family.base, flan, deid, site=site, fold=fold)
                    for fraction in family.fractions:
                        yield Variant(family.base, flan, deid, site=site, fold=fold,
                                      fraction=fraction)


@functools.cache
def _offered(family: Family) -> frozenset[Variant]:
    return frozenset(family_variants(family))


def scored_as(family: Family) -> str | None:
    """The paper task whose metrics score a family: itself, or what a user's family names."""
    if family.score_as is None:
        return family.base
    base = family.score_as()
    if base is not None and base not in SCORING:
        raise UserInputError(
            f"task {family.base!r}: score_as is {base!r}; expected one of {', '.join(SCORING)}"
        )
    return base


def variant_info(variant: Variant) -> TaskInfo:
    """The facts of a task variant, with the anchor switch and a user's `score_as` read now; a
    variant its family does not offer (a site, fraction, de-id or FLAN prompt it lacks) is an
    error naming what is missing."""
    family = family_of_base(variant.base)
    if variant not in _offered(family):
        offered = (f"sites {list(family.sites) or 'none'}, fractions "
                   f"{list(family.fractions) or 'none'}, de-identified "
                   f"{'yes' if family.mimic else 'no'}, FLAN prompt "
                   f"{'yes' if family.flan_prompt else 'no'}")
        raise UserInputError(f"task {variant.name!r} is not registered: {family.base} offers "
                             f"{offered}")
    scored = scored_as(family)
    scoring = SCORING.get(scored) if scored else None
    decode_length = family.target_length
    if family.score_as is None and scoring.anchor_decode_length and \
            task_settings.anchor_compatible():
        decode_length = scoring.anchor_decode_length
    return TaskInfo(
        name=variant.name,
        variant=variant,
        input_length=family.input_length_for(variant.flan),
        target_length=family.target_length,
        num_beams=family.num_beams,
        decode_length=decode_length,
        scored_as=scored,
        selection=scoring.selection if scoring else None,
        count_metrics=scoring.count_metrics if scoring else (),
    )
