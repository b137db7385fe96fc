"""The study's NCBI-disease fine-tuning pipeline, re-expressed with transformers' Seq2SeqTrainer.

What the study's `finetune_ncbi.py` does with `--use-constant-adafactor` (yli-z/
ml4h_are_clinical_t5_models_better_for_clinical_text), on the data, checkpoint and settings that
benchmarks/fold.py hands it: tokenize inputs and targets to the run's lengths, train with
constant Adafactor (`optim="adafactor"`: transformers' Adafactor without parameter scaling or
relative steps), batch padding to each batch's longest row (`DataCollatorForSeq2Seq`), validate
and save every epoch with greedy generation and entity-level F1, keep one checkpoint and load the
best at the end, then predict the test split and write predictions, labels and scores. Gradient
clipping stays at the Trainer's default (1.0), as in the study's runs.

Departures that do not change the work timed: the text is tokenized with the same SentencePiece
model directly (as ct5x does, so both see the same tokens), batches are padded by a collator that
does what `DataCollatorForSeq2Seq` does without a transformers tokenizer, and the entity F1 is
computed here (seqeval over the `disease* ... *disease` markup) instead of by the study's regular
expressions. The process records its timeline (`ct5x.timing`'s form) for benchmarks/fold.py.

    python benchmarks/fold_study.py CONFIG.json   (written by benchmarks/fold.py)
"""

from __future__ import annotations

import json
import os
import sys
import time

from ct5x.timing import Timeline, process_start

TIMELINE = Timeline("study", process_start())
OPEN, CLOSE = "disease*", "*disease"


def bio_tags(text: str) -> list[str]:
    """B/I/O tags of the words of a marked-up sentence (markers dropped)."""
    tags, inside, first = [], False, False
    for word in text.split():
        if word == OPEN:
            inside, first = True, True
        elif word == CLOSE:
            inside = False
        else:
            tags.append(("B-DISEASE" if first else "I-DISEASE") if inside else "O")
            first = False
    return tags


def entity_f1(predictions: list[str], targets: list[str]) -> dict[str, float]:
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold = [bio_tags(text) for text in targets]
    found = [(bio_tags(text) + ["O"] * len(tags))[:len(tags)]
             for text, tags in zip(predictions, gold)]
    return {"f1": f1_score(gold, found), "precision": precision_score(gold, found),
            "recall": recall_score(gold, found)}


def collator(model):
    """`DataCollatorForSeq2Seq`'s batches (which need a transformers tokenizer for the inputs):
    rows padded to the batch's longest input and target, labels padded with -100, the decoder's
    inputs shifted from the labels by the model."""
    import torch

    def pad(rows: list[list[int]], value: int) -> torch.Tensor:
        width = max(len(row) for row in rows)
        return torch.tensor([row + [value] * (width - len(row)) for row in rows])

    def collate(features: list[dict]) -> dict:
        inputs = pad([f["input_ids"] for f in features], 0)
        labels = pad([f["labels"] for f in features], -100)
        return {"input_ids": inputs, "attention_mask": (inputs != 0).long(), "labels": labels,
                "decoder_input_ids": model.prepare_decoder_input_ids_from_labels(labels=labels)}

    return collate


def main(config_path: str) -> None:
    with open(config_path, encoding="utf-8") as stream:
        config = json.load(stream)
    import numpy as np
    import sentencepiece
    import torch
    import transformers

    torch.set_num_threads(config["threads"])
    transformers.set_seed(config["seed"])
    pieces = sentencepiece.SentencePieceProcessor(model_file=config["vocabulary"])
    eos, unk, size = 1, 2, pieces.get_piece_size()

    def encode(text: str, length: int) -> list[int]:
        return pieces.encode(text)[: length - 1] + [eos]

    def decode(ids) -> str:
        ids = [int(i) for i in ids if i >= 0]
        if eos in ids:
            ids = ids[: ids.index(eos)]
        return pieces.decode([i if i < size else unk for i in ids if i > 0])

    def dataset(split: str) -> list[dict]:
        with open(config["data"][split], encoding="utf-8") as stream:
            examples = [json.loads(line) for line in stream]
        return [{"input_ids": encode(e["inputs"], config["input_length"]),
                 "labels": encode(e["targets"], config["target_length"])} for e in examples]

    data = {split: dataset(split) for split in ("train", "validation", "test")}
    model = transformers.T5ForConditionalGeneration.from_pretrained(config["checkpoint"])

    def compute_metrics(prediction) -> dict[str, float]:
        labels = np.where(prediction.label_ids < 0, 0, prediction.label_ids)
        return entity_f1([decode(row) for row in prediction.predictions],
                         [decode(row) for row in labels])

    class TimedTrainer(transformers.Seq2SeqTrainer):
        def evaluate(self, *args, **kwargs):
            with TIMELINE.phase("validation"):
                return super().evaluate(*args, **kwargs)

        def _save_checkpoint(self, *args, **kwargs):
            with TIMELINE.phase("checkpoint_save"):
                return super()._save_checkpoint(*args, **kwargs)

        def _load_best_model(self, *args, **kwargs):
            with TIMELINE.phase("checkpoint_load"):
                return super()._load_best_model(*args, **kwargs)

    output = config["output_dir"]
    arguments = transformers.Seq2SeqTrainingArguments(
        output_dir=output, eval_strategy="epoch", save_strategy="epoch", learning_rate=1e-4,
        optim="adafactor", lr_scheduler_type="constant",
        per_device_train_batch_size=config["batch_size"],
        per_device_eval_batch_size=config["batch_size"], num_train_epochs=config["epochs"],
        save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="f1",
        predict_with_generate=True, generation_num_beams=1,
        generation_max_length=config["target_length"], seed=config["seed"],
        data_seed=config["seed"], report_to="none", use_cpu=True, disable_tqdm=True,
        logging_strategy="no",
    )
    trainer = TimedTrainer(
        model=model, args=arguments, train_dataset=data["train"],
        eval_dataset=data["validation"], data_collator=collator(model),
        compute_metrics=compute_metrics,
    )
    TIMELINE.mark("training_start")
    trainer.train()
    TIMELINE.mark("training_end")
    with TIMELINE.phase("test_prediction"):
        outputs = trainer.predict(data["test"])
        predictions = [decode(row) for row in outputs.predictions]
        labels = [decode(row) for row in np.where(outputs.label_ids < 0, 0, outputs.label_ids)]
        with open(os.path.join(output, "ncbi-prediction.txt"), "w", encoding="utf-8") as out:
            out.write("\n".join(predictions))
        with open(os.path.join(output, "ncbi-label.txt"), "w", encoding="utf-8") as out:
            out.write("\n".join(labels))
        with open(os.path.join(output, "ncbi-scores.json"), "w", encoding="utf-8") as out:
            json.dump(outputs.metrics, out)
    record = TIMELINE.record()
    record["test_metrics"] = {key: float(value) for key, value in outputs.metrics.items()}
    record["decoded_test_tokens"] = int((outputs.predictions > 0).sum())
    record["written_at"] = time.time()
    with open(config["record"], "w", encoding="utf-8") as out:
        json.dump(record, out)


if __name__ == "__main__":
    main(sys.argv[1])
