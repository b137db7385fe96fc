"""`ct5x evaluate` on tiny real checkpoints (transformers-built, converted to T5X) over NCBI-format
data written here: files written, metrics equal to `ct5x metrics`, bad runs named, resumable."""

import dataclasses
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

import ct5x_tasks
from ct5x.checkpoints import load_checkpoint, save_t5x
from ct5x.cli import main
from ct5x.evaluation.splits import setting_name
from ct5x.inference import predict_file
from ct5x.models import DecodingOptions, EncoderDecoderModel
from ct5x.vocabulary import load_vocabulary
from tests.conftest import synthetic_sentences
from tests.tasks.conftest import make_radqa, make_stigma

TEST_LINES = 6


def write_ncbi(folder, counts=(10, 5, TEST_LINES)):
    """{train,dev,test}_blurb.tsv: input TAB target, the second word marked as a disease."""
    folder.mkdir(parents=True)
    sentences = synthetic_sentences(sum(counts), seed=21)
    start = 0
    for split, count in zip(("train", "dev", "test"), counts):
        lines = []
        for sentence in sentences[start:start + count]:
            words = sentence.split()
            marked = [*words[:1], "disease*", words[1], "*disease", *words[2:]]
            lines.append(" ".join(words) + "\t" + " ".join(marked) + "\n")
        (folder / f"{split}_blurb.tsv").write_text("".join(lines))
        start += count


def silent(checkpoint):
    """The checkpoint with zero output logits: every step ties, so it decodes only padding and
    its every answer is empty (right for exactly the unanswerable RadQA questions)."""
    params = {**checkpoint.params, "decoder": dict(checkpoint.params["decoder"])}
    kernel = params["decoder"]["logits_dense"]["kernel"]
    params["decoder"]["logits_dense"] = {"kernel": np.zeros_like(kernel)}
    return dataclasses.replace(checkpoint, params=params)


def write_run(directory, hf_dir, task, step, data_settings, finished=True, best_step="same",
              edit=lambda checkpoint: checkpoint):
    save_t5x(edit(load_checkpoint(hf_dir)), directory, step=step)
    variant = ct5x_tasks.task_info(task).variant
    # A run.json as ct5x 0.1 wrote it (schema 1, before the record was typed): still read.
    run = {
        "model": "T5-Den", "task": task, "base_task": variant.base,
        "variant": {"flan": variant.flan, "deid": variant.deid, "site": variant.site,
                    "fold": variant.fold, "fraction": variant.fraction},
        "initial_checkpoint": str(hf_dir), "learning_rate": 1e-4, "seed": 0,
        "train_examples": 12, "train_steps": step, "latest_step": step,
        "best_step": step if best_step == "same" else best_step,
        "best_metric": {"name": "f1", "value": 0.0}, "finished": finished,
        "ct5x_version": "0.1.0", "task_feature_lengths": {"inputs": 512, "targets": 512},
        "data_settings": data_settings, "vocabulary": str(directory / "spiece.model"),
    }
    (directory / "run.json").write_text(json.dumps(run))


@pytest.fixture(scope="module")
def grid(tmp_path_factory, make_hf_t5):
    root = tmp_path_factory.mktemp("evaluate")
    write_ncbi(root / "data" / "NCBI_disease")
    make_radqa(root / "data" / "radqa")
    make_stigma(root / "data" / "stigma")
    make_stigma(root / "hospital_b" / "stigma", name="site.csv", per_category=15)
    for task in ("ncbi_disease", "radqa", "stigma_adamant"):
        ct5x_tasks.write_folds(task, str(root / "data"), str(root / "folds" / task))
    settings = {"data_dir": str(root / "data"), "dataset_dirs": {},
                "site_dirs": {"ood": str(root / "hospital_b")}, "folds_dir": str(root / "folds")}
    runs = root / "runs"
    write_run(runs / "fold0", make_hf_t5(seed=1), "ncbi_disease_fold0", 7, settings)
    write_run(runs / "fold1", make_hf_t5(seed=2), "ncbi_disease_fold1", 9, settings)
    write_run(runs / "unfinished", make_hf_t5(seed=3), "ncbi_disease_fold2", 3, settings,
              finished=False)
    write_run(runs / "lost", make_hf_t5(seed=4), "ncbi_disease_fold3", 5, settings, best_step=4)
    write_run(runs / "radqa", make_hf_t5(seed=1), "radqa_fold2", 11, settings, edit=silent)
    write_run(root / "in_domain" / "stigma", make_hf_t5(seed=5), "stigma_adamant_fold0", 2,
              settings)
    (runs / "broken").mkdir()
    (runs / "broken" / "run.json").write_text('{"model": "T5-Den",')
    return root


