"""Data sources: read a variant's records when a dataset is built, never at registration."""

import logging
from collections.abc import Mapping, Sequence

import seqio
import tensorflow as tf

from ct5x.errors import UserInputError
from ct5x_tasks import task_settings
from ct5x_tasks.family import Family, Formatting
from ct5x_tasks.folds import read_folds
from ct5x_tasks.naming import Variant, fraction_key
from ct5x_tasks.records import Record
from ct5x_tasks.windows import token_counter

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_SOURCE_SPLIT = {"train": "train", "validation": "dev", "test": "test"}
FEATURES = ("id", "inputs", "targets")


def to_dataset(examples: Sequence[Mapping]) -> tf.data.Dataset:
    """A tf.data dataset of string features; list-valued features (RadQA's answers) are ragged."""
    keys = list(examples[0]) if examples else list(FEATURES)
    columns = {}
    for key in keys:
        values = [example[key] for example in examples]
        if values and isinstance(values[0], list):
            columns[key] = tf.ragged.constant(values, dtype=tf.string, ragged_rank=1)
        else:
            columns[key] = tf.constant(values, dtype=tf.string)
    return tf.data.Dataset.from_tensor_slices(columns)


def fold_ids(folds: Mapping, variant: Variant, split: str, where: str) -> Sequence[str]:
    """The ids folds.json assigns to a fold variant's split."""
    if split == "test":
        return folds["test"]
    fold = folds["folds"][variant.fold]
    if split == "validation":
        return fold["validation"]
    if variant.fraction is None:
        return fold["train"]
    key = fraction_key(variant.fraction)
    if key not in fold["fractions"]:
        raise UserInputError(f"{where}: no training fraction {key}; rerun `ct5x folds --fractions`")
    return fold["fractions"][key]


def select_records(family: Family, variant: Variant, split: str) -> list[Record]:
    """The records of one split of a variant: the source split, or the fold's part."""
    folder = task_settings.dataset_dir(family.base, family.folder, variant.site)
    records = family.load(folder)
    if variant.fold is None:
        return [record for record in records if record.split == _SOURCE_SPLIT[split]]
    path = task_settings.folds_file(family.base, family.folder, variant.site)
    folds = read_folds(path, family, folder)
    by_id = {record.id: record for record in records}
    if "format" not in folds:  # written before ids were stable (Stigma's `row<n>`)
        by_id.update({record.legacy_id: record for record in records if record.legacy_id})
    ids = fold_ids(folds, variant, split, str(path))
    chosen = [by_id[i] for i in ids if i in by_id]
    if len(chosen) < len(ids):
        logger.warning("%s: %d ids of %s are not among the readable records",
                       variant.name, len(ids) - len(chosen), path)
    return chosen


def examples_of(family: Family, variant: Variant, split: str) -> list[dict[str, str]]:
    """{"id", "inputs", "targets"} per record of the split, in the variant's prompt style."""
    formatting = Formatting(
        flan=variant.flan,
        deid=variant.deid,
        training=split == "train",
        input_length=family.input_length_for(variant.flan),
        counter=token_counter(),
        split=split,
        anchor_compatible=task_settings.anchor_compatible(),
    )
    return family.to_examples(select_records(family, variant, split), formatting)


def data_source(family: Family, variant: Variant) -> seqio.FunctionDataSource:
    """A seqio source whose dataset function reads the files each time it is called."""

    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        del shuffle_files, seed  # the records are in memory; seqio shuffles examples later
        return to_dataset(examples_of(family, variant, split))

    return seqio.FunctionDataSource(dataset_fn, splits=SPLITS, caching_permitted=False)
