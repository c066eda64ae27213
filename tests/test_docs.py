"""The docs name only what exists: every code name in backquotes in README.md, CONTRIBUTING.md
and docs/*.md that looks like a module, a function or attribute, a stage, a script, a
``headpose`` sub-command or a params key is looked up in the code, dvc.yaml, the command's parser
or the params schema; docs/design.md's layer table is tests/test_layers.py's, and the stages
named in the comments of params.yaml and dvc.yaml exist.

What "looks like" means, span by span (a span is the text between backquotes; a shell line of a
```` ```bash ```` block counts as one span too; other fenced blocks are not read):

* **command**: a span whose first word is ``headpose`` followed by a lower-case word names that
  sub-command (checked against :func:`headpose.cli.build_parser`), and each ``--option`` after it
  must be one of that sub-command's options; ``dvc repro A B`` names stages; ``-S key=value`` and
  ``--set key=value`` (``dvc exp run``, ``scripts/benchmark_training.py``) name params keys.
  Shell lines are split at ``&&``, ``||``, ``;`` and ``|``.
* **path**: a word without ``<``, ``*``, ``$``, ``~`` or ``...`` whose first folder is one of
  :data:`CODE_FOLDERS` must exist in the repository (an ``#anchor`` dropped); any other relative
  word ending in ``.py`` or ``.sh`` must be the end of a file's path in those folders
  (``app/predict.py``, ``bins.py``), except under ``plugin_modules/``, where the docs' examples
  are the user's modules.
* **dotted name**: one word of identifiers joined by dots (a trailing call ``(...)`` dropped)
  whose first part is ``headpose``, a folder or top-level module of ``headpose/`` (``crops``,
  ``geometry``) or a class defined in ``headpose/`` (``TrainSettings``) must resolve by import
  and attribute lookup (a dataclass's fields count as its attributes); ``params.<field>`` is a
  field of a :class:`headpose.params.Params`, ``synth.<key>`` may be a nested params key, and
  ``headpose.plugins`` is the entry-point group (:data:`headpose.registry.PLUGIN_GROUP`).
  Other dotted words (``torch.load``, ``framing.test_inside``) are not ours and are skipped, and
  a word ending in a file suffix (:data:`FILE_SUFFIXES`: ``registry.py``) is a file name.
* **decorator**: ``@name`` is a function defined at the top level of a module of ``headpose/``.
* **stage**: ``name@key`` (``evaluate_set@<name>``: a ``<placeholder>`` key stands for any) is a
  ``foreach`` stage of dvc.yaml, and a concrete key one of its expanded keys; a span followed by
  the word "stage" or "stages", and a span in the first column of a table whose header's first
  cell is "stage", is a stage of dvc.yaml.
* **params key**: ``key: value`` (one word or a ``[list]``) or ``key:`` (a lower-case
  snake-case key) is a key of the params schema at any level or of a model card, or a field of
  a dvc.yaml stage (``params:``); ``key=value`` words, alone or comma-separated (``compile=false,
  precision=auto``), are params keys.

A bare word (``train``, ``read_checkpoint``, ``Labels``) is not checked: it cannot be told from
an English word, a key of a JSON file or another library's name. The test prints every stale
name as ``file:line: kind `name` (why)``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT

DOC_FILES = (
    REPO_ROOT / "README.md",
    REPO_ROOT / "CONTRIBUTING.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
)
# Folders whose files the docs name as code (paths starting with one must exist).
CODE_FOLDERS = ("headpose", "stages", "scripts", "tests", "docs")
# Fenced blocks read line by line as shell commands.
SHELL_FENCES = frozenset({"bash", "sh", "shell", "console"})

IDENTIFIER = r"[A-Za-z_]\w*"
DOTTED = re.compile(rf"@?({IDENTIFIER}(?:\.{IDENTIFIER})+)(?:\([^()]*\))?")
DECORATOR = re.compile(rf"@({IDENTIFIER})")
STAGE_AT = re.compile(r"([a-z_][a-z0-9_]*)@(<[^<>\s]+>|[\w.-]+)")
YAML_KEY = re.compile(r"([a-z_][a-z0-9_]*):(?: \S+| \[[^\]]*\])?")
ASSIGNMENT = re.compile(r"[a-z_][a-z0-9_.]*=\S+(?:,\s*[a-z_][a-z0-9_.]*=\S+)*")
ASSIGNED_KEY = re.compile(r"(?:^|,\s*)([a-z_][a-z0-9_.]*)=")
# A dotted word ending so is a file name (``registry.py``, ``params.yaml``), not an attribute.
FILE_SUFFIXES = frozenset(
    {"py", "sh", "md", "yaml", "yml", "json", "toml", "lock", "txt", "csv", "tsv", "png", "jpg"}
    | {"mat", "npy", "npz", "pt", "pkl", "onnx", "cal"}
)
NOT_A_PATH = ("<", ">", "*", "$", "~", "...", "://")
SHELL_SEPARATORS = re.compile(r"\s(?:&&|\|\||;|\|)\s")
INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)


@dataclass(frozen=True)
class Span:
    """One piece of code in a markdown file: where it starts and what it says."""

    file: str
    line: int
    text: str
    shell: bool = False  # a line of a shell block (always a command)
    stage: bool = False  # the docs call it a stage (table column, "the `x` stage")


@dataclass(frozen=True)
class Stale:
    """A name a span gives that the code does not have."""

    span: Span
    kind: str
    name: str
    why: str

    def __str__(self) -> str:
        return f"{self.span.file}:{self.span.line}: {self.kind} `{self.name}` ({self.why})"


# --- reading the markdown ------------------------------------------------------------------


def _stage_table_cells(lines: list[str]) -> set[tuple[int, int]]:
    """(line index, end column) of the first cell of each row of a table whose header's first cell
    is "stage"."""
    cells = set()
    in_stage_table = False
    for index, line in enumerate(lines):
        if not line.startswith("|"):
            in_stage_table = False
            continue
        cells_of_row = re.split(r"(?<!\\)\|", line)
        if not in_stage_table and cells_of_row[1].strip().lower() == "stage":
            in_stage_table = True
            continue
        if in_stage_table and not set(cells_of_row[1].strip()) <= set("-: "):
            cells.add((index, len(cells_of_row[0]) + 1 + len(cells_of_row[1])))
    return cells


def code_spans(text: str, file: str = "<text>") -> list[Span]:
    """Every inline code span of ``text`` and every command line of its shell blocks, with the line
    each starts on (1-based)."""
    lines = text.split("\n")
    spans: list[Span] = []
    prose = list(lines)
    fence = None
    command, command_line = "", 0
    for index, line in enumerate(lines):
        marker = re.match(r"\s*(```+|~~~+)\s*(\S*)", line)
        if fence is None and marker:
            fence = (marker.group(1), marker.group(2).lower())
            prose[index] = ""
            continue
        if fence is not None:
            prose[index] = ""
            if line.strip().startswith(fence[0]):
                fence = None
            elif fence[1] in SHELL_FENCES:
                if not command:
                    command_line = index + 1
                command += line.rstrip().removesuffix("\\") + " "
                if not line.rstrip().endswith("\\"):
                    spans.append(Span(file, command_line, command.strip(), shell=True))
                    command = ""
    table_cells = _stage_table_cells(prose)
    joined = "\n".join(prose)
    starts = [0]
    for line in prose:
        starts.append(starts[-1] + len(line) + 1)
    for match in INLINE_CODE.finditer(joined):
        offset = match.start()
        index = next(i for i in range(len(prose)) if starts[i + 1] > offset)
        column = offset - starts[index]
        content = match.group(2).replace("\n", " ")
        if content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]
        followed_by_stage = re.match(r"\s+stages?\b", joined[match.end() :]) is not None
        in_stage_column = any(row == index and column < end for row, end in table_cells)
        spans.append(Span(file, index + 1, content, stage=followed_by_stage or in_stage_column))
    return sorted(spans, key=lambda span: span.line)


# --- what exists ---------------------------------------------------------------------------


@cache
def dvc_stages() -> dict[str, tuple[str, ...] | None]:
    """Each stage of dvc.yaml: None, or for a ``foreach`` stage the keys it expands to."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    found: dict[str, tuple[str, ...] | None] = {}
    for name, stage in stages.items():
        if "foreach" not in stage:
            found[name] = None
            continue
        items = stage["foreach"]
        reference = re.fullmatch(r"\$\{(\w+)\}", items) if isinstance(items, str) else None
        if reference:
            items = params[reference.group(1)]
        found[name] = tuple(str(key) for key in items)
    return found


