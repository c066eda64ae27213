"""Every key a stage reads is on that stage's ``params:`` list in dvc.yaml.

DVC re-runs a stage only when a listed param changes: a key the code reads but the list lacks
lets ``dvc exp run -S key=...`` leave the stage "up to date" with stale outputs. The keys a stage
reads are found in its script (the one named by the stage's ``cmd``), where a stage reads params
(:class:`headpose.params.Params`, from ``load_params``) in one of these ways only:

* ``params.<key>`` (``params.synth.<x>`` reads ``synth``): that key;
* ``params.as_dict(KEYS)``: the keys ``KEYS`` names, evaluated in the script's namespace (a
  component's declaration, e.g. ``FRAMING_KEYS``); ``params.as_dict()``: every key;
* ``X.from_params(params)``: the keys ``X.from_params`` reads, recorded by running it on a
  :class:`Params` that notes every field read (``TrainSettings.from_params`` reads the model
  keys the registered heads declare, so a head's key is found where the head declares it);
* ``params.record()``: the whole file kept as a record of the run (the checkpoints' ``params``
  and the run fingerprint): provenance, never acted on, so not a read.

Anything else (passing ``params`` whole to another function, an attribute that is no key) fails
the check, so no read can hide from it. The keys of :data:`RESOURCE_KEYS` may go unlisted: they
change how fast a stage runs, never what it writes.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import shlex
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from helpers import REPO_ROOT

from headpose.models.heads import HEADS
from headpose.params import PARAMS_KEYS, Params, load_params

PARAMS_FILE = "params.yaml"
# Keys a stage may read without listing them, and why no output depends on them.
RESOURCE_KEYS = {
    "workers": "worker processes: every output is the same for any count "
    "(tests/test_filelists.py, tests/test_synth_biwi.py, tests/test_store.py check it)",
}


def _dvc_yaml() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))


def stage_script(definition: dict) -> Path:
    """The script a stage's ``cmd`` runs (``python stages/X.py ...``)."""
    words = shlex.split(definition["cmd"])
    assert words[0] == "python" and words[1].endswith(".py"), definition["cmd"]
    return REPO_ROOT / words[1]


def listed_keys(definition: dict) -> set[str]:
    """The params.yaml keys a stage's ``params:`` list names (all of them for ``params.yaml:``)."""
    keys: set[str] = set()
    for entry in definition.get("params", []):
        if isinstance(entry, str):
            keys.add(entry)
        elif PARAMS_FILE in entry:
            keys |= set(PARAMS_KEYS if entry[PARAMS_FILE] is None else entry[PARAMS_FILE])
    return keys


def _load_module(script: Path) -> ModuleType:
    name = f"_params_coverage_{script.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def recorded_reads(builder: Callable[[Params], object]) -> set[str]:
    """The keys ``builder`` reads from the repo's params (``record()`` excepted)."""
    read: set[str] = set()
    paused: list[bool] = []

    class Recording(Params):
        def __getattribute__(self, name: str):
            if name in PARAMS_KEYS and not paused:
                read.add(name)
            return object.__getattribute__(self, name)

        def record(self) -> dict:
            paused.append(True)
            try:
                return Params.record(self)
            finally:
                paused.pop()

    loaded = load_params(REPO_ROOT / PARAMS_FILE)
    builder(Recording(**{item.name: getattr(loaded, item.name) for item in fields(Params)}))
    return read


def _is_load_params(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "load_params"
    )


def keys_read(script: Path) -> dict[str, str]:
    """``{key: how the script reads it}``; raises AssertionError on a use of params the rules
    of this module do not cover."""
    tree = ast.parse(script.read_text(encoding="utf-8"), str(script))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names = set()  # variables holding the loaded params
    uses = []
    for node in ast.walk(tree):
        if not _is_load_params(node):
            continue
        parent = parents[node]
        if isinstance(parent, ast.Assign) and [type(t) for t in parent.targets] == [ast.Name]:
            names.add(parent.targets[0].id)
        else:
            uses.append(node)
    uses += [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id in names and isinstance(node.ctx, ast.Load)
    ]
    module = None
    read: dict[str, str] = {}
    for use in uses:
        parent, where = parents[use], f"{script.name}:{use.lineno}"
        if isinstance(parent, ast.Attribute):
            call = parents.get(parent)
            if parent.attr in PARAMS_KEYS:
                read.setdefault(parent.attr, f"params.{parent.attr} ({where})")
            elif parent.attr == "record" and isinstance(call, ast.Call):
                continue  # the run's record, not a setting (module docstring)
            elif parent.attr == "as_dict" and isinstance(call, ast.Call) and not call.keywords:
                if not call.args:
                    keys = PARAMS_KEYS
                else:
                    module = module or _load_module(script)
                    keys = eval(ast.unparse(call.args[0]), vars(module))  # noqa: S307
                text = ast.unparse(call)
                for key in keys:
                    read.setdefault(key, f"{text} ({where})")
            else:
                raise AssertionError(f"{where}: params.{parent.attr} is no params.yaml key")
        elif (
            isinstance(parent, ast.Call)
            and use in parent.args
            and isinstance(parent.func, ast.Attribute)
            and parent.func.attr == "from_params"
        ):
            module = module or _load_module(script)
            builder = eval(ast.unparse(parent.func), vars(module))  # noqa: S307
            for key in sorted(recorded_reads(builder)):
                read.setdefault(key, f"{ast.unparse(parent)} ({where})")
        else:
            raise AssertionError(
                f"{where}: {ast.unparse(parent)} uses the params whole; read params.<key> in "
                "the stage script (or build settings with a from_params)"
            )
    return read


