"""The real NCBI-disease and BC5CDR-disease files parse completely, with their known counts;
prompts as the study builds them."""

import pytest
from data_paths import real_data

from ct5x.errors import UserInputError
from ct5x_tasks import ner

# (lines, `disease*` openers) per split of the distributed files.
EXPECTED = {
    "NCBI_disease": {"train": (5424, 5134), "dev": (923, 787), "test": (940, 960)},
    "BC5CDR_disease": {"train": (4560, 4182), "dev": (4581, 4246), "test": (4797, 4424)},
}


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_every_line_parses_with_spec_counts(folder):
    records = ner.load(real_data(folder))
    for split, (lines, openers) in EXPECTED[folder].items():
        chosen = [r for r in records if r.split == split]
        assert len(chosen) == lines
        assert sum(r.fields["target"].split().count(ner.OPEN_MARK) for r in chosen) == openers
    assert len({r.id for r in records}) == len(records)


def test_lone_asterisk_is_text_not_a_marker():
    records = ner.load(real_data("NCBI_disease"))
    lone = [r for r in records if "CYP2D6 * 4" in r.fields["sentence"]]
    assert len(lone) == 2
    assert all(ner.strip_markers(r.fields["target"]) == r.fields["sentence"] for r in lone)


@pytest.mark.parametrize("base, prefix", [("ncbi_disease", "ncbi_ner: "),
                                          ("bc5cdr_disease", "bc5cdr_disease_ner: ")])
def test_prompts_and_targets_as_the_study_builds_them(tmp_path, base, prefix):
    from ct5x_tasks.family import Formatting
    from ct5x_tasks.windows import TokenCounter

    lines = [('Ataxia - telangiectasia is " rare " .\tdisease* Ataxia - telangiectasia *disease '
             'is " rare " .'), "CYP2D6 * 4 alleles .\tCYP2D6 * 4 alleles ."]
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}_blurb.tsv").write_text("\n".join(lines) + "\n")
    family = {f.base: f for f in ner.FAMILIES}[base]
    records = [r for r in family.load(tmp_path) if r.split == "test"]
    for flan in (False, True):
        examples = family.to_examples(records, Formatting(flan, False, True, 512,
                                                          TokenCounter(None)))
        for line, example in zip(lines, examples):
            sentence, target = line.split("\t")
            study = (f"Sentence: {sentence} Identify and label disease terms in the sentence: "
                     ) if flan else prefix + sentence
            assert example["inputs"] == study and example["targets"] == target


def test_bad_lines_name_file_and_line(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "NCBI_disease"
    folder.mkdir()
    good = "A B C .\tA disease* B *disease C .\n"
    (folder / "train_blurb.tsv").write_text(good + "no tab here\n" + good)
    (folder / "dev_blurb.tsv").write_text(good + "A B .\tA X B .\n")
    (folder / "test_blurb.tsv").write_text(good)
    monkeypatch.delenv("CT5X_ON_BAD_RECORD", raising=False)
    with pytest.raises(UserInputError, match=r"train_blurb\.tsv:2: expected 2 tab-separated"):
        ner.load(folder)
    monkeypatch.setenv("CT5X_ON_BAD_RECORD", "skip")
    with caplog.at_level("WARNING"):
        records = ner.load(folder)
    assert [r.id for r in records] == ["train:1", "train:3", "dev:1", "test:1"]
    assert "train_blurb.tsv: skipped 1 malformed records" in caplog.text
    assert "dev_blurb.tsv: skipped 1 malformed records" in caplog.text
    assert "no tab here" not in caplog.text
