"""How the demo runs: numbered stage lines with the time left.

The time left is a prediction from the demo's settings (seconds per pre-training step, per
fine-tuning run and step, per evaluation, measured on a 2-core machine), scaled by how much faster
or slower than predicted the finished stages went.
"""

from __future__ import annotations

import time

# Seconds of each part of a stage, set from runs on a 2-core machine shared with other jobs; the
# time-left estimate scales them by how fast the finished stages went.
SECONDS_PER_PRETRAIN_STEP, SECONDS_PER_RUN, SECONDS_PER_FINETUNE_STEP = 0.2, 3.0, 0.05
SECONDS_PER_EVALUATION = 1.2


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


class Stages:
    """Numbered stage lines, each with the time so far and an estimate of the time left."""

    PRIOR = 60.0  # seconds of prediction taken on trust before the measured pace

    def __init__(self, estimates: list[float]):
        self.estimates, self.number = estimates, 0
        self.started = self.stage_started = time.monotonic()

    def next(self, text: str) -> None:
        now = time.monotonic()
        if self.number:
            print(f"   ({now - self.stage_started:.0f} s)", flush=True)
        # How much slower than predicted the finished stages went, trusted as it grows.
        done = sum(self.estimates[:self.number])
        pace = (now - self.started + self.PRIOR) / (done + self.PRIOR)
        left = pace * sum(self.estimates[self.number:])
        self.number, self.stage_started = self.number + 1, now
        print(f"\n== {self.number}/{len(self.estimates)} {text}  [{duration(now - self.started)}"
              f" so far, about {duration(left)} left]", flush=True)

    def finish(self) -> float:
        now = time.monotonic()
        print(f"   ({now - self.stage_started:.0f} s)", flush=True)
        return now - self.started


def run_count(settings, fractions: tuple[float, ...]) -> int:
    """Fine-tuning runs of the demo's grid (`settings` is a `demo.DemoSettings`)."""
    per_fold = (len(fractions) * len(settings.low_resource_learning_rates)
                + len(settings.learning_rates))
    return len(settings.models) * settings.num_folds * per_fold


def stage_estimates(settings, fractions: tuple[float, ...]) -> list[float]:
    """Predicted seconds of each of the demo's six stages."""
    runs = run_count(settings, fractions)
    pretrained = sum(model in ("clinical", "general") for model in settings.models)
    evaluated = len(settings.models) * settings.num_folds * (len(fractions) + 1)  # chosen runs
    return [3.0, 5.0, 15 + pretrained * SECONDS_PER_PRETRAIN_STEP * settings.pretrain_steps,
            runs * (SECONDS_PER_RUN + SECONDS_PER_FINETUNE_STEP * settings.finetune_steps),
            5 + evaluated * SECONDS_PER_EVALUATION, 2.0]
