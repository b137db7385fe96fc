"""The low-resource learning-rate choice: best mean validation score over folds, per group."""

import json
import pathlib
import random

import pytest

from ct5x.errors import UserInputError
from ct5x.sweep.grid import expand, experiment
from ct5x.sweep.selection import choose_learning_rates, chosen_runs, read_best_metric


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


def _write_run_json(run, value, finished=True):
    directory = pathlib.Path(run.model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run.json").write_text(json.dumps({
        "finished": finished, "best_metric": {"name": "macro_f1", "value": value}}))


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
        group_runs = [r for r in runs if r.group == choice.group]
        for rate, mean in choice.mean_scores.items():
            values = [scores[r.model_dir] for r in group_runs if r.learning_rate == rate]
            assert mean == pytest.approx(sum(values) / 5)
    picked = chosen_runs(runs, choices)
    assert len(picked) == 4 * 5
    assert all(run.learning_rate == {c.group: c.learning_rate for c in choices}[run.group]
               for run in picked)


def test_incomplete_rates_do_not_compete(runs):
    for run in runs:
        better = run.learning_rate == 1e-4
        _write_run_json(run, 0.9 if better else 0.5, finished=not (better and run.fold == 4))
    choices = choose_learning_rates(runs)
    assert all(choice.learning_rate == 1e-3 for choice in choices)
    assert all(choice.mean_scores[1e-4] is None for choice in choices)
    assert read_best_metric(runs[0]) == ("macro_f1", 0.5)


def test_no_complete_rate_leaves_the_group_unresolved(runs):
    choices = choose_learning_rates(runs)
    assert all(choice.learning_rate is None for choice in choices)
    assert chosen_runs(runs, choices) == []


def test_mixed_selection_metrics_are_refused(runs):
    for index, run in enumerate(runs):
        _write_run_json(run, 0.5)
        if index == 3:
            (pathlib.Path(run.model_dir) / "run.json").write_text(json.dumps(
                {"finished": True, "best_metric": {"name": "accuracy", "value": 0.5}}))
    with pytest.raises(UserInputError, match="different metrics"):
        choose_learning_rates(runs)
