"""The state a training step changes, as T5X's `train_state.TrainState`: step, parameters and the
optimizer's state. The Trainer steps it; ct5x.checkpoints.train_state saves and restores it."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


class TrainState(flax.struct.PyTreeNode):
    """What a step changes: the step count, the parameters and the optimizer state."""

    step: jax.Array
    params: Any
    opt_state: Any
