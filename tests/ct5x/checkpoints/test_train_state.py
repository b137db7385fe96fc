"""Train-state checkpoints: T5X's Orbax layout, exact restore, saves in the background committed by
Orbax's marker, a kill mid-save or mid-delete that leaves the previous checkpoint usable, and
pruning that keeps the best and the newest."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ct5x.checkpoints import load_checkpoint, train_state
from ct5x.checkpoints.hf import CONFIG_FILE, config_json
from ct5x.checkpoints.tree import flatten
from ct5x.config import T5Config
from ct5x.models import EncoderDecoderModel

CONFIG = T5Config(vocab_size=32, emb_dim=8, num_heads=2, head_dim=4, mlp_dim=12,
                  num_encoder_layers=1, num_decoder_layers=1)


@pytest.fixture(scope="module")
def params():
    return jax.tree.map(np.asarray, EncoderDecoderModel(CONFIG).init_params(jax.random.key(1)))


def _tree(params, step: int) -> dict:
    scaled = jax.tree.map(lambda x: x * (step + 1), params)
    moments = {"0": {"count": np.int32(step), "v": jax.tree.map(np.square, scaled)}, "1": {}}
    return {"target": scaled, "state": {"step": np.int32(step), "param_states": moments}}


def _abstract(tree):
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=sharding), tree)


def _save(model_dir, params, step):
    tree = _tree(params, step)
    train_state.save_train_state(model_dir, step, tree, {"step": step, "seed": 0})
    return tree


def test_save_and_restore_the_whole_state(params, tmp_path):
    tree = _save(tmp_path, params, 3)
    step_dir = tmp_path / "checkpoint_3"
    assert (step_dir / "state" / "_METADATA").is_file()
    assert (step_dir / "state" / "manifest.ocdbt").is_file()  # OCDBT on
    assert json.loads((step_dir / "train_ds-000-of-001.json").read_text())["step"] == 3
    restored = train_state.restore_train_state(step_dir, _abstract(tree))
    for expected, found in zip(jax.tree.leaves(tree), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(found), expected)
    assert train_state.read_data_position(step_dir) == {"step": 3, "seed": 0}


def test_relative_model_dir_saves_and_restores(params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tree = _save("run", params, 2)
    restored = train_state.restore_train_state("run/checkpoint_2", _abstract(tree))
    for expected, found in zip(jax.tree.leaves(tree), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(found), expected)
    (tmp_path / "run" / CONFIG_FILE).write_bytes(config_json(CONFIG))
    assert load_checkpoint("run/checkpoint_2").step == 2


def test_saved_state_keeps_t5x_state_dict_names_and_loads_as_a_checkpoint(params, tmp_path):
    """T5X's state-dict names (its `target` is T5X's parameter tree; the optimizer state under
    `param_states` is optax's layout, which T5X does not read: see docs/training.md)."""
    _save(tmp_path, params, 5)
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
        raw = checkpointer.restore(tmp_path / "checkpoint_5" / train_state.ITEM)
    assert set(raw) == {"target", "state"} and set(raw["state"]) == {"step", "param_states"}
    assert set(flatten(raw["target"])) == set(flatten(params))
    assert "encoder/layers_0/attention/query/kernel" in flatten(raw["target"])
    (tmp_path / CONFIG_FILE).write_bytes(config_json(CONFIG))
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.step == 5 and checkpoint.config == CONFIG
    np.testing.assert_array_equal(checkpoint.params["encoder"]["encoder_norm"]["scale"],
                                  params["encoder"]["encoder_norm"]["scale"] * 6)