@cache
def dvc_stage_fields() -> frozenset[str]:
    """The keys dvc.yaml's stage definitions use (``cmd``, ``deps``, ``params`` ...)."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    keys: set[str] = set()
    for stage in stages.values():
        keys |= set(stage)
        keys |= set(stage.get("do", {}))
    return frozenset(keys)


@cache
def params_keys() -> frozenset[str]:
    """Every key of the params schema (top-level, ``synth.<key>``, and the keys of a test set)
    and of a model card (``headpose.inference.card``: the other YAML the docs show)."""
    from headpose import params
    from headpose.inference import card

    card_keys = {*card.CARD_KEYS, *card.INPUT_KEYS, *card.INFORMATIONAL_INPUT_KEYS}
    card_keys |= {key for keys in card.OUTPUT_KEYS.values() for key in keys}
    return frozenset(
        {*params.SCHEMA, *params.TEST_SET_SCHEMA}
        | {f"synth.{key}" for key in params.SYNTH_SCHEMA}
        | set(params.SYNTH_SCHEMA)
        | card_keys
    )


@cache
def cli_options() -> dict[str, frozenset[str]]:
    """Each ``headpose`` sub-command and its option strings."""
    import argparse

    from headpose.cli import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        name: frozenset(s for action in sub._actions for s in action.option_strings)
        for name, sub in subparsers.choices.items()
    }


@cache
def package_units() -> frozenset[str]:
    """The folders and top-level modules of ``headpose/``."""
    package = REPO_ROOT / "headpose"
    folders = {path.name for path in package.iterdir() if (path / "__init__.py").is_file()}
    modules = {path.stem for path in package.glob("*.py") if path.stem != "__init__"}
    return frozenset(folders | modules)


@cache
def top_level_definitions() -> dict[str, tuple[tuple[str, bool], ...]]:
    """Name -> (module, is a class) of each class and function defined at the top level of a
    module of ``headpose/``."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted((REPO_ROOT / "headpose").rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                is_class = isinstance(node, ast.ClassDef)
                found.setdefault(node.name, []).append((module, is_class))
    return {name: tuple(where) for name, where in found.items()}


