"""Registered names, lookups with suggestions, task facts and metric wiring."""

import pathlib
import re

import gin
import pytest
import seqio

import ct5x_tasks
from ct5x.errors import UserInputError
from ct5x_tasks.catalog import FAMILIES, SCORING

BASES = ("mednli", "radqa", "clip", "stigma_adamant", "stigma_compliance", "stigma_other", "hoc",
         "hoc_blurb", "ncbi_disease", "bc5cdr_disease", "custom")
MIXTURES = {f"{table}{style}" for table in ("paper_main", "paper_main_fold0",
                                            "paper_low_resource_fold4_pct25",
                                            "paper_out_of_domain", "paper_out_of_domain_fold3_pct5")
            for style in ("", "_flan", "_deid")}


def test_names_sorted_prefixed_and_enumerable():
    names = ct5x_tasks.task_names()
    assert names == sorted(names) and len(names) == len(set(names))
    assert set(BASES) <= set(FAMILIES) and set(BASES) <= set(names)
    assert MIXTURES <= set(names)
    for name in [name for name in names if not name.startswith("paper_")]:
        info = ct5x_tasks.task_info(name)
        base = info.variant.base
        assert name.startswith(base)
        if base in BASES[:-1]:  # a user's task is scored as the paper task its settings name
            assert info.scored_as == base and info.selection == SCORING[base].selection
    for expected in ("mednli_flan_deid_fold3_pct1", "stigma_other_fold4_pct25", "hoc_blurb_fold0",
                     "stigma_adamant_flan_site_ood", "clip_deid_fold2", "custom_fold1",
                     "stigma_other_site_ood_fold3",
                     "stigma_compliance_flan_deid_site_ood_fold0_pct1"):
        assert expected in names
    for absent in ("hoc_deid", "ncbi_disease_deid", "radqa_fold0_pct1", "custom_flan"):
        assert absent not in names
    assert ct5x_tasks.task_name("mednli", flan=True, deid=True, fold=3, fraction=0.01) == \
        "mednli_flan_deid_fold3_pct1"


def test_mixtures_follow_the_paper_tables():
    main = {task.name for task in seqio.get_mixture_or_task("paper_main_fold4_deid").tasks}
    assert main == {"mednli_deid_fold4", "radqa_deid_fold4", "clip_deid_fold4", "hoc_fold4",
                    "ncbi_disease_fold4", "bc5cdr_disease_fold4"}
    low = {task.name for task in seqio.get_mixture_or_task("paper_low_resource_fold0_pct1").tasks}
    assert low == {"mednli_fold0_pct1", "stigma_adamant_fold0_pct1",
                   "stigma_compliance_fold0_pct1", "stigma_other_fold0_pct1"}
    ood = {task.name for task in seqio.get_mixture_or_task("paper_out_of_domain_flan").tasks}
    assert ood == {f"stigma_{c}_flan_site_ood" for c in ("adamant", "compliance", "other")}


def test_no_mixture_holds_two_folds_of_one_task():
    mixtures = [name for name in ct5x_tasks.task_names() if name.startswith("paper_")]
    assert len(mixtures) == 3 * (2 + 5 * 2 + 5 * 3 * 2)
    for name in mixtures:
        tasks = [task.name for task in seqio.get_mixture_or_task(name).tasks]
        # A task's data without its fold and fraction: two entries alike here share data.
        stems = [re.sub(r"_fold\d(_pct\w+)?$", "", task) for task in tasks]
        assert len(stems) == len(set(stems)), name
        assert len({re.search(r"_fold(\d)", task) is None for task in tasks}) == 1, name
        folds_used = {match.group(1) for task in tasks if (match := re.search(r"_fold(\d)", task))}
        assert len(folds_used) <= 1, name


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
    assert info.decode_length == 30
    assert info.variant == ct5x_tasks.Variant("radqa", deid=True, fold=1)


@pytest.mark.parametrize("switch", ["env", "gin"])
def test_anchor_switch_caps_decoding_as_the_study_did(switch, monkeypatch):
    """transformers' default max_length 20 counts the decoder start token: 19 generated."""
    capped = ("mednli_fold0", "radqa", "clip_flan", "stigma_other_site_ood_fold1_pct5")
    uncapped = {"hoc": 64, "hoc_blurb_fold2": 64, "ncbi_disease": 512, "bc5cdr_disease_flan": 512}
    before = {name: ct5x_tasks.task_info(name).decode_length for name in capped}
    assert before == {name: ct5x_tasks.task_info(name).target_length for name in capped}
    if switch == "env":
        monkeypatch.setenv("CT5X_ANCHOR_COMPATIBLE", "true")
    else:
        data_gin = pathlib.Path(__file__).parents[2] / "gin" / "tasks" / "data.gin"
        gin.parse_config_files_and_bindings([str(data_gin)], ["ANCHOR_COMPATIBLE = True"])
    try:
        assert {ct5x_tasks.task_info(name).decode_length for name in capped} == {19}
        assert {name: ct5x_tasks.task_info(name).decode_length for name in uncapped} == uncapped
    finally:
        gin.clear_config()
    assert ct5x_tasks.task_info("clip").decode_length == (19 if switch == "env" else 64)


def test_registration_reads_no_data(monkeypatch, tmp_path):
    monkeypatch.setenv("CT5X_DATA_DIR", str(tmp_path / "missing"))
    monkeypatch.delenv("CT5X_VOCABULARY", raising=False)
    ct5x_tasks.register_all()
    assert len(ct5x_tasks.task_names()) > 700


def test_metrics_are_wired():
    task = seqio.get_mixture_or_task("stigma_compliance_flan_fold2_pct5")
    postprocess = task.postprocess_fn
    targets = [postprocess(t, is_target=True) for t in ("negative", "positive")]
    predictions = [postprocess(p) for p in (" negative", "neutral")]
    results = {}
    for metric_fn in task.metric_fns:
        results.update(metric_fn(targets, predictions))
    assert results["accuracy"] == pytest.approx(0.5)