def test_kill_during_save_leaves_the_previous_checkpoint_usable(params, tmp_path, monkeypatch):
    """A save whose commit never comes (the process died after Orbax wrote the arrays) is
    ignored, then removed by the next run; an older ct5x's staging folder is removed too."""
    from orbax.checkpoint._src.path import atomicity

    first = _save(tmp_path, params, 1)

    async def killed(self):
        raise SystemExit("killed before the commit marker")

    monkeypatch.setattr(atomicity.CommitFileTemporaryPath, "finalize", killed)
    with pytest.raises(SystemExit):
        _save(tmp_path, params, 2)
    monkeypatch.undo()
    assert (tmp_path / "checkpoint_2" / "state" / "manifest.ocdbt").is_file()
    assert not (tmp_path / "checkpoint_2" / "state" / train_state.COMMIT_MARKER).exists()
    assert train_state.complete_steps(tmp_path) == [1]
    restored = train_state.restore_train_state(tmp_path / "checkpoint_1", _abstract(first))
    np.testing.assert_array_equal(np.asarray(restored["state"]["step"]), 1)
    (tmp_path / ".checkpoint_3.tmp").mkdir()
    (tmp_path / "checkpoint_9").mkdir()  # another tool's folder: not ours to remove
    (tmp_path / "checkpoint_9" / "checkpoint").write_bytes(b"")
    assert train_state.remove_partial_saves(tmp_path) == [".checkpoint_3.tmp", "checkpoint_2"]
    assert not (tmp_path / "checkpoint_2").exists() and (tmp_path / "checkpoint_9").is_dir()
    _save(tmp_path, params, 2)
    assert train_state.complete_steps(tmp_path) == [1, 2]


def test_writer_saves_in_the_background_and_says_when_it_committed(params, tmp_path):
    writer = train_state.CheckpointWriter()
    assert writer.committed() and writer.wait() is None
    writer.start(tmp_path, 4, _tree(params, 4), {"step": 4})
    with pytest.raises(RuntimeError, match="not waited for"):
        writer.start(tmp_path, 5, _tree(params, 5), {"step": 5})
    assert writer.wait() == 4 and writer.committed()
    assert train_state.complete_steps(tmp_path) == [4]
    writer.close()


def test_a_pruned_step_loses_its_marker_first(params, tmp_path, monkeypatch):
    """A kill mid-delete (here: the folder's removal fails after the marker went) leaves a step
    that is not complete and that the next run removes."""
    from etils import epath

    for step in (1, 2):
        _save(tmp_path, params, step)

    def killed(self, missing_ok=False):
        raise SystemExit("killed mid-delete")

    monkeypatch.setattr(type(epath.Path(tmp_path)), "rmtree", killed)
    with pytest.raises(SystemExit):
        train_state.prune_checkpoints(tmp_path, keep=1, protect=set())
    monkeypatch.undo()
    assert train_state.complete_steps(tmp_path) == [2]
    assert train_state.remove_partial_saves(tmp_path) == ["checkpoint_1"]


def test_prune_keeps_the_best_and_the_newest(params, tmp_path):
    for step in (2, 4, 6, 8):
        _save(tmp_path, params, step)
    assert train_state.prune_checkpoints(tmp_path, keep=1, protect={4}) == [2, 6]
    assert train_state.complete_steps(tmp_path) == [4, 8]


def test_train_state_and_saved_tree_convert_both_ways(params):
    """The Trainer's state <-> T5X's {"target", "state": {"step", "param_states"}} tree, and the
    abstract tree to restore onto carries the run's shardings."""
    from ct5x.optimizers import OptimizerSettings, make_optimizer
    from ct5x.train_state import TrainState

    optimizer = make_optimizer(OptimizerSettings())
    state = TrainState(step=np.int32(7), params=params, opt_state=optimizer.init(params))
    tree = train_state.state_to_tree(state)
    assert set(tree) == {"target", "state"} and set(tree["state"]) == {"step", "param_states"}
    back = train_state.tree_to_state(tree, jax.eval_shape(optimizer.init, params))
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for want, got in zip(jax.tree.leaves(state), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shapes = jax.eval_shape(lambda: state)
    abstract = train_state.abstract_tree(shapes, jax.tree.map(lambda _: sharding, shapes))
    assert jax.tree.structure(abstract) == jax.tree.structure(tree)
    assert all(leaf.sharding == sharding for leaf in jax.tree.leaves(abstract))


def test_data_position_of_a_run_saved_by_two_processes(tmp_path):
    """One process resuming a checkpoint two processes wrote reads process 0's position (it
    does not depend on the processes); a checkpoint without any is refused in one line."""
    (tmp_path / "train_ds-000-of-002.json").write_text('{"step": 4, "seed": 1}')
    (tmp_path / "train_ds-001-of-002.json").write_text('{"step": 4, "seed": 1}')
    assert train_state.read_data_position(tmp_path) == {"step": 4, "seed": 1}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="train_ds-000-of-001.json: missing"):
        train_state.read_data_position(empty)
