"""Progress bars on stderr for `ct5x evaluate`: one over all runs, one over the current run's
examples. Only run directory names and counts are shown, never example text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class EvaluationProgress:
    """Context manager; a disabled one draws nothing."""

    def __init__(self, total_runs: int, enabled: bool = True):
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._overall = self._progress.add_task("runs", total=total_runs)
        self._current = None

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def start_run(self, name: str, examples: int) -> Callable[[int], None]:
        """Adds the bar of one run; returns the function that advances it by n examples."""
        self._drop_current()
        self._current = self._progress.add_task(f"  {name}", total=examples)
        current = self._current
        return lambda n: self._progress.advance(current, n)

    def finish_run(self) -> None:
        """One more run done (scored, skipped or failed)."""
        self._drop_current()
        self._progress.advance(self._overall, 1)

    def _drop_current(self) -> None:
        if self._current is not None:
            self._progress.remove_task(self._current)
            self._current = None
