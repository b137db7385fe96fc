"""RadQA: SQuAD-2 JSON files `{train,dev,test}.json` over radiology report sections.

Long contexts (input budget 1024 tokens, question always kept whole):
- training: the window of the context that holds the answer, grown evenly around it up to the
  budget (unanswerable questions keep the context's beginning);
- evaluation (validation and test): the context's beginning up to the budget. No example is dropped;
  the number of cut contexts, and how many of their gold answers fall outside the kept part, are
  logged.
Malformed JSON is reported as file:line; a malformed entry as file:data[i].paragraphs[j].qas[k].
"""

import dataclasses
import json
import logging
import pathlib
from collections.abc import Sequence

from ct5x.errors import UserInputError
from ct5x_tasks.deid import deidentify
from ct5x_tasks.family import Family, Formatting
from ct5x_tasks.records import (
    SOURCE_SPLITS,
    BadRecord,
    Record,
    bad_records,
    require_fields,
    require_file,
)
from ct5x_tasks.windows import centered_window, word_spans

logger = logging.getLogger(__name__)


def source_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The three distributed files, train first."""
    return [folder / f"{split}.json" for split in SOURCE_SPLITS]


def parse_question(qa: dict, context: str, split: str, group: str) -> Record:
    """One question; its answer is located in the context (start, end) or is None."""
    require_fields(qa, ("id", "question"))
    answers = qa.get("answers", [])
    if not isinstance(answers, list):
        raise BadRecord("field 'answers' is not a list")
    impossible = bool(qa.get("is_impossible", False)) or not answers
    span = None
    if not impossible:
        first = answers[0]
        if not isinstance(first, dict):
            raise BadRecord("answer is not an object")
        require_fields(first, ("text",))
        require_fields(first, ("answer_start",), int)
        start, text = first["answer_start"], first["text"]
        if context[start : start + len(text)] != text:
            start = context.find(text)
            if start < 0:
                raise BadRecord("answer text not found in its context")
        span = (start, start + len(text))
    gold = [] if impossible else [a["text"] for a in answers if isinstance(a, dict) and "text" in a]
    return Record(
        id=f"{split}:{qa['id']}",
        group=group,
        split=split,
        fields={"question": qa["question"], "context": context, "answer": span, "answers": gold},
    )


def read_split(path: pathlib.Path, split: str) -> list[Record]:
    """Every question of one SQuAD-2 file; grouped by report (the `data[]` entry)."""
    records = []
    with bad_records(path) as bad:
        try:
            document = json.loads(require_file(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            bad.report(error.lineno, f"not valid JSON ({error.msg})")
            return records
        articles = document.get("data") if isinstance(document, dict) else None
        if not isinstance(articles, list):
            bad.report(1, "no top-level 'data' list")
            return records
        for i, article in enumerate(articles):
            paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
            if not isinstance(paragraphs, list):
                bad.report(f"data[{i}]", "missing 'paragraphs' list")
                continue
            group = f"{split}:{article.get('title') or i}"
            for j, paragraph in enumerate(paragraphs):
                where = f"data[{i}].paragraphs[{j}]"
                if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                    bad.report(where, "missing 'context'")
                    continue
                for k, qa in enumerate(paragraph.get("qas") or []):
                    try:
                        if not isinstance(qa, dict):
                            raise BadRecord("question entry is not an object")
                        records.append(parse_question(qa, paragraph["context"], split, group))
                    except BadRecord as error:
                        bad.report(f"{where}.qas[{k}]", str(error))
    return records


def load(folder: pathlib.Path) -> list[Record]:
    """All questions of the three splits."""
    records = []
    for split, path in zip(SOURCE_SPLITS, source_files(folder)):
        records.extend(read_split(path, split))
    return records


def prompt(question: str, context: str, flan: bool) -> str:
    """The study's T5 prefix or FLAN instruction (leading spaces of question and context
    dropped; the FLAN instruction ends with a space, as the study's does)."""
    question, context = question.lstrip(), context.lstrip()
    if flan:
        return (
            f"Context: {context} Question: {question} If no answer is found in the context, "
            "do not reply; otherwise, give an answer from the context: "
        )
    return f"question: {question} context: {context}"


