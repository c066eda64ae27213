"""Plugins under ``dvc repro``: params.yaml's ``plugins`` names modules of ``plugin_modules/``,
which every stage but synth imports right after validating params and lists among its DVC
dependencies. Here a head defined outside the package trains through ``dvc repro``, and editing
its file makes ``dvc status`` report the stages that import it."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO_ROOT, dvc
from stage_fixtures import STAGES, commit_all, copy_source_tree, load_stage
from training_fixtures import write_tiny_dataset

from headpose.errors import HeadposeError
from headpose.models.heads import HEADS, head_class
from headpose.params import load_params, validate
from headpose.registry import PLUGINS_DIR, load_plugins


def plugin_head(name: str) -> str:
    """The source of a plugin module registering a head called ``name``: the 6D rotation head,
    its loss the squared mean geodesic distance."""
    return f'''"""A head from outside the package."""
from headpose.models.heads import register_head
from headpose.models.heads.rotation import Rotation6D


@register_head
class SquaredGeodesic(Rotation6D):
    name = "{name}"

    def loss(self, outputs, angles_deg):
        return super().loss(outputs, angles_deg) ** 2
'''


def default_params(**overrides) -> dict:
    return {**load_params(REPO_ROOT / "params.yaml").as_dict(), **overrides}


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """sys.path and the heads as they were before the test, and no plugin module of
    ``tmp_path`` left imported (the library modules a test imports stay: imported again, their
    entries would be registered twice)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    heads = set(HEADS.names())
    yield
    for name, module in list(sys.modules.items()):
        if tmp_path in Path(getattr(module, "__file__", None) or "/").parents:
            del sys.modules[name]
    for name in set(HEADS.names()) - heads:
        HEADS.unregister(name)


# --- The key and its modules --------------------------------------------------------------------


@pytest.mark.parametrize("value", [["a-b"], ["x", "x"], "x", [3], ["x.y"]])
def test_plugins_is_a_list_of_module_names(value):
    with pytest.raises(HeadposeError, match=r"plugins is .*; expected a list of module names"):
        validate(default_params(plugins=value))


def test_the_default_has_no_plugins_and_needs_no_folder(tmp_path):
    assert load_params(REPO_ROOT / "params.yaml").plugins == ()
    load_plugins((), tmp_path / "missing")


def test_a_plugin_module_or_package_registers_its_entries(tmp_path, isolated):
    (tmp_path / "flat_head.py").write_text(plugin_head("flat_plugin_head"), encoding="utf-8")
    (tmp_path / "packaged").mkdir()
    (tmp_path / "packaged" / "__init__.py").write_text(plugin_head("packaged_plugin_head"))
    load_plugins(["flat_head", "packaged"], tmp_path)
    assert head_class("flat_plugin_head", "head").__module__ == "flat_head"
    assert head_class("packaged_plugin_head", "head").__module__ == "packaged"
    load_plugins(["flat_head"], tmp_path)  # imported once: nothing registered twice


