"""The demo's conclusion is computed from the report: fabricated report.json contents in, the
sentences that must follow from them out."""

import pytest

from ct5x.demo_conclusion import conclusion, format_table, fraction_rows, verdict


def _table(fraction, means, tests, n=5):
    """A report.json table as `ct5x report` writes it (macro_f1 only); `tests` are (a, b,
    difference, p) with a and b model names."""
    setting = "full" if fraction is None else f"pct{100 * fraction:g}"
    rows = [{"model": model, "prompt": "t5", "label": f"{model} (t5)", "n": n,
             "metrics": {"macro_f1": {"scores": [mean] * n, "mean": mean,
                                      "t_interval": [mean - 0.02, mean + 0.02]}}}
            for model, mean in means.items()]
    comparisons = [{"a": f"{a} (t5)", "b": f"{b} (t5)", "mean_difference": difference, "t": 3.0,
                    "df": n - 1, "p": p, "p_holm": None if p is None else min(1.0, 2 * p)}
                   for a, b, difference, p in tests]
    return {"base_task": "synthetic_followup", "setting": setting, "fraction": fraction,
            "selection_metric": "macro_f1", "rows": rows, "comparisons": {"macro_f1": comparisons}}


def _report(*tables):
    return {"tables": list(tables)}


def test_clinical_better_when_scarce_and_no_difference_with_all_the_data():
    report = _report(
        _table(None, {"clinical": 0.95, "general": 0.946},
               [("clinical", "general", 0.004, 0.41)]),
        _table(0.05, {"clinical": 0.70, "general": 0.639},
               [("clinical", "general", 0.061, 0.004)]),
    )
    rows = fraction_rows(report, "macro_f1", {"pct5": 0.05, "full": 0.05})
    assert [row.label for row in rows] == ["5%", "100%"]  # smallest first, whatever the order
    assert conclusion(rows, "macro_f1") == [
        ("Clinical better at 5% (+6.1 macro-F1, p = 0.004); no significant difference at 100% "
        "(+0.4, p = 0.410)."),
        ("Pre-training on clinical text helped at the smallest fraction (5%), and the gap was "
        "largest there."),
    ]


def test_the_sign_follows_the_models_not_the_order_the_report_tested_them_in():
    report = _report(_table(0.05, {"clinical": 0.60, "general": 0.63},
                            [("general", "clinical", 0.03, 0.01)]),
                     _table(0.25, {"clinical": 0.80, "general": 0.70},
                            [("general", "clinical", -0.10, 0.002)]))
    rows = fraction_rows(report, "macro_f1")
    assert rows[0].test("clinical", "general").mean_difference == pytest.approx(-0.03)
    assert conclusion(rows, "macro_f1") == [
        ("General better at 5% (+3.0 macro-F1, p = 0.010); clinical better at 25% "
        "(+10.0 macro-F1, p = 0.002)."),
        ("Pre-training on clinical text did worse than on general text at the smallest fraction "
        "(5%)."),
    ]


def test_no_effect_at_the_smallest_fraction_is_said_plainly():
    report = _report(_table(0.05, {"clinical": 0.52, "general": 0.50},
                            [("clinical", "general", 0.02, 0.3)]),
                     _table(None, {"clinical": 0.90, "general": 0.80},
                            [("clinical", "general", 0.10, 0.001)]))
    lines = conclusion(fraction_rows(report, "macro_f1"), "macro_f1")
    assert lines[0] == ("No significant difference at 5% (+2.0, p = 0.300); clinical better at "
                        "100% (+10.0 macro-F1, p = 0.001).")
    assert lines[1] == ("Pre-training on clinical text made no significant difference at the "
                        "smallest fraction (5%) in this run.")


def test_helped_but_the_gap_was_larger_elsewhere():
    report = _report(_table(0.05, {"clinical": 0.70, "general": 0.60},
                            [("clinical", "general", 0.10, 0.01)]),
                     _table(0.25, {"clinical": 0.90, "general": 0.70},
                            [("clinical", "general", 0.20, 0.001)]))
    assert conclusion(fraction_rows(report, "macro_f1"), "macro_f1")[1] == (
        "Pre-training on clinical text helped at the smallest fraction (5%).")


def test_undefined_and_missing_tests_and_models_under_the_baseline():
    report = _report(_table(0.05, {"clinical": 0.04, "general": 0.02},
                            [("clinical", "general", 0.02, None)]),
                     _table(None, {"general": 0.9}, []))
    rows = fraction_rows(report, "macro_f1", {"pct5": 0.03, "full": 0.05})
    assert verdict(rows[0], "clinical", "general", "macro_f1") == (
        "no test possible at 5% (every fold differs by +2.0 macro-F1)")
    assert verdict(rows[1], "clinical", "general", "macro_f1") == (
        "no paired test of clinical and general at 100%")
    lines = conclusion(rows, "macro_f1")
    assert lines[1] == ("Pre-training on clinical text could not be tested at the smallest "
                        "fraction (5%).")
    assert lines[2] == "At or below the majority baseline: general at 5%."
    assert conclusion([], "macro_f1") == ["No scores were reported: nothing to conclude."]


def test_the_printed_table_holds_every_number_it_concludes_from():
    report = _report(_table(0.05, {"clinical": 0.70, "general": 0.639, "untrained": 0.5},
                            [("clinical", "general", 0.061, 0.0004),
                             ("clinical", "untrained", 0.2, 0.001),
                             ("general", "untrained", 0.139, 0.01)]))
    rows = fraction_rows(report, "macro_f1", {"pct5": 0.043})
    lines = format_table(rows, "macro_f1", ["clinical", "general", "untrained"])
    assert lines[0].split() == ["data", "clinical", "general", "untrained", "majority",
                                "clinical", "-", "general", "p", "p", "(Holm)"]
    assert lines[1].split() == ["5%", "70.0", "[68.0,", "72.0]", "63.9", "[61.9,", "65.9]",
                                "50.0", "[48.0,", "52.0]", "4.3", "+6.1", "0.0004", "0.0008"]


def test_a_single_fraction_is_named_as_it_is():
    """A dataset without training fractions (NCBI-disease) is compared on all its data alone."""
    report = _report(_table(None, {"clinical": 0.81, "general": 0.78},
                            [("clinical", "general", 0.03, 0.02)]))
    assert conclusion(fraction_rows(report, "macro_f1"), "macro_f1") == [
        "Clinical better at 100% (+3.0 macro-F1, p = 0.020).",
        "Pre-training on clinical text helped at 100%.",
    ]