def uncovered_keys(dvc_yaml: dict) -> list[str]:
    """One line per key a stage reads that its ``params:`` list lacks."""
    problems = []
    for name, stage in dvc_yaml["stages"].items():
        definition = stage.get("do", stage)
        script = stage_script(definition)
        listed = listed_keys(definition)
        for key, how in sorted(keys_read(script).items()):
            if key not in listed and key not in RESOURCE_KEYS:
                problems.append(
                    f"stage {name}: {script.relative_to(REPO_ROOT)} reads {key} through {how}, "
                    f"but its params: list in dvc.yaml lacks {key}, so `dvc exp run -S {key}=...` "
                    "would leave it up to date with stale outputs"
                )
    return problems


def test_every_stage_lists_every_key_it_reads():
    problems = uncovered_keys(_dvc_yaml())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("stage", "key"),
    [
        ("train", "bin_width"),  # read by TrainSettings.from_params (the bins head's key)
        ("train", "gpus"),  # params.gpus in the stage script
        ("analyze", "framing_scale"),  # params.as_dict(FRAMING_KEYS)
        ("synth", "synth"),  # params.synth.biwi_sequences
        ("evaluate_set", "max_angle"),  # a foreach stage
        ("export", "crop_protocol"),
    ],
)
def test_a_key_missing_from_a_stage_list_is_reported(stage, key):
    dvc_yaml = copy.deepcopy(_dvc_yaml())
    definition = dvc_yaml["stages"][stage].get("do", dvc_yaml["stages"][stage])
    definition["params"].remove(key)
    problems = uncovered_keys(dvc_yaml)
    assert len(problems) == 1 and problems[0].startswith(f"stage {stage}: "), problems
    assert f" reads {key} through " in problems[0] and f"lacks {key}," in problems[0]


def test_the_train_stage_reads_every_key_a_head_declares():
    read = keys_read(REPO_ROOT / "stages" / "train.py")
    declared = {key for cls in HEADS.values() for key in cls.params_defaults}
    assert declared and declared <= set(PARAMS_KEYS) and declared <= set(read)
    assert {"arch", "head", "gpus", "lr_steps", "framing_shift"} <= set(read)


def test_the_params_stage_lists_and_reads_the_whole_file():
    definition = _dvc_yaml()["stages"]["params"]
    assert listed_keys(definition) == set(PARAMS_KEYS)
    assert set(keys_read(stage_script(definition))) == set(PARAMS_KEYS)


def test_a_script_passing_params_whole_or_reading_no_key_fails_the_check(tmp_path):
    whole = tmp_path / "whole.py"
    whole.write_text("params = load_params('p')\nrun(params)\n", encoding="utf-8")
    with pytest.raises(AssertionError, match=r"whole.py:2: run\(params\) uses the params whole"):
        keys_read(whole)
    unknown = tmp_path / "unknown.py"
    unknown.write_text("params = load_params('p')\nprint(params.bin_widht)\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="params.bin_widht is no params.yaml key"):
        keys_read(unknown)
    direct = tmp_path / "direct.py"
    direct.write_text("print(load_params('p').lr, load_params('p').record())\n", encoding="utf-8")
    assert set(keys_read(direct)) == {"lr"}


def test_only_the_scripts_load_params():
    """The library never reads params.yaml itself, so a stage's reads are all in its script."""
    callers = [
        str(path.relative_to(REPO_ROOT))
        for path in sorted((REPO_ROOT / "headpose").rglob("*.py"))
        if any(_is_load_params(node) for node in ast.walk(ast.parse(path.read_text("utf-8"))))
    ]
    assert callers == []


def test_every_heads_defaults_pass_the_params_rules_of_their_keys():
    """A head declares its keys' defaults (and its own checks); params.py declares their types
    and ranges without importing model code: the two must agree on every default."""
    params = load_params(REPO_ROOT / "params.yaml")
    for cls in HEADS.values():
        changed = params.replace(**cls.params_defaults)  # validated again
        assert {key: getattr(changed, key) for key in cls.params_defaults} == cls.params_defaults