@pytest.mark.parametrize(
    ("files", "plugin", "message"),
    [
        ({"direct_angles.py": ""}, "direct_angle", "no module direct_angle in {d}/; did you mean "
         "direct_angles?"),
        ({"other.py": ""}, "mine", "no module mine in {d}/; it holds other"),
        ({}, "mine", "no module mine in {d}/; it holds none"),
        ({"broken.py": "import not_installed_anywhere\n"}, "broken", "{d}/broken.py: cannot "
         "import it (ModuleNotFoundError: No module named 'not_installed_anywhere')"),
        ({"typo.py": "x = (\n"}, "typo", "{d}/typo.py: cannot import it (SyntaxError: "),
        ({"json.py": ""}, "json", "json is the module "),
        ({"dup.py": plugin_head("bins")}, "dup", "head 'bins' is registered twice: by "
         "headpose.models.heads.bins, then by dup; rename one"),
    ],
)  # fmt: skip
def test_a_plugin_that_cannot_serve_is_one_line(tmp_path, isolated, files, plugin, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(HeadposeError) as error:
        load_plugins([plugin], tmp_path)
    text = str(error.value)
    assert "\n" not in text
    if not message.startswith("head "):
        message = "params.yaml: plugins: " + message
    assert text.startswith(message.format(d=tmp_path)), text


def test_the_params_stage_imports_the_plugins_before_checking_the_model_keys(
    tmp_path, monkeypatch, capsys, isolated
):
    (tmp_path / PLUGINS_DIR).mkdir()
    (tmp_path / PLUGINS_DIR / "stage_head.py").write_text(plugin_head("stage_plugin_head"))
    params = tmp_path / "params.yaml"
    monkeypatch.chdir(tmp_path)
    stage = load_stage("params")
    for plugins in ([], ["stage_heads"]):
        params.write_text(yaml.safe_dump(default_params(head="stage_plugin_head", plugins=plugins)))
        with pytest.raises(SystemExit):
            stage.main(["--params", str(params)])
    errors = capsys.readouterr().err.splitlines()
    assert errors == [
        "error: params.yaml: head: unknown head 'stage_plugin_head'; expected one of bins, "
        "rotation_6d",
        f"error: params.yaml: plugins: no module stage_heads in {PLUGINS_DIR}/; did you mean "
        "stage_head?",
    ]
    params.write_text(
        yaml.safe_dump(default_params(head="stage_plugin_head", plugins=["stage_head"]))
    )
    stage.main(["--params", str(params)])
    assert "all known and valid" in capsys.readouterr().out


# --- The stages ---------------------------------------------------------------------------------


def _calls_load_plugins(script: Path) -> bool:
    return any(
        isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_plugins"
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8")))
    )


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_but_synth_imports_the_plugins_and_depends_on_their_folder(stage):
    """synth writes its sets in the built-in formats and looks nothing up; every other stage may
    meet a plugin's head, arch, crop protocol or format."""
    script = REPO_ROOT / STAGES[stage]["cmd"].split()[1]
    expected = stage != "synth"
    assert _calls_load_plugins(script) == expected
    assert (PLUGINS_DIR in STAGES[stage]["deps"]) == expected
    assert (REPO_ROOT / PLUGINS_DIR).is_dir()  # a dependency DVC finds in every clone


# --- dvc repro ----------------------------------------------------------------------------------


TINY_RUN = {
    "train_data": "data/tiny/train",
    "test_data": "data/tiny/test",
    "head": "squared_geodesic",
    "plugins": ["squared_geodesic"],
    "augment": False,
    "image_size": 32,
    "batch_size": 8,
    "epochs": 1,
    "finetune_epochs": 0,
    "framing_probability": 0,
    "workers": 1,
}


@pytest.mark.slow
@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_dvc_repro_trains_a_plugin_head_and_notices_its_edit(tmp_path):
    project = tmp_path / "project"
    copy_source_tree(project)
    write_tiny_dataset(project / TINY_RUN["train_data"], 24)
    write_tiny_dataset(project / TINY_RUN["test_data"], 4, seed=1)
    plugin = project / PLUGINS_DIR / "squared_geodesic.py"
    plugin.write_text(plugin_head("squared_geodesic"), encoding="utf-8")
    params = default_params(**TINY_RUN)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit_all(project)

    result = dvc(project, "repro", "params", "train")
    assert result.returncode == 0, f"dvc repro failed:\n{result.stdout}\n{result.stderr}"
    meta = torch.load(project / "models" / "model.pt", weights_only=True)["meta"]
    assert meta["head"] == "squared_geodesic"
    assert meta["params"]["plugins"] == ["squared_geodesic"]
    stages = ("params", "filelists", "augment", "train")  # every stage the run imported it in
    assert "up to date" in dvc(project, "status", *stages).stdout

    plugin.write_text(plugin_head("squared_geodesic") + "# tuned\n", encoding="utf-8")
    status = dvc(project, "status", "--json", *stages)
    assert status.returncode == 0, status.stderr
    changed = {stage: [{"changed deps": {PLUGINS_DIR: "modified"}}] for stage in stages}
    assert json.loads(status.stdout) == changed
