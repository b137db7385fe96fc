"""The demo, shortened (2 folds, small corpora, a few steps) but real: both pre-trainings lower
their loss, every stage prints the time left, the table holds each model, the majority baseline
and the paired test per fraction, the conclusion is the one those numbers give, the curve is
drawn, nothing is truncated, and the sweep under it is interrupted mid-run and resumed. Then
`--data-dir DIR --task ncbi_disease` end to end on a slice of the public NCBI-disease files."""

import contextlib
import io
import json
import logging
import pathlib
import re

import numpy as np
import pytest
from data_paths import real_data
from sklearn.metrics import f1_score

import ct5x.training_loop
from ct5x.demo import DemoSettings, Workspace, experiment_bindings, main
from ct5x.demo_conclusion import verdict
from ct5x.demo_stages import Stages, run_count
from ct5x.gin_utils import macro, parse_gin
from ct5x.sweep.grid import expand
from ct5x_tasks.labels import CLIP_LABELS

SHORT = [
    "demo.DemoSettings.num_notes = 100", "demo.DemoSettings.pretrain_notes = 40",
    "demo.DemoSettings.num_folds = 2", "demo.DemoSettings.vocabulary_size = 400",
    "demo.DemoSettings.fractions = (0.25,)", "demo.DemoSettings.pretrain_steps = 12",
    "demo.DemoSettings.pretrain_warmup_steps = 12", "demo.DemoSettings.pretrain_batch_size = 16",
    "demo.DemoSettings.finetune_steps = 24", "demo.DemoSettings.eval_period = 12",
    "demo.DemoSettings.eval_examples = 16", "demo.DemoSettings.batch_size = 16",
    "demo.DemoSettings.low_resource_batch_size = 16",
]


def _argv(workdir, bindings=SHORT):
    argv = ["--workdir", str(workdir)]
    for binding in bindings:
        argv += [f"--gin_bindings={binding}"]
    return argv


