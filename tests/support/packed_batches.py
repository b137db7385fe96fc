"""Packed batches as SeqIO's packing feature converter lays them out, for training-step tests."""

import numpy as np


def pack_examples(rows, input_length: int, target_length: int) -> dict[str, np.ndarray]:
    """`rows` lists, per row, the (inputs, targets) token arrays packed into it one after the
    other as segments 1, 2, ...; the decoder inputs restart at 0 in each segment."""
    out = {name: np.zeros((len(rows), length), np.int32) for name, length in (
        ("encoder_input_tokens", input_length), ("encoder_segment_ids", input_length),
        ("decoder_input_tokens", target_length), ("decoder_target_tokens", target_length),
        ("decoder_segment_ids", target_length))}
    for row, members in enumerate(rows):
        at_input = at_target = 0
        for segment, (inputs, targets) in enumerate(members, start=1):
            where_in = slice(at_input, at_input + len(inputs))
            where_target = slice(at_target, at_target + len(targets))
            out["encoder_input_tokens"][row, where_in] = inputs
            out["encoder_segment_ids"][row, where_in] = segment
            out["decoder_target_tokens"][row, where_target] = targets
            out["decoder_input_tokens"][row, where_target] = [0, *targets[:-1]]
            out["decoder_segment_ids"][row, where_target] = segment
            at_input, at_target = where_in.stop, where_target.stop
    out["decoder_loss_weights"] = (out["decoder_target_tokens"] > 0).astype(np.float32)
    return out
