"""Folds: disjoint, covering train+dev, group-aware, nested fractions, identical across processes."""

import argparse
import itertools
import json
import os
import subprocess
import sys

import pytest

from ct5x.errors import UserInputError
from ct5x_tasks import folds
from ct5x_tasks.catalog import FAMILIES

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
        for sample in samples:
            assert sample <= train
            groups = {pool[i].group for i in sample}
            assert sample == {i for i in train if pool[i].group in groups}


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


def test_stigma_keeps_its_fold_eval(data_root, tmp_path):
    family = FAMILIES["stigma_compliance"]
    path = folds.write_folds("stigma_compliance", str(data_root / "stigma"), str(tmp_path))
    content = json.loads(path.read_text())
    records = {r.id: r for r in family.load(data_root / "stigma")}
    for fold in content["folds"]:
        assert {records[i].fields["fold_eval"] for i in fold["validation"]} == {fold["fold"]}
        assert sorted(fold["fractions"], key=float) == ["0.01", "0.05", "0.25"]
        assert len(fold["fractions"]["0.25"]) == round(0.25 * len(fold["train"]))
    _check(content, list(records.values()))


def test_make_folds_balances_and_rejects_bad_fractions():
    ids = [f"e{i}" for i in range(103)]
    content = folds.make_folds(ids, ids, seed=1, fractions=(0.01,))
    sizes = sorted(len(f["validation"]) for f in content["folds"])
    assert sizes[-1] - sizes[0] <= 1
    assert all(len(f["fractions"]["0.01"]) == 1 for f in content["folds"])
    assert folds.make_folds(ids, ids, seed=2) != folds.make_folds(ids, ids, seed=1)
    with pytest.raises(UserInputError, match="between 0 and 1"):
        folds.make_folds(ids, ids, fractions=(1.5,))


_SCRIPT = """
import json, sys
from ct5x_tasks import folds
print(json.dumps(folds.make_folds(*json.loads(sys.argv[1]), seed=42, fractions=(0.2, 0.5))))
"""


def test_identical_under_any_pythonhashseed(tmp_path):
    ids = [f"id{i}" for i in range(60)]
    groups = [f"premise {i // 3}" for i in range(60)]
    processes = [
        subprocess.Popen([sys.executable, "-c", _SCRIPT, json.dumps([ids, groups])],
                         env=dict(os.environ, PYTHONHASHSEED=seed, TF_CPP_MIN_LOG_LEVEL="3"),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for seed in ("1", "2")
    ]
    outputs = [process.communicate()[0].strip().splitlines()[-1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0]) == folds.make_folds(ids, groups, 42, (0.2, 0.5))


def test_cli_glue(data_root, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    folds.add_folds_arguments(parser)
    args = parser.parse_args(["--task", "mednli", "--data-dir", str(data_root), "--out",
                              str(tmp_path / "out"), "--seed", "5", "--fractions", "0.2,0.4"])
    assert folds.folds_command(args) == 0
    content = json.loads((tmp_path / "out" / "folds.json").read_text())
    assert content["seed"] == 5 and set(content["folds"][0]["fractions"]) == {"0.2", "0.4"}
    assert "folds.json" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["--task", "x", "--data-dir", "d", "--out", "o", "--fractions", "a"])
    with pytest.raises(UserInputError, match="unknown base task 'medli'; nearest: mednli"):
        folds.write_folds("medli", str(data_root), str(tmp_path))
    with pytest.raises(UserInputError, match="no radqa source files"):
        folds.write_folds("radqa", str(tmp_path), str(tmp_path))