def _losses(path):
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [record["loss"] for record in records if "loss" in record]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Runs the demo, interrupting it in the last fine-tuning run, then runs it again; returns
    the workdir, a finished run's run.json from before the interruption, and all the output
    (printed and logged)."""
    workdir = tmp_path_factory.mktemp("demo") / "demo_output"
    evaluate = ct5x.training_loop._evaluate

    def interrupt_last_run(run, state, step, *args):
        result = evaluate(run, state, step, *args)
        if "general/synthetic_followup_fold1/" in f"{run.directory.path}/" and step == 12:
            raise KeyboardInterrupt
        return result

    stream, handler = io.StringIO(), logging.StreamHandler()
    handler.setStream(stream)
    logging.getLogger().addHandler(handler)
    try:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(ct5x.training_loop, "_evaluate", interrupt_last_run)
                with pytest.raises(KeyboardInterrupt):
                    main(_argv(workdir))
            finished = workdir / "runs" / "demo" / "clinical" / "synthetic_followup_fold0"
            before = (finished / "lr0.01" / "run.json").read_text()
            assert main(_argv(workdir)) == 0
    finally:
        logging.getLogger().removeHandler(handler)
    return workdir, before, stream.getvalue()


def test_pretraining_lowered_both_losses(demo):
    workdir, *_ = demo
    for name in ("clinical", "general"):
        losses = _losses(workdir / "pretrain" / name / "metrics.jsonl")
        assert len(losses) >= 4 and sum(losses[-2:]) < 0.9 * sum(losses[:2]), (name, losses)


def _majority_macro_f1(workdir, fold, fraction_key):
    """The majority baseline computed here with scikit-learn, independently of the demo."""
    folds = json.loads((workdir / "folds" / "synthetic_followup" / "folds.json").read_text())
    rows = {}
    for split in ("train", "dev", "test"):
        for line in (workdir / "data" / "synthetic_followup" / f"{split}.jsonl").open():
            row = json.loads(line)
            rows[f"{split}:{row['id']}"] = row["labels"]
    part = folds["folds"][fold]
    ids = part["train"] if fraction_key is None else part["fractions"][fraction_key]
    labels = [rows[i] for i in ids]
    majority = max(labels, key=labels.count)  # ties: the first seen, as Counter.most_common
    gold = [rows[i] for i in folds["test"]]

    def binary(values):
        sets = [set(value.split(", ")) - {""} for value in values]
        return np.array([[label in labels for label in CLIP_LABELS] for labels in sets])

    return f1_score(binary(gold), binary([majority] * len(gold)), average="macro",
                    zero_division=0)


def test_summary_table_baseline_and_conclusion_follow_the_report(demo):
    workdir, *_ = demo
    summary = json.loads((workdir / "summary.json").read_text())
    report = json.loads((pathlib.Path(summary["report"]).parent / "report.json").read_text())
    assert summary["metric"] == "macro_f1"
    assert [row["label"] for row in summary["fractions"]] == ["25%", "100%"]
    for row, key in zip(summary["fractions"], ("0.25", None)):
        table = next(t for t in report["tables"] if t["fraction"] == row["fraction"])
        for model in ("clinical", "general"):
            cell = next(r for r in table["rows"] if r["model"] == model)["metrics"]["macro_f1"]
            assert row["scores"][model]["mean"] == cell["mean"] and len(cell["scores"]) == 2
        expected = np.mean([_majority_macro_f1(workdir, fold, key) for fold in (0, 1)])
        assert row["baseline"] == pytest.approx(expected)
        test = next(t for t in table["comparisons"]["macro_f1"]
                    if {t["a"], t["b"]} == {"clinical (t5)", "general (t5)"})
        sign = 1 if test["a"] == "clinical (t5)" else -1
        assert f"{100 * sign * test['mean_difference']:+.1f}" in row_verdict(summary, row)
    assert summary["conclusion"][0].lower().startswith(row_verdict(summary,
                                                                   summary["fractions"][0]))
    for suffix in ("png", "svg"):
        assert (workdir / f"low_resource_curve.{suffix}").stat().st_size > 0
    choices = [json.loads(line) for line in
               (workdir / "runs" / "demo" / "learning_rates.jsonl").read_text().splitlines()]
    assert len(choices) == 4 and all(choice["learning_rate"] == 0.01 for choice in choices)


def row_verdict(summary, row):
    """The verdict the summariser gives for one fraction, from the summary's own numbers."""
    from ct5x.demo_conclusion import FractionRow, ModelScore, PairTest

    fraction = FractionRow(row["setting"], row["fraction"],
                           {m: ModelScore(**s) for m, s in row["scores"].items()},
                           [PairTest(**t) for t in row["tests"]], row["baseline"])
    return verdict(fraction, "clinical", "general", summary["metric"]).lower()


def test_output_has_stage_lines_with_time_left_and_no_truncation(demo):
    *_, text = demo
    stages = re.findall(r"== (\d)/6 .*\[(\d+m\d\ds) so far, about (\d+m\d\ds) left\]", text)
    assert [number for number, *_ in stages[-6:]] == list("123456")
    assert "truncated" not in text
    assert "Conclusion (computed from the table" in text


def test_the_interrupted_run_resumed_and_finished_runs_were_kept(demo):
    workdir, before, _ = demo
    runs = workdir / "runs" / "demo"
    assert (runs / "clinical" / "synthetic_followup_fold0" / "lr0.01" / "run.json").read_text() \
        == before
    resumed = runs / "general" / "synthetic_followup_fold1" / "lr0.01"
    record = json.loads((resumed / "run.json").read_text())
    assert record["finished"] and record["latest_step"] == 24
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text()
             .splitlines() if "loss" in json.loads(line)]
    assert steps == sorted(set(steps)) and steps[-1] == 24  # no step trained twice
    # The report reads each chosen run's scores where they are (no copies) and misses none.
    assert not (workdir / "runs" / "demo" / "chosen").exists()
    report = json.loads((workdir / "runs" / "demo" / "report" / "report.json").read_text())
    assert report["problems"] == []
    assert "num_folds = 2" in (workdir / "demo_config.gin").read_text()


