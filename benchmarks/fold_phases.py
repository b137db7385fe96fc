"""How benchmarks/fold.py splits one fold's wall time into phases, the same way for both pipelines.

Each process of a pipeline leaves a timeline record (`ct5x.timing`: marks and phases in seconds
since the process started, and the compilation JAX reported inside each), and the benchmark
measures its wall time from launch to exit. ct5x runs one process (`ct5x train` scoring the test
split after training) or two (`ct5x train`, then `ct5x evaluate`); the study's Seq2SeqTrainer
pipeline runs one (benchmarks/fold_study.py) and records the same marks and phases. A phase's
compilation is counted once, under "compile".
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

PHASES = ("start_up", "compile", "training", "validation", "checkpoints", "test_prediction",
          "other")
LABELS = {
    "start_up": "start-up (imports, data, model; every process)",
    "compile": "compile (JAX tracing + XLA)",
    "training": "training steps",
    "validation": "validation (loss + greedy decoding)",
    "checkpoints": "checkpoint save/load",
    "test_prediction": "test prediction (decode, score, write)",
    "other": "other (run records, exit)",
    "whole": "whole fold",
    "cpu": "CPU time, all processes (user + system)",
}
ROWS = (*PHASES, "whole", "cpu")
# Timeline phase -> benchmark phase.
PHASE_OF = {"validation": "validation", "checkpoint_save": "checkpoints",
            "checkpoint_wait": "checkpoints",
            "checkpoint_load": "checkpoints", "test_prediction": "test_prediction"}


def _own(fields: dict) -> float:
    """A timeline phase's seconds less the compilation inside it."""
    return fields["seconds"] - fields.get("compile_seconds", 0.0)


def process_phases(record: dict, wall: float) -> dict[str, float]:
    """One process's wall time split into PHASES.

    Training is the loop between the marks `training_start` and `training_end` less the phases
    inside it (validation, checkpoints) and less its compilation. Start-up is everything before
    the main work (the training loop, else the first test prediction) that is neither
    compilation nor another phase. "other" is what is left of the wall time (for instance the
    run's records after the loop and the interpreter's exit).
    """
    seconds = dict.fromkeys(PHASES, 0.0)
    seconds["compile"] = record["compile_seconds"]
    phases = record["phases"]
    for name, fields in phases.items():
        seconds[PHASE_OF[name]] += _own(fields)
    marks = record["marks"]
    if "training_start" in marks:
        start, end = marks["training_start"], marks["training_end"]
        inside = [f for f in phases.values()
                  if f["first_start"] >= start["at"] and f["last_end"] <= end["at"]]
        loop_compile = end["compile_before"] - start["compile_before"]
        seconds["training"] = (end["at"] - start["at"] - sum(_own(f) for f in inside)
                               - loop_compile)
        begun, compiled_before = start["at"], start["compile_before"]
    else:
        first = phases["test_prediction"]
        begun, compiled_before = first["first_start"], first["compile_before"]
    earlier = sum(_own(f) for f in phases.values() if f.get("last_end", begun) <= begun)
    seconds["start_up"] = begun - compiled_before - earlier
    seconds["other"] = wall - sum(seconds.values())
    return seconds


def pipeline_phases(processes: Sequence[tuple[dict, float, float]]) -> dict[str, float]:
    """The phases of a pipeline's (timeline, wall, CPU seconds) processes, added up; "whole":
    their total wall time; "cpu": the CPU time they used (less sensitive to other load)."""
    total = dict.fromkeys(PHASES, 0.0)
    for record, wall, _ in processes:
        for name, value in process_phases(record, wall).items():
            total[name] += value
    total["whole"] = sum(wall for _, wall, _ in processes)
    total["cpu"] = sum(cpu for _, _, cpu in processes)
    return total


def paired_ratios(ours: Sequence[dict], theirs: Sequence[dict], name: str) -> list[float]:
    """The study's time over ct5x's for phase `name`, round by round (above 1: ct5x faster);
    rounds where ct5x spent no time on it are left out."""
    return sorted(t[name] / o[name] for o, t in zip(ours, theirs) if o[name] > 0)


def summarise(ours: Sequence[dict], theirs: Sequence[dict]) -> dict[str, dict]:
    """Per phase: each pipeline's median seconds and the median and range of the per-round
    ratios."""
    summary = {}
    for name in ROWS:
        ratios = paired_ratios(ours, theirs, name)
        summary[name] = {
            "ct5x_s": round(statistics.median(r[name] for r in ours), 2),
            "study_s": round(statistics.median(r[name] for r in theirs), 2),
            "ratio": round(statistics.median(ratios), 3) if ratios else None,
            "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)] if ratios else None,
        }
    return summary


def table(summary: dict[str, dict], rounds: int) -> str:
    """The printed table: one row per phase, then the whole fold and the CPU time."""
    header = f"phase (median of {rounds} rounds)"
    lines = [f"{header:<42} {'ct5x s':>9} {'study s':>9} {'ratio':>7} {'per round':>12}"]
    for name in ROWS:
        row = summary[name]
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        spread = ("" if row["ratio_range"] is None
                  else f"{row['ratio_range'][0]:.2f}-{row['ratio_range'][1]:.2f}")
        lines.append(f"{LABELS[name]:<42} {row['ct5x_s']:>9.1f} {row['study_s']:>9.1f} "
                     f"{ratio:>7} {spread:>12}")
    return "\n".join(lines)
