"""The one gin-literal encoder and the one T5X-syntax gin flag parser."""

import gin
import pytest

from ct5x.errors import UserInputError
from ct5x.gin_utils import GinFlags, gin_flag, gin_literal, parse_gin_flags

AWKWARD = [
    "/data/null/notes", "/runs/nullable None", "it's \"quoted\"", "with  spaces ",
    "C:\\data\\new", "ünïcode/路径", "", "line\nbreak", None, True, False, 0, -3, 1e-4, 2.5,
    {"ood": "/data/null", "b": None}, ["null", None, 1], (1,), (), {"nested": [{"a": (2, "x")}]},
]


@pytest.mark.parametrize("value", AWKWARD)
def test_gin_reads_back_every_literal(value):
    """The demo's old json.dumps(...).replace('null', 'None') turned '/data/null' into
    '/data/None'; gin must read back exactly the value written."""
    gin.clear_config()
    gin.parse_config(f"VALUE = {gin_literal(value)}")
    assert gin.query_parameter("%VALUE") == value
    assert type(gin.query_parameter("%VALUE")) is type(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object()])
def test_values_gin_cannot_read_back_are_refused(value):
    with pytest.raises(UserInputError, match="no gin literal"):
        gin_literal(value)


def test_t5x_flags_and_the_rest_in_order():
    argv = ["--gin_file=runs/finetune.gin", "--gin.MODEL_DIR='/runs/a b'", "--verbose",
            "--gin_file", "models/t5_1_1/small.gin", "--gin_bindings=BATCH_SIZE = 8",
            "--gin_search_paths=/a,/b", "--gin.run_settings.RunSettings.pack = True", "-x"]
    flags, rest = parse_gin_flags(argv)
    assert flags == GinFlags(
        files=("runs/finetune.gin", "models/t5_1_1/small.gin"),
        bindings=("MODEL_DIR = '/runs/a b'", "BATCH_SIZE = 8",
                  "run_settings.RunSettings.pack = True"),
        search_paths=("/a", "/b"))
    assert rest == ["--verbose", "-x"]


@pytest.mark.parametrize("arg", ["--gin.MODEL_DIR", "--gin.=3"])
def test_a_gin_binding_flag_needs_its_equals_sign(arg):
    with pytest.raises(UserInputError, match="expected --gin.NAME=VALUE"):
        parse_gin_flags([arg, "'/runs/x'"])


def test_bindings_turn_back_into_flags_that_parse_to_them():
    for binding in ("DATA_DIR = \"/data/null\"", "a.b/c = {'x': 1}", "X = 1\nY = 2"):
        flags, rest = parse_gin_flags([gin_flag(binding)])
        assert not rest and flags.bindings == (binding,)