def test_stage_lines_scale_the_estimate_by_the_measured_pace(monkeypatch, capsys):
    clock = iter([0.0, 0.0, 120.0, 180.0])
    monkeypatch.setattr("ct5x.demo_stages.time.monotonic", lambda: next(clock))
    stages = Stages([60.0, 60.0])
    stages.next("first")
    stages.next("second")  # the first stage took 120 s, twice its estimate of 60 s
    assert stages.finish() == 180.0
    lines = capsys.readouterr().out.splitlines()
    assert "== 1/2 first  [0m00s so far, about 2m00s left]" in lines
    assert "== 2/2 second  [2m00s so far, about 1m30s left]" in lines  # (120+60)/(60+60) x 60


def test_real_dataset_end_to_end_on_ncbi_disease(tmp_path, capsys):
    """`ct5x demo --data-dir DIR --task ncbi_disease` on the shortest lines of the public files
    (one fold, a few steps: the path, not the numbers)."""
    source = real_data("NCBI_disease")
    data = tmp_path / "NCBI_disease"
    data.mkdir()
    for split, count in (("train", 60), ("dev", 20), ("test", 20)):
        lines = (source / f"{split}_blurb.tsv").read_text(encoding="utf-8").splitlines()
        shortest = sorted(lines, key=len)[:count]
        (data / f"{split}_blurb.tsv").write_text("\n".join(shortest) + "\n", encoding="utf-8")
    bindings = [*SHORT, "demo.DemoSettings.num_folds = 1", "demo.DemoSettings.pretrain_steps = 4",
                "demo.DemoSettings.finetune_steps = 8", "demo.DemoSettings.eval_period = 8",
                "demo.DemoSettings.vocabulary_size = 300"]
    workdir = tmp_path / "out"
    assert main([*_argv(workdir, bindings), "--data-dir", str(data), "--task", "ncbi_disease"]) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["metric"] == "f1" and [row["label"] for row in summary["fractions"]] == ["100%"]
    assert summary["conclusion"][:2] == [
        "No paired test of clinical and general at 100%.",
        "Pre-training on clinical text could not be tested at 100%.",
    ]
    texts = (workdir / "pretrain_text" / "task" / "texts.jsonl").read_text().splitlines()
    assert len(texts) == 60 and json.loads(texts[0])["text"].startswith("ncbi_ner: ")
    assert "truncated" not in capsys.readouterr().err


def test_data_dir_needs_a_task(tmp_path, capsys):
    assert main(["--workdir", str(tmp_path), "--data-dir", str(tmp_path)]) == 2
    assert "--task" in capsys.readouterr().err


def test_the_untrained_row_is_the_demo_network_from_scratch(tmp_path):
    """`models = (..., 'untrained')` adds the network without pre-training to every cell."""
    settings = DemoSettings(models=("clinical", "general", "untrained"))
    checkpoints = {"clinical": tmp_path / "c", "general": tmp_path / "g"}
    parse_gin(["demo/experiment.gin"], experiment_bindings(
        settings, Workspace(tmp_path), tmp_path, "spiece.model", 1152, checkpoints, (0.05, 0.25),
        (32, 24)))
    runs = expand(macro("EXPERIMENT"))
    assert len(runs) == run_count(settings, (0.05, 0.25)) == 45
    untrained = [run for run in runs if run.model == "untrained"]
    assert len(untrained) == 15
    assert untrained[0].gin_files == ("demo/model.gin", "runs/finetune.gin")
    assert {"VOCAB_SIZE=1152", "INITIAL_CHECKPOINT_PATH=None"} <= set(untrained[0].bindings)