@cache
def code_files() -> tuple[str, ...]:
    """The repository paths of every file under :data:`CODE_FOLDERS`."""
    return tuple(
        path.relative_to(REPO_ROOT).as_posix()
        for folder in CODE_FOLDERS
        for path in (REPO_ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


def _has_attribute(owner: object, name: str) -> tuple[bool, object]:
    """Whether ``owner`` has ``name`` (a submodule, an attribute, a dataclass field)."""
    if hasattr(owner, name):
        return True, getattr(owner, name)
    module_name = getattr(owner, "__name__", None)
    is_package = isinstance(owner, type(importlib)) and module_name and hasattr(owner, "__path__")
    if is_package and importlib.util.find_spec(f"{module_name}.{name}") is not None:
        return True, importlib.import_module(f"{module_name}.{name}")
    if isinstance(owner, type):
        if dataclasses.is_dataclass(owner) and name in {f.name for f in dataclasses.fields(owner)}:
            return True, None
        for klass in owner.__mro__:
            if name in getattr(klass, "__annotations__", {}):
                return True, None
    return False, None


def resolves(owner: object, parts: list[str]) -> bool:
    """Whether the attribute chain ``parts`` exists on ``owner``."""
    for part in parts:
        if owner is None:
            return True  # a field without a class-level value: its type is not followed
        found, owner = _has_attribute(owner, part)
        if not found:
            return False
    return True


# --- checking one span ---------------------------------------------------------------------


def _check_path(span: Span, word: str) -> Iterator[Stale]:
    if any(mark in word for mark in NOT_A_PATH) or "/" not in word and "." not in word:
        return
    word = word.split("#")[0].rstrip(",.;:)")
    if not re.fullmatch(r"[\w.-]+(?:/[\w.-]*)*", word) or word.startswith(("/", "-")):
        return
    first = word.split("/")[0]
    if first in CODE_FOLDERS and not (REPO_ROOT / word).exists():
        yield Stale(span, "path", word, "no such file or folder")
    elif first in CODE_FOLDERS or first in ("plugin_modules", "..", "."):
        return
    elif word.endswith((".py", ".sh")) and not any(
        path == word or path.endswith("/" + word) for path in code_files()
    ):
        yield Stale(span, "path", word, f"no file ends so in {', '.join(CODE_FOLDERS)}")


def _check_stage(span: Span, name: str) -> Iterator[Stale]:
    stages = dvc_stages()
    at = STAGE_AT.fullmatch(name)
    base, key = (at.group(1), at.group(2)) if at else (name, None)
    if base not in stages:
        yield Stale(span, "stage", name, f"dvc.yaml has no stage {base!r}")
    elif key is not None and stages[base] is None:
        yield Stale(span, "stage", name, f"dvc.yaml's {base!r} is not a foreach stage")
    elif key is not None and not key.startswith("<") and key not in stages[base]:
        yield Stale(span, "stage", name, f"{base!r} expands to {', '.join(stages[base])}")
    elif key is None and stages[base] is not None:
        yield Stale(span, "stage", name, f"a foreach stage: name it {base}@<key>")


def _check_params_key(span: Span, key: str) -> Iterator[Stale]:
    if key not in params_keys():
        yield Stale(span, "params key", key, "not a key of the params schema")


def _check_dotted(span: Span, name: str) -> Iterator[Stale]:
    parts = name.split(".")
    first = parts[0]
    if first == "headpose" or first in package_units():
        import headpose
        from headpose.params import Params
        from headpose.registry import PLUGIN_GROUP

        rest = parts[1:] if first == "headpose" else parts
        if name == PLUGIN_GROUP or resolves(headpose, rest):
            return
        if first == "params" and resolves(Params, parts[1:]):
            return  # a field or method of a loaded Params, as the docs write it
        if name in params_keys():
            return
        yield Stale(span, "name", name, "does not resolve in headpose")
    elif first in top_level_definitions():
        classes = [module for module, is_class in top_level_definitions()[first] if is_class]
        if not classes:
            return
        for module in classes:
            if resolves(getattr(importlib.import_module(module), first), parts[1:]):
                return
        yield Stale(span, "name", name, f"{first} ({', '.join(classes)}) has no {parts[1]!r}")


def _check_command(span: Span, words: list[str]) -> Iterator[Stale]:
    if len(words) >= 2 and words[0] == "headpose" and re.fullmatch(r"[a-z]+", words[1]):
        options = cli_options()
        command = words[1]
        if command not in options:
            why = f"the headpose commands are {', '.join(sorted(options))}"
            yield Stale(span, "command", f"headpose {command}", why)
            return
        for word in words[2:]:
            option = word.split("=")[0]
            if re.fullmatch(r"--[a-z][a-z0-9-]*", option) and option not in options[command]:
                yield Stale(span, "option", f"headpose {command} {option}", "no such option")
    if words[:2] == ["dvc", "repro"]:
        for word in words[2:]:
            if not word.startswith("-"):
                yield from _check_stage(span, word)


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


def check_span(span: Span) -> list[Stale]:
    """The stale names one span gives (see the module docstring for what is looked at)."""
    stale: list[Stale] = []
    text = span.text.strip()
    commands = SHELL_SEPARATORS.split(text) if span.shell else [text]
    for command in commands:
        words = _words(command)
        if words[:1] in (["headpose"], ["dvc"], ["python"], ["python3"]) or span.shell:
            stale += _check_command(span, words)
        for flag, value in zip(words, words[1:], strict=False):
            if flag in ("-S", "--set", "--set-param") and "=" in value:
                stale += _check_params_key(span, value.split("=")[0])
        for word in words if len(words) > 1 else []:
            stale += _check_path(span, word)
    if span.shell:
        return stale
    if " " not in text:
        stale += _check_path(span, text)
    if span.stage:
        stale += _check_stage(span, text)
        return stale
    if STAGE_AT.fullmatch(text):
        stale += _check_stage(span, text)
    elif DOTTED.fullmatch(text) and text.rsplit(".", 1)[1] not in FILE_SUFFIXES:
        stale += _check_dotted(span, DOTTED.fullmatch(text).group(1))
    elif DECORATOR.fullmatch(text):
        name = DECORATOR.fullmatch(text).group(1)
        if name not in top_level_definitions():
            stale.append(Stale(span, "decorator", "@" + name, "no such function in headpose"))
    elif YAML_KEY.fullmatch(text):
        key = YAML_KEY.fullmatch(text).group(1)
        if key not in dvc_stage_fields():
            stale += _check_params_key(span, key)
    elif ASSIGNMENT.fullmatch(text):
        for key in ASSIGNED_KEY.findall(text):
            stale += _check_params_key(span, key)
    return stale


def stale_names(text: str, file: str = "<text>") -> list[Stale]:
    """Every stale name the code spans of a markdown ``text`` give."""
    return [stale for span in code_spans(text, file) for stale in check_span(span)]


# --- the tests -----------------------------------------------------------------------------


def test_the_docs_name_only_what_exists():
    stale = [
        found
        for path in DOC_FILES
        for found in stale_names(
            path.read_text(encoding="utf-8"), path.relative_to(REPO_ROOT).as_posix()
        )
    ]
    assert not stale, "stale names in the docs:\n" + "\n".join(map(str, stale))


SYNTHETIC = """\
# A page

The `headpose/crops/nowhere.py` module and `crops.store.no_such_function`
are made up, as is `headpose.nothing`, the `evaluate_set@nowhere` and the
`invented` stage, `headpose frobnicate`, `headpose sweep --no-such-option`,
`no_such_key: 3`, `-S no_such_key=1`, `@register_nothing` and `Labels.no_field`.

| stage | what |
|---|---|
| `made_up` | nothing |

```bash
dvc repro train nowhere && python scripts/nothing.py
```

```python
headpose.not_checked_here  # a python block is not read
```
"""

EXPECTED_STALE = [
    ("path", "headpose/crops/nowhere.py", 3),
    ("name", "crops.store.no_such_function", 3),
    ("name", "headpose.nothing", 4),
    ("stage", "evaluate_set@nowhere", 4),
    ("stage", "invented", 5),
    ("command", "headpose frobnicate", 5),
    ("option", "headpose sweep --no-such-option", 5),
    ("params key", "no_such_key", 6),
    ("params key", "no_such_key", 6),
    ("decorator", "@register_nothing", 6),
    ("name", "Labels.no_field", 6),
    ("stage", "made_up", 10),
    ("stage", "nowhere", 13),
    ("path", "scripts/nothing.py", 13),
]


def test_made_up_names_are_reported_with_file_and_line():
    stale = stale_names(SYNTHETIC, "page.md")
    assert sorted((s.kind, s.name, s.span.line) for s in stale) == sorted(EXPECTED_STALE)
    assert str(stale[0]).startswith("page.md:3: path `headpose/crops/nowhere.py` (")


GOOD = """\
The `headpose/crops/crop.py` module (`headpose.crops.crop`, `crops.crop.shrunk_cut`),
`headpose.load(path)`, `geometry.ANGLE_NAMES`, `params.bin_width`, `params.record()`,
`TrainSettings.from_params`, `@register_head`, `app/predict.py`, the `train` stage and
`evaluate_set@<name>`, `evaluate_set@biwi`, `headpose sweep MODEL
--data X`, `crop_protocol: hopenet`, `params:`, `synth.train_pose`, `headpose.plugins`,
`compile=false, precision=auto`, `--set workers=2`; not ours: `torch.load`,
`plugin_modules/my_heads.py`, `framing.test_inside`, `models/*.pt`, `read_checkpoint`,
`train`, `headpose-pipeline`.

```bash
dvc repro params train && headpose compare --baseline head=bins   # a comment --not-an-option
dvc exp run -S 'train_seed=0,1,2' -S synth.train_faces=400
```
"""


def test_names_that_exist_pass():
    assert [str(stale) for stale in stale_names(GOOD)] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a `span` here", ["span"]),
        ("two ``a`b`` spans `c`", ["a`b", "c"]),
        ("across `two\nlines` here", ["two lines"]),
        ("not across `a\n\nparagraph` break", []),
        ("```\n`inside a fence`\n```", []),
    ],
)
def test_code_spans_follow_markdown(text, expected):
    assert [span.text for span in code_spans(text)] == expected


