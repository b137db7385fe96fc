"""Folds: disjoint, covering train+dev, group-aware, nested fractions, identical across processes;
Stigma's folds and samples as the study forms them; older folds files still read."""

import hashlib
import itertools
import json
import math
import os
import subprocess
import sys

import pytest

from ct5x.errors import UserInputError
from ct5x_tasks import folds
from ct5x_tasks.catalog import FAMILIES
from tests.tasks.conftest import make_stigma

GROUPED = ("mednli", "radqa", "clip", "hoc")


def _check(content, records):
    pool = {r.id: r for r in records if r.split != "test"}
    assert content["test"] == [r.id for r in records if r.split == "test"]
    validations = [set(f["validation"]) for f in content["folds"]]
    assert set().union(*validations) == set(pool)
    assert sum(len(v) for v in validations) == len(pool)
    for fold, validation in zip(content["folds"], validations):
        train = set(fold["train"])
        assert train | validation == set(pool) and not train & validation
        assert {pool[i].group for i in train}.isdisjoint({pool[i].group for i in validation})
        samples = [set(fold["fractions"][key]) for key in sorted(fold["fractions"], key=float)]
        for smaller, larger in itertools.pairwise(samples):
            assert smaller <= larger
        train_groups = {pool[i].group for i in train}
        for key, sample in fold["fractions"].items():
            assert sample == [i for i in fold["train"] if i in set(sample)]  # in input order
            groups = {pool[i].group for i in sample}
            assert set(sample) == {i for i in train if pool[i].group in groups}
            assert len(groups) == max(1, math.floor(float(key) * len(train_groups) + 1e-9))


@pytest.mark.parametrize("base", GROUPED)
def test_group_aware_folds(base, data_root, tmp_path):
    family = FAMILIES[base]
    path = folds.write_folds(base, str(data_root), str(tmp_path / base), seed=3,
                             fractions=(0.1, 0.3, 0.5))
    content = json.loads(path.read_text())
    assert content["task"] == base and content["seed"] == 3
    assert len(content["source_sha256"]) == 64
    _check(content, family.load(data_root / family.folder))
    assert not list(path.parent.glob("*.tmp"))


def _by_study_rule(records, seed, fractions):
    """Stigma folds written out from the study's rule, with the keyed-hash row order."""
    def order(group, ids):
        key = str(seed).encode()
        return sorted(ids, key=lambda i: (hashlib.blake2b(f"fold_eval{group}\0{i}".encode(),
                                                          key=key, digest_size=16).digest(), i))

    chosen = {fraction: set() for fraction in fractions}
    for group in range(5):
        rows = [r.id for r in records if r.split == "train" and r.fields["fold_eval"] == group]
        for fraction in fractions:
            chosen[fraction] |= set(order(group, rows)[:round(len(rows) * fraction)])
    expected = []
    for k in range(5):
        train = [r.id for r in records if r.split == "train" and r.fields["fold_eval"] != k]
        expected.append({
            "fold": k, "train": train,
            "validation": [r.id for r in records
                           if r.split == "dev" and r.fields["fold_eval"] == k],
            "fractions": {f"{fraction:g}": [i for i in train if i in chosen[fraction]]
                          for fraction in fractions},
        })
    return expected


def test_stigma_folds_and_samples_follow_the_study(data_root, tmp_path):
    make_stigma(tmp_path / "stigma", per_category=1000)
    family = FAMILIES["stigma_compliance"]
    path = folds.write_folds("stigma_compliance", str(tmp_path / "stigma"), str(tmp_path / "out"),
                             seed=7)
    content = json.loads(path.read_text())
    records = family.load(tmp_path / "stigma")
    assert content["format"] == 2
    assert content["folds"] == _by_study_rule(records, 7, (0.01, 0.05, 0.25))
    assert content["test"] == [r.id for r in records if r.split == "test"]
    fold_eval = {r.id: r.fields["fold_eval"] for r in records}
    for fold in content["folds"]:
        samples = [set(fold["fractions"][key]) for key in ("0.01", "0.05", "0.25")]
        assert samples[0] and samples[0] <= samples[1] <= samples[2] <= set(fold["train"])
        assert fold["fold"] not in {fold_eval[i] for i in samples[2]}
    # A sample of one fold_eval group is the same in every fold that trains on that group.
    def group_sample(fold, group):
        return {i for i in fold["fractions"]["0.05"] if fold_eval[i] == group}
    assert group_sample(content["folds"][0], 3) == group_sample(content["folds"][1], 3)


def test_keyed_hash_order_is_the_documented_one():
    names = [f"premise {i}" for i in range(30)]
    key = b"42"
    expected = sorted(range(30), key=lambda i: (hashlib.blake2b(
        b"folds\0" + names[i].encode(), key=key, digest_size=16).digest(), names[i]))
    assert folds.hash_order(42, "folds", names) == expected
    assert folds.hash_order(43, "folds", names) != expected


def test_make_folds_balances_and_rejects_bad_fractions():
    ids = [f"e{i}" for i in range(103)]
    content = folds.make_folds(ids, ids, seed=1, fractions=(0.01,))
    sizes = sorted(len(f["validation"]) for f in content["folds"])
    assert sizes[-1] - sizes[0] <= 1
    assert all(len(f["fractions"]["0.01"]) == 1 for f in content["folds"])
    assert folds.make_folds(ids, ids, seed=2) != folds.make_folds(ids, ids, seed=1)
    with pytest.raises(UserInputError, match="between 0 and 1"):
        folds.make_folds(ids, ids, fractions=(1.5,))
    with pytest.raises(UserInputError, match="between 0 and 1"):
        folds.study_folds(ids, ["train"] * 103, [0] * 103, fractions=(0.0,))


_SCRIPT = """
import json, sys
from ct5x_tasks import folds
print(json.dumps(folds.make_folds(*json.loads(sys.argv[1]), seed=42, fractions=(0.2, 0.5))))
"""


def test_identical_under_another_pythonhashseed():
    ids = [f"id{i}" for i in range(60)]
    groups = [f"premise {i // 3}" for i in range(60)]
    process = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps([ids, groups])],
        env=dict(os.environ, PYTHONHASHSEED="12345", TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True,
    )
    output = process.stdout.strip().splitlines()[-1]
    assert json.loads(output) == folds.make_folds(ids, groups, 42, (0.2, 0.5))


def test_write_folds_names_unknown_tasks_and_missing_files(data_root, tmp_path):
    with pytest.raises(UserInputError, match="unknown base task 'medli'; nearest: mednli"):
        folds.write_folds("medli", str(data_root), str(tmp_path))
    with pytest.raises(UserInputError, match="no radqa source files"):
        folds.write_folds("radqa", str(tmp_path), str(tmp_path))
