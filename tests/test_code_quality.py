"""Style and types are part of the test suite: ruff (lint and format) over the code, mypy over sync/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CODE = ["sync", "tests", "benchmarks", "tools", "infra"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(("ruff", "check", *CODE), id="ruff-lint"),
        pytest.param(("ruff", "format", "--check", *CODE), id="ruff-format"),
        pytest.param(("mypy",), id="mypy-sync"),  # files and options: [tool.mypy] in pyproject.toml
    ],
)
def test_the_code_passes(check):
    # When the checker reads the code, then it finds nothing (its own words name each place)
    result = _run(str(BIN / check[0]), *check[1:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
