"""T5X's multi-process flags (`--multiprocess_gpu --coordinator_address=HOST:PORT
--process_count=N --process_index=I`, ct5x's `--initialization_timeout=S`), parsed without JAX so
that `ct5x --help` and `ct5x sweep plan` stay light; `ct5x.multihost.start` acts on them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ct5x.errors import UserInputError

FLAG_NAMES = ("--multiprocess_gpu", "--coordinator_address", "--process_count",
              "--process_index", "--initialization_timeout")
VALUE_FLAGS = FLAG_NAMES[1:]


@dataclasses.dataclass(frozen=True)
class ProcessFlags:
    """How this process joins the others; nothing to join when neither switch is on."""

    # T5X's switch: join the processes the three flags below name (unset ones are detected).
    multiprocess_gpu: bool = False
    coordinator_address: str | None = None
    process_count: int | None = None
    process_index: int | None = None
    initialization_timeout: int = 300
    # MULTIHOST=True: jax.distributed.initialize() finds everything in the environment.
    detect: bool = False

    @property
    def wanted(self) -> bool:
        return self.multiprocess_gpu or self.detect

    @classmethod
    def from_flags(cls, values: Mapping[str, str | bool | None]) -> ProcessFlags:
        """From {"--flag": value} (True for `--multiprocess_gpu`; None: not given)."""
        given = {name: value for name, value in values.items() if value is not None}
        if given and "--multiprocess_gpu" not in given:
            raise UserInputError(f"{min(given)} needs --multiprocess_gpu")

        def integer(name: str, least: int) -> int | None:
            if name not in given:
                return None
            try:
                number = int(given[name])
            except ValueError:
                number = least - 1
            if number < least:
                raise UserInputError(f"{name}={given[name]}: must be an integer >= {least}")
            return number

        flags = cls(
            multiprocess_gpu="--multiprocess_gpu" in given,
            coordinator_address=given.get("--coordinator_address"),
            process_count=integer("--process_count", 1),
            process_index=integer("--process_index", 0),
            initialization_timeout=integer("--initialization_timeout", 1) or 300,
        )
        if None not in (flags.process_count, flags.process_index) and (
                flags.process_index >= flags.process_count):
            raise UserInputError(f"--process_index={flags.process_index} is not below "
                                 f"--process_count={flags.process_count}")
        return flags


def add_arguments(parser: Any) -> None:
    """The same flags on an argparse parser (values checked by `from_namespace`)."""
    parser.add_argument("--multiprocess_gpu", action="store_true", default=None,
                        help="join the processes named by the next flags (jax.distributed; "
                        "gloo collectives on CPU)")
    for name in VALUE_FLAGS:
        parser.add_argument(name)


def from_namespace(args: Any) -> ProcessFlags:
    return ProcessFlags.from_flags({name: getattr(args, name[2:]) for name in FLAG_NAMES})
