"""Grouping metrics.json files into tables: nothing is dropped silently, every problem is named."""

import json

import pytest

from ct5x.cli import main
from ct5x.evaluation.collect import find_metrics_files, group_tables, read_scores
from tests.ct5x.evaluation.grid import digest_of, metrics_record, write_metrics

SCORES = [0.80, 0.82, 0.81, 0.79, 0.83]


def write_folds(root, model, folds=range(5), base="ncbi_disease", digest=None, prefix=""):
    paths = []
    for fold in folds:
        record = metrics_record(model, base, "full", None, fold, {"f1": SCORES[fold]}, digest)
        paths.append(write_metrics(root / prefix, record))
    return paths


def tables_and_problems(root, num_folds=None):
    scores, unreadable = read_scores(find_metrics_files(root))
    tables, problems = group_tables(scores, num_folds)
    return tables, [str(problem) for problem in unreadable + problems]


def test_complete_folds_make_one_row_per_model(tmp_path):
    write_folds(tmp_path, "T5-Den")
    write_folds(tmp_path, "FLAN-T5")
    (table,), problems = tables_and_problems(tmp_path)
    assert not problems
    assert [row.model for row in table.rows] == ["T5-Den", "FLAN-T5"]
    assert table.rows[0].scores == {"f1": SCORES} and table.rows[0].folds == [0, 1, 2, 3, 4]
    assert table.selection_metric == "f1" and not table.test_sets_differ


def test_missing_fold_leaves_the_row_out_naming_the_model(tmp_path):
    write_folds(tmp_path, "T5-Den")
    write_folds(tmp_path, "MIMIC-T5", folds=[0, 1, 2, 4])
    (table,), problems = tables_and_problems(tmp_path)
    assert [row.model for row in table.rows] == ["T5-Den"]
    assert problems == ["ncbi_disease full, model 'MIMIC-T5' (t5): missing fold(s) 3"]
    # The report's --num-folds overrides the task's number of folds (metrics.json's num_folds).
    tables, problems = tables_and_problems(tmp_path, num_folds=3)
    problems = [problem.split("model ")[1] for problem in problems]
    assert not tables and "'T5-Den' (t5): fold(s) 3, 4 beyond the 3 folds expected" in problems


def test_fold_scored_twice_names_both_files(tmp_path):
    write_folds(tmp_path, "T5-Den")
    (again,) = write_folds(tmp_path, "T5-Den", folds=[2], prefix="rerun")
    tables, (problem,) = tables_and_problems(tmp_path)
    assert not tables and "fold 2 scored twice" in problem and str(again) in problem


def test_folds_on_different_test_sets_are_an_error(tmp_path):
    write_folds(tmp_path, "T5-Den", folds=[0, 1, 2, 3])
    write_folds(tmp_path, "T5-Den", folds=[4], digest="f" * 64)
    _, (problem,) = tables_and_problems(tmp_path)
    assert "folds scored on different test sets" in problem


def test_models_on_different_test_sets_are_flagged(tmp_path):
    write_folds(tmp_path, "T5-Den")
    write_folds(tmp_path, "MIMIC-T5", digest=digest_of("deidentified"))
    (table,), _ = tables_and_problems(tmp_path)
    assert table.test_sets_differ


def test_run_without_folds_stands_alone_and_cannot_mix(tmp_path):
    record = metrics_record("T5-Den", "ncbi_disease", "full", None, None, {"f1": 0.8})
    write_metrics(tmp_path / "single", record)
    (table,), _ = tables_and_problems(tmp_path / "single")
    assert table.rows[0].folds == [None]
    write_folds(tmp_path / "single", "T5-Den", folds=range(5))
    _, (problem,) = tables_and_problems(tmp_path / "single")
    assert "mixes fold runs with a run trained without folds" in problem


def test_unreadable_metrics_file_is_named(tmp_path):
    write_folds(tmp_path, "T5-Den")
    bad = tmp_path / "broken" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text('{"model": "x",\n oops')
    (table,), (problem,) = tables_and_problems(tmp_path)
    assert problem.startswith(f"{bad}: line 2: not valid JSON") and len(table.rows) == 1


def test_report_command_exits_2_after_writing_what_it_could(tmp_path, capsys):
    write_folds(tmp_path / "runs", "T5-Den", folds=[0, 1, 2])
    assert main(["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("ct5x report: error: ") and "missing fold(s) 3, 4" in error
    assert len(error.splitlines()) == 1
    assert "missing fold(s) 3, 4" in (tmp_path / "out" / "report.md").read_text()
    assert main(["report", "--runs", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_scores_at_another_site_are_read_as_their_own_table(tmp_path):
    write_folds(tmp_path, "T5-Den")
    for fold in range(5):
        record = metrics_record("T5-Den", "ncbi_disease", "site_ood", None, fold,
                                {"f1": SCORES[fold] - 0.1}, digest_of("site"))
        record["site"] = "ood"
        folder = tmp_path / "T5-Den" / record["task"]
        (folder / "metrics_site_ood.json").write_text(json.dumps(record))
    (full, site), _ = tables_and_problems(tmp_path)
    assert (full.setting, site.setting, site.site) == ("full", "site_ood", "ood")
    assert site.rows[0].scores["f1"] == pytest.approx([x - 0.1 for x in SCORES])


def test_folds_scored_with_different_conventions_are_an_error(tmp_path):
    write_folds(tmp_path, "T5-Den", folds=[0, 1, 2, 3])
    record = metrics_record("T5-Den", "ncbi_disease", "full", None, 4, {"f1": 0.8})
    record["anchor_compatible"] = True
    write_metrics(tmp_path, record)
    _, (problem,) = tables_and_problems(tmp_path)
    assert "folds scored in different anchor modes" in problem
