"""The one place ct5x touches gin: parse the layered gin files and build what they describe.

The library itself never imports gin; gin files configure its dataclasses and functions through
`dynamic_registration`, and each run writes its operative config next to its outputs.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Sequence
from typing import Any

import gin

from ct5x.errors import UserInputError

GIN_DIR = pathlib.Path(__file__).resolve().parents[1] / "gin"


def _include_probe_filter(record: logging.LogRecord) -> bool:
    """gin logs an error for every search-path folder an `include` is not in; drop those."""
    return not record.getMessage().startswith("Path not found:")


def parse_gin(files: Sequence[str], bindings: Sequence[str] = ()) -> None:
    """Parses gin files (paths or names relative to ct5x's gin/ folder) and extra bindings."""
    resolved = []
    for name in files:
        path = pathlib.Path(name)
        if not path.is_file() and (GIN_DIR / name).is_file():
            path = GIN_DIR / name
        if not path.is_file():
            raise UserInputError(f"gin: no file {name} (here or under {GIN_DIR})")
        resolved.append(str(path))
    gin.clear_config()
    gin.add_config_file_search_path(str(GIN_DIR))
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
