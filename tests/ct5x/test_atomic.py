"""The one atomic-writer family: a write that fails leaves the old file (or nothing) behind."""

import os
import stat

import pytest

from ct5x.atomic import staged_directory, write_bytes, write_json, write_text
from ct5x.errors import UserInputError


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    write_json(path, {"ok": 1})
    with pytest.raises(ValueError):
        write_json(path, {"nan": float("nan")})  # not JSON: refused before anything is replaced
    with pytest.raises(TypeError):
        write_bytes(path, "not bytes")
    assert path.read_text() == '{\n  "ok": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_scripts_get_their_mode_less_the_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        write_text(tmp_path / "run.sh", "#!/bin/sh\n", mode=0o755)
        write_text(tmp_path / "notes.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "notes.txt").stat().st_mode) == 0o644


def test_a_staged_directory_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError), staged_directory(tmp_path / "out") as staging:
        (staging / "part").write_text("half")
        raise RuntimeError("stopped midway")
    assert list(tmp_path.iterdir()) == []
    with staged_directory(tmp_path / "out") as staging:
        (staging / "part").write_text("whole")
    assert (tmp_path / "out" / "part").read_text() == "whole"
    with pytest.raises(UserInputError, match="already exists and is not empty"), \
            staged_directory(tmp_path / "out"):
        pass
