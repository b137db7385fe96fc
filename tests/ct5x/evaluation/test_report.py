"""`write_report` on synthetic runs with known fold scores: every number against numpy, scipy and
statsmodels computed here, and the printed tables checked cell by cell."""

import csv
import json

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from ct5x.cli import main
from tests.ct5x.evaluation.grid import ANCHOR, CELLS, MODELS, write_grid

PUBLISHED_MEDNLI = {"T5-Den": "85.89", "FLAN-T5": "86.03", "MIMIC-T5": "86.75"}


@pytest.fixture
def grid(synthetic_report):
    return synthetic_report


def studys_interval(scores):
    """The study's compute_confidence_interval, written out."""
    rng = np.random.RandomState(42)
    means = [np.mean(rng.choice(scores, 5, replace=True)) for _ in range(100)]
    return np.percentile(means, q=[2.5, 97.5])


def find_table(report, base, setting):
    (table,) = [t for t in report["tables"]
                if t["base_task"] == base and t["setting"] == setting]
    return table


def test_every_cell_equals_direct_computation(grid):
    known, report, _ = grid
    assert len(report["tables"]) == len(CELLS)
    checked = 0
    for (model, base, setting, metric), scores in known.items():
        table = find_table(report, base, setting)
        (row,) = [r for r in table["rows"] if r["model"] == model]
        cell = row["metrics"][metric]
        assert row["n"] == 5 and row["folds"] == [0, 1, 2, 3, 4]
        assert cell["scores"] == scores
        assert cell["mean"] == pytest.approx(np.mean(scores), rel=1e-12)
        assert cell["sd"] == pytest.approx(np.std(scores, ddof=1), rel=1e-12)
        assert cell["paper_interval"] == pytest.approx(studys_interval(scores), rel=1e-12)
        t_expected = stats.t.interval(0.95, 4, loc=np.mean(scores), scale=stats.sem(scores))
        assert cell["t_interval"] == pytest.approx(t_expected, rel=1e-12)
        checked += 1
    assert checked == len(MODELS) * sum(len(names) for *_, names in CELLS)


def test_paired_tests_equal_scipy_and_holm_over_each_table_metric(grid):
    known, report, _ = grid
    labels = {model: f"{model} ({prompt})" for model, prompt in MODELS.items()}
    for base, setting, _, names in CELLS:
        table = find_table(report, base, setting)
        assert "invalid_predictions" not in table["comparisons"]
        for metric in names:
            tests = table["comparisons"][metric]
            pairs = [("T5-Den", "FLAN-T5"), ("T5-Den", "MIMIC-T5"), ("FLAN-T5", "MIMIC-T5")]
            assert [(t["a"], t["b"]) for t in tests] == [
                (labels[a], labels[b]) for a, b in pairs]
            expected = [stats.ttest_rel(known[(a, base, setting, metric)],
                                        known[(b, base, setting, metric)]) for a, b in pairs]
            for test, reference in zip(tests, expected):
                assert test["t"] == pytest.approx(reference.statistic, rel=1e-10)
                assert test["p"] == pytest.approx(reference.pvalue, rel=1e-10)
                assert test["df"] == 4
            holm = multipletests([r.pvalue for r in expected], method="holm")[1]
            assert [t["p_holm"] for t in tests] == pytest.approx(holm, rel=1e-10)


