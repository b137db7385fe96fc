"""The demo end to end, shortened: every stage runs on the real NCBI files and leaves its output."""

import json
import math

from data_paths import SHARED_DATA

from ct5x.demo import main


def test_demo_runs_every_stage(tmp_path):
    workdir = tmp_path / "demo"
    bindings = [
        f"DATA_DIR = '{SHARED_DATA}'",
        "demo.DemoSettings.train_steps = 4",
        "demo.DemoSettings.eval_examples = 4",
        "demo.DemoSettings.max_decode_length = 8",
        "demo.DemoSettings.vocabulary_size = 500",
    ]
    argv = ["--workdir", str(workdir)]
    for binding in bindings:
        argv += ["--gin", binding]
    assert main(argv) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["task"] == "ncbi_disease"
    assert math.isfinite(summary["first_loss"]) and math.isfinite(summary["last_loss"])
    assert 0.0 <= summary["f1"] <= 1.0
    predictions = (workdir / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 4 and all("prediction" in json.loads(p) for p in predictions)
    assert (workdir / "hf" / "model.safetensors").is_file()
    assert (workdir / "folds" / "ncbi_disease" / "folds.json").is_file()
    assert "train_steps = 4" in (workdir / "config.gin").read_text()


def test_demo_names_a_missing_data_directory(tmp_path, capsys):
    code = main(["--workdir", str(tmp_path / "demo"), "--gin", f"DATA_DIR = '{tmp_path}'"])
    assert code == 2
    assert "train_blurb.tsv" in capsys.readouterr().err
