"""Datasets built through seqio: splits, folds, sites, truncation counts and model batches."""

import json

import numpy as np
import pytest
import seqio

from ct5x.errors import UserInputError
from ct5x_tasks import folds

LENGTHS = {"inputs": 64, "targets": 16}


def _ids(name, split):
    task = seqio.get_mixture_or_task(name)
    dataset = task.get_dataset(sequence_length=None, split=split, shuffle=False)
    return [example["id"].decode() for example in dataset.as_numpy_iterator()]


def test_source_splits_and_features(data_root, vocabulary):
    assert _ids("mednli", "validation") == [f"dev:dev-{i}" for i in range(9)]
    task = seqio.get_mixture_or_task("radqa_flan")
    example = next(task.get_dataset(LENGTHS, split="test", shuffle=False).as_numpy_iterator())
    assert example["inputs"][-1] == 1 and example["targets"][-1] == 1
    assert example["inputs_pretokenized"].decode().startswith("Context: ")
    assert [a.decode() for a in example["answers"]] == ["ANSWER0x0"]


def test_fold_variants_read_folds_json(data_root, vocabulary, tmp_path, monkeypatch):
    with pytest.raises(UserInputError, match="no folds file; make it with `ct5x folds --task "
                                             "mednli"):
        _ids("mednli_fold1", "train")
    monkeypatch.setenv("CT5X_FOLDS_DIR", str(tmp_path / "folds"))
    path = folds.write_folds("mednli", str(data_root), str(tmp_path / "folds" / "mednli"))
    content = json.loads(path.read_text())
    assert _ids("mednli_fold1", "validation") == content["folds"][1]["validation"]
    assert _ids("mednli_fold1_pct1", "train") == content["folds"][1]["fractions"]["0.01"]
    assert _ids("mednli_flan_fold3", "test") == content["test"]
    assert _ids("mednli_fold3", "train") == content["folds"][3]["train"]
    mednli = data_root / "mednli" / "mli_test_v1.jsonl"
    mednli.write_text(mednli.read_text() + mednli.read_text().splitlines()[0] + "\n")
    with pytest.raises(UserInputError, match="made from other source files"):
        _ids("mednli_fold0", "test")


def test_site_variant_reads_the_site_directory(data_root, vocabulary, tmp_path, monkeypatch):
    from tests.tasks.conftest import make_stigma

    with pytest.raises(UserInputError, match="CT5X_SITE_DIR_OOD"):
        _ids("stigma_other_site_ood", "test")
    make_stigma(tmp_path / "hospital_b" / "stigma", name="site.csv", per_category=10)
    monkeypatch.setenv("CT5X_SITE_DIR_OOD", str(tmp_path / "hospital_b"))
    assert _ids("stigma_other_site_ood", "test") == ["line50", "line60"]


def test_site_folds_come_from_the_site_files(data_root, vocabulary, tmp_path, monkeypatch):
    from tests.tasks.conftest import make_stigma

    site = make_stigma(tmp_path / "hospital_b" / "stigma", name="site.csv", per_category=200)
    monkeypatch.setenv("CT5X_SITE_DIR_OOD", str(tmp_path / "hospital_b"))
    monkeypatch.setenv("CT5X_FOLDS_DIR", str(tmp_path / "folds"))
    in_domain = folds.write_folds("stigma_adamant", str(data_root), str(tmp_path / "folds" /
                                                                          "stigma_adamant"))
    with pytest.raises(UserInputError, match="stigma_adamant_site_ood/folds.json: no folds file"):
        _ids("stigma_adamant_site_ood_fold2", "train")
    target = tmp_path / "folds" / "stigma_adamant_site_ood"
    target.mkdir(parents=True)
    (target / "folds.json").write_text(in_domain.read_text())
    with pytest.raises(UserInputError, match="made from other source files"):
        _ids("stigma_adamant_site_ood_fold2", "train")
    path = folds.write_folds("stigma_adamant", str(site), str(target))
    content = json.loads(path.read_text())
    assert _ids("stigma_adamant_site_ood_fold2", "validation") == content["folds"][2]["validation"]
    assert _ids("stigma_adamant_flan_site_ood_fold2_pct25", "train") == \
        content["folds"][2]["fractions"]["0.25"]
    assert _ids("stigma_adamant_site_ood_fold0", "test") == _ids("stigma_adamant_site_ood", "test")


