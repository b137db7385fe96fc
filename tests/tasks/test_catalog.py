"""The per-task facts every part of ct5x reads (`catalog`): selection metric and direction, count
metrics, scoring, folds and decoding, for paper and user tasks alike."""

import pytest

import ct5x_tasks
from ct5x.errors import UserInputError
from ct5x_tasks.catalog import FAMILIES, SCORING, Selection, variant_info


def test_a_users_task_takes_the_facts_of_the_paper_task_it_is_scored_as():
    """A custom task named like a paper task (`hoc_x`) is not scored as HoC, and one scored as
    RadQA selects on f1, not on the alphabetically first of its metrics."""
    ct5x_tasks.register_custom_task("hoc_x", ct5x_tasks.CustomTaskSettings(score_as="radqa"))
    info = ct5x_tasks.task_info("hoc_x_fold1")
    assert (info.scored_as, info.selection, info.count_metrics) == ("radqa", Selection("f1"), ())
    assert info.num_folds == 5 and info.decode_length == info.target_length == 128
    with ct5x_tasks.settings(anchor_compatible=True):  # the study's cap is the paper task's
        assert ct5x_tasks.task_info("hoc_x_fold1").decode_length == 128
        assert ct5x_tasks.task_info("radqa_fold1").decode_length == 19
    unscored = ct5x_tasks.task_info("custom")
    assert unscored.scored_as is None and unscored.selection is None
    with pytest.raises(UserInputError, match="no selection metric known for task custom"):
        unscored.selection_for(None)


def test_selection_direction():
    info = variant_info(ct5x_tasks.Variant("mednli", fold=0))
    assert info.selection_for(None) == Selection("accuracy", higher_is_better=True)
    assert info.selection_for("loss") == Selection("loss", higher_is_better=False)
    assert info.selection_for("invalid_predictions").higher_is_better is False
    assert info.selection_for("macro_f1").higher_is_better is True
    assert Selection("loss", False).improves(0.2, 0.3) and not Selection("f1").improves(0.2, 0.3)
    assert Selection("f1").improves(0.0, None)


def test_every_paper_task_has_its_facts():
    paper = {base for base, family in FAMILIES.items() if family.score_as is None}
    assert set(SCORING) == paper
    capped = {base for base, scoring in SCORING.items() if scoring.anchor_decode_length}
    assert capped == {"mednli", "radqa", "clip", "stigma_adamant", "stigma_compliance",
                      "stigma_other"}


def test_variants_a_family_lacks_are_not_registered():
    with pytest.raises(UserInputError, match="mednli offers sites none"):
        variant_info(ct5x_tasks.Variant("mednli", site="ood"))
    with pytest.raises(UserInputError, match="FLAN prompt no"):
        variant_info(ct5x_tasks.Variant("custom", flan=True))
