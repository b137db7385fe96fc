"""The live console line of a run: step, loss, tokens/s and time left (rich, on a terminal).

Off a terminal (logs, CI) the same facts are printed as one plain line per log period.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress:
    """Shows training progress from `start` to `total` steps."""

    def __init__(self, total: int, start: int = 0):
        self.total, self.start = total, start
        self.console = Console(stderr=True)
        self.started = time.perf_counter()
        self.bar = None
        if self.console.is_terminal:
            self.bar = RichProgress(
                TextColumn("step"), MofNCompleteColumn(), BarColumn(),
                TextColumn("loss {task.fields[loss]}  {task.fields[rate]} tokens/s  left"),
                TimeRemainingColumn(), console=self.console, transient=False,
            )
            self.task = self.bar.add_task("train", total=total, completed=start, loss="-",
                                          rate="-")
            self.bar.start()

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, loss=f"{loss:.4f}",
                            rate=f"{tokens_per_s:,.0f}")
            return
        done = step - self.start
        elapsed = time.perf_counter() - self.started
        left = elapsed / done * (self.total - step) if done > 0 else float("nan")
        print(f"step {step}/{self.total}  loss {loss:.4f}  {tokens_per_s:,.0f} tokens/s  "
              f"left {left:,.0f} s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
