"""Registries: the named entries of each extension point, and the plugins that add entries.

The four extension points keep their entries in a :class:`Registry` each: the backbones
(:data:`headpose.models.registry.ARCHS`), the heads (:data:`headpose.models.heads.HEADS`), the
crop protocols (:data:`headpose.crops.protocols.PROTOCOLS`) and the dataset formats
(:mod:`headpose.datasets.registry`). So they share one set of rules:

* **register**: ``REGISTRY.register(entry)`` (a class decorator too) files the entry under its
  ``name``. A name is taken once: another entry under it is refused, in one line naming the
  module of each (the one registered first, then the newcomer); the same entry again (equal to
  the one held) changes nothing;
* **look up**: ``REGISTRY.get(name, source)``; an unknown name is one line starting with
  ``source``, where the name came from (``params.yaml: head``), and listing the known names;
* **list**: ``REGISTRY.names()`` and ``REGISTRY.values()``, in registration order (built-in
  entries first).

A module outside the package adds entries by registering them when it is imported. Two ways
bring it in:

* the ``plugins`` key of params.yaml names modules of the workspace's :data:`PLUGINS_DIR` folder;
  every stage that looks anything up imports them right after validating params
  (:func:`load_plugins`) and lists that folder among its DVC dependencies, so ``dvc repro`` runs
  them and editing one re-runs those stages;
* an installed distribution declares entry points in the group :data:`PLUGIN_GROUP` (each a
  module); they are imported the first time any registry lists its entries or misses a name,
  whatever the entry point (a stage, a command, the Python API). DVC does not track installed
  packages, so a plugin that pipeline results depend on belongs in :data:`PLUGINS_DIR`.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Generic, TypeVar

from headpose.errors import HeadposeError, shorten

T = TypeVar("T")

# The workspace folder of the modules params.yaml's ``plugins`` names (a DVC dependency of every
# stage that imports them; not ``plugins/``: a dependency named like a params key breaks
# ``dvc exp show --keep``).
PLUGINS_DIR = "plugin_modules"
PLUGINS_SOURCE = "params.yaml: plugins"
# The entry-point group of installed plugins (``[project.entry-points."headpose.plugins"]``).
PLUGIN_GROUP = "headpose.plugins"

_entry_points_imported = False


def _module_of(entry: object) -> str:
    """The module defining ``entry`` (a class, or an instance: its class's)."""
    return getattr(entry, "__module__", None) or type(entry).__module__


class Registry(Generic[T]):
    """The entries of one extension point by name (see the module docstring).

    ``kind`` names an entry in messages (``crop protocol``); ``module_of`` gives the module an
    entry comes from (default: the module of its class); ``hint`` ends the unknown-name message
    (``or timm/<timm model name>``); ``builtins`` are modules registering the built-in entries,
    imported before the registry is first used, for a registry those modules import themselves.
    """

    def __init__(
        self,
        kind: str,
        *,
        module_of: Callable[[T], str] = _module_of,
        hint: str = "",
        builtins: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self._module_of = module_of
        self._hint = hint
        self._builtins_pending = builtins
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        """File ``entry`` under its ``name`` and return it (usable as a class decorator)."""
        self._import_builtins()
        name = getattr(entry, "name", None)
        if not isinstance(name, str) or not name:
            raise HeadposeError(
                f"{self._module_of(entry)} registers a {self.kind} without a name "
                f"(name is {name!r}; expected a non-empty string)"
            )
        held = self._entries.setdefault(name, entry)
        if held != entry:
            raise HeadposeError(
                f"{self.kind} {name!r} is registered twice: by {self._module_of(held)}, then by "
                f"{self._module_of(entry)}; rename one"
            )
        return entry

    def unregister(self, name: str) -> T:
        """Remove the entry ``name`` (tests, and an interactive session re-importing a plugin
        after editing it); return it."""
        return self._entries.pop(name)

    def get(self, name: object, source: str = "") -> T:
        """The entry called ``name``; else one line starting with ``source`` (where the name
        came from) and listing the known names."""
        self._import_builtins()
        if not (isinstance(name, str) and name in self._entries):
            import_entry_points()  # an installed plugin may define it
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        prefix = f"{source}: " if source else ""
        raise HeadposeError(
            f"{prefix}unknown {self.kind} {shorten(name)}; expected one of "
            f"{', '.join(self.names())}{self._hint}"
        )

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._listed())

    def values(self) -> tuple[T, ...]:
        """Every registered entry, in registration order."""
        return tuple(self._listed().values())

    def _listed(self) -> dict[str, T]:
        self._import_builtins()
        import_entry_points()
        return self._entries

    def _import_builtins(self) -> None:
        pending, self._builtins_pending = self._builtins_pending, ()
        for module in pending:
            importlib.import_module(module)


def _cannot_import(what: str, error: BaseException) -> HeadposeError:
    return HeadposeError(f"{what}: cannot import it ({type(error).__name__}: {error})")


def import_entry_points() -> None:
    """Import every installed plugin (the entry points of :data:`PLUGIN_GROUP`), once per
    process (again after a failure, which is one line)."""
    global _entry_points_imported
    if _entry_points_imported:
        return
    _entry_points_imported = True  # a plugin listing a registry while it is imported: no loop
    for point in metadata.entry_points(group=PLUGIN_GROUP):
        try:
            point.load()
        except (ImportError, SyntaxError) as error:
            _entry_points_imported = False
            raise _cannot_import(
                f"entry point {point.name} = {point.value} of {PLUGIN_GROUP}", error
            ) from None


def _modules_in(folder: Path) -> list[str]:
    """The modules ``folder`` holds (``name.py`` files and ``name/__init__.py`` packages)."""
    if not folder.is_dir():
        return []
    found = [path.stem for path in folder.glob("*.py")]
    found += [path.parent.name for path in folder.glob("*/__init__.py")]
    return sorted(found)


def load_plugins(modules: Iterable[str], folder: str | Path = PLUGINS_DIR) -> None:
    """Import the modules of ``folder`` (relative to the working directory: the DVC workspace)
    that ``modules`` (params.yaml's validated ``plugins``) names, in order, so they register
    their entries; a stage calls it right after validating params. A module that is not there,
    that another module of the same name shadows, or that cannot be imported is one line."""
    root = Path(folder).resolve()
    for name in modules:
        file = root / f"{name}.py"
        if not file.is_file():
            file = root / name / "__init__.py"
        if not file.is_file():
            held = _modules_in(root)
            close = difflib.get_close_matches(name, held, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"it holds {', '.join(held) or 'none'}"
            raise HeadposeError(f"{PLUGINS_SOURCE}: no module {name} in {folder}/; {hint}")
        if str(root) not in sys.path:
            sys.path.append(str(root))  # after everything else: a plugin shadows no module
        shown = Path(folder) / file.relative_to(root)
        try:
            module = importlib.import_module(name)
        except (ImportError, SyntaxError) as error:
            raise _cannot_import(f"{PLUGINS_SOURCE}: {shown}", error) from None
        loaded = getattr(module, "__file__", None)
        if loaded is None or Path(loaded).resolve() != file:
            raise HeadposeError(
                f"{PLUGINS_SOURCE}: {name} is the module {loaded or 'built into Python'}, not "
                f"{shown}; rename the plugin"
            )
