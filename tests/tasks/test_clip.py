"""CLIP reader and its document window."""

import pytest

from ct5x.errors import UserInputError
from ct5x_tasks import clip
from ct5x_tasks.family import Formatting
from ct5x_tasks.labels import CLIP_LABELS
from ct5x_tasks.windows import TokenCounter


def test_reads_sentences_with_document_splits(data_root):
    records = clip.load(data_root / "clip")
    assert [sum(r.split == s for r in records) for s in ("train", "dev", "test")] == [72, 36, 24]
    assert records[0].id == "1000:0" and records[13].id == "1001:1"
    assert records[0].group == "1000"
    assert records[0].fields["labels"] == ("Imaging-related followup", "Lab-related followup")
    assert records[1].fields["labels"] == ()


@pytest.mark.parametrize("flan, length", [(False, 40), (False, 256), (True, 260)])
def test_window_fills_budget_and_holds_the_sentence(data_root, flan, length):
    records = [r for r in clip.load(data_root / "clip") if r.group == "1001"]
    counter = TokenCounter(lambda words: [1 + len(w) // 4 for w in words])
    examples = clip.to_examples(records, Formatting(flan, False, True, length, counter))
    budget = (length // 2 if flan else length) - 1  # FLAN: the T5 window, then the instruction
    over = 0
    for record, example in zip(records, examples):
        sentence = record.fields["sentences"][record.fields["index"]]
        text = example["inputs"]
        if flan:
            assert text.startswith("Context: clip: ")
            assert text.endswith(
                ". Label the above sentence as an empty string or as one or more of the following "
                "options, delimited by comma: Options: Appointment-related followup, "
                "Medication-related followups, Other helpful contextual information, Lab-related "
                "followup, Case-specific instructions for patient, Procedure-related followup, "
                "Imaging-related followup")
            text = text[len("Context: "):text.index(". Label the above sentence")]
        cost = counter.text(text)
        window, tail = text[len("clip: "):].rsplit(" ; ", 1)
        assert f" {sentence} " in f" {window} "
        assert tail == sentence
        if cost > budget:  # the sentence alone overflows: the window is just the sentence
            assert window == sentence
            over += 1
            continue
        words, shown = " ".join(record.fields["sentences"]).split(), window.split()
        lo = next(i for i in range(len(words)) if words[i:i + len(shown)] == shown)
        neighbours = [words[i] for i in (lo - 1, lo + len(shown)) if 0 <= i < len(words)]
        assert all(cost + counter.words([w])[0] > budget for w in neighbours)
        assert example["targets"] == ", ".join(record.fields["labels"])
    assert over < len(records)


def test_prompts_as_the_study_builds_them():
    """Strings built by the study's rules: `clip: ` + chunk + ` ; ` + sentence, the FLAN
    instruction around that text, sorted labels joined by ', '."""
    sentences = ["Pt seen today .", "Follow up with Dr [**Known lastname 12**] in 2 weeks .",
                 "Check labs ."]
    record = clip.Record(id="7:1", group="7", split="test",
                         fields={"sentences": sentences, "index": 1, "labels": (
                             "Appointment-related followup", "Lab-related followup")})
    study_text = "clip: " + " ".join(sentences) + " ; " + sentences[1]
    options = ", ".join(CLIP_LABELS)
    expected = {
        (False, False): study_text,
        (True, False): f"Context: {study_text}. Label the above sentence as an empty string or as "
                       f"one or more of the following options, delimited by comma: Options: "
                       f"{options}",
        (False, True): study_text.replace("[**Known lastname 12**]", "[Name]"),
    }
    for (flan, deid), inputs in expected.items():
        formatting = Formatting(flan, deid, False, 512 if flan else 256, TokenCounter(None))
        example = clip.to_examples([record], formatting)[0]
        assert example == {"id": "7:1", "inputs": inputs,
                           "targets": "Appointment-related followup, Lab-related followup"}


def test_whole_document_fits_a_large_budget(data_root):
    records = [r for r in clip.load(data_root / "clip") if r.group == "1000"]
    example = clip.to_examples(records[:1], Formatting(False, False, True, 10_000,
                                                       TokenCounter(None)))[0]
    assert example["inputs"].startswith("clip: " + " ".join(records[0].fields["sentences"]))


def test_bad_label_and_bad_literal(data_root, monkeypatch):
    path = data_root / "clip" / "sentence_level.csv"
    lines = path.read_text().splitlines()
    lines[3] = '1000,"[\'a\', \'b\']","[\'I-Unknown followup\']"'
    lines[5] = '1000,"[not a list","[]"'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserInputError, match=r"sentence_level\.csv:4: label outside"):
        clip.load(data_root / "clip")
    monkeypatch.setenv("CT5X_ON_BAD_RECORD", "skip")
    assert len(clip.load(data_root / "clip")) == 130


def test_documents_in_two_splits_are_refused(data_root):
    (data_root / "clip" / "test_ids.csv").write_text("doc_id\n1000\n")
    with pytest.raises(UserInputError, match=r"test_ids\.csv:2: document also listed"):
        clip.load(data_root / "clip")
