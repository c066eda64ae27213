"""params.yaml validation messages, the frozen Params object, and atomic outputs that never leave
half-written files."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path

import pytest
import yaml

from headpose.errors import HeadposeError
from headpose.io.files import atomic_directory, atomic_path, write_json
from headpose.models.keys import validate_model_params
from headpose.params import (
    SCHEMA,
    SYNTH_SCHEMA,
    TEST_SET_SCHEMA,
    Params,
    PoseRanges,
    SynthParams,
    TestSet,
    build_params,
    load_params,
    validate,
)

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture
def params() -> dict:
    return copy.deepcopy(yaml.safe_load(REPO_PARAMS.read_text()))


def test_the_shipped_params_are_valid():
    assert load_params(REPO_PARAMS).bin_width == 3


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("bin_width", 4, "bin_width is 4; expected a bin width in degrees that divides 198: 1, 2"),
        ("arch", "resnet9", "arch: unknown arch 'resnet9'; expected one of resnet18"),
        ("alpha", -1, "alpha is -1; expected a number in [0"),
        ("lr", 0, "lr is 0; expected a number in (0"),
        ("weight_decay", -0.1, "weight_decay is -0.1; expected a number in [0, 1]"),
        ("epochs", 0, "epochs is 0; expected an integer in [1"),
        ("epochs", 2.5, "epochs is 2.5; expected an integer"),
        ("batch_size", True, "batch_size is True"),
        ("val_fraction", 0, "val_fraction is 0; expected a number in (0, 1)"),
        ("aug_angles", [0, 10], "aug_angles is [0, 10]; expected a non-empty list of non-zero"),
    ],
)
def test_bad_values_name_the_key_and_what_was_expected(params, key, value, message):
    params[key] = value
    with pytest.raises(HeadposeError) as error:
        validate_model_params(validate(params))
    assert message in str(error.value)


def test_the_model_keys_are_checked_by_the_models_not_by_params(params):
    # headpose.params checks their type; the names are the models' (so the data stages, which
    # only call headpose.params, do not depend on model code)
    params["arch"] = "resnet9"
    assert validate(params)["arch"] == "resnet9"
    with pytest.raises(HeadposeError, match="arch: unknown arch 'resnet9'"):
        validate_model_params(params)
    params["arch"] = 18
    with pytest.raises(HeadposeError, match="arch is 18; expected a non-empty name"):
        validate(params)


def test_unknown_missing_and_nested_keys(params):
    with pytest.raises(HeadposeError, match="unknown key bin_widht in params.yaml"):
        validate({**params, "bin_widht": 3})
    del params["alpha"]
    with pytest.raises(HeadposeError, match="missing the key alpha"):
        validate(params)


def test_synth_block_is_checked(params):
    params["synth"]["test_images"] = -5
    with pytest.raises(HeadposeError, match="synth.test_images is -5; expected an integer >= 1"):
        validate(params)
    params["synth"]["test_images"] = 10
    params["synth"]["train_pose"]["pitch"] = [11.0, -27.0]
    with pytest.raises(HeadposeError, match="synth.train_pose.pitch"):
        validate(params)


def test_finetune_lr_must_not_exceed_lr(params):
    params["finetune_lr"] = params["lr"] * 2
    with pytest.raises(HeadposeError, match="finetune_lr .* must not exceed lr"):
        validate(params)


def test_unreadable_or_invalid_params_file(tmp_path):
    with pytest.raises(HeadposeError, match="params file .*missing.yaml does not exist"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("seed: [1,\n")
    with pytest.raises(HeadposeError, match="is not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(HeadposeError, match="must be a mapping"):
        load_params(tmp_path / "list.yaml")


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"mae": 1.0})
    with pytest.raises(RuntimeError), atomic_path(target) as temp:
        temp.write_text('{"mae": ')  # half-written, then the stage dies
        raise RuntimeError("interrupted")
    assert target.read_text() == '{\n  "mae": 1.0\n}\n'
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


def test_interrupted_folder_keeps_the_old_folder(tmp_path):
    target = tmp_path / "lists"
    target.mkdir()
    (target / "train.txt").write_text("old\n")
    with pytest.raises(RuntimeError), atomic_directory(target) as temp:
        (temp / "train.txt").write_text("new, unfinished")
        raise RuntimeError("interrupted")
    assert (target / "train.txt").read_text() == "old\n"
    assert [path.name for path in tmp_path.iterdir()] == ["lists"]
    with atomic_directory(target) as temp:
        (temp / "train.txt").write_text("new\n")
    assert (target / "train.txt").read_text() == "new\n"


def test_unwritable_destination_is_one_clear_message(tmp_path):
    blocker = tmp_path / "metrics"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(HeadposeError, match="cannot create output folder .*metrics"):
        write_json(blocker / "train.json", {})


def _readme_recipe() -> str:
    """The README's published recipe, the ``-S key=value`` overrides of its ``dvc exp run``
    command, as the YAML lines DVC writes into params.yaml (``key: value``)."""
    import re
    import shlex

    readme = (REPO_PARAMS.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Real data and the published recipe")
    block = readme[start:].split("```")[1].removeprefix("bash")
    words = shlex.split(block.replace("\\\n", " "))
    assert words[:3] == ["dvc", "exp", "run"], words
    pairs = [
        value.split("=", 1) for flag, value in zip(words, words[1:], strict=False) if flag == "-S"
    ]
    assert len(pairs) >= 10 and all(re.fullmatch(r"[a-z_]+", key) for key, _ in pairs), pairs
    return "\n".join(f"{key}: {value}" for key, value in pairs)


def test_the_readme_recipe_is_accepted_as_written(params, tmp_path):
    """``lr: 1e-5`` is a string to YAML 1.1 (PyYAML) but a number to YAML 1.2 and DVC: the
    README's recipe, pasted into params.yaml verbatim, passes validation."""
    recipe = yaml.safe_load(_readme_recipe())
    assert isinstance(recipe["lr"], str)  # what plain PyYAML makes of it
    path = tmp_path / "params.yaml"
    others = {key: value for key, value in params.items() if key not in recipe}  # no key twice
    path.write_text(yaml.safe_dump(others) + _readme_recipe() + "\n", encoding="utf-8")
    loaded = load_params(path)
    validate_model_params(loaded.as_dict())
    assert loaded.lr == 1e-5 and loaded.finetune_lr == 1e-6
    assert loaded.framing_probability == 0 and loaded.arch == "resnet50"
    # the published schedule, whatever the default profile's: 5 % per epoch
    assert loaded.lr_schedule == "exponential" and loaded.lr_decay == 0.95


