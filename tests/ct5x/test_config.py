"""T5Config: validation of its settings, the Hugging Face mapping, and the gin macros."""

import pytest

from ct5x.config import REMAT_POLICIES, T5Config
from ct5x.errors import UserInputError


@pytest.mark.parametrize(
    "field, value",
    [("remat_policy", "sometimes"), ("dtype", "float16"), ("mlp_activations", ("swish",))],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(UserInputError, match=field):
        T5Config(**{field: value})


def test_runtime_settings_stay_out_of_config_json():
    config = T5Config(remat_policy="full", scan_layers=True, dtype="bfloat16")
    hf = config.to_hf_dict()
    assert not {"remat_policy", "scan_layers", "dtype"} & set(hf)
    assert T5Config.from_hf_dict(hf) == config.replace(
        remat_policy="none", scan_layers=False, dtype="float32"
    )


@pytest.mark.parametrize("policy", REMAT_POLICIES)
@pytest.mark.parametrize("gin_file", ["t5_1_1/small", "t5_1_0/base", "t5_1_1/xl"])
def test_gin_macros_reach_the_config(gin_file, policy):
    from ct5x.gin_utils import build_model

    config = build_model(
        [f"models/{gin_file}.gin"],
        [f"REMAT_POLICY = '{policy}'", "SCAN_LAYERS = True"],
    ).config
    assert (config.remat_policy, config.scan_layers) == (policy, True)
    default = build_model([f"models/{gin_file}.gin"]).config
    assert (default.remat_policy, default.scan_layers) == ("none", False)
