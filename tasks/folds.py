"""Cross-validation folds and nested low-resource samples (SPEC §5), written to folds.json.

Train and dev are merged; test is untouched. Groups (premise, report, document) never straddle
train and validation: the groups are sorted, shuffled by a numpy Generator seeded with `seed`, and
dealt one by one to the fold with the fewest examples so far. Stigma keeps its own `fold_eval`.
Low-resource samples come from each fold's training part only: its groups in an order shuffled by
Generator([seed, fold]), and each fraction takes the shortest prefix reaching
max(1, round(fraction * n)) examples, so 1% lies inside 5% inside 25%. Nothing depends on hashing or
set order, so the folds are the same under any PYTHONHASHSEED, machine or run.
"""

import argparse
import json
import os
import pathlib
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np

from ct5x.errors import UserInputError
from ct5x_tasks.family import Family
from ct5x_tasks.naming import NUM_FOLDS, fraction_key
from ct5x_tasks.records import Record, sha256_of_files


def _group_index(groups: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Sorted distinct groups and, for each, the positions of its examples."""
    members: dict[str, list[int]] = {}
    for position, group in enumerate(groups):
        members.setdefault(group, []).append(position)
    names = sorted(members)
    return names, [members[name] for name in names]


def _nested_samples(
    ids: Sequence[str], groups: Sequence[str], fractions: Sequence[float], rng: np.random.Generator
) -> dict[str, list[str]]:
    """Nested group-aware samples of `ids`, one per fraction, ids in input order."""
    _, members = _group_index(groups)
    order = rng.permutation(len(members))
    samples = {}
    for fraction in sorted(fractions):
        wanted = max(1, round(fraction * len(ids)))
        chosen, count = [], 0
        for group in order:
            if count >= wanted:
                break
            chosen.extend(members[group])
            count += len(members[group])
        samples[fraction_key(fraction)] = [ids[i] for i in sorted(chosen)]
    return samples


def make_folds(
    ids: Sequence[str],
    groups: Sequence[str],
    seed: int = 42,
    fractions: Sequence[float] = (),
    fixed_folds: Sequence[int] | None = None,
    num_folds: int = NUM_FOLDS,
) -> dict:
    """Folds over train+dev examples: {"seed", "folds": [{"fold", "train", "validation",
    "fractions"}]}, ids in input order. `fixed_folds` gives each example's fold (Stigma)."""
    if len(ids) != len(groups) or len(set(ids)) != len(ids):
        raise ValueError("ids must be unique and match groups one to one")
    if any(not 0 < fraction < 1 for fraction in fractions):
        raise UserInputError(f"fractions must lie strictly between 0 and 1, got {list(fractions)}")
    if fixed_folds is not None:
        fold_of = list(fixed_folds)
    else:
        names, members = _group_index(groups)
        sizes = [0] * num_folds
        fold_of = [0] * len(ids)
        for group in np.random.default_rng(seed).permutation(len(names)):
            fold = int(np.argmin(sizes))
            sizes[fold] += len(members[group])
            for position in members[group]:
                fold_of[position] = fold
    folds = []
    for fold in range(num_folds):
        train = [i for i in range(len(ids)) if fold_of[i] != fold]
        folds.append(
            {
                "fold": fold,
                "train": [ids[i] for i in train],
                "validation": [ids[i] for i in range(len(ids)) if fold_of[i] == fold],
                "fractions": _nested_samples(
                    [ids[i] for i in train],
                    [groups[i] for i in train],
                    fractions,
                    np.random.default_rng([seed, fold]),
                ),
            }
        )
    return {"seed": seed, "folds": folds}


def resolve_folder(family: Family, data_dir: str | os.PathLike) -> pathlib.Path:
    """The dataset's own folder: `data_dir` itself or `<data_dir>/<family.folder>`."""
    for folder in (pathlib.Path(data_dir), pathlib.Path(data_dir) / family.folder):
        try:
            if all(path.is_file() for path in family.source_files(folder)):
                return folder
        except UserInputError:
            continue
    raise UserInputError(f"{data_dir}: no {family.base} source files here or in {family.folder}/")


def folds_for_records(family: Family, records: Sequence[Record], seed: int,
                      fractions: Sequence[float]) -> dict:
    """folds.json content (less the digest) for one family's records."""
    pool = [record for record in records if record.split != "test"]
    fixed = None
    if family.fixed_fold_field:
        fixed = [int(record.fields[family.fixed_fold_field]) for record in pool]
    content = make_folds(
        [record.id for record in pool], [record.group for record in pool], seed, fractions, fixed
    )
    test = [record.id for record in records if record.split == "test"]
    return {"task": family.base, "seed": seed, "test": test, "folds": content["folds"]}


def write_folds(
    task: str, data_dir: str, out_dir: str, seed: int = 42, fractions: tuple[float, ...] = ()
) -> pathlib.Path:
    """Write `<out_dir>/folds.json` for base task `task` atomically; returns its path.

    `data_dir` is the dataset's folder (or the DATA_DIR root holding it). Empty `fractions` means
    the paper's fractions for the task (MedNLI 1%; Stigma 1%, 5%, 25%; none otherwise).
    """
    from ct5x_tasks.catalog import family_of_base

    family = family_of_base(task)
    folder = resolve_folder(family, data_dir)
    content = folds_for_records(family, family.load(folder), seed, fractions or family.fractions)
    content["source_sha256"] = sha256_of_files(family.source_files(folder))
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "folds.json"
    with tempfile.NamedTemporaryFile("w", dir=out, suffix=".tmp", delete=False) as stream:
        json.dump(content, stream)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(stream.name, target)
    return target


def read_folds(path: pathlib.Path, family: Family, folder: pathlib.Path) -> Mapping:
    """folds.json checked against the task and the current source files."""
    if not path.is_file():
        raise UserInputError(
            f"{path}: no folds file; make it with `ct5x folds --task {family.base} --data-dir "
            f"{folder} --out {path.parent}`"
        )
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserInputError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if content.get("task") != family.base:
        raise UserInputError(f"{path}: made for task {content.get('task')!r}, not {family.base!r}")
    if content.get("source_sha256") != sha256_of_files(family.source_files(folder)):
        raise UserInputError(f"{path}: made from other source files than those in {folder}")
    return content


def _parse_fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text}") from None


def add_folds_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `ct5x folds`."""
    parser.add_argument("--task", required=True, help="base task name, e.g. mednli")
    parser.add_argument("--data-dir", required=True, help="the dataset's folder (or DATA_DIR)")
    parser.add_argument("--out", required=True, help="folder to write folds.json into")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--fractions", type=_parse_fractions, default=(),
        help="training fractions, e.g. 0.01,0.05,0.25 (default: the paper's for the task)",
    )


def folds_command(args: argparse.Namespace) -> int:
    """Write folds.json and print where, with the fold sizes."""
    path = write_folds(args.task, args.data_dir, args.out, args.seed, tuple(args.fractions))
    content = json.loads(path.read_text(encoding="utf-8"))
    sizes = ", ".join(
        f"{fold['fold']}: {len(fold['train'])}/{len(fold['validation'])}"
        for fold in content["folds"]
    )
    print(f"{path} (test {len(content['test'])}; fold train/validation {sizes})")
    return 0