@pytest.mark.parametrize("spelling", ["1e-05", "1e-5", "1.0e-5", "1E-5", ".1e-4"])
def test_every_yaml_12_and_dvc_spelling_of_a_number_is_a_number(params, tmp_path, spelling):
    """`dvc exp run -S finetune_lr=1e-5` writes ``finetune_lr: 1e-05``."""
    text = yaml.safe_dump(params).replace("\nfinetune_lr: 0.002\n", f"\nfinetune_lr: {spelling}\n")
    assert f"\nfinetune_lr: {spelling}\n" in text
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_params(path).finetune_lr == pytest.approx(1e-5)


@pytest.mark.parametrize("key", ["seed", "train_seed"])
def test_seeds_beyond_32_bits_are_refused_before_any_work(params, key):
    validate({**params, key: 2**32 - 1})
    with pytest.raises(HeadposeError, match=f"{key} is {2**70}; expected an integer in"):
        validate({**params, key: 2**70})


# --- The Params object ----------------------------------------------------------------------------


def test_params_are_a_frozen_object_with_a_field_per_key(params):
    loaded = load_params(REPO_PARAMS)
    assert isinstance(loaded, Params) and isinstance(loaded.synth, SynthParams)
    assert loaded.lr == params["lr"] and loaded.synth.test_images == params["synth"]["test_images"]
    assert loaded.aug_angles == tuple(params["aug_angles"])  # lists become tuples
    assert isinstance(loaded.synth.train_pose, PoseRanges)
    assert loaded.synth.train_pose.yaw == tuple(params["synth"]["train_pose"]["yaw"])
    assert all(isinstance(entry, TestSet) for entry in loaded.test_sets)
    assert [entry.name for entry in loaded.test_sets] == list(params["test_sets"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.lr = 1.0
    with pytest.raises(TypeError, match=r"read params\.lr"):
        loaded["lr"]
    assert pickle.loads(pickle.dumps(loaded)) == loaded


def test_the_schema_is_derived_from_the_fields(params):
    keys = [field.name for field in dataclasses.fields(Params) if field.name != "_order"]
    assert list(SCHEMA) == keys and set(SCHEMA) == set(params)
    assert set(SYNTH_SCHEMA) == set(params["synth"])
    assert list(TEST_SET_SCHEMA) == ["data", "frame_list"]


def test_as_dict_gives_the_file_back_in_its_order(params):
    """A checkpoint stores the params (and hashes them): the same mapping, order and types as
    the file, so moving to the object changes no output byte."""
    loaded = load_params(REPO_PARAMS)
    again = loaded.as_dict()
    assert again == params and list(again) == list(params)
    assert list(again["synth"]) == list(params["synth"])
    assert pickle.dumps(again) == pickle.dumps(params)
    assert loaded.record() == params
    assert loaded.as_dict(["framing_scale", "lr"]) == {
        "framing_scale": params["framing_scale"],
        "lr": params["lr"],
    }
    with pytest.raises(HeadposeError, match="params.yaml has no key bin_widht"):
        loaded.as_dict(["bin_widht"])


def test_replace_validates_again(params):
    loaded = build_params(params)
    changed = loaded.replace(bin_width=1, lr_steps=(5, 7))
    assert changed.bin_width == 1 and changed.lr_steps == (5, 7) and loaded.bin_width == 3
    with pytest.raises(HeadposeError, match="epochs is 0; expected an integer in"):
        loaded.replace(epochs=0)
    with pytest.raises(HeadposeError, match="unknown key bin_widht in params.yaml"):
        loaded.replace(bin_widht=1)
