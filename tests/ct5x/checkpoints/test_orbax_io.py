"""T5X's Orbax layout, OCDBT (the default) and per-array zarr: written so that Orbax's (and
T5X's) checkpoint manager reads it back, and both read by ct5x."""

import json
import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest

from ct5x.checkpoints import load_checkpoint, save_t5x
from ct5x.checkpoints.tree import flatten
from ct5x.errors import UserInputError


def layout_marker(item, layout):
    """What each layout leaves on disk: OCDBT's manifest, or one zarr directory per array."""
    if layout == "orbax":
        return (item / "manifest.ocdbt").is_file() and not (item / "state.step").exists()
    return (item / "state.step" / ".zarray").is_file() and not (item / "manifest.ocdbt").exists()


@pytest.mark.parametrize("layout", ["orbax", "orbax_zarr"])
def test_hf_to_orbax_is_bit_exact(hf_dir, tmp_path, assert_same_params, layout):
    direct = load_checkpoint(hf_dir)
    save_t5x(direct, tmp_path / "model", step=40, layout=layout)
    assert layout_marker(tmp_path / "model" / "checkpoint_40" / "state", layout)
    loaded = load_checkpoint(tmp_path / "model")
    assert_same_params(loaded.params, direct.params)
    assert loaded.config == direct.config and loaded.step == 40
    assert loaded.vocabulary_path == str(tmp_path / "model" / "spiece.model")


@pytest.mark.parametrize("layout", ["orbax", "orbax_zarr"])
def test_relative_paths_write_and_read(hf_dir, tmp_path, monkeypatch, assert_same_params, layout):
    direct = load_checkpoint(hf_dir)
    monkeypatch.chdir(tmp_path)
    save_t5x(direct, "model", step=5, layout=layout)
    for path in ("model", "model/checkpoint_5"):
        assert_same_params(load_checkpoint(path).params, direct.params)


def test_ocdbt_is_the_default(hf_dirs, tmp_path):
    save_t5x(load_checkpoint(hf_dirs["t5_1_0"]), tmp_path / "model", step=3)
    assert layout_marker(tmp_path / "model" / "checkpoint_3" / "state", "orbax")


@pytest.mark.parametrize("layout", ["orbax", "orbax_zarr"])
def test_orbax_checkpoint_manager_restores_it(hf_dirs, tmp_path, layout):
    direct = load_checkpoint(hf_dirs["t5_1_1"])
    save_t5x(direct, tmp_path / "model", step=7, layout=layout)
    # The manager T5X builds: step directories "checkpoint_<step>", one item named "state".
    options = ocp.CheckpointManagerOptions(step_prefix="checkpoint", read_only=True)
    with ocp.CheckpointManager(tmp_path / "model", options=options,
                               item_names=("state",)) as manager:
        assert manager.latest_step() == 7
        restored = manager.restore(7, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))
    assert int(restored["state"]["state"]["step"]) == 7
    for name, array in flatten(direct.params).items():
        assert np.array_equal(np.asarray(flatten(restored["state"]["target"])[name]), array), name


def test_bare_pytree_checkpoint_without_state_item(hf_dirs, tmp_path, assert_same_params):
    direct = load_checkpoint(hf_dirs["t5_1_0"])
    step_dir = tmp_path / "model" / "checkpoint_2"
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(step_dir, {"target": direct.params})
    loaded = load_checkpoint(step_dir)
    assert_same_params(loaded.params, direct.params)
    assert loaded.step is None


def test_config_inferred_when_absent(hf_dir, tmp_path, assert_same_params):
    direct = load_checkpoint(hf_dir)
    save_t5x(direct, tmp_path / "model", step=1)
    (tmp_path / "model" / "config.json").unlink()
    loaded = load_checkpoint(tmp_path / "model" / "checkpoint_1")
    # Shapes give every size; dropout is not in the weights, so T5X's default stands.
    assert loaded.config == direct.config.replace(dropout_rate=0.1)
    assert_same_params(loaded.params, direct.params)


def test_config_json_that_disagrees_with_shapes(hf_dirs, tmp_path):
    save_t5x(load_checkpoint(hf_dirs["t5_1_1"]), tmp_path / "model", step=1)
    config_path = tmp_path / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["num_heads"] = 4
    config_path.write_text(json.dumps(config))
    with pytest.raises(UserInputError, match=r"checkpoint_1: encoder/relpos_bias/rel_embedding "
                                             r"has shape \(3, 32\), the config expects \(4, 32\)"):
        load_checkpoint(tmp_path / "model")


@pytest.mark.parametrize("layout", ["orbax", "orbax_zarr"])
def test_corrupt_orbax_array(hf_dirs, tmp_path, layout):
    save_t5x(load_checkpoint(hf_dirs["t5_1_0"]), tmp_path / "model", step=1, layout=layout)
    item = tmp_path / "model" / "checkpoint_1" / "state"
    if layout == "orbax":  # OCDBT keeps the array bytes in data files under d/
        for data_file in item.glob("ocdbt.process_*/d/*"):
            data_file.write_bytes(b"truncated")
    else:
        shutil.rmtree(item / "target.decoder.layers_1.mlp.wi.kernel")
    with pytest.raises(UserInputError, match=r"checkpoint_1/state: not a readable Orbax") as caught:
        load_checkpoint(tmp_path / "model")
    assert "\n" not in str(caught.value)


def test_orbax_item_without_target(tmp_path):
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "checkpoint_1" / "state",
                          {"params": {"w": np.zeros(2, np.float32)}})
    with pytest.raises(UserInputError, match=r"holds no 'target' parameter tree"):
        load_checkpoint(tmp_path)
