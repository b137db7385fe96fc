"""Registered names, lookups with suggestions, task facts and metric wiring."""

import pytest
import seqio

import ct5x_tasks
from ct5x.errors import UserInputError
from ct5x_tasks import metrics
from ct5x_tasks.catalog import FAMILIES

BASES = ("mednli", "radqa", "clip", "stigma_adamant", "stigma_compliance", "stigma_other", "hoc",
         "hoc_blurb", "ncbi_disease", "bc5cdr_disease", "custom")
MIXTURES = {f"{table}{style}" for table in ("paper_main", "paper_low_resource",
                                            "paper_out_of_domain")
            for style in ("", "_flan", "_deid")}


def test_names_sorted_prefixed_and_enumerable():
    names = ct5x_tasks.task_names()
    assert names == sorted(names) and len(names) == len(set(names))
    assert set(BASES) <= set(FAMILIES) and set(BASES) <= set(names)
    assert MIXTURES <= set(names)
    for name in set(names) - MIXTURES:
        base = ct5x_tasks.task_info(name).variant.base
        assert name.startswith(base)
        if base in BASES[:-1]:  # a user's task is scored as the paper task its settings name
            assert metrics.base_task_of(name) == base
    for expected in ("mednli_flan_deid_fold3_pct1", "stigma_other_fold4_pct25", "hoc_blurb_fold0",
                     "stigma_adamant_flan_site_ood", "clip_deid_fold2", "custom_fold1"):
        assert expected in names
    for absent in ("hoc_deid", "ncbi_disease_deid", "radqa_fold0_pct1", "custom_flan"):
        assert absent not in names
    assert ct5x_tasks.task_name("mednli", flan=True, deid=True, fold=3, fraction=0.01) == \
        "mednli_flan_deid_fold3_pct1"


def test_mixtures_follow_the_paper_tables():
    main = seqio.get_mixture_or_task("paper_main_deid")
    names = {task.name for task in main.tasks}
    assert len(names) == 30 and "radqa_deid_fold4" in names and "hoc_fold0" in names
    low = {task.name for task in seqio.get_mixture_or_task("paper_low_resource").tasks}
    assert len(low) == 5 * (1 + 3 * 3) and "stigma_adamant_fold0_pct25" in low
    ood = {task.name for task in seqio.get_mixture_or_task("paper_out_of_domain_flan").tasks}
    assert ood == {f"stigma_{c}_flan_site_ood" for c in ("adamant", "compliance", "other")}


def test_unknown_names_suggest_the_nearest():
    with pytest.raises(UserInputError, match="unknown task or mixture 'mednli_fold9'; nearest: "
                                             "mednli_fold"):
        ct5x_tasks.get_provider("mednli_fold9")
    with pytest.raises(UserInputError, match="nearest: clip_flan"):
        ct5x_tasks.task_info("clip_flna")
    assert ct5x_tasks.get_provider("mednli").name == "mednli"


def test_task_info_has_paper_lengths():
    assert (ct5x_tasks.task_info("clip").input_length,
            ct5x_tasks.task_info("clip_flan_fold0").input_length) == (256, 512)
    info = ct5x_tasks.task_info("radqa_deid_fold1")
    assert (info.input_length, info.target_length, info.num_beams) == (1024, 30, 1)
    assert info.variant == ct5x_tasks.Variant("radqa", deid=True, fold=1)


def test_registration_reads_no_data(monkeypatch, tmp_path):
    monkeypatch.setenv("CT5X_DATA_DIR", str(tmp_path / "missing"))
    monkeypatch.delenv("CT5X_VOCABULARY", raising=False)
    ct5x_tasks.register_all()
    assert len(ct5x_tasks.task_names()) > 400


def test_metrics_are_wired():
    task = seqio.get_mixture_or_task("stigma_compliance_flan_fold2_pct5")
    postprocess = task.postprocess_fn
    targets = [postprocess(t, is_target=True) for t in ("negative", "positive")]
    predictions = [postprocess(p) for p in (" negative", "neutral")]
    results = {}
    for metric_fn in task.metric_fns:
        results.update(metric_fn(targets, predictions))
    assert results["accuracy"] == pytest.approx(0.5)
