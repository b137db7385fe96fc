"""Token-level preprocessors shared by every task."""

import logging
from collections.abc import Mapping

import seqio
import tensorflow as tf

logger = logging.getLogger(__name__)


def report_truncation(
    dataset: tf.data.Dataset,
    sequence_length: Mapping[str, int] | None = None,
    output_features: Mapping[str, seqio.Feature] | None = None,
    task_name: str = "",
) -> tf.data.Dataset:
    """Log how many examples are longer than `sequence_length` (EOS included); drop none.

    The dataset is cached in memory by the counting pass, so its tokens are computed once. A
    repeated (infinite) training stream cannot be counted up front: it is truncated the same way
    and its one finite epoch is counted whenever that split is read with num_epochs=1.
    """
    if not sequence_length or not output_features:
        return dataset
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        logger.info("%s: repeated dataset; over-long examples are truncated, counted on finite "
                    "passes only", task_name)
        return dataset
    keys = [key for key in output_features if sequence_length.get(key)]
    dataset = dataset.cache()

    def too_long(example: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        eos = {key: int(output_features[key].add_eos) for key in keys}
        return {
            key: tf.cast(tf.size(example[key]) + eos[key] > sequence_length[key], tf.int64)
            for key in keys
        }

    initial = {key: tf.constant(0, tf.int64) for key in keys}
    totals = dataset.map(too_long).reduce(
        initial, lambda total, flags: {key: total[key] + flags[key] for key in keys}
    )
    for key in keys:
        if int(totals[key]):
            logger.warning("%s: %d examples have %s longer than %d tokens; they are truncated",
                           task_name, int(totals[key]), key, sequence_length[key])
    return dataset
