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