_START, _END = "\x00", "\x01"  # answer markers, carried through de-identification


def clean_with_answer(record: Record, formatting: Formatting) -> tuple[str, str, tuple | None]:
    """De-identified context (the whole context at once, as the study does), answer text and
    answer span in it."""
    context, span = record.fields["context"], record.fields["answer"]
    if span is None or not formatting.deid:
        answer = "" if span is None else context[span[0] : span[1]]
        return formatting.clean(context), answer, span
    marked = formatting.clean(
        context[: span[0]] + _START + context[span[0] : span[1]] + _END + context[span[1] :]
    )
    if marked.count(_START) != 1 or marked.count(_END) != 1:  # the answer cuts a span in two
        cleaned, answer = formatting.clean(context), formatting.clean(context[span[0] : span[1]])
        start = cleaned.find(answer)
        return cleaned, answer, (start, start + len(answer)) if start >= 0 else None
    before, rest = marked.split(_START, 1)
    inside, after = rest.split(_END, 1)
    answer = inside.strip()
    start = len(before) + inside.index(answer) if answer else len(before)
    return before + inside + after, answer, (start, start + len(answer))


def fit_context(
    question: str, context: str, span: tuple | None, formatting: Formatting
) -> tuple[str, bool, bool]:
    """(kept context, whether it was cut, whether the answer lies outside it)."""
    words = word_spans(context)
    overhead = formatting.counter.text(prompt(question, "", formatting.flan))
    costs = formatting.counter.words([context[a:b] for a, b in words])
    budget = formatting.input_budget - overhead
    if sum(costs) <= budget or not words:
        return context, False, False
    first, last = 0, 0
    if formatting.training and span is not None:
        inside = [n for n, (a, b) in enumerate(words) if a < span[1] and b > span[0]]
        if inside:
            first, last = inside[0], inside[-1] + 1
    lo, hi = centered_window(costs, first, last, budget)
    kept = (words[lo][0], words[hi - 1][1]) if hi > lo else (0, 0)
    outside = span is not None and not (kept[0] <= span[0] and span[1] <= kept[1])
    return context[kept[0] : kept[1]], True, outside


def to_examples(records: Sequence[Record], formatting: Formatting) -> list[dict[str, str]]:
    """Question kept whole; the context fitted to the budget per the module's rule. Targets are the
    first answer ("" if unanswerable); `answers` holds every gold answer for SQuAD-2 scoring.

    `_deid` converts question, context and answers of every split; with the anchor switch it
    converts as the study's `--replace_text_with_tags` did: the training inputs only, each whole
    prompt at once, answers and the validation and test splits left as written.
    """
    if not (formatting.deid and formatting.anchor_compatible):
        return _examples(records, formatting)
    examples = _examples(records, dataclasses.replace(formatting, deid=False))
    if formatting.training:
        for record, example in zip(records, examples):
            try:
                example["inputs"] = deidentify(example["inputs"])
            except UserInputError as error:
                raise UserInputError(f"record {record.id}: {error}") from None
    return examples


def _examples(records: Sequence[Record], formatting: Formatting) -> list[dict[str, str]]:
    examples, cut, lost = [], 0, 0
    for record in records:
        try:
            question = formatting.clean(record.fields["question"])
            context, answer, span = clean_with_answer(record, formatting)
        except UserInputError as error:
            raise UserInputError(f"record {record.id}: {error}") from None
        context, was_cut, outside = fit_context(question, context, span, formatting)
        cut += was_cut
        lost += outside
        examples.append(
            {
                "id": record.id,
                "inputs": prompt(question, context, formatting.flan),
                "targets": answer,
                "answers": [formatting.clean(text) for text in record.fields["answers"]],
            }
        )
    if cut:
        logger.info(
            "radqa: %d of %d contexts cut to the %d-token input; %d gold answers fall outside",
            cut, len(records), formatting.input_length, lost,
        )
    return examples


FAMILY = Family(
    base="radqa",
    folder="radqa",
    input_length=1024,
    target_length=30,
    num_beams=1,
    load=load,
    source_files=source_files,
    to_examples=to_examples,
    mimic=True,
)
