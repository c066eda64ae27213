"""YAML text, parsed the one bounded way: every YAML file the project reads (``params.yaml``,
``--set`` values, model cards) goes through :func:`parse_yaml`.

The document is bounded while it is composed, before any value is built: anchors and aliases
(with which a few kB expand to billions of items) and merge keys are refused, and so is a
document of more than :data:`YAML_MAX_NODES` nodes or nested more than :data:`YAML_MAX_DEPTH`
deep; a key given twice in one mapping is refused naming its path and lines (YAML would keep the
last silently). Numbers are read as YAML 1.2 and DVC read them (``1e-5`` is a number). Every
problem is one HeadposeError line naming the source. Reading the file itself (a regular file,
a size bound) is :func:`headpose.io.text.read_text_file`'s.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from headpose.errors import HeadposeError, clip, shorten

YAML_MAX_NODES = 10_000  # keys, values and list items (params.yaml holds about 100)
YAML_MAX_DEPTH = 32  # mappings and lists within each other (params.yaml nests 3 deep)


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading numbers as YAML 1.2 (and DVC) do: PyYAML follows YAML 1.1,
    where ``1e-5`` (no dot) and ``1.0e5`` (no exponent sign) are strings, but they are the
    README's ``lr: 1e-5`` and DVC's own spelling of ``-S lr=1e-5`` (``1e-05``).

    It bounds the document while composing it, before any value is built: anchors and aliases
    (``&a`` / ``*a``, with which a few kB expand to billions of items) are refused, and so is a
    document of more than :data:`YAML_MAX_NODES` nodes or nested more than
    :data:`YAML_MAX_DEPTH` deep (the composer recurses)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.nodes_composed = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None,
                None,
                "anchors (&name) and aliases (*name) are not allowed; write each value out",
                event.start_mark,
            )
        self.nodes_composed += 1
        if self.nodes_composed > YAML_MAX_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"more than {YAML_MAX_NODES:,} keys, values and list items",
                event.start_mark,
            )
        if self.depth >= YAML_MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"lists and mappings nested more than {YAML_MAX_DEPTH} deep",
                event.start_mark,
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_keys(root: yaml.Node, source: str) -> None:
    """Refuse a key given twice in one mapping (at any depth; YAML would keep the last
    silently) and merge keys (``<<``), naming the key's path and lines."""
    pending: list[tuple[yaml.Node, str]] = [(root, "")]
    while pending:
        node, path = pending.pop()
        if isinstance(node, yaml.SequenceNode):
            pending += [(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
        if not isinstance(node, yaml.MappingNode):
            continue
        seen: dict[tuple[str, str], yaml.Mark] = {}
        for key_node, value_node in node.value:
            mark = key_node.start_mark
            line = mark.line + 1
            if key_node.tag == _MERGE_TAG:
                raise HeadposeError(
                    f"{source} line {line}: merge keys (<<) are not allowed; write each key out"
                )
            name = path
            if isinstance(key_node, yaml.ScalarNode):
                text = key_node.value
                name = f"{path}.{text}" if path else text
                name = clip(name)
                identity = (key_node.tag, text)
                if identity in seen:
                    first = seen[identity]
                    where = (
                        f"line {line}, columns {first.column + 1} and {mark.column + 1}"
                        if first.line == mark.line
                        else f"lines {first.line + 1} and {line}"
                    )
                    raise HeadposeError(
                        f"{source}: the key {name} is given twice ({where}); keep one"
                    )
                seen[identity] = mark
            pending.append((value_node, name))


def _yaml_error(error: yaml.YAMLError, source: str) -> HeadposeError:
    """One line for a YAML error: the file, where (line and column) and what."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = error.problem or error.context or "a syntax error"
        return HeadposeError(f"{source} is not valid YAML{where}: {problem}")
    if isinstance(error, yaml.reader.ReaderError):
        code = error.character
        character = f"U+{code:04X}" if isinstance(code, int) else shorten(code)
        return HeadposeError(
            f"{source} is not valid YAML: character {character} at position {error.position} "
            f"({error.reason})"
        )
    text = " ".join(str(error).split())
    return HeadposeError(f"{source} is not valid YAML: {shorten(text)[1:-1]}")


def parse_yaml(text: str, source: str) -> Any:
    """``text`` as YAML, numbers read the YAML 1.2 way, bounded and checked before any value is
    built (:class:`BoundedLoader`: no anchors or aliases, at most :data:`YAML_MAX_NODES` nodes;
    no key twice in a mapping); a HeadposeError naming ``source`` otherwise."""
    loader = None
    try:
        loader = BoundedLoader(text)  # checks the characters
        root = loader.get_single_node()
        if root is None:
            return None
        _check_keys(root, source)
        return loader.construct_document(root)
    except yaml.YAMLError as error:
        raise _yaml_error(error, source) from None
    except (ValueError, OverflowError) as error:  # a date of month 13, an int of 5000 digits
        raise HeadposeError(
            f"{source} holds a value YAML cannot build: {clip(str(error))}"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
