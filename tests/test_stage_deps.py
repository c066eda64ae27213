"""Every DVC stage lists, among its ``deps``, every project file its script runs.

A stage whose deps miss a module it imports is reported up to date after that module changes,
leaving stale outputs. This test computes each stage script's import closure within the project
(``headpose`` and the script itself, following ``import``/``from`` statements, relative ones too)
and fails naming the stage and the files its ``deps`` do not cover. Listing a folder covers every
file below it.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT

PACKAGE = "headpose"


def module_file(module: str) -> Path | None:
    """The project file of a dotted module name (``headpose.x.y``), or None if not ours."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the modules ``path`` imports (``from a import b``: ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own_name = module_name(path)
    package = own_name if path.name == "__init__.py" else own_name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_closure(script: Path) -> set[Path]:
    """``script`` and every project file it imports, directly or not (package ``__init__``s too)."""
    seen: set[Path] = set()
    pending = [script]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too
                found = module_file(".".join(parts[:depth]))
                if found is not None and found not in seen:
                    pending.append(found)
    return seen


def stage_scripts(cmd: str | list[str]) -> list[Path]:
    """The project Python files a stage command runs (``python path.py ...`` or ``-m module``)."""
    scripts = []
    for line in [cmd] if isinstance(cmd, str) else cmd:
        words = shlex.split(line)
        for index, word in enumerate(words):
            if word.endswith(".py") and (REPO_ROOT / word).is_file():
                scripts.append(REPO_ROOT / word)
            elif word == "-m" and index + 1 < len(words):
                found = module_file(words[index + 1])
                if found is not None:
                    scripts.append(found)
    return scripts


def is_covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(REPO_ROOT)
    for dep in deps:
        dep_path = Path(dep.rstrip("/"))
        if relative == dep_path or dep_path in relative.parents:
            return True
    return False


def _stages() -> dict[str, dict]:
    """Every stage's definition (a ``foreach`` stage's ``do``, once for all its entries)."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_deps_cover_the_code_it_runs(stage: str) -> None:
    definition = _stages()[stage]
    scripts = stage_scripts(definition["cmd"])
    assert scripts, f"stage {stage}: no project script found in its cmd {definition['cmd']!r}"
    deps = [dep for dep in definition.get("deps", []) if "${" not in dep]
    closure = set().union(*(import_closure(script) for script in scripts))
    missing = sorted(str(p.relative_to(REPO_ROOT)) for p in closure if not is_covered(p, deps))
    assert not missing, f"stage {stage}: dvc.yaml deps miss files its script runs: {missing}"


def test_closure_follows_imports_transitively(tmp_path: Path) -> None:
    """The checker itself: a module reached only through another one is still found."""
    closure = import_closure(REPO_ROOT / "stages" / "evaluate.py")
    names = {str(p.relative_to(REPO_ROOT)) for p in closure}
    assert "stages/evaluate.py" in names
    assert any(name.startswith(f"{PACKAGE}/") for name in names)
    assert len(names) > 3, names


def test_uncovered_file_is_reported() -> None:
    script = REPO_ROOT / "stages" / "evaluate.py"
    closure = import_closure(script)
    assert not all(is_covered(p, ["stages/evaluate.py"]) for p in closure)
    assert all(is_covered(p, ["stages", PACKAGE]) for p in closure)


@pytest.mark.parametrize("stage", ["synth", "filelists", "augment", "analyze"])
def test_data_stages_do_not_run_model_code(stage: str) -> None:
    """The data stages never build a network, so an edit of a model module must not re-run them
    (params validation leaves the model keys' names to the models: headpose.models.keys)."""
    closure = import_closure(stage_scripts(_stages()[stage]["cmd"])[0])
    models = sorted(
        str(p.relative_to(REPO_ROOT)) for p in closure if is_covered(p, [f"{PACKAGE}/models"])
    )
    assert not models, f"stage {stage} imports model code: {models}"


def test_no_dependency_is_named_like_a_param() -> None:
    """`dvc exp show` keys its columns by name: a dependency path equal to a params key (a
    `pretrained/` folder beside the `pretrained` param) makes `--keep`/`--drop` fail with
    "unexpected error - 'pretrained'"."""
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    params = set(yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8")))
    for name, stage in pipeline["stages"].items():
        clashing = {dep for dep in stage.get("deps", []) if dep.rstrip("/") in params}
        assert not clashing, f"stage {name}: deps {sorted(clashing)} are named like params keys"
