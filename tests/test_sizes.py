"""Size limits of the library: no module of ``headpose/`` over :data:`MAX_MODULE_LINES` lines, none
of ``headpose/training/`` over :data:`MAX_TRAINING_MODULE_LINES`, and no function or method over
:data:`MAX_FUNCTION_LINES` (from its ``def`` or first decorator to its last line, by ``ast``)."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "headpose"
MAX_MODULE_LINES = 600
MAX_TRAINING_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    """``path`` inside the repository (as given when outside it)."""
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


def module_line_limit(path: Path) -> int:
    """The most lines ``path`` may hold (the training modules are held to less)."""
    training = path.is_relative_to(PACKAGE / "training")
    return MAX_TRAINING_MODULE_LINES if training else MAX_MODULE_LINES


def oversized_modules(paths: list[Path]) -> list[str]:
    """``file: N lines, limit L`` for each of ``paths`` over its limit."""
    found = []
    for path in paths:
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > module_line_limit(path):
            found.append(f"{_name(path)}: {count} lines, limit {module_line_limit(path)}")
    return found


def function_lengths(source: str) -> list[tuple[str, int]]:
    """``(qualified name, lines)`` of every function and method in ``source`` (nested ones
    too, named ``outer.inner``), counted from the first decorator to ``end_lineno``."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    found.append((name, child.end_lineno - first + 1))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def oversized_functions(paths: list[Path]) -> list[str]:
    """``file: function N lines, limit L`` for each function of ``paths`` over the limit."""
    return [
        f"{_name(path)}: {name} {lines} lines, limit {MAX_FUNCTION_LINES}"
        for path in paths
        for name, lines in function_lengths(path.read_text(encoding="utf-8"))
        if lines > MAX_FUNCTION_LINES
    ]


def test_no_library_module_is_over_its_line_limit():
    too_long = oversized_modules(_modules())
    assert not too_long, "split these modules by job:\n" + "\n".join(too_long)


def test_no_library_function_is_over_80_lines():
    too_long = oversized_functions(_modules())
    assert not too_long, "split these functions:\n" + "\n".join(too_long)


def test_the_checks_name_file_function_and_length(tmp_path):
    """The checks find what they are meant to: a decorated method, a nested function and its
    enclosing one, a module over 600 lines; a training module is held to 400."""
    long_body = "\n".join(f"        x{i} = {i}" for i in range(80))
    source = (
        f"class A:\n    @staticmethod\n    def long():\n{long_body}\n\n\n"
        f"def outer():\n    def inner():\n{long_body}\n\n\n"
        "def short():\n    return 1\n"
    )
    module = tmp_path / "module.py"
    module.write_text(source)
    assert oversized_functions([module]) == [
        f"{module}: A.long 82 lines, limit 80",
        f"{module}: outer 82 lines, limit 80",
        f"{module}: outer.inner 81 lines, limit 80",
    ]
    assert dict(function_lengths(source))["short"] == 2
    assert oversized_modules([module]) == []
    module.write_text("x = 1\n" * 601)
    assert oversized_modules([module]) == [f"{module}: 601 lines, limit 600"]
    assert module_line_limit(PACKAGE / "training" / "run.py") == 400
    assert module_line_limit(PACKAGE / "crops" / "crop.py") == 600
