"""Every command the CLI suggests -- in its help and in its messages -- is one its parser accepts.

A hint that leads to a usage error (``plan --allow-mass-exit``, an option ``plan`` does not have) is a
defect: this collects each backquoted ``lakeseg ...`` / ``dbt ...`` command from every command's
``--help`` and from every message string in ``sync/`` (docstrings left out: they describe, they do not
suggest), fills in its placeholders, and parses it with lakeseg's own click group or dbt's.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sync.cli import main

SYNC = Path(__file__).resolve().parents[2] / "sync"
COMMAND = re.compile(r"`((?:lakeseg|dbt) [^`]*)`")
# What a placeholder stands for in a real command line.
PLACEHOLDERS = [
    (re.compile(r"\{[^}]*destination[^}]*\}"), "files"),
    (re.compile(r"\{[^}]*\}"), "seg_x"),
    (re.compile(r"<[^>]+>"), "seg_x"),
    (re.compile(r"\bX\b"), "seg_x"),
]


def _message_strings(path: Path) -> list[str]:
    """String constants and f-string parts of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "{x}" for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append(node.value)
    return out


def _help_texts() -> list[str]:
    def walk(group: click.Group, prefix=()):
        yield prefix
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                yield from walk(cmd, prefix + (name,))
            else:
                yield prefix + (name,)

    return [CliRunner().invoke(main, [*path, "--help"], terminal_width=400).output for path in walk(main)]


def suggested_commands() -> list[str]:
    texts = _help_texts() + [s for p in sorted(SYNC.rglob("*.py")) for s in _message_strings(p)]
    found = set()
    for text in texts:
        for command in COMMAND.findall(text):
            for pattern, value in PLACEHOLDERS:
                command = pattern.sub(value, command)
            found.add(command)
    return sorted(found)


def _remaining(ctx: click.Context) -> list[str]:
    """The words a group left for its subcommand (click 8.2 keeps the first in ``_protected_args``)."""
    return [*getattr(ctx, "_protected_args", []), *ctx.args]


def _parse(group: click.Group, name: str, args: list[str]) -> None:
    """Parse a command line the way click would run it, without running it."""
    ctx = group.make_context(name, list(args), resilient_parsing=False)
    while isinstance(ctx.command, click.Group) and _remaining(ctx):
        sub_name, *rest = _remaining(ctx)
        sub = ctx.command.get_command(ctx, sub_name)
        assert sub is not None, f"{name}: no command {sub_name!r}"
        ctx = sub.make_context(sub_name, rest, parent=ctx)


COMMANDS = suggested_commands()


def test_the_hints_are_found():
    # Given the CLI's help and messages, then the hints people are told to run are among those checked
    assert "lakeseg sync --select seg_x --allow-mass-exit" in COMMANDS
    assert any(c.startswith("lakeseg run --select") for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_suggested_command_is_accepted(command, monkeypatch, tmp_path):
    # Given a command the CLI suggests, with its placeholders filled in (dbt's parser checks that its
    # project and profiles folders exist: give it one)
    monkeypatch.setenv("DBT_PROFILES_DIR", str(tmp_path))
    monkeypatch.setenv("DBT_PROJECT_DIR", str(tmp_path))
    words = shlex.split(command)
    # When its parser reads it, then it is accepted: no unknown option, no missing argument
    if words[0] == "lakeseg":
        _parse(main, "lakeseg", words[1:])
    else:
        from dbt.cli.main import cli as dbt_cli

        _parse(dbt_cli, "dbt", words[1:])