def test_folds_files_of_the_first_format_still_read(data_root, vocabulary, tmp_path, monkeypatch):
    """Files without "format" list Stigma rows as row<n> (n-th well-formed row) and stay valid."""
    from ct5x_tasks.records import sha256_of_files

    monkeypatch.setenv("CT5X_FOLDS_DIR", str(tmp_path))
    source = data_root / "stigma" / "annotations.csv"
    legacy = {"task": "stigma_other", "seed": 42, "test": ["row85", "row90"],
              "source_sha256": sha256_of_files([source]),
              "folds": [{"fold": k, "train": ["row81", "row82"], "validation": ["row83"],
                         "fractions": {}} for k in range(5)]}
    (tmp_path / "stigma_other").mkdir()
    (tmp_path / "stigma_other" / "folds.json").write_text(json.dumps(legacy))
    # Rows 81-90 of the data are the first ten 'other' rows, on lines 162, 164, ...
    assert _ids("stigma_other_fold1", "train") == ["line162", "line164"]
    assert _ids("stigma_other_fold1", "test") == ["line170", "line180"]


def test_anchor_switch_gives_the_study_stigma_test_inputs(data_root, vocabulary, monkeypatch):
    def first_input(split):
        task = seqio.get_mixture_or_task("stigma_compliance")
        example = next(task.get_dataset(None, split=split, shuffle=False).as_numpy_iterator())
        return example["inputs_pretokenized"].decode()

    default = first_input("test")
    assert default.startswith("compliance: Patient ")
    monkeypatch.setenv("CT5X_ANCHOR_COMPATIBLE", "1")
    assert first_input("test") == default.replace(
        "compliance: ", "compliance: Classify this sentence as negative, neutral, or positive, "
        "regarding the patient's compliance with medical advice: ", 1)
    assert first_input("train").startswith("compliance: Patient ")
    monkeypatch.setenv("CT5X_ANCHOR_COMPATIBLE", "maybe")
    with pytest.raises(UserInputError, match="CT5X_ANCHOR_COMPATIBLE is 'maybe'"):
        first_input("test")


def test_over_long_examples_are_counted_not_dropped(data_root, vocabulary, caplog):
    task = seqio.get_mixture_or_task("clip")
    with caplog.at_level("WARNING"):
        dataset = task.get_dataset({"inputs": 8, "targets": 512}, split="test", shuffle=False)
        examples = list(dataset.as_numpy_iterator())
    assert len(examples) == 24
    assert "clip: 24 examples have inputs longer than 8 tokens; they are truncated" in caplog.text
    assert "targets longer" not in caplog.text


@pytest.mark.parametrize("pack", [False, True])
def test_batches_from_the_feature_converter(data_root, vocabulary, pack):
    converter = seqio.EncDecFeatureConverter(pack=pack)
    dataset = seqio.get_dataset("hoc", {"inputs": 256, "targets": 128}, converter,
                                dataset_split="train", shuffle=False, batch_size=None)
    batches = list(dataset.batch(4).as_numpy_iterator())
    first = batches[0]
    assert first["encoder_input_tokens"].shape == (4, 256)
    assert first["decoder_target_tokens"].shape == (4, 128)
    targets, inputs = first["decoder_target_tokens"], first["decoder_input_tokens"]
    if not pack:
        assert sum(len(b["encoder_input_tokens"]) for b in batches) == 20
        np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
        assert (inputs[:, 0] == 0).all()
        for row in first["encoder_input_tokens"]:
            assert row[np.flatnonzero(row)[-1]] == 1  # EOS ends every input
        return
    segments = first["decoder_segment_ids"]
    assert segments.max() > 1  # several examples share a row
    for row in range(4):
        for segment in set(segments[row]) - {0}:
            positions = np.flatnonzero(segments[row] == segment)
            assert inputs[row, positions[0]] == 0
            np.testing.assert_array_equal(inputs[row, positions[1:]],
                                          targets[row, positions[:-1]])
            assert targets[row, positions[-1]] == 1
        assert set(first["encoder_segment_ids"][row]) - {0} == set(segments[row]) - {0}


def test_mixture_batches(data_root, vocabulary, tmp_path, monkeypatch):
    monkeypatch.setenv("CT5X_FOLDS_DIR", str(tmp_path))
    for base in ("stigma_adamant", "stigma_compliance", "stigma_other"):
        folds.write_folds(base, str(data_root), str(tmp_path / base))
    mixture = seqio.get_mixture_or_task("paper_low_resource_fold1_pct1_flan")
    assert len(mixture.tasks) == 4
    with pytest.raises(UserInputError, match="mednli"):
        seqio.get_dataset(mixture, LENGTHS, seqio.EncDecFeatureConverter(pack=True),
                          dataset_split="train")
