"""The low-resource learning-rate choice: best mean validation score over complete folds, per
group; a rate that lost a fold is listed, never silently replaced."""

import pathlib
import random

import pytest
from run_records import run_record, write_run_record

from ct5x.run_record import BestMetric
from ct5x.sweep.grid import expand, experiment
from ct5x.sweep.selection import choose_learning_rates, chosen_runs, run_score
from ct5x_tasks.catalog import Selection


@pytest.fixture()
def runs(tmp_path):
    grid = experiment("low", [{"name": "A"}, {"name": "B"}], [
        {"name": "s", "tasks": ["stigma_adamant"], "fractions": [0.01, 0.05],
         "learning_rates": [1e-3, 1e-4], "batch_size": {0.01: 4, 0.05: 16}},
    ], runs_dir=str(tmp_path))
    return expand(grid)


def _scores(runs, rng):
    """Validation scores whose best rate differs by group; one fold's best beats the mean."""
    table = {}
    for run in runs:
        favoured = 1e-3 if (run.model == "A") == (run.fraction == 0.01) else 1e-4
        base = 0.7 if run.learning_rate == favoured else 0.6
        table[run.model_dir] = base + rng.uniform(-0.02, 0.02)
    return table


def _write_run_json(run, value, finished=True, metric="macro_f1", higher_is_better=True):
    write_run_record(run.model_dir, run_record(
        finished=finished, best_metric=BestMetric(metric, value),
        selection=Selection(metric, higher_is_better)))


def test_rate_with_best_mean_over_folds_wins(runs):

    scores = _scores(runs, random.Random(0))
    # A single outstanding fold at the losing rate must not win: the mean decides.
    outlier = next(r for r in runs if r.model == "A" and r.fraction == 0.01
                   and r.learning_rate == 1e-4 and r.fold == 2)
    scores[outlier.model_dir] = 0.99
    for run in runs:
        _write_run_json(run, scores[run.model_dir])
    choices = choose_learning_rates(runs)
    assert len(choices) == 4
    for choice in choices:
        model, _, _, fraction, _ = choice.group
        expected = 1e-3 if (model == "A") == (fraction == 0.01) else 1e-4
        assert choice.learning_rate == expected and choice.metric == "macro_f1"
        assert not choice.missing and not choice.incomplete
        group_runs = [r for r in runs if r.group == choice.group]
        for rate, mean in choice.mean_scores.items():
            values = [scores[r.model_dir] for r in group_runs if r.learning_rate == rate]
            assert mean == pytest.approx(sum(values) / 5)
    picked = chosen_runs(runs, choices)
    assert len(picked) == 4 * 5
    assert all(run.learning_rate == {c.group: c.learning_rate for c in choices}[run.group]
               for run in picked)


def test_a_lower_is_better_selection_picks_the_lowest_mean(runs):
    for run in runs:
        _write_run_json(run, 0.2 if run.learning_rate == 1e-4 else 0.5, metric="loss",
                        higher_is_better=False)
    assert {choice.learning_rate for choice in choose_learning_rates(runs)} == {1e-4}


def test_a_rate_that_lost_a_fold_is_listed_not_replaced(runs):
    """The better rate's fold 4 failed: the group stays undecided (the old rule would have taken
    the worse, complete rate silently); --allow-incomplete takes it, flagged."""
    for run in runs:
        better = run.learning_rate == 1e-4
        _write_run_json(run, 0.9 if better else 0.5, finished=not (better and run.fold == 4))
    failed = next(run for run in runs if run.learning_rate == 1e-4 and run.fold == 4)
    (pathlib.Path(failed.model_dir) / "sweep_error.log").write_text("Traceback ...")
    choices = choose_learning_rates(runs)
    assert all(choice.learning_rate is None for choice in choices)
    assert all(choice.mean_scores[1e-4] is None for choice in choices)
    assert chosen_runs(runs, choices) == []
    for choice in choices:
        (missing,) = choice.missing
        assert (missing.learning_rate, missing.fold) == (1e-4, 4)
        reason = "training failed" if choice.group == failed.group else "training has not"
        assert f"lr 0.0001 fold 4: {reason}" in choice.describe()
        assert choice.describe().endswith(missing.reason)
    flagged = choose_learning_rates(runs, allow_incomplete=True)
    assert all(choice.learning_rate == 1e-3 and choice.incomplete for choice in flagged)
    assert all("taken with folds missing" in choice.describe() for choice in flagged)
    assert run_score(runs[0]) == ("macro_f1", 0.5, True)


def test_no_complete_rate_leaves_the_group_unresolved(runs):
    choices = choose_learning_rates(runs, allow_incomplete=True)
    assert all(choice.learning_rate is None for choice in choices)
    assert all(len(choice.missing) == 10 and choice.missing[0].reason == "not started"
               for choice in choices)
    assert chosen_runs(runs, choices) == []


def test_mixed_selection_metrics_leave_the_group_undecided(runs):
    for index, run in enumerate(runs):
        _write_run_json(run, 0.5, metric="accuracy" if index == 3 else "macro_f1")
    choices = choose_learning_rates(runs)
    conflicted = [choice for choice in choices if choice.conflict]
    assert len(conflicted) == 1 and "different metrics" in conflicted[0].describe()
    assert conflicted[0].learning_rate is None


def test_an_unreadable_run_json_is_a_named_missing_fold(runs):
    for run in runs:
        _write_run_json(run, 0.5)
    (pathlib.Path(runs[0].model_dir) / "run.json").write_text('{"model": ')
    (choice, *_) = choose_learning_rates(runs)
    assert choice.learning_rate is None
    assert "run.json:1: not valid JSON" in choice.missing[0].reason
