"""The one place ct5x touches gin: parse the layered gin files and build what they describe, read
T5X's gin flags, and write Python values as gin literals.

The library itself never imports gin; gin files configure its dataclasses and functions through
`dynamic_registration`, and each run writes its operative config next to its outputs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import gin

from ct5x.errors import UserInputError

GIN_DIR = pathlib.Path(__file__).resolve().parents[1] / "gin"


def _include_probe_filter(record: logging.LogRecord) -> bool:
    """gin logs an error for every search-path folder an `include` is not in; drop those."""
    return not record.getMessage().startswith("Path not found:")


def _resolve(name: str, roots: Sequence[pathlib.Path]) -> str:
    """A gin file as given, else the first match under the search roots."""
    path = pathlib.Path(name)
    if path.is_file():
        return str(path)
    found = next((root / name for root in roots if (root / name).is_file()), None)
    if found is None:
        where = ", ".join(str(root) for root in roots)
        raise UserInputError(f"gin: no file {name} (here or under {where})")
    return str(found)


def parse_gin(
    files: Sequence[str], bindings: Sequence[str] = (), search_paths: Sequence[str] = ()
) -> None:
    """Parses gin files and extra bindings. Files and their `include`s are looked up as given,
    then under `search_paths` (T5X's --gin_search_paths), then under ct5x's gin/ folder."""
    roots = [pathlib.Path(root) for root in search_paths] + [GIN_DIR]
    resolved = [_resolve(name, roots) for name in files]
    gin.clear_config()
    for root in reversed(roots):
        gin.add_config_file_search_path(str(root))
    root = logging.getLogger()
    root.addFilter(_include_probe_filter)
    try:
        gin.parse_config_files_and_bindings(resolved, list(bindings), finalize_config=False)
    except (OSError, ValueError, SyntaxError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserInputError(f"gin: {first_line}") from None
    finally:
        root.removeFilter(_include_probe_filter)


def macro(name: str) -> Any:
    """The value of a gin macro, calling a configurable reference such as `MODEL`."""
    try:
        value = gin.query_parameter(f"%{name}")
    except ValueError:
        raise UserInputError(f"gin: required macro {name} is not bound") from None
    if isinstance(value, gin.config.ConfigurableReference):
        return value.scoped_configurable_fn()
    return value


def is_bound(name: str) -> bool:
    """True when the gin macro `name` has a value."""
    try:
        gin.query_parameter(f"%{name}")
    except ValueError:
        return False
    return True


def build_model(files: Sequence[str], bindings: Sequence[str] = ()):
    """The `MODEL` a set of gin files describes (e.g. `models/t5_1_1/base.gin`)."""
    parse_gin(files, bindings)
    return macro("MODEL")


def operative_config() -> str:
    """The bindings a run actually used, to be saved next to its outputs (as T5X does)."""
    return gin.operative_config_str()


def bind(parameter: str, value: Any) -> None:
    """Binds one parameter after parsing, for values only known at run time (e.g. a workdir)."""
    gin.bind_parameter(parameter, value)


def gin_literal(value: Any) -> str:
    """A Python value as the gin literal that parses back to it: strings double-quoted with JSON's
    escapes (which gin reads as Python's, and which stay readable inside shell single quotes),
    None/True/False and numbers as Python writes them, and dicts, lists and tuples of these."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"{value!r} has no gin literal")
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{gin_literal(k)}: {gin_literal(v)}" for k, v in value.items()) \
            + "}"
    if isinstance(value, list):
        return "[" + ", ".join(gin_literal(item) for item in value) + "]"
    if isinstance(value, tuple):
        return "(" + "".join(f"{gin_literal(item)}, " for item in value).rstrip(" ") + ")"
    raise UserInputError(f"a {type(value).__name__} has no gin literal")


@dataclasses.dataclass(frozen=True)
class GinFlags:
    """T5X's gin flags of a command line: files, bindings ('NAME = VALUE'), search paths."""

    files: tuple[str, ...] = ()
    bindings: tuple[str, ...] = ()
    search_paths: tuple[str, ...] = ()


GIN_BINDING_FLAG = "--gin."
_VALUE_FLAGS = ("--gin_file", "--gin_bindings", "--gin_search_paths")
_PLAIN_NAME = re.compile(r"[A-Za-z_][\w./]*")


def parse_gin_flags(argv: Sequence[str]) -> tuple[GinFlags, list[str]]:
    """T5X's gin flags, and the other arguments in their order.

    `--gin_file=F` and `--gin_bindings=B` repeat, `--gin_search_paths=A,B` is comma-separated (each
    also as `--flag VALUE`, as absl takes them); `--gin.NAME=VALUE` is T5X's short form of
    `--gin_bindings='NAME = VALUE'`, and, as in T5X, needs its `=`. VALUE is a gin expression:
    strings are quoted (`--gin.MODEL_DIR="'/runs/x'"`).
    """
    files, bindings, paths, rest = [], [], [], []
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, has_value, value = arg.partition("=")
        if name.startswith(GIN_BINDING_FLAG):
            binding_name = name[len(GIN_BINDING_FLAG):].strip()
            if not has_value or not binding_name:
                raise UserInputError(f"{arg}: expected {GIN_BINDING_FLAG}NAME=VALUE")
            bindings.append(f"{binding_name} = {value.strip()}")
            continue
        if name not in _VALUE_FLAGS:
            rest.append(arg)
            continue
        if not has_value:
            if not args:
                raise UserInputError(f"{arg}: needs a value")
            value = args.pop(0)
        if name == "--gin_file":
            files.append(value)
        elif name == "--gin_bindings":
            bindings.append(value)
        else:
            paths.extend(path for path in value.split(",") if path)
    return GinFlags(tuple(files), tuple(bindings), tuple(paths)), rest


def gin_flag(binding: str) -> str:
    """A binding as the flag `parse_gin_flags` reads it back from: `--gin.NAME=VALUE` for one
    `NAME = VALUE`, else `--gin_bindings=...`."""
    name, has_value, value = binding.partition("=")
    if has_value and _PLAIN_NAME.fullmatch(name.strip()) and "\n" not in value:
        return f"{GIN_BINDING_FLAG}{name.strip()}={value.strip()}"
    return f"--gin_bindings={binding}"
