"""The shared JSON Lines reader and atomic writer."""

import json

import pytest

from ct5x.errors import UserInputError
from ct5x.jsonl import read_values, write_atomic


def test_line_separators_inside_strings_stay_in_their_line(tmp_path):
    path = tmp_path / "in.jsonl"
    records = [{"inputs": "a\u2028b\u0085c"}, {"inputs": "d"}]
    write_atomic(path, records)
    assert [value for _, value in read_values(path)] == records


def test_blank_lines_are_skipped_and_bad_lines_named(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n[2]\n{broken\n')
    with pytest.raises(UserInputError, match=r"in\.jsonl:4: not valid JSON$"):
        read_values(path)
    path.write_text('{"a": 1}\n\n[2]\n')
    assert read_values(path) == [(1, {"a": 1}), (3, [2])]


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(UserInputError, match="absent.jsonl: cannot read"):
        read_values(tmp_path / "absent.jsonl")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"a": "\xe9"}\n')
    with pytest.raises(UserInputError, match="latin.jsonl: not UTF-8"):
        read_values(latin)


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(TypeError):
        write_atomic(path, [{"ok": 1}, {"not serialisable": object()}])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserInputError, match="does not exist"):
        write_atomic(tmp_path / "missing" / "out.jsonl", [])
    write_atomic(path, [{"ok": 1}])
    assert json.loads(path.read_text()) == {"ok": 1}
