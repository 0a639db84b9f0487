"""The code base stays ruff- and mypy-clean: the same checks a reviewer would run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _tool(name: str) -> str:
    """The tool next to this Python, else on PATH; a missing tool fails the check (it is in the `test` extra)."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' (the quality checks need it)")
    return path


def test_a_missing_tool_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(pytest.fail.Exception, match="ruff is not installed"):
        _tool("ruff")


def test_ruff_clean(repo_root: Path) -> None:
    proc = subprocess.run([_tool("ruff"), "check", "."], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_clean(repo_root: Path) -> None:
    proc = subprocess.run([_tool("mypy")], cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