def _architecture_table() -> list[tuple[int, str]]:
    """(layer, unit) of each row of docs/design.md's "Architecture" table."""
    text = (REPO_ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = text.split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    return [
        (int(match.group(1)), match.group(2))
        for match in re.finditer(r"^\| (\d+) \| `(\w+)` \|", section, re.MULTILINE)
    ]


def test_the_architecture_table_is_the_layer_table():
    """docs/design.md draws the layers tests/test_layers.py checks: the same units, in order."""
    from test_layers import LAYERS

    expected = [(level, unit) for level, units in enumerate(LAYERS) for unit in units]
    assert _architecture_table() == expected


# A stage of dvc.yaml named in a comment of params.yaml or dvc.yaml as ``name@<key>``.
STAGE_IN_COMMENT = re.compile(r"(?<![\w@])([a-z_][a-z0-9_]*@(?:<[^<>\s]+>|[a-z0-9_-]+))")


@pytest.mark.parametrize("name", ["params.yaml", "dvc.yaml"])
def test_the_yaml_comments_name_foreach_stages_that_exist(name):
    """``evaluate_set@<name>`` in a comment (params.yaml once said ``evaluate@<name>``)."""
    stale = []
    for number, line in enumerate((REPO_ROOT / name).read_text(encoding="utf-8").splitlines()):
        comment = line.partition("#")[2]
        for stage in STAGE_IN_COMMENT.findall(comment):
            span = Span(name, number + 1, stage)
            stale += [str(found) for found in _check_stage(span, stage)]
    assert stale == []


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a markdown ``text`` (lower case, punctuation
    dropped, spaces to hyphens; a repeated heading gets ``-1``, ``-2`` ...)."""
    anchors: set[str] = set()
    prose = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", prose, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, count = slug, 0
        while anchor in anchors:
            count += 1
            anchor = f"{slug}-{count}"
        anchors.add(anchor)
    return anchors


# A link target ``](file.md#anchor)`` or ``](#anchor)``, or a bare ``dir/file.md#anchor``.
LINK = re.compile(r"\]\(([^()\s#]*)(?:#([\w-]+))?\)|(?<![\w/])((?:[\w-]+/)*[\w-]+\.md)#([\w-]+)")


def stale_links(text: str, source: Path) -> list[str]:
    """Every link of ``text`` (the file ``source``) to a missing markdown file or heading."""
    stale = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in LINK.finditer(line):
            is_link = match.group(0).startswith("]")
            target, anchor = match.group(*((1, 2) if is_link else (3, 4)))
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            # A link is relative to its page; a path in the text may be the repository's too.
            bases = (source.parent,) if is_link else (source.parent, REPO_ROOT)
            paths = [(base / target).resolve() for base in bases] if target else [source]
            path = next((path for path in paths if path.exists()), None)
            if path is None:
                stale.append(f"{source.name}:{number}: {target} does not exist")
            elif anchor and anchor not in heading_anchors(path.read_text(encoding="utf-8")):
                stale.append(f"{source.name}:{number}: {target}#{anchor}: no such heading")
    return stale


def test_the_docs_link_to_files_and_headings_that_exist():
    stale = [
        found for path in DOC_FILES for found in stale_links(path.read_text(encoding="utf-8"), path)
    ]
    assert stale == []


def test_a_link_to_a_missing_heading_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Comparing runs: what `compare` does\n\n"
        "[ok](#comparing-runs-what-compare-does), [gone](#nowhere), [file](other.md), "
        "see page.md#nothing\n",
        encoding="utf-8",
    )
    assert stale_links(page.read_text(encoding="utf-8"), page) == [
        "page.md:3: #nowhere: no such heading",
        "page.md:3: other.md does not exist",
        "page.md:3: page.md#nothing: no such heading",
    ]
