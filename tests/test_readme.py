"""Every command README.md shows is copy-pasteable: each is run as written, except those that need
checkpoints, data or finished runs the repository does not have; those are checked against the
command's own --help (every flag they use must be there) and their gin bindings are parsed."""

import pathlib
import re
import shlex

import pytest

from ct5x import cli
from ct5x.train import load_settings

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Commands that read what only a user has: checkpoints and data (absolute paths) or finished runs.
NEEDS_OUTSIDE = re.compile(r"(^|['\"=])/|^runs/")


def readme_commands() -> list[str]:
    """The command lines of README's `sh` blocks, continuation lines joined, comments dropped;
    every other fenced block must say it is output (`text`)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    kinds = re.findall(r"^```(\w*)\n.*?^```", text, re.DOTALL | re.MULTILINE)
    assert set(kinds) <= {"sh", "text"}, kinds
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command:
                commands.append(command)
    return commands


COMMANDS = readme_commands()


def _run(argv, capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # --help
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _subcommand(words: list[str]) -> list[str]:
    """The command words before the first argument: ['sweep', 'run'], ['evaluate']."""
    names = []
    for word in words:
        if word.startswith("-") or "/" in word or word.endswith(".gin"):
            break
        names.append(word)
    return names


def test_readme_shows_the_two_commands_and_only_commands_tested_here():
    assert COMMANDS[:2] == ["make demo", "make test"]
    assert all(command.split()[0] in ("make", "ct5x") for command in COMMANDS), COMMANDS
    makefile = (ROOT / "Makefile").read_text()
    for command in COMMANDS[:2]:  # `make demo` runs the demo that tests/ct5x/test_demo.py runs
        assert re.search(rf"^{command.split()[1]}:", makefile, re.MULTILINE)
    assert "$(BIN)/python -m ct5x.demo --workdir demo_output" in makefile


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("ct5x")])
def test_readme_command(command, tmp_path, monkeypatch, capsys):
    words = shlex.split(command)[1:]
    monkeypatch.chdir(tmp_path)  # what a command writes (launch scripts) lands here
    (tmp_path / "gin").symlink_to(ROOT / "gin")
    if not any(NEEDS_OUTSIDE.search(word) for word in words):
        code, output = _run(words, capsys)
        assert code == 0, output
        return
    subcommand = _subcommand(words)
    code, help_text = _run([*subcommand, "--help"], capsys)
    assert code == 0, help_text
    flags = {word.split("=")[0] for word in words if word.startswith("--")}
    for flag in flags:
        expected = "--gin." if flag.startswith("--gin.") else flag
        if subcommand[0] != "sweep" or expected != "--gin.":  # sweep's --gin. is checked below
            assert expected in help_text, (flag, command)
    bindings = [word[len("--gin."):] for word in words if word.startswith("--gin.")]
    if subcommand == ["train"]:
        files = [word.split("=", 1)[1] for word in words if word.startswith("--gin_file=")]
        load_settings(files, [binding.replace("=", " = ", 1) for binding in bindings])
    elif subcommand[0] == "sweep":  # the same grid and bindings, planned
        experiment = next(word for word in words if word.endswith(".gin"))
        code, output = _run(["sweep", "plan", experiment, *(f"--gin.{b}" for b in bindings)],
                            capsys)
        assert code == 0, output