@pytest.fixture(scope="module")
def first_pass(grid):
    """`ct5x evaluate` over the grid once; (exit code, stderr lines)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["evaluate", "--runs", str(grid / "runs"), "--batch-size", "4",
                     "--with-inputs", "--no-progress"])
    return code, err.getvalue().splitlines()


def test_bad_runs_are_named_and_the_others_scored(grid, first_pass):
    code, errors = first_pass
    runs = grid / "runs"
    assert code == 2
    errors = [line for line in errors if line.startswith("ct5x evaluate: error:")]
    assert len(errors) == 2
    assert str(runs / "broken") in errors[0] and "not valid JSON" in errors[0]
    assert str(runs / "lost" / "checkpoint_4") in errors[1]
    for name in ("fold0", "fold1", "radqa"):
        assert (runs / name / "metrics.json").is_file()
    for name in ("unfinished", "lost", "broken"):
        assert not (runs / name / "metrics.json").exists()


def test_metrics_equal_ct5x_metrics_on_the_predictions(grid, first_pass, capsys):
    digests = set()
    for fold in (0, 1):
        run = grid / "runs" / f"fold{fold}"
        record = json.loads((run / "metrics.json").read_text())
        capsys.readouterr()
        assert main(["metrics", "--task", "ncbi_disease",
                     "--predictions", str(run / "predictions.jsonl")]) == 0
        reference = json.loads(capsys.readouterr().out)
        assert reference["examples"] == record["n_examples"] == TEST_LINES
        assert record["metrics"] == {key: reference[key] for key in record["metrics"]}
        assert set(record["metrics"]) >= {"f1", "precision", "recall"}
        assert {key: record[key] for key in ("model", "task", "base_task", "setting", "fold",
                                             "fraction", "site", "checkpoint_step")} == {
            "model": "T5-Den", "task": f"ncbi_disease_fold{fold}", "base_task": "ncbi_disease",
            "setting": "full", "fold": fold, "fraction": None, "site": None,
            "checkpoint_step": 7 if fold == 0 else 9}
        assert record["selection_metric"] == "f1" and record["anchor_compatible"] is False
        digests.add(record["test_sha256"])
    lines = [json.loads(line) for line in
             (grid / "runs" / "fold0" / "predictions.jsonl").read_text().splitlines()]
    pairs = sorted((line["id"], line["target"]) for line in lines)
    expected = hashlib.sha256("".join(json.dumps(list(p)) + "\n" for p in pairs).encode())
    expected = expected.hexdigest()
    assert digests == {expected}
    assert [line["id"] for line in lines] == [f"test:{i}" for i in range(1, TEST_LINES + 1)]


def test_radqa_answers_are_the_gold_targets_and_empty_answers_score_half(grid, first_pass,
                                                                         capsys):
    run = grid / "runs" / "radqa"
    record = json.loads((run / "metrics.json").read_text())
    lines = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    # Two test reports, two sections each: one answerable and one impossible question per section.
    assert record["n_examples"] == len(lines) == 8
    assert all(line["prediction"] == "" for line in lines)
    assert sorted(len(line["target"]) for line in lines) == [0] * 4 + [1] * 4
    for line in lines:
        report, section, *impossible = line["id"].removeprefix("test:q").split("-")
        assert line["target"] == ([] if impossible else [f"ANSWER{report}x{section}"])
    capsys.readouterr()
    assert main(["metrics", "--task", "radqa", "--predictions",
                 str(run / "predictions.jsonl")]) == 0
    reference = json.loads(capsys.readouterr().out)
    assert record["metrics"] == {key: reference[key] for key in record["metrics"]}
    assert record["metrics"]["f1"] == record["metrics"]["exact_match"] == 0.5
    assert record["selection_metric"] == "f1" and record["setting"] == "full"


def test_predictions_match_ct5x_predict_on_the_same_inputs(grid, first_pass, tmp_path):
    run = grid / "runs" / "fold1"
    lines = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert all(line["inputs"].startswith("ncbi_ner: ") for line in lines)
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("".join(json.dumps({"inputs": line["inputs"]}) + "\n" for line in lines))
    checkpoint = load_checkpoint(run / "checkpoint_9")
    model = EncoderDecoderModel(checkpoint.config)
    options = DecodingOptions(num_beams=1, max_decode_length=512)
    outputs = predict_file(model, checkpoint.params, load_vocabulary(checkpoint), str(inputs),
                           str(tmp_path / "out.jsonl"), options, batch_size=8)
    assert [o["prediction"] for o in outputs] == [line["prediction"] for line in lines]


def test_a_short_last_batch_is_cut_to_the_rows_it_needs(grid, first_pass, tmp_path,
                                                         monkeypatch):
    """Six test examples at --batch-size 16 decode as one batch of 8 rows, not 16, and predict
    what batches of 4 did."""
    from ct5x.evaluation import scoring

    run = tmp_path / "fold1"
    shutil.copytree(grid / "runs" / "fold1", run)
    before = (run / "predictions.jsonl").read_text().splitlines()
    rows, bucket_rows = [], scoring.bucket_rows

    def recording(*args):
        batch = bucket_rows(*args)
        rows.append(batch.shape[0])
        return batch

    monkeypatch.setattr(scoring, "bucket_rows", recording)
    assert main(["evaluate", "--runs", str(run), "--batch-size", "16", "--force",
                 "--no-progress"]) == 0
    assert rows == [8]
    after = (run / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["prediction"] for line in after] == [
        json.loads(line)["prediction"] for line in before]


def test_scored_runs_are_skipped_unless_forced(grid, first_pass, capsys):
    metrics = grid / "runs" / "fold0" / "metrics.json"
    before = metrics.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["evaluate", "--runs", str(grid / "runs" / "fold0"), "--no-progress"]) == 0
    assert "0 scored, 1 skipped, 0 failed" in capsys.readouterr().out
    assert metrics.stat().st_mtime_ns == before
    predictions = (grid / "runs" / "fold0" / "predictions.jsonl").read_text()
    assert main(["evaluate", "--runs", str(grid / "runs" / "fold0"), "--force",
                 "--anchor-compatible", "--no-progress"]) == 0
    assert "1 scored" in capsys.readouterr().out
    record = json.loads(metrics.read_text())
    assert record["anchor_compatible"] is True
    assert main(["metrics", "--task", "ncbi_disease", "--anchor-compatible", "--predictions",
                 str(grid / "runs" / "fold0" / "predictions.jsonl")]) == 0
    reference = json.loads(capsys.readouterr().out)
    assert record["metrics"] == {key: reference[key] for key in record["metrics"]}
    rescored = (grid / "runs" / "fold0" / "predictions.jsonl").read_text()
    assert [json.loads(line)["prediction"] for line in rescored.splitlines()] == [
        json.loads(line)["prediction"] for line in predictions.splitlines()]
    assert "inputs" not in rescored and os.listdir(grid / "runs" / "fold0").count(
        "metrics.json") == 1


def test_setting_names():
    assert setting_name(ct5x_tasks.Variant("mednli", fold=0)) == "full"
    assert setting_name(ct5x_tasks.Variant("mednli", fold=0, fraction=0.01)) == "pct1"
    assert setting_name(ct5x_tasks.Variant("stigma_other", site="ood")) == "site_ood"
    assert setting_name(
        ct5x_tasks.Variant("stigma_other", site="ood", fold=1, fraction=0.25)) == "pct25_site_ood"
    assert setting_name(ct5x_tasks.Variant("mednli", fold=0, fraction=0.005)) == "pct0p5"


def test_moved_run_validation_split_with_progress(grid, first_pass, tmp_path, capsys):
    import shutil

    from ct5x.evaluation import EvaluationSettings, evaluate_runs

    moved = tmp_path / "moved"
    shutil.copytree(grid / "runs" / "fold1", moved)
    run = json.loads((moved / "run.json").read_text())
    run["data_settings"]["data_dir"] = str(tmp_path / "gone")
    # The vocabulary is no longer beside the checkpoint: run.json's path is used.
    (moved / "spiece.model").unlink()
    run["vocabulary"] = str(grid / "runs" / "fold1" / "spiece.model")
    (moved / "run.json").write_text(json.dumps(run))
    settings = EvaluationSettings(split="validation", batch_size=2)
    summary = evaluate_runs(tmp_path, settings, show_progress=False)
    assert summary.failed and str(tmp_path / "gone") in summary.failed[0][1]
    settings = dataclasses.replace(settings, data_dir=str(grid / "data"))
    summary = evaluate_runs(tmp_path, settings)
    assert summary.scored == [moved] and not summary.failed
    assert "runs" in capsys.readouterr().err
    record = json.loads((moved / "metrics_validation.json").read_text())
    folds = json.loads((grid / "folds" / "ncbi_disease" / "folds.json").read_text())
    validation = folds["folds"][1]["validation"]
    lines = (moved / "predictions_validation.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == validation
    assert record["split"] == "validation" and record["n_examples"] == len(validation)
    # The test split's files of the copied run are untouched.
    assert (moved / "metrics.json").read_text() == (
        grid / "runs" / "fold1" / "metrics.json").read_text()


def test_a_users_task_is_scored_by_its_registered_metrics():
    from ct5x.evaluation.scoring import score
    from ct5x_tasks.metrics import compute_metrics

    ct5x_tasks.register_custom_task(
        "evaluation_test_notes", ct5x_tasks.CustomTaskSettings(score_as="mednli"))
    targets = ["entailment", "neutral", "contradiction", "neutral"]
    predictions = ["entailment", "contradiction", "contradiction", "maybe"]
    scores = score("evaluation_test_notes_fold0", None, targets, predictions, False)
    assert scores == compute_metrics("mednli", targets, predictions)
    assert score("any", "mednli", targets, predictions, False) == scores
    assert scores["accuracy"] == 0.5 and scores["invalid_predictions"] == 1.0


def test_in_domain_runs_scored_at_another_site(grid, capsys):
    run = grid / "in_domain" / "stigma"
    capsys.readouterr()
    assert main(["evaluate", "--runs", str(grid / "in_domain"), "--test-site", "ood",
                 "--no-progress"]) == 0
    assert not (run / "metrics.json").exists()
    record = json.loads((run / "metrics_site_ood.json").read_text())
    assert {key: record[key] for key in ("task", "test_task", "setting", "fold", "site")} == {
        "task": "stigma_adamant_fold0", "test_task": "stigma_adamant_site_ood",
        "setting": "site_ood", "fold": 0, "site": "ood"}
    lines = (run / "predictions_site_ood.jsonl").read_text().splitlines()
    assert record["n_examples"] == len(lines) == 3  # the site file's adamant test rows
    assert record["decoding"]["num_beams"] == 3 and record["decoding"]["max_decode_length"] == 20
    capsys.readouterr()
    assert main(["evaluate", "--runs", str(grid / "runs" / "fold0"), "--test-site", "ood",
                 "--no-progress"]) == 2
    assert "unknown task 'ncbi_disease_site_ood'" in capsys.readouterr().err


def test_unfinished_run_is_skipped_with_a_warning(grid, caplog):
    from ct5x.evaluation import evaluate_runs

    summary = evaluate_runs(grid / "runs" / "unfinished", show_progress=False)
    assert summary.skipped == [(grid / "runs" / "unfinished", "unfinished")]
    assert "training has not finished; skipped" in caplog.text


def test_runs_decode_at_their_eval_batch_size_unless_told():
    """`ct5x evaluate` without --batch-size decodes each run at the EVAL_BATCH_SIZE it was
    validated with (run.json), or 8 for a run.json without it."""
    from run_records import run_record

    from ct5x.evaluation.scoring import DEFAULT_BATCH_SIZE, run_batch_size

    assert run_batch_size(run_record(eval_batch_size=16)) == 16
    assert run_batch_size(run_record(eval_batch_size=None)) == DEFAULT_BATCH_SIZE == 8


def test_runs_are_scored_at_their_feature_lengths_unless_told(grid, first_pass, tmp_path):
    """Inputs are truncated and decoding capped at the run's TASK_FEATURE_LENGTHS (run.json), or
    at --max-input-length / --max-decode-length; predictions come back in the split's order."""
    from run_records import run_record

    from ct5x.evaluation.scoring import EvaluationSettings, run_lengths

    record = run_record(task_feature_lengths={"inputs": 128, "targets": 64})
    assert run_lengths(record, EvaluationSettings()) == {"inputs": 128, "targets": 64}
    assert run_lengths(record, EvaluationSettings(max_decode_length=9)) == {
        "inputs": 128, "targets": 9}
    run = tmp_path / "fold1"
    shutil.copytree(grid / "runs" / "fold1", run)
    assert main(["evaluate", "--runs", str(run), "--force", "--max-input-length", "6",
                 "--max-decode-length", "3", "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["max_input_length"] == 6 and metrics["decoding"]["max_decode_length"] == 3
    before = (grid / "runs" / "fold1" / "predictions.jsonl").read_text().splitlines()
    after = (run / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in after] == [json.loads(line)["id"] for line in before]
