"""The shell commands of README.md, as tests/test_readme.py runs them.

A command is a line of a code block (indented or fenced) that starts with
``python -m interp_pipeline``, ``bash``, ``mlflow`` or ``.venv/bin/python``, joined
with its ``\\`` continuation lines. Its trailing comment may say ``needs: WHAT``:
such a command is listed but not run, and WHAT must be one of ``REASONS``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

# Why a README command cannot run in the test, and what it would need.
REASONS = {
    "hub": "downloads a model, SAE or dataset from the Hugging Face hub",
    "gpu": "a GPU",
    "network": "installs packages from PyPI",
    "server": "serves until stopped",
    "files": "a folder of the reader's own",
    "suite": "runs the test suite that contains this test",
    "cluster": "a Ray cluster or SLURM, with a tracking server and a filesystem every worker sees",
    "repeat": "runs in full elsewhere in CI, named in its comment (.ci/run's reproduction suite, tests/rehearsal)",
}
_STARTS = ("python -m interp_pipeline", "bash ", "mlflow ", ".venv/bin/python")
_NEEDS = re.compile(r"needs:\s*([a-z]+)")


@dataclass(frozen=True)
class Command:
    line: int               # 1-based line of README.md where it starts
    text: str               # the command, continuations joined, without its comment
    comment: str            # its trailing comment ('' when none)

    @property
    def needs(self) -> str | None:
        found = _NEEDS.search(self.comment)
        return found.group(1) if found else None

    def argv(self) -> list[str]:
        return shlex.split(self.text)


def _split_comment(line: str) -> tuple[str, str]:
    """``cmd 'a # b'  # note`` -> (``cmd 'a # b'``, ``note``): a # outside quotes, after a space."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def _code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, code) for every line inside an indented or fenced code block."""
    lines = text.splitlines()
    found = []
    fenced = False
    previous_blank = True
    in_indented = False
    for number, raw in enumerate(lines, 1):
        if raw.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            found.append((number, raw.strip()))
            continue
        if raw.startswith("    ") and (previous_blank or in_indented):
            in_indented = True
            found.append((number, raw.strip()))
        elif raw.strip():
            in_indented = False
        previous_blank = not raw.strip()
    return found


def readme_commands(path: Path) -> list[Command]:
    commands: list[Command] = []
    code = _code_lines(path.read_text())
    index = 0
    while index < len(code):
        number, line = code[index]
        index += 1
        if not line.startswith(_STARTS):
            continue
        text, comment = _split_comment(line)
        while text.endswith("\\") and index < len(code):
            more, more_comment = _split_comment(code[index][1])
            index += 1
            text = text[:-1].rstrip() + " " + more
            comment = " ".join(c for c in (comment, more_comment) if c)
        commands.append(Command(number, text, comment))
    return commands
