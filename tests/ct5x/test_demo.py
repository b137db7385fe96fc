"""The demo, shortened (2 folds, a few steps) but real: pre-training lowers the span-corruption
loss, the fine-tuned models score far above the majority-class baseline on the test split, and
the sweep under it is interrupted mid-run and resumed."""

import json
import pathlib

import pytest
import sentencepiece

import ct5x.training_loop
from ct5x.demo import DemoSettings, Workspace, main, make_data, train_vocabulary

SHORT = [
    "demo.DemoSettings.num_notes = 120", "demo.DemoSettings.num_folds = 2",
    "demo.DemoSettings.pretrain_steps = 12",
    "demo.DemoSettings.finetune_steps = 60", "demo.DemoSettings.eval_period = 30",
    "demo.DemoSettings.eval_examples = 16",
]


def _argv(workdir):
    argv = ["--workdir", str(workdir)]
    for binding in SHORT:
        argv += ["--gin", binding]
    return argv


def _losses(path):
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [record["loss"] for record in records if "loss" in record]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Runs the demo, interrupting it in the last fine-tuning run, then runs it again."""
    workdir = tmp_path_factory.mktemp("demo") / "demo_output"
    evaluate = ct5x.training_loop._evaluate

    def interrupt_last_run(run, state, step, *args):
        result = evaluate(run, state, step, *args)
        if "general/synthetic_followup_fold1" in str(run.directory.path) and step == 30:
            raise KeyboardInterrupt
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ct5x.training_loop, "_evaluate", interrupt_last_run)
        with pytest.raises(KeyboardInterrupt):
            main(_argv(workdir))
    runs = workdir / "runs" / "demo"
    finished = (runs / "clinical" / "synthetic_followup_fold0" / "lr0.003" / "run.json")
    before = finished.read_text()
    assert main(_argv(workdir)) == 0
    return workdir, before


def test_pretraining_lowered_the_loss(demo):
    workdir, _ = demo
    losses = _losses(workdir / "pretrain" / "metrics.jsonl")  # one per step here
    assert len(losses) == 12 and sum(losses[-3:]) < 0.9 * sum(losses[:3])


def test_models_learn_far_above_the_majority_baseline(demo):
    workdir, _ = demo
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["metric"] == "macro_f1"
    baseline = summary["majority_baseline"]["macro_f1"]
    for name in ("clinical", "general"):
        model = summary["models"][name]
        assert len(model["folds"]) == 2
        assert model["mean"] > baseline + 0.25, (name, model["mean"], baseline)
    assert summary["paired_t_test"]["df"] == 1
    report = pathlib.Path(summary["report"])
    assert "clinical" in report.read_text() and "general" in report.read_text()
    assert list((report.parent / "plots").glob("*.png"))
    for name in ("clinical", "general"):
        fine_tune = workdir / "runs" / "demo" / name / "synthetic_followup_fold0" / "lr0.003"
        losses = _losses(fine_tune / "metrics.jsonl")
        assert losses[-1] < losses[0]


def test_the_interrupted_run_resumed_and_finished_runs_were_kept(demo):
    workdir, before = demo
    runs = workdir / "runs" / "demo"
    assert (runs / "clinical" / "synthetic_followup_fold0" / "lr0.003" / "run.json").read_text() \
        == before
    resumed = runs / "general" / "synthetic_followup_fold1" / "lr0.003"
    record = json.loads((resumed / "run.json").read_text())
    assert record["finished"] and record["latest_step"] == 60
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text()
             .splitlines() if "loss" in json.loads(line)]
    assert steps == sorted(set(steps)) and steps[-1] == 60  # no step trained twice
    # The report reads each chosen run's scores where they are (no copies) and misses none.
    assert not (workdir / "runs" / "demo" / "chosen").exists()
    report = json.loads((workdir / "runs" / "demo" / "report" / "report.json").read_text())
    assert report["problems"] == []
    assert "num_folds = 2" in (workdir / "demo_config.gin").read_text()


def test_real_dataset_path_writes_pretraining_text_and_vocabulary(tmp_path):
    """`--data-dir DIR --task ncbi_disease`, up to training, on files in the BLURB TSV form."""
    folder = tmp_path / "NCBI_disease"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        rows = [f"Mutations cause familial polyposis in {split} family {i} .\tMutations cause "
                f"disease* familial polyposis *disease in {split} family {i} ." for i in range(30)]
        (folder / f"{split}_blurb.tsv").write_text("\n".join(rows) + "\n")
    settings = DemoSettings(task="ncbi_disease", data_dir=str(tmp_path), vocabulary_size=60)
    space = Workspace(tmp_path / "out")
    data_dir, texts = make_data(settings, space)
    assert data_dir == tmp_path
    lines = (texts / "train_text.jsonl").read_text().splitlines()
    written = [json.loads(line)["text"] for line in lines]
    assert len(written) == 30
    assert written[0] == "ncbi_ner: Mutations cause familial polyposis in train family 0 ."
    vocabulary = train_vocabulary(settings, texts, space.vocabulary)
    processor = sentencepiece.SentencePieceProcessor(model_file=vocabulary)
    assert processor.piece_to_id("disease*") > 2 and processor.pad_id() == 0


def test_data_dir_needs_a_task(tmp_path, capsys):
    assert main(["--workdir", str(tmp_path), "--data-dir", str(tmp_path)]) == 2
    assert "--task" in capsys.readouterr().err
