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


# ---- the study's split_into_chunks, re-expressed over a tokenizer of one token per word ----


def _study_offsets(text: str) -> list[tuple[int, int]]:
    """`tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)`: each word one
    token, then EOS with the offsets (0, 0)."""
    import re

    return [match.span() for match in re.finditer(r"\S+", text)] + [(0, 0)]


def _study_inputs(sentences: list[str], length: int, deid: bool = False) -> list[str]:
    """The study's CLIP inputs (before tokenisation) for one document's sentences."""
    from ct5x_tasks.deid import deidentify

    text, spans = "", []
    for sentence in sentences:
        spans.append((len(text), len(text) + len(sentence)))
        text += sentence + " "
    offsets = _study_offsets(text)
    inputs = []
    for first_char, end_char in spans:
        start = next(i for i, (a, _) in enumerate(offsets) if a > first_char) - 1
        end = next((i for i, (a, _) in enumerate(offsets) if a >= end_char), len(offsets))
        if end - start + 2 > length / 2:
            end = start + int(length / 2 - 2)
        side = int((length - (2 * (end - start) + 2)) / 2)
        lo, hi = max(start - side, 0), min(end + side, len(offsets))
        if start - lo != side:
            hi = end + (side * 2 - (start - lo))
        elif hi - end != side:
            lo = start - (side * 2 - (hi - end))
        sentence_span, window_span = offsets[start:end], offsets[lo:hi]
        chunk = text[window_span[0][0]:window_span[-1][1]] + " ; " + (
            text[sentence_span[0][0]:sentence_span[-1][1]])
        inputs.append(deidentify("clip: " + chunk) if deid else "clip: " + chunk)
    return inputs


def _document(words_per_sentence: list[int]) -> list[str]:
    return [" ".join(f"w{n}s{i}" for i in range(count)) + " ."
            for n, count in enumerate(words_per_sentence)]


@pytest.mark.parametrize("words_per_sentence", [
    [3, 4, 2],  # the whole note fits: every window reaches the end and is empty
    [9, 3, 7, 2, 8, 5, 4, 6, 3, 9, 2, 4],  # windows near the start, the middle and the end
    [5, 20, 4],  # a sentence longer than half the length is cut
    [6, 3, 30],  # ... the last one too, which then keeps its text
])
def test_anchor_windows_are_the_studys_with_empty_ends(words_per_sentence):
    length = 24
    sentences = _document(words_per_sentence)
    records = [clip.Record(id=f"9:{i}", group="9", split="train",
                           fields={"sentences": sentences, "index": i, "labels": ()})
               for i in range(len(sentences))]
    formatting = Formatting(False, False, True, length, TokenCounter(None),
                            anchor_compatible=True)
    found = [example["inputs"] for example in clip.to_examples(records, formatting)]
    assert found == _study_inputs(sentences, length)
    # The last sentence and its window come out empty, unless the sentence is cut.
    last_cut = words_per_sentence[-1] + 2 > length / 2 - 2
    assert (found[-1] == "clip:  ; ") != last_cut


def test_anchor_windows_deidentify_the_cut_text_and_keep_repeated_labels():
    sentences = ["Seen by Dr [**Known lastname 12**] .", "Call [**Hospital1 18**] .", "Ok ."]
    records = [clip.Record(id=f"4:{i}", group="4", split="train",
                           fields={"sentences": sentences, "index": i,
                                   "labels": ("Lab-related followup",),
                                   "label_list": ("Lab-related followup",) * 2})
               for i in range(3)]
    for flan in (False, True):
        formatting = Formatting(flan, True, True, 20 * (1 + flan), TokenCounter(None),
                                anchor_compatible=True)
        examples = clip.to_examples(records, formatting)
        study = _study_inputs(sentences, 20, deid=True)
        assert [e["inputs"] for e in examples] == [clip.flan_input(t) if flan else t
                                                   for t in study]
        assert {e["targets"] for e in examples} == {
            "Lab-related followup, Lab-related followup"}
    assert "[Company]" in study[1]
    default = clip.to_examples(records, Formatting(False, True, True, 20, TokenCounter(None)))
    assert default[0]["targets"] == "Lab-related followup"