def markdown_rows(text):
    lines = [line for line in text.splitlines()
             if line.startswith("|") and not line.startswith("|---")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_markdown_table_cell_by_cell(grid):
    known, _, out = grid
    rows = markdown_rows((out / "tables" / "mednli_full.md").read_text())
    header = rows[0]
    assert header == ["Model", "Prompt", "Metric", "n", "Mean", "SD", "95% CI (paper bootstrap)",
                      "95% CI (t)", "Paper"]
    score_rows = [row for row in rows[1:] if len(row) == len(header)]
    assert len(score_rows) == 3 * 3
    for model, prompt, metric, n, mean, sd, paper_ci, t_ci, paper in score_rows:
        assert prompt == MODELS[model] and n == "5"
        if metric == "invalid_predictions":
            counts = [float(fold % 2) for fold in range(5)]
            assert mean == f"{np.mean(counts):.2f}"
            assert paper == "-"
            continue
        scores = known[(model, "mednli", "full", metric)]
        assert mean == f"{100 * np.mean(scores):.2f}"
        assert sd == f"{100 * np.std(scores, ddof=1):.2f}"
        low, high = 100 * studys_interval(scores)
        assert paper_ci == f"[{low:.2f}, {high:.2f}]"
        low, high = stats.t.interval(0.95, 4, loc=100 * np.mean(scores),
                                     scale=100 * stats.sem(scores))
        assert t_ci == f"[{low:.2f}, {high:.2f}]"
        # Published numbers come from the study's code: marked beside rows scored otherwise.
        mark = "" if ANCHOR[model] else "\u2020"
        assert paper == (PUBLISHED_MEDNLI[model] + mark if metric == "accuracy" else "-")
    # Selection metric first within each model, counts last.
    assert [row[2] for row in score_rows[:3]] == ["accuracy", "macro_f1", "invalid_predictions"]
    test_rows = [row for row in rows if len(row) == 8 and row[0] != "Metric"]
    first = test_rows[0]
    reference = stats.ttest_rel(known[("T5-Den", "mednli", "full", "accuracy")],
                                known[("FLAN-T5", "mednli", "full", "accuracy")])
    assert first[:3] == ["accuracy", "T5-Den (t5)", "FLAN-T5 (flan)"]
    assert first[4] == f"{reference.statistic:.3f}" and first[5] == "4"
    assert first[6] == f"{reference.pvalue:.3g}"


def test_paper_numbers_computed_in_another_mode_are_footnoted(grid):
    _, report, out = grid
    text = (out / "tables" / "mednli_full.md").read_text()
    note = text.split("\u2020 The paper computed")[1].splitlines()[0]
    assert "anchor_compatible false: T5-Den (t5), FLAN-T5 (flan)" in note
    assert "MIMIC-T5" not in note  # scored as the study's code: computed as the paper's number
    assert "\u2020" not in (out / "tables" / "mednli_pct1.md").read_text()  # nothing published
    table = find_table(report, "mednli", "full")
    assert {row["model"]: row["metrics"]["accuracy"]["paper_mode_differs"]
            for row in table["rows"]} == {"T5-Den": True, "FLAN-T5": True, "MIMIC-T5": False}
    assert r"85.89\textsuperscript{\dag}" in (out / "tables" / "mednli_full.tex").read_text()


def test_csv_latex_and_report_json_agree(grid):
    known, report, out = grid
    with (out / "scores.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == sum(len(t["rows"]) * len(t["metrics"]) for t in report["tables"])
    for row in rows:
        key = (row["model"], row["base_task"], row["setting"], row["metric"])
        if key in known:
            assert float(row["mean"]) == pytest.approx(np.mean(known[key]), rel=1e-15)
            assert [float(x) for x in row["scores"].split()] == known[key]
    with (out / "comparisons.csv").open() as stream:
        comparisons = list(csv.DictReader(stream))
    assert len(comparisons) == sum(3 * len(names) for *_, names in CELLS)
    latex = (out / "tables" / "stigma_adamant_pct25.tex").read_text()
    assert r"macro\_f1" in latex and r"\begin{tabular}" in latex and "95\\% CI (t)" in latex
    assert latex.count(r"\\") == 1 + 3 * 3 + 1 + 3 * 2
    assert json.loads((out / "report.json").read_text()) == report


def test_plots_are_written_as_png_and_svg(grid):
    _, report, out = grid
    stems = ["low_resource_mednli", "low_resource_stigma_adamant"]
    stems += [f"bars_{t['base_task']}_{t['setting']}" for t in report["tables"]]
    for stem in stems:
        assert (out / "plots" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (out / "plots" / f"{stem}.svg").read_text()
    assert len(list((out / "plots").iterdir())) == 2 * len(stems)


def test_report_command_without_paper_and_with_other_bootstrap(tmp_path, capsys):
    """Also: a missing fold and an unreadable file leave their rows out, listed under "Failed and
    missing runs"; the exit code says so after the report is written."""
    known = write_grid(tmp_path / "runs", cells=CELLS[-1:])
    (tmp_path / "runs" / "FLAN-T5" / "ncbi_disease_flan_fold3" / "metrics.json").unlink()
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "metrics.json").write_text("{")
    assert main(["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                 "--bootstrap-resamples", "50", "--seed", "7"]) == 2
    captured = capsys.readouterr()
    assert "wrote 1 tables" in captured.out
    assert "model 'FLAN-T5' (flan): missing fold(s) 3" in captured.err
    assert "broken" in captured.err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["settings"]["bootstrap_resamples"] == 50
    table = find_table(report, "ncbi_disease", "full")
    assert [row["model"] for row in table["rows"]] == ["T5-Den", "MIMIC-T5"]
    assert len(report["problems"]) == 2
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Failed and missing runs" in text and "missing fold(s) 3" in text
    cell = table["rows"][0]["metrics"]["f1"]
    assert "published_percent" not in cell
    scores = known[("T5-Den", "ncbi_disease", "full", "f1")]
    rng = np.random.RandomState(7)
    means = [np.mean(rng.choice(scores, 5, replace=True)) for _ in range(50)]
    assert cell["paper_interval"] == pytest.approx(np.percentile(means, [2.5, 97.5]))
    assert "Paper" not in (tmp_path / "out" / "tables" / "ncbi_disease_full.md").read_text()
