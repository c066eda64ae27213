"""One registry pattern (:mod:`headpose.registry`) for the four extension points: backbones,
heads, crop protocols and dataset formats each refuse a taken name in one line naming both
modules, take the same entry again, look a name up in one line naming its source and the known
names, list their names, and take an installed plugin through its entry point."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import metadata

import pytest
from torch import nn

from headpose import registry
from headpose.crops.protocols import PROTOCOLS, get_protocol, register_protocol
from headpose.crops.protocols.hopenet import HopeNet
from headpose.datasets.biwi import FormatBIWI
from headpose.datasets.registry import FORMATS, get_format, register_format
from headpose.errors import HeadposeError
from headpose.models.heads import HEADS, head_class, register_head
from headpose.models.heads.bins import Bins
from headpose.models.registry import ARCHS, Arch, get_arch, register

REGISTRIES = {"arch": ARCHS, "head": HEADS, "crop protocol": PROTOCOLS, "dataset format": FORMATS}


def _network() -> nn.Module:
    return nn.Identity()


class SecondHopeNet(HopeNet):
    """Another protocol under the published crop's name."""


class SecondBins(Bins):
    """Another head under the bins head's name."""


class SecondBIWI(FormatBIWI):
    """Another format under BIWI's name."""


# kind -> (register a newcomer under a built-in name, that name, the built-in's module)
NEWCOMERS: dict[str, tuple[Callable[[], object], str, str]] = {
    "arch": (
        lambda: register(Arch("resnet18", _network, None, ("conv1",), None)),
        "resnet18",
        "headpose.models.registry",
    ),
    "head": (lambda: register_head(SecondBins), "bins", "headpose.models.heads.bins"),
    "crop protocol": (
        lambda: register_protocol(SecondHopeNet),
        "hopenet",
        "headpose.crops.protocols.hopenet",
    ),
    "dataset format": (lambda: register_format(SecondBIWI), "biwi", "headpose.datasets.biwi"),
}


@pytest.fixture
def restored_registries():
    """Every registry as it was before the test (entries a test added are removed)."""
    before = {kind: set(entries.names()) for kind, entries in REGISTRIES.items()}
    yield
    for kind, entries in REGISTRIES.items():
        for name in set(entries.names()) - before[kind]:
            entries.unregister(name)


@pytest.mark.parametrize("kind", sorted(NEWCOMERS))
def test_a_taken_name_is_refused_naming_both_modules(kind):
    newcomer, name, builtin_module = NEWCOMERS[kind]
    entries = REGISTRIES[kind]
    held, names = entries.get(name), entries.names()
    with pytest.raises(HeadposeError) as error:
        newcomer()
    assert str(error.value) == (
        f"{kind} {name!r} is registered twice: by {builtin_module}, then by {__name__}; rename one"
    )
    assert entries.get(name) is held and entries.names() == names


def test_the_same_entry_again_changes_nothing():
    names = {kind: entries.names() for kind, entries in REGISTRIES.items()}
    held = ARCHS.get("resnet18"), PROTOCOLS.get("hopenet")
    assert register(held[0]) is held[0]
    assert register_head(Bins) is Bins
    assert register_protocol(HopeNet) is HopeNet
    assert register_format(FormatBIWI) is FormatBIWI
    assert {kind: entries.names() for kind, entries in REGISTRIES.items()} == names
    assert (ARCHS.get("resnet18"), PROTOCOLS.get("hopenet")) == held
    assert PROTOCOLS.get("hopenet") is held[1]  # the instance held is kept


def test_an_entry_without_a_name_is_refused():
    class Nameless(Bins):
        name = ""

    with pytest.raises(HeadposeError, match=f"{__name__} registers a head without a name"):
        register_head(Nameless)


LOOKUPS = [
    ("arch", get_arch, "params.yaml: arch", " or timm/<timm model name>"),
    ("head", head_class, "params.yaml: head", ""),
    ("crop protocol", get_protocol, "crop_protocol", ""),
    ("dataset format", get_format, "--format", ""),
]


@pytest.mark.parametrize(
    ("kind", "look_up", "source", "hint", "name"),
    [
        (*lookup, name)
        for lookup in LOOKUPS
        for name in ("nonesuch", 3, ["bins"])
        if lookup[0] != "arch" or isinstance(name, str)  # arch names are checked as text first
    ],
)
def test_an_unknown_name_is_one_line_naming_its_source_and_the_known_names(
    kind, look_up, source, hint, name
):
    with pytest.raises(HeadposeError) as error:
        look_up(name, source)
    known = ", ".join(REGISTRIES[kind].names())
    assert str(error.value) == f"{source}: unknown {kind} {name!r}; expected one of {known}{hint}"


def test_names_are_listed_in_registration_order_built_ins_first():
    # (a test module may have registered more: tests/test_dataset_formats.py on import)
    assert ARCHS.names()[0] == "resnet18"
    assert HEADS.names()[:2] == ("bins", "rotation_6d")  # the default first
    assert PROTOCOLS.names()[:2] == ("hopenet", "visible")
    assert set(FORMATS.names()[:4]) == {"biwi", "biwi_npz", "300w_lp", "aflw2000"}
    assert [entry.name for entry in HEADS.values()] == list(HEADS.names())


ENTRY_POINT_HEAD = '''"""An installed plugin: a head registered when its entry point is imported."""
from headpose.models.heads import register_head
from headpose.models.heads.rotation import Rotation6D


@register_head
class InstalledRotation(Rotation6D):
    name = "installed_rotation"
'''


@pytest.fixture
def entry_points(monkeypatch, tmp_path, restored_registries):
    """Make ``use(value)`` the only entry point of headpose.plugins (not imported yet), with
    ``tmp_path`` importable."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_imported", False)

    def use(value: str) -> None:
        point = metadata.EntryPoint(name="demo", value=value, group=registry.PLUGIN_GROUP)
        found = {registry.PLUGIN_GROUP: [point]}
        monkeypatch.setattr(registry.metadata, "entry_points", lambda group: found.get(group, []))

    yield use
    monkeypatch.undo()  # the real entry points again, before the registries are restored
    sys.modules.pop("installed_heads", None)


def test_an_installed_plugin_registers_through_its_entry_point(entry_points, tmp_path):
    (tmp_path / "installed_heads.py").write_text(ENTRY_POINT_HEAD, encoding="utf-8")
    entry_points("installed_heads")
    assert "installed_heads" not in sys.modules
    assert head_class("installed_rotation", "params.yaml: head").__module__ == "installed_heads"
    assert HEADS.names() == ("bins", "rotation_6d", "installed_rotation")


def test_an_entry_point_that_cannot_be_imported_is_one_line(entry_points):
    entry_points("not_installed_anywhere")
    for _ in range(2):  # not taken for imported after a failure
        with pytest.raises(HeadposeError) as error:
            HEADS.names()
        assert str(error.value) == (
            "entry point demo = not_installed_anywhere of headpose.plugins: cannot import it "
            "(ModuleNotFoundError: No module named 'not_installed_anywhere')"
        )
