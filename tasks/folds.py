"""Cross-validation folds and nested low-resource samples, written to folds.json.

Train and dev are merged; test is untouched. Groups (premise, report, document) never straddle
train and validation: the groups are put in the order of a keyed hash of (seed, group) (BLAKE2b,
so the order depends on no library's random stream) and dealt one by one to the fold with the
fewest examples so far. A low-resource sample of fold k takes whole groups of its training part in
the order of the keyed hash of (seed, k, group): the first max(1, floor(fraction x groups)) of
them (the study's MedNLI 1% takes 1% of the premises), so 1% lies inside 5% inside 25%.

Stigma keeps the study's rule (`study_folds`): its CSV assigns each row a `fold_eval`; fold k trains
on the `train` rows with fold_eval != k and validates on the `dev` rows with fold_eval == k. Its
samples are drawn per fold_eval group of `train` rows, round(fraction x rows) each in the keyed-hash
order of (seed, group, row id), as the study's downsample_data.py draws them; fold k's sample is the
union of the samples of the groups it trains on. Nothing depends on hashing of str objects or set
order, so the folds are the same under any PYTHONHASHSEED, machine, run or numpy version.
"""

import hashlib
import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from fractions import Fraction

from ct5x import storage
from ct5x.atomic import write_text
from ct5x.errors import UserInputError
from ct5x_tasks.family import Family
from ct5x_tasks.naming import NUM_FOLDS, fraction_key
from ct5x_tasks.records import Record, sha256_of_files

# Files written from this version on carry "format": 2. Files without it (format 1) were made with
# a numpy-ordered shuffle and, for Stigma, `row<n>` ids; they are read as they are.
FOLDS_FORMAT = 2


def hash_order(seed: int, scope: str, names: Sequence[str]) -> list[int]:
    """Positions of `names` sorted by a BLAKE2b hash keyed with `seed` of (scope, name)."""
    key = str(seed).encode("utf-8")

    def digest(position: int) -> tuple[bytes, str]:
        data = f"{scope}\0{names[position]}".encode()
        return hashlib.blake2b(data, key=key, digest_size=16).digest(), names[position]

    return sorted(range(len(names)), key=digest)


def _group_index(groups: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Sorted distinct groups and, for each, the positions of its examples."""
    members: dict[str, list[int]] = {}
    for position, group in enumerate(groups):
        members.setdefault(group, []).append(position)
    names = sorted(members)
    return names, [members[name] for name in names]


def _check_fractions(fractions: Sequence[float]) -> None:
    if any(not 0 < fraction < 1 for fraction in fractions):
        raise UserInputError(f"fractions must lie strictly between 0 and 1, got {list(fractions)}")


def _nested_samples(
    ids: Sequence[str], groups: Sequence[str], fractions: Sequence[float], seed: int, fold: int
) -> dict[str, list[str]]:
    """Nested group-aware samples of `ids`, one per fraction, ids in input order."""
    names, members = _group_index(groups)
    order = hash_order(seed, f"fold{fold}", names)
    samples = {}
    for fraction in sorted(fractions):
        wanted = max(1, math.floor(Fraction(fraction_key(fraction)) * len(names)))
        chosen = sorted(position for group in order[:wanted] for position in members[group])
        samples[fraction_key(fraction)] = [ids[i] for i in chosen]
    return samples


def make_folds(
    ids: Sequence[str],
    groups: Sequence[str],
    seed: int = 42,
    fractions: Sequence[float] = (),
    num_folds: int = NUM_FOLDS,
) -> dict:
    """Group-aware folds over train+dev examples: {"seed", "folds": [{"fold", "train",
    "validation", "fractions"}]}, ids in input order."""
    if len(ids) != len(groups) or len(set(ids)) != len(ids):
        raise ValueError("ids must be unique and match groups one to one")
    _check_fractions(fractions)
    names, members = _group_index(groups)
    sizes = [0] * num_folds
    fold_of = [0] * len(ids)
    for group in hash_order(seed, "folds", names):
        fold = sizes.index(min(sizes))
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
                    [ids[i] for i in train], [groups[i] for i in train], fractions, seed, fold
                ),
            }
        )
    return {"seed": seed, "folds": folds}


def study_folds(
    ids: Sequence[str],
    splits: Sequence[str],
    fold_evals: Sequence[int],
    seed: int = 42,
    fractions: Sequence[float] = (),
    num_folds: int = NUM_FOLDS,
) -> dict:
    """Stigma's folds as the study forms them from each row's split and fold_eval (module doc)."""
    if not len(ids) == len(splits) == len(fold_evals) or len(set(ids)) != len(ids):
        raise ValueError("ids must be unique and match splits and fold_evals one to one")
    _check_fractions(fractions)
    samples: dict[str, set[str]] = {fraction_key(f): set() for f in fractions}
    for group in range(num_folds):
        rows = [ids[i] for i in range(len(ids)) if splits[i] == "train" and fold_evals[i] == group]
        order = [rows[i] for i in hash_order(seed, f"fold_eval{group}", rows)]
        for fraction in fractions:
            samples[fraction_key(fraction)].update(order[: round(len(rows) * fraction)])
    folds = []
    for fold in range(num_folds):
        train = [ids[i] for i in range(len(ids)) if splits[i] == "train" and fold_evals[i] != fold]
        folds.append(
            {
                "fold": fold,
                "train": train,
                "validation": [
                    ids[i] for i in range(len(ids)) if splits[i] == "dev" and fold_evals[i] == fold
                ],
                "fractions": {
                    key: [i for i in train if i in sample] for key, sample in sorted(
                        samples.items(), key=lambda item: float(item[0]))
                },
            }
        )
    return {"seed": seed, "folds": folds}


def resolve_folder(family: Family, data_dir: str | os.PathLike) -> pathlib.Path:
    """The dataset's own folder: `data_dir` itself or `<data_dir>/<family.folder>`."""
    for folder in (storage.path(data_dir), storage.path(data_dir) / family.folder):
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
    ids = [record.id for record in pool]
    if family.fixed_fold_field:
        content = study_folds(
            ids, [record.split for record in pool],
            [int(record.fields[family.fixed_fold_field]) for record in pool], seed, fractions,
        )
    else:
        content = make_folds(ids, [record.group for record in pool], seed, fractions)
    test = [record.id for record in records if record.split == "test"]
    return {"task": family.base, "format": FOLDS_FORMAT, "seed": seed, "test": test,
            "folds": content["folds"]}


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
    out = storage.path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "folds.json"
    write_text(target, json.dumps(content))
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
    if content.get("format", 1) > FOLDS_FORMAT:
        raise UserInputError(f"{path}: written by a newer ct5x (format {content['format']})")
    return content
