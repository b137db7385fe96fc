"""Registers every task variant and the paper's mixtures with SeqIO; looks names up.

Importing this module registers everything (SeqIO's convention: T5X's MIXTURE_OR_TASK_MODULE =
'ct5x_tasks.registration'); `ct5x_tasks.task_info`, `task_names` and `get_provider` import it on
first use, so `import ct5x_tasks` alone stays cheap. Registration reads no data file: each task's
source reads its files when a dataset is built.
Mixtures (sub-tasks weighted equally), per prompt style `""`, `_flan`, `_deid`; none ever holds two
folds of one task, since one fold's training data is another fold's validation data:
- paper_main[_fold<k>]: MedNLI, RadQA, CLIP, HoC, NCBI, BC5CDR (distributed splits, or fold k);
- paper_low_resource_fold<k>_pct<p>: Stigma's three tasks (and MedNLI at p = 1) at p% of fold k;
- paper_out_of_domain[_fold<k>[_pct<p>]]: the three Stigma tasks at site `ood`.
`_deid` mixtures use the de-identified variant of each MIMIC-derived task (MIMIC-T5 runs).
"""

import dataclasses
import functools

import seqio

from ct5x.errors import UserInputError
from ct5x_tasks import metrics
from ct5x_tasks.catalog import (
    FAMILIES,
    TaskInfo,
    custom_task_family,
    family_of_base,
    family_variants,
    scored_as,
    variant_info,
)
from ct5x_tasks.family import Family
from ct5x_tasks.naming import NUM_FOLDS, Variant, percent_label
from ct5x_tasks.preprocessors import report_truncation
from ct5x_tasks.sources import data_source
from ct5x_tasks.suggest import nearest
from ct5x_tasks.task_settings import CustomTaskSettings
from ct5x_tasks.vocabulary import output_features

MAIN_TASKS = ("mednli", "radqa", "clip", "hoc", "ncbi_disease", "bc5cdr_disease")
STIGMA_TASKS = ("stigma_adamant", "stigma_compliance", "stigma_other")
PROMPT_STYLES = {"": {}, "_flan": {"flan": True}, "_deid": {"deid": True}}
LOW_RESOURCE_FRACTIONS = (0.01, 0.05, 0.25)

# Registered task name -> its variant (answered by `catalog.variant_info`) or, for a task
# registered by other means (span corruption), its fixed TaskInfo.
_TASKS: dict[str, Variant | TaskInfo] = {}
_MIXTURES: set[str] = set()


def _scoring(family: Family):
    """(postprocess_fn, metric_fns): those of the paper task the family is scored as, looked up
    when scoring (a user's `score_as` may be bound after registration)."""

    def scored_base() -> str:
        base = scored_as(family)
        if base is None:
            raise UserInputError(
                f"task {family.base!r} needs score_as (ct5x_tasks.custom_task_settings.score_as) "
                f"set to one of {', '.join(sorted(metrics.SCORED_TASKS))}"
            )
        return base

    if family.score_as is None:
        return metrics.postprocessor_for(family.base), metrics.metric_fns_for(family.base)

    def postprocess(output_or_target, example=None, is_target=False):
        return metrics.postprocessor_for(scored_base())(output_or_target, example, is_target)

    def score(targets, predictions):
        results = {}
        for metric_fn in metrics.metric_fns_for(scored_base()):
            results.update(metric_fn(targets, predictions))
        return results

    return postprocess, [score]


def register_family(family: Family) -> None:
    """Register all variants of one family (replacing earlier registrations of the same names)."""
    postprocess_fn, metric_fns = _scoring(family)
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
        _TASKS[name] = variant


def register_task_info(info: TaskInfo) -> None:
    """Make `task_info(info.name)` answer for a task registered with SeqIO by other means."""
    _TASKS[info.name] = info


def register_custom_task(name: str, config: CustomTaskSettings,
                         fractions: tuple[float, ...] = ()) -> None:
    """Register a user's dataset as base task `name` (files under DATA_DIR/<name>, or
    `dataset_dirs[name]`), with its fold variants and, for each of `fractions`, its
    low-resource variants (`_fold<k>_pct<p>`)."""
    family = custom_task_family(name, config, fractions)
    FAMILIES[name] = family
    register_family(family)


def _variant_names(bases, style: dict, **options) -> list[str]:
    names = []
    for base in bases:
        family = family_of_base(base)
        deid = style.get("deid", False) and family.mimic
        names.append(Variant(base, style.get("flan", False), deid, **options).name)
    return names


def _mixture_members(style: dict) -> dict[str, list[str]]:
    """Mixture name (without style suffix) -> its task names; one fold of each task at most."""
    members = {
        "paper_main": _variant_names(MAIN_TASKS, style),
        "paper_out_of_domain": _variant_names(STIGMA_TASKS, style, site="ood"),
    }
    for fold in range(NUM_FOLDS):
        members[f"paper_main_fold{fold}"] = _variant_names(MAIN_TASKS, style, fold=fold)
        members[f"paper_out_of_domain_fold{fold}"] = _variant_names(
            STIGMA_TASKS, style, site="ood", fold=fold)
        for fraction in LOW_RESOURCE_FRACTIONS:
            suffix = f"fold{fold}_pct{percent_label(fraction)}"
            bases = [base for base in ("mednli", *STIGMA_TASKS)
                     if fraction in family_of_base(base).fractions]
            members[f"paper_low_resource_{suffix}"] = _variant_names(
                bases, style, fold=fold, fraction=fraction)
            members[f"paper_out_of_domain_{suffix}"] = _variant_names(
                STIGMA_TASKS, style, site="ood", fold=fold, fraction=fraction)
    return members


def register_mixtures() -> None:
    """The paper's tables as mixtures, per prompt style (see the module docstring)."""
    for mixture in list(_MIXTURES):
        seqio.MixtureRegistry.remove(mixture)
        _MIXTURES.discard(mixture)
    for suffix, style in PROMPT_STYLES.items():
        for mixture, names in _mixture_members(style).items():
            seqio.MixtureRegistry.remove(mixture + suffix)
            seqio.MixtureRegistry.add(mixture + suffix, names, default_rate=1.0)
            _MIXTURES.add(mixture + suffix)


def register_all() -> None:
    """Register the paper's tasks, the `custom` task, the user's tasks and the mixtures."""
    for family in list(FAMILIES.values()):
        register_family(family)
    register_mixtures()


def task_names() -> list[str]:
    """Every task and mixture this package registered, sorted."""
    return sorted([*_TASKS, *_MIXTURES])


def task_info(name: str) -> TaskInfo:
    """A registered task's facts (`catalog.TaskInfo`), with the anchor switch and a user's
    `score_as` read now; unknown names suggest the nearest."""
    if name not in _TASKS:
        raise UserInputError(f"unknown task {name!r}{nearest(name, task_names())}")
    entry = _TASKS[name]
    if isinstance(entry, TaskInfo):
        return dataclasses.replace(entry, decode_length=entry.decode_length or entry.target_length)
    return variant_info(entry)


def get_provider(name: str) -> seqio.Task | seqio.Mixture:
    """The registered Task or Mixture; unknown names suggest the nearest."""
    if name not in _TASKS and name not in _MIXTURES:
        raise UserInputError(f"unknown task or mixture {name!r}{nearest(name, task_names())}")
    return seqio.get_mixture_or_task(name)


def _register_everything() -> None:
    """Every family of the catalog, the mixtures, and span corruption."""
    from ct5x_tasks.span_corruption import register_span_corruption

    register_all()
    register_span_corruption()


_register_everything()
