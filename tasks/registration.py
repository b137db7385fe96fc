"""Registers every task variant and the paper's mixtures with SeqIO; looks names up.

Registration reads no data file: each task's source reads its files when a dataset is built.
Mixtures, one per table of the paper and prompt style (sub-tasks weighted equally):
- paper_main[_flan|_deid]: MedNLI, RadQA, CLIP, HoC, NCBI, BC5CDR, folds 0-4;
- paper_low_resource[_flan|_deid]: MedNLI at 1% and Stigma at 1/5/25%, folds 0-4;
- paper_out_of_domain[_flan|_deid]: the three Stigma tasks at site `ood`.
`_deid` mixtures use the de-identified variant of each MIMIC-derived task (MIMIC-T5 runs).
"""

import dataclasses
import functools
from collections.abc import Callable, Iterator

import seqio

from ct5x.errors import UserInputError
from ct5x_tasks import metrics
from ct5x_tasks.catalog import FAMILIES, family_of_base
from ct5x_tasks.custom import custom_family
from ct5x_tasks.family import Family
from ct5x_tasks.naming import NUM_FOLDS, Variant
from ct5x_tasks.preprocessors import report_truncation
from ct5x_tasks.settings import CustomTaskSettings, custom_task_settings
from ct5x_tasks.sources import data_source
from ct5x_tasks.suggest import nearest
from ct5x_tasks.vocabulary import output_features

MAIN_TASKS = ("mednli", "radqa", "clip", "hoc", "ncbi_disease", "bc5cdr_disease")
STIGMA_TASKS = ("stigma_adamant", "stigma_compliance", "stigma_other")
PROMPT_STYLES = {"": {}, "_flan": {"flan": True}, "_deid": {"deid": True}}


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What a run needs to know about a registered task besides its data."""

    name: str
    variant: Variant
    input_length: int
    target_length: int
    num_beams: int


_TASKS: dict[str, TaskInfo] = {}
_MIXTURES: set[str] = set()
# User-defined base tasks -> the function naming the paper task they are scored as.
_SCORE_AS: dict[str, Callable[[], str | None]] = {"custom": lambda: custom_task_settings().score_as}


def family_variants(family: Family) -> Iterator[Variant]:
    """Every variant registered for a family: prompt x de-id x (source splits, folds,
    fractions, sites)."""
    flans = (False,) if family.base.startswith("custom") else (False, True)
    deids = (False, True) if family.mimic else (False,)
    for flan in flans:
        for deid in deids:
            yield Variant(family.base, flan, deid)
            for fold in range(NUM_FOLDS):
                yield Variant(family.base, flan, deid, fold=fold)
                for fraction in family.fractions:
                    yield Variant(family.base, flan, deid, fold=fold, fraction=fraction)
            for site in family.sites:
                yield Variant(family.base, flan, deid, site=site)


def _scoring(family: Family, score_as: Callable[[], str | None] | None):
    """(postprocess_fn, metric_fns): the base task's, or for a user's task those of the paper
    task its settings name, looked up when scoring."""
    if score_as is None:
        return metrics.postprocessor_for(family.base), metrics.metric_fns_for(family.base)

    def scored_base() -> str:
        base = score_as()
        if base not in FAMILIES or base.startswith("custom"):
            raise UserInputError(
                f"task {family.base!r} needs ct5x_tasks.custom_task_settings.score_as set to one "
                f"of {', '.join(sorted(b for b in FAMILIES if not b.startswith('custom')))}"
            )
        return base

    def postprocess(output_or_target, example=None, is_target=False):
        return metrics.postprocessor_for(scored_base())(output_or_target, example, is_target)

    def score(targets, predictions):
        results = {}
        for metric_fn in metrics.metric_fns_for(scored_base()):
            results.update(metric_fn(targets, predictions))
        return results

    return postprocess, [score]


def register_family(family: Family, score_as: Callable[[], str | None] | None = None) -> None:
    """Register all variants of one family (replacing earlier registrations of the same names)."""
    postprocess_fn, metric_fns = _scoring(family, score_as)
    for variant in family_variants(family):
        name = variant.name
        seqio.TaskRegistry.remove(name)
        seqio.TaskRegistry.add(
            name,
            source=data_source(family, variant),
            output_features=output_features(),
            preprocessors=[
                seqio.preprocessors.tokenize,
                functools.partial(report_truncation, task_name=name),
                seqio.preprocessors.append_eos_after_trim,
            ],
            postprocess_fn=postprocess_fn,
            metric_fns=metric_fns,
        )
        _TASKS[name] = TaskInfo(
            name, variant, family.input_length_for(variant.flan), family.target_length,
            family.num_beams,
        )


def register_custom_task(name: str, config: CustomTaskSettings) -> None:
    """Register a user's dataset as base task `name` (files under DATA_DIR/<name>, or
    `data_settings.dataset_dirs[name]`), with its fold variants."""
    family = custom_family(name, lambda: config)
    FAMILIES[name] = family
    _SCORE_AS[name] = lambda: config.score_as
    register_family(family, score_as=_SCORE_AS[name])


def _variant_names(bases, style: dict, **options) -> list[str]:
    names = []
    for base in bases:
        family = family_of_base(base)
        deid = style.get("deid", False) and family.mimic
        names.append(Variant(base, style.get("flan", False), deid, **options).name)
    return names


def register_mixtures() -> None:
    """The paper's tables as mixtures, per prompt style."""
    for suffix, style in PROMPT_STYLES.items():
        tables = {
            "paper_main": [
                name for fold in range(NUM_FOLDS)
                for name in _variant_names(MAIN_TASKS, style, fold=fold)
            ],
            "paper_low_resource": [
                name
                for fold in range(NUM_FOLDS)
                for base in ("mednli", *STIGMA_TASKS)
                for fraction in family_of_base(base).fractions
                for name in _variant_names((base,), style, fold=fold, fraction=fraction)
            ],
            "paper_out_of_domain": _variant_names(STIGMA_TASKS, style, site="ood"),
        }
        for table, names in tables.items():
            seqio.MixtureRegistry.remove(table + suffix)
            seqio.MixtureRegistry.add(table + suffix, names, default_rate=1.0)
            _MIXTURES.add(table + suffix)


def register_all() -> None:
    """Register the paper's tasks, the `custom` task, the user's tasks and the mixtures."""
    for family in list(FAMILIES.values()):
        register_family(family, score_as=_SCORE_AS.get(family.base))
    register_mixtures()


def task_names() -> list[str]:
    """Every task and mixture this package registered, sorted."""
    return sorted([*_TASKS, *_MIXTURES])


def task_info(name: str) -> TaskInfo:
    """A registered task's variant and paper lengths; unknown names suggest the nearest."""
    if name not in _TASKS:
        raise UserInputError(f"unknown task {name!r}{nearest(name, task_names())}")
    return _TASKS[name]


def get_provider(name: str) -> seqio.Task | seqio.Mixture:
    """The registered Task or Mixture; unknown names suggest the nearest."""
    if name not in _TASKS and name not in _MIXTURES:
        raise UserInputError(f"unknown task or mixture {name!r}{nearest(name, task_names())}")
    return seqio.get_mixture_or_task(name)
