"""The house rules a linter does not hold: short functions and short module docstrings.

A function of more than a screenful hides the steps it takes; a module docstring of a page
buries the why under details that belong in docs/. The import arrows between the roles are
import-linter's (``make lint``), not this file's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("stream_app", "models")
#: The longest a function may be, ``def`` line to last line (decorators not counted).
MAX_FUNCTION_LINES = 80
#: The longest a module docstring may be: a summary line and the why, "about 10 lines".
MAX_MODULE_DOC_LINES = 12


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def long_functions(tree: ast.Module, limit: int) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function or method longer than ``limit`` lines.

    >>> long_functions(ast.parse("def f():\\n" + "    x = 1\\n" * 3), 3)
    [('f', 1, 4)]
    """
    return [
        (node.name, node.lineno, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > limit
    ]


def test_the_packages_have_modules_to_check() -> None:
    assert len(sources()) > 40


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_functions_fit_a_screen(path: Path) -> None:
    found = long_functions(ast.parse(path.read_text()), MAX_FUNCTION_LINES)
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines: {found}"


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_docstrings_are_short(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    lines = len(doc.splitlines())
    assert lines <= MAX_MODULE_DOC_LINES, f"module docstring of {lines} lines: details to docs/"
