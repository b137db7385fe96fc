"""Registers every task variant and the paper's mixtures with SeqIO; looks names up.

Registration reads no data file: each task's source reads its files when a dataset is built.
Mixtures (sub-tasks weighted equally), per prompt style `""`, `_flan`, `_deid`; none ever holds two
folds of one task, since one fold's training data is another fold's validation data:
- paper_main[_fold<k>]: MedNLI, RadQA, CLIP, HoC, NCBI, BC5CDR (distributed splits, or fold k);
- paper_low_resource_fold<k>_pct<p>: Stigma's three tasks (and MedNLI at p = 1) at p% of fold k;
- paper_out_of_domain[_fold<k>[_pct<p>]]: the three Stigma tasks at site `ood`.
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
from ct5x_tasks.naming import NUM_FOLDS, Variant, percent_label
from ct5x_tasks.preprocessors import report_truncation
from ct5x_tasks.settings import CustomTaskSettings, anchor_settings, custom_task_settings
from ct5x_tasks.sources import data_source
from ct5x_tasks.suggest import nearest
from ct5x_tasks.vocabulary import output_features

MAIN_TASKS = ("mednli", "radqa", "clip", "hoc", "ncbi_disease", "bc5cdr_disease")
STIGMA_TASKS = ("stigma_adamant", "stigma_compliance", "stigma_other")
PROMPT_STYLES = {"": {}, "_flan": {"flan": True}, "_deid": {"deid": True}}
LOW_RESOURCE_FRACTIONS = (0.01, 0.05, 0.25)

# The study's evaluation fell back to transformers' default generation `max_length` of 20 for
# these tasks; that length counts the decoder start token, so at most 19 tokens were generated.
ANCHOR_MAX_LENGTH = 20
ANCHOR_CAPPED_TASKS = ("mednli", "radqa", "clip", *STIGMA_TASKS)


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What a run needs to know about a registered task besides its data.

    `decode_length` is how many tokens decoding may generate (EOS included): the target length
    when None, or with the anchor switch on the study's cap for MedNLI, RadQA, CLIP and Stigma
    (`task_info` fills it in).
    """

    name: str
    variant: Variant
    input_length: int
    target_length: int
    num_beams: int
    decode_length: int | None = None


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
                for fold in range(NUM_FOLDS):
                    yield Variant(family.base, flan, deid, site=site, fold=fold)
                    for fraction in family.fractions:
                        yield Variant(family.base, flan, deid, site=site, fold=fold,
                                      fraction=fraction)


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
        register_task_info(TaskInfo(
            name, variant, family.input_length_for(variant.flan), family.target_length,
            family.num_beams,
        ))


def register_task_info(info: TaskInfo) -> None:
    """Make `task_info(info.name)` answer for a task registered with SeqIO by other means."""
    _TASKS[info.name] = info


def scored_as(base_task: str) -> str | None:
    """The paper task whose metrics score a user-defined base task (None for the paper's own)."""
    score_as = _SCORE_AS.get(base_task)
    return score_as() if score_as else None


def register_custom_task(name: str, config: CustomTaskSettings,
                         fractions: tuple[float, ...] = ()) -> None:
    """Register a user's dataset as base task `name` (files under DATA_DIR/<name>, or
    `data_settings.dataset_dirs[name]`), with its fold variants and, for each of `fractions`,
    its low-resource variants (`_fold<k>_pct<p>`)."""
    family = dataclasses.replace(
        custom_family(name, lambda: config),
        input_length=config.input_length, target_length=config.target_length,
        fractions=tuple(fractions),
    )
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


def _mixture_tables(style: dict) -> dict[str, list[str]]:
    """Mixture name (without style suffix) -> its task names; one fold of each task at most."""
    tables = {
        "paper_main": _variant_names(MAIN_TASKS, style),
        "paper_out_of_domain": _variant_names(STIGMA_TASKS, style, site="ood"),
    }
    for fold in range(NUM_FOLDS):
        tables[f"paper_main_fold{fold}"] = _variant_names(MAIN_TASKS, style, fold=fold)
        tables[f"paper_out_of_domain_fold{fold}"] = _variant_names(
            STIGMA_TASKS, style, site="ood", fold=fold)
        for fraction in LOW_RESOURCE_FRACTIONS:
            suffix = f"fold{fold}_pct{percent_label(fraction)}"
            bases = [base for base in ("mednli", *STIGMA_TASKS)
                     if fraction in family_of_base(base).fractions]
            tables[f"paper_low_resource_{suffix}"] = _variant_names(
                bases, style, fold=fold, fraction=fraction)
            tables[f"paper_out_of_domain_{suffix}"] = _variant_names(
                STIGMA_TASKS, style, site="ood", fold=fold, fraction=fraction)
    return tables


def register_mixtures() -> None:
    """The paper's tables as mixtures, per prompt style (see the module docstring)."""
    for table in list(_MIXTURES):
        seqio.MixtureRegistry.remove(table)
        _MIXTURES.discard(table)
    for suffix, style in PROMPT_STYLES.items():
        for table, names in _mixture_tables(style).items():
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
    """A registered task's variant, paper lengths and decoding length (the anchor switch is read
    now); unknown names suggest the nearest."""
    if name not in _TASKS:
        raise UserInputError(f"unknown task {name!r}{nearest(name, task_names())}")
    info = _TASKS[name]
    if anchor_settings() and info.variant.base in ANCHOR_CAPPED_TASKS:
        return dataclasses.replace(info, decode_length=ANCHOR_MAX_LENGTH - 1)
    return dataclasses.replace(info, decode_length=info.decode_length or info.target_length)


def get_provider(name: str) -> seqio.Task | seqio.Mixture:
    """The registered Task or Mixture; unknown names suggest the nearest."""
    if name not in _TASKS and name not in _MIXTURES:
        raise UserInputError(f"unknown task or mixture {name!r}{nearest(name, task_names())}")
    return seqio.get_mixture_or_task(name)
