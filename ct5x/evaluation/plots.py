"""Figures of the report (matplotlib, Agg backend), each written as PNG and SVG.

- low-resource curves: a task's selection metric against the training fraction (log scale; the
  full training set at 100%), one line per model, bars the 95% t interval over folds;
- bar charts: per task and setting, each model's mean selection metric (printed on the bar) with
  the same interval, and the paper's number as a black diamond when the report compares with the
  paper; the axis spans the numbers shown rather than starting at 0.
"""

from __future__ import annotations

import collections
import io
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

# The backend is chosen before pyplot is imported: no display is needed.
matplotlib.use("Agg")

import matplotlib.pyplot as plt

from ct5x.atomic import write_bytes
from ct5x.evaluation.render import scaled

FORMATS = ("png", "svg")


def _save(figure, path_stem: pathlib.Path) -> list[pathlib.Path]:
    """Writes the figure in every format atomically and closes it."""
    written = []
    for fmt in FORMATS:
        buffer = io.BytesIO()
        # A fixed date keeps the SVG the same for the same numbers.
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        figure.savefig(buffer, format=fmt, dpi=120, metadata=metadata)
        path = path_stem.with_suffix("." + fmt)
        write_bytes(path, buffer.getvalue())
        written.append(path)
    plt.close(figure)
    return written


def _point(table: Mapping[str, Any], row: Mapping[str, Any]) -> tuple[float, float, float]:
    """(mean, lower error, upper error) of a row's selection metric, as printed (percent)."""
    metric = table["selection_metric"]
    cell = row["metrics"][metric]
    centre = scaled(table, metric, cell["mean"])
    if cell["t_interval"] is None:
        return centre, 0.0, 0.0
    low, high = (scaled(table, metric, v) for v in cell["t_interval"])
    return centre, centre - low, high - centre


def curve_groups(tables: Sequence[Mapping[str, Any]]) -> dict[tuple, list[Mapping[str, Any]]]:
    """(task, site) -> its tables, for the tasks that have low-resource settings."""
    groups = collections.defaultdict(list)
    for table in tables:
        groups[(table["base_task"], table["site"])].append(table)
    return {key: group for key, group in groups.items()
            if any(t["fraction"] is not None for t in group)}


def low_resource_curve(group: Sequence[Mapping[str, Any]], stem: pathlib.Path):
    """One line per model over training fractions; returns the files written."""
    figure, axes = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    lines = collections.defaultdict(list)
    for table in group:
        x = 100.0 if table["fraction"] is None else 100 * table["fraction"]
        for row in table["rows"]:
            lines[row["label"]].append((x, *_point(table, row)))
    for index, (label, points) in enumerate(lines.items()):
        points.sort()
        xs, ys, low, high = zip(*points)
        # Nudge each model sideways a little so that overlapping bars stay readable.
        dodge = 1 + 0.04 * (index - (len(lines) - 1) / 2)
        axes.errorbar([x * dodge for x in xs], ys, yerr=[low, high], marker="o", capsize=3,
                      label=label)
    first = group[0]
    axes.set_xscale("log")
    ticks = sorted({x for points in lines.values() for x, *_ in points})
    axes.set_xticks(ticks, [f"{x:g}%" for x in ticks])
    axes.minorticks_off()
    axes.set_xlabel("training data (% of the fold's training part)")
    axes.set_ylabel(f"{first['selection_metric']} (%)")
    site = f", site {first['site']}" if first["site"] else ""
    axes.set_title(f"{first['base_task']}{site}: mean over folds, bars 95% t interval",
                   fontsize=9)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    return _save(figure, stem)


def bar_chart(table: Mapping[str, Any], stem: pathlib.Path, paper: bool):
    """Each model's mean selection metric with its interval bar; returns the files written."""
    figure, axes = plt.subplots(figsize=(max(3.5, 1.1 * len(table["rows"]) + 1.5), 3.8),
                                layout="constrained")
    points = [_point(table, row) for row in table["rows"]]
    positions = range(len(points))
    bars = axes.bar(positions, [p[0] for p in points],
                    yerr=[[p[1] for p in points], [p[2] for p in points]], capsize=4,
                    color="#4c72b0")
    axes.bar_label(bars, fmt="%.2f", label_type="center", color="white", fontsize=8)
    extremes = [p[0] - p[1] for p in points] + [p[0] + p[2] for p in points]
    if paper:
        metric = table["selection_metric"]
        published = [(i, row["metrics"][metric].get("published_percent"))
                     for i, row in enumerate(table["rows"])]
        published = [(i, value) for i, value in published if value is not None]
        if published:
            axes.scatter(*zip(*published), marker="D", color="black", zorder=3, label="paper")
            axes.legend(fontsize=7)
            extremes += [value for _, value in published]
    # Differences between models are a few points: the axis spans the data, not 0-100, and
    # says so.
    span = max(max(extremes) - min(extremes), 1.0)
    axes.set_ylim(max(0.0, min(extremes) - span), max(extremes) + 0.5 * span)
    axes.set_xticks(list(positions), [row["label"] for row in table["rows"]], rotation=30,
                    ha="right", fontsize=8)
    axes.set_ylabel(f"{table['selection_metric']} (%)")
    axes.set_title(f"{table['base_task']} - {table['setting']}: mean over folds, bars 95% t "
                   "interval (axis not from 0)", fontsize=9)
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, stem)


def draw_all(tables: Sequence[Mapping[str, Any]], folder: pathlib.Path,
             paper: bool) -> list[pathlib.Path]:
    """Every curve and bar chart of the report into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for (base_task, site), group in curve_groups(tables).items():
        name = f"low_resource_{base_task}" + (f"_site_{site}" if site else "")
        written += low_resource_curve(group, folder / name)
    for table in tables:
        written += bar_chart(table, folder / f"bars_{table['base_task']}_{table['setting']}",
                             paper)
    return written
