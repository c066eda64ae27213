"""``params.yaml``: the typed, frozen :class:`Params` every stage reads, its schema and validation.

Experiment knobs are top-level keys (``dvc exp run -S bin_width=1``); the synthetic generator's
settings sit under ``synth``. :func:`load_params`, the one loader of every stage, reads the file
(a regular UTF-8 file of at most :data:`PARAMS_MAX_BYTES`: :mod:`headpose.io.text`), parses it
bounded (:func:`headpose.io.yaml_text.parse_yaml`: no anchors or aliases, a node and depth
bound, no key twice in a mapping), rejects unknown or ill-typed keys
and out-of-range values with one message naming the key and what was expected, and returns a
frozen :class:`Params` whose field names are the keys (``params.bin_width``; lists become tuples,
the ``synth`` block a :class:`SynthParams`, each test set a :class:`TestSet`). Each key is declared
once, as a field of its block carrying its rule (:func:`_key`); :data:`SCHEMA`, :data:`SYNTH_SCHEMA`
and :data:`TEST_SET_SCHEMA` are derived from those fields. The commands' numeric options are
checked by the same rules (:func:`option`), and so are the Python API's
arguments (:func:`check_argument`). Dataset roots may hold only characters no shell
changes (:data:`SAFE_PATH`), and a ``pretrained`` checkpoint lies in :data:`PRETRAINED_DIR`.
``plugins`` names modules of :data:`headpose.registry.PLUGINS_DIR`; that each is there and
imports is checked where they are imported (:func:`headpose.registry.load_plugins`, which the
``params`` stage calls first).

A stage reads the fields it uses (``params.<key>``) and passes values on, never the whole
object, so the keys a stage reads are visible in its script (``tests/test_params_coverage.py``
checks them against the stage's ``params:`` list in ``dvc.yaml``). Code taking a params.yaml
mapping (the model keys' checks, a checkpoint's record) gets one from :meth:`Params.as_dict`.

This module imports no model code, so the data stages, which read params but never build a
network, do not re-run when a model module changes. The model keys (``arch``, ``head``,
``bin_width``, ``expectation``, ``alpha``) get their type and range here; their owners check the
rest (a registered arch or timm model, a known head, a width dividing the bins' range) in
:func:`headpose.models.keys.validate_model_params`, which the ``params`` stage and training call.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from headpose.errors import HeadposeError, clip, shorten
from headpose.io.text import MIB, read_text_file
from headpose.io.yaml_text import parse_yaml
from headpose.registry import PLUGINS_DIR

# Input sizes (px) a model is built for (params.yaml's image_size) and a checkpoint may name.
IMAGE_SIZE_RANGE_PX = (32, 1024)
# The training step's numerics (headpose.training.precision chooses what "auto" means where).
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
# The loosest framing augmentation (framing_scale): the cached context of each training face
# covers about twice this many crop sides, at the same pixel count as the face's sharp region.
MAX_FRAMING_SCALE = 4.0
# Seeds go to numpy's legacy seeding and Python's random too, which take at most 32 bits.
MAX_SEED = 2**32 - 1
# Every backbone shrinks its input 32-fold: a 32 px input ends on a 1x1 feature map.
BACKBONE_STRIDE_PX = 32
# The dataset roots are pasted into the stage commands (dvc.yaml's ${train_data}), which a shell
# runs: only characters no shell gives a meaning, so the stage reads exactly the folder DVC tracks.
SAFE_PATH = re.compile(r"[A-Za-z0-9_.,+=@/][A-Za-z0-9_.,+=@/:-]*")
# A pretrained checkpoint lies in this folder, a dependency of the train stage: `dvc status`
# notices a replaced file (DVC deps cannot depend on a param's value being a path).
PRETRAINED_DIR = "pretrained_checkpoints"
# The most processes a stage or command starts for `workers` (0: one per CPU core): a fixed cap,
# so the file validates alike on every machine, far below where forking fails.
MAX_WORKERS = 64
# A test set's name becomes file names (metrics/test_sets/<name>.json) and a stage name.
TEST_SET_NAME_MAX_CHARS = 64
# params.yaml is read whole, at most this many bytes (headpose.io.text), and composed into at
# most this many YAML nodes (keys, values, list items) before any value is built: the project's
# file holds about 100.
PARAMS_MAX_BYTES = MIB


def _type_ok(value: Any, kind: type | tuple[type, ...]) -> bool:
    """Whether ``value`` is of ``kind``: the one type check of every value and list item (yaml's
    true/false never pass as numbers)."""
    if isinstance(value, bool) and kind is not bool:
        return False
    return isinstance(value, kind)


def _finite(value: float) -> bool:
    """Whether a number is finite (an int always is, however long: no float conversion)."""
    return isinstance(value, int) or math.isfinite(value)


def _is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return _type_ok(value, (int, float)) and _finite(value)


@dataclass(frozen=True)
class Rule:
    """How one key is checked: a Python type, an optional value check and its description."""

    kind: type | tuple[type, ...]
    check: Callable[[Any], bool] | None = None
    expected: str = ""


def _number(low: float | None = None, high: float | None = None, *, low_open=False) -> Rule:
    def check(value: float) -> bool:
        if not _finite(value):
            return False
        if low is not None and (value <= low if low_open else value < low):
            return False
        return high is None or value <= high

    left = "(" if low_open else "["
    low_text = "-inf" if low is None else low
    high_text = "inf" if high is None else high
    right = ")" if high is None else "]"  # finite: infinity and NaN are no values
    text = f"a number in {left}{low_text}, {high_text}{right}"
    return Rule((int, float), check, text)


def _integer(low: int, high: int | None = None) -> Rule:
    text = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    return Rule(int, lambda v: v >= low and (high is None or v <= high), text)


def _choice(*options: str) -> Rule:
    return Rule(str, lambda v: v in options, "one of " + ", ".join(options))


def _percentile_pair(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(_is_number(v) for v in value)
        and -180 <= value[0] < value[1] <= 180
    )


_PAIR = Rule(list, _percentile_pair, "[p5_deg, p95_deg] with -180 <= p5 < p95 <= 180")
_DATASET = Rule(
    str,
    lambda v: bool(SAFE_PATH.fullmatch(v)),
    "a folder path of letters, digits and _ . , + = @ / : - only (the stage commands pass it "
    "through a shell; rename or link the folder)",
)
_PRETRAINED = Rule(
    str,
    lambda v: (
        v in ("none", "imagenet")
        or (
            bool(SAFE_PATH.fullmatch(v))
            and len(Path(v).parts) > 1
            and Path(v).parts[0] == PRETRAINED_DIR
            and ".." not in Path(v).parts
        )
    ),
    f"none, imagenet, or a checkpoint under {PRETRAINED_DIR}/ (a dependency of the train stage, "
    "so replacing the file re-runs training)",
)
_FLAG = Rule(bool, None, "true or false")
_NAME = Rule(str, lambda v: bool(v.strip()), "a non-empty name")

_FRAME_LIST = Rule(
    str,
    lambda v: v in ("none", "detector") or bool(SAFE_PATH.fullmatch(v)),
    "none, detector, or the path of a frame list (letters, digits and _ . , + = @ / : - only)",
)
TEST_SET_NAME = re.compile(rf"[a-z][a-z0-9_]{{0,{TEST_SET_NAME_MAX_CHARS - 1}}}")
_PLUGINS = Rule(
    list,
    lambda v: (
        all(isinstance(name, str) and name.isidentifier() for name in v) and len(set(v)) == len(v)
    ),
    f"a list of module names (no repeats) of the folder {PLUGINS_DIR}/, imported by every stage "
    "but synth before it works (headpose.registry.load_plugins)",
)


def _key(
    rule: Rule,
    build: Callable[[Any], Any] | None = None,
    plain: Callable[[Any], Any] | None = None,
) -> Any:
    """A params.yaml key: a field carrying its rule, and how a validated value becomes the
    field's (``build``; default: lists to tuples) and back (``plain``; default: tuples to
    lists, blocks to mappings)."""
    return field(metadata={"rule": rule, "build": build, "plain": plain})


def _frozen(value: Any) -> Any:
    return tuple(_frozen(item) for item in value) if isinstance(value, list) else value


def _plain(value: Any) -> Any:
    if isinstance(value, _Block):
        return value.as_dict()
    return [_plain(item) for item in value] if isinstance(value, tuple) else value


@dataclass(frozen=True)
class _Block:
    """A mapping of params.yaml as a frozen object: one field per key (declared with
    :func:`_key`), built from an already validated mapping, whose key order it keeps so that
    :meth:`as_dict` gives that mapping back."""

    _order: tuple[str, ...] = field(default=(), repr=False, compare=False, kw_only=True)

    @classmethod
    def schema(cls) -> dict[str, Rule]:
        """Each key's rule, in declaration order."""
        return {item.name: item.metadata["rule"] for item in fields(cls) if "rule" in item.metadata}

    @classmethod
    def from_checked(cls, mapping: dict, **extra: Any):
        """The block of a mapping :func:`validate` accepted (``extra``: fields that are no key)."""
        values = {}
        for item in fields(cls):
            if "rule" in item.metadata:
                build = item.metadata["build"] or _frozen
                values[item.name] = build(mapping[item.name])
        return cls(**values, **extra, _order=tuple(mapping))

    def as_dict(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """The keys (default: all, in the file's order) as the params.yaml mapping has them:
        plain lists and mappings, for code that takes such a mapping."""
        known = {item.name: item for item in fields(self) if "rule" in item.metadata}
        names = tuple(keys) if keys is not None else (self._order or tuple(known))
        result = {}
        for name in names:
            if name not in known:
                raise HeadposeError(f"params.yaml has no key {name}")
            plain = known[name].metadata["plain"] or _plain
            result[name] = plain(getattr(self, name))
        return result


@dataclass(frozen=True)
class TestSet(_Block):
    """One entry of ``test_sets``: a dataset scored by ``evaluate_set@<name>``."""

    __test__ = False  # not a pytest test class

    name: str  # the entry's name (its key in test_sets), not a key itself
    data: str = _key(_DATASET)
    frame_list: str = _key(_FRAME_LIST)


def _test_sets(mapping: dict) -> tuple[TestSet, ...]:
    return tuple(TestSet.from_checked(entry, name=name) for name, entry in mapping.items())


def _test_sets_plain(test_sets: tuple[TestSet, ...]) -> dict[str, dict]:
    return {entry.name: entry.as_dict() for entry in test_sets}


@dataclass(frozen=True)
class PoseRanges(_Block):
    """The 5th and 95th percentile of each angle (degrees) a synthetic set's poses match."""

    yaw: tuple[float, float] = _key(_PAIR)
    pitch: tuple[float, float] = _key(_PAIR)
    roll: tuple[float, float] = _key(_PAIR)


_POSES = Rule(dict, None, "a mapping yaw/pitch/roll -> [p5_deg, p95_deg]")


@dataclass(frozen=True)
class SynthParams(_Block):
    """The ``synth`` block: the synthetic generator's settings."""

    train_faces: int = _key(_integer(1))
    variants_per_face: int = _key(_integer(1, 20))
    mirror: bool = _key(_FLAG)
    test_images: int = _key(_integer(1))
    image_size: int = _key(_integer(64, 2048))
    test_outlier_fraction: float = _key(_number(0, 0.09))
    train_pose: PoseRanges = _key(_POSES, PoseRanges.from_checked)
    test_pose: PoseRanges = _key(_POSES, PoseRanges.from_checked)
    biwi_sequences: int = _key(_integer(1, 24))
    biwi_frames_per_sequence: int = _key(_integer(1, 1000))


@dataclass(frozen=True)
class Params(_Block):
    """The validated ``params.yaml``, frozen: a field per key (``params.bin_width``).

    Build it with :func:`load_params` or :func:`build_params` (which validate), change it with
    :meth:`replace` (validated again). It is no mapping: ``params["lr"]`` raises a TypeError
    saying to read ``params.lr``."""

    seed: int = _key(_integer(0, MAX_SEED))  # the data's: synth, train/val split, 300W_AUG, int8
    train_data: str = _key(_DATASET)
    test_data: str = _key(_DATASET)
    test_sets: tuple[TestSet, ...] = _key(
        Rule(dict, None, "a mapping of test-set names to {data, frame_list}"),
        _test_sets,
        _test_sets_plain,
    )
    held_out_sequences: int = _key(_integer(0, 23))  # BIWI protocol 2: sequences tested on
    max_angle: float = _key(_number(0, 180, low_open=True))
    val_fraction: float = _key(
        Rule(
            (int, float), lambda v: 0 < v < 1, "a number in (0, 1): training validates every epoch"
        )
    )
    augment: bool = _key(_FLAG)
    aug_fraction: float = _key(_number(0, 1))
    aug_angles: tuple[float, ...] = _key(
        Rule(
            list,
            lambda v: bool(v) and all(_is_number(a) and 0 < abs(a) <= 90 for a in v),
            "a non-empty list of non-zero angles in degrees, each within [-90, 90]",
        )
    )
    workers: int = _key(
        Rule(
            int,
            lambda v: 0 <= v <= MAX_WORKERS,
            f"an integer in [0, {MAX_WORKERS}] (processes; 0: one per CPU core)",
        )
    )
    arch: str = _key(_NAME)  # the model registry checks the name (headpose.models.keys)
    head: str = _key(_NAME)  # the heads check the name
    pretrained: str = _key(_PRETRAINED)
    bin_width: float = _key(_number(0, low_open=True))  # the bins check that it divides 198
    alpha: float = _key(_number(0, 100))
    image_size: int = _key(_integer(*IMAGE_SIZE_RANGE_PX))
    crop_protocol: str = _key(_NAME)  # the crop protocol registry checks the name
    # framing augmentation (headpose.crops.framing): share of training crops re-framed, how
    # much looser they get ([low, high], log-uniform) and how far the face moves (crop sides)
    framing_probability: float = _key(_number(0, 1))
    framing_scale: tuple[float, float] = _key(
        Rule(
            list,
            lambda v: (
                len(v) == 2
                and all(_is_number(x) for x in v)
                and 1 <= v[0] <= v[1] <= MAX_FRAMING_SCALE
            ),
            f"[low, high] with 1 <= low <= high <= {MAX_FRAMING_SCALE} (how many times looser "
            "than the crop protocol's training crop a re-framed crop is)",
        )
    )
    framing_shift: float = _key(_number(0, 0.5))
    batch_size: int = _key(_integer(1, 4096))
    lr: float = _key(_number(0, 1, low_open=True))
    epochs: int = _key(_integer(1, 1000))
    finetune_epochs: int = _key(_integer(0, 1000))
    finetune_lr: float = _key(_number(0, 1, low_open=True))
    weight_decay: float = _key(_number(0, 1))  # AdamW's decoupled decay; 0 = Adam
    lr_schedule: str = _key(_choice("exponential", "step", "onecycle"))
    lr_warmup: float = _key(_number(0, 0.9, low_open=True))
    lr_decay: float = _key(_number(0, 1, low_open=True))
    lr_steps: tuple[int, ...] = _key(
        Rule(
            list,
            lambda v: all(_type_ok(s, int) and s > 0 for s in v),
            "a list of positive epoch numbers",
        )
    )
    lr_step_gamma: float = _key(_number(0, 1, low_open=True))
    expectation: str = _key(_NAME)  # the bins check the mode
    train_seed: int = _key(_integer(0, MAX_SEED))  # the model's: initialisation, order, draws
    gpus: int = _key(_integer(1, 64))
    precision: str = _key(_choice(*PRECISIONS))
    compile: bool = _key(_FLAG)
    export: bool = _key(_FLAG)
    plugins: tuple[str, ...] = _key(_PLUGINS)  # the plugin modules exist: load_plugins checks
    synth: SynthParams = _key(
        Rule(dict, None, "a mapping of synthetic-data settings"), SynthParams.from_checked
    )

    def __getitem__(self, key: object):
        raise TypeError(f"Params is no mapping: read params.{key} (or params.as_dict())")

    def replace(self, **changes: Any) -> Params:
        """These params with ``changes`` (params.yaml values), validated again."""
        return build_params({**self.as_dict(), **{k: _plain(v) for k, v in changes.items()}})

    def record(self) -> dict[str, Any]:
        """The whole file as a plain mapping, kept as the record of a run (a checkpoint's
        ``params``, hashed into its fingerprint): provenance, never a setting acted on."""
        return self.as_dict()


# The rules of each block's keys, derived from the fields above (the one declaration).
TEST_SET_SCHEMA: dict[str, Rule] = TestSet.schema()
SYNTH_SCHEMA: dict[str, Rule] = SynthParams.schema()
SCHEMA: dict[str, Rule] = Params.schema()
PARAMS_KEYS: tuple[str, ...] = tuple(SCHEMA)


def accepts(rule: Rule, value: Any) -> bool:
    """Whether ``value`` passes ``rule``: its type (a boolean is never a number) and its check.
    The one test of a value against a rule: params.yaml's keys, command-line options
    (:func:`option`) and the Python API's arguments (:func:`check_argument`)."""
    return _type_ok(value, rule.kind) and (rule.check is None or rule.check(value))


def check_argument(name: str, value: Any, rule: Rule) -> Any:
    """``value`` when it passes ``rule``, else a HeadposeError naming the argument ``name`` and
    what was expected (``image_size 8; expected an integer in [32, 1024]``), its value shown
    shortened (:func:`headpose.errors.shorten`)."""
    if not accepts(rule, value):
        raise HeadposeError(f"{name} {shorten(value)}; expected {rule.expected}")
    return value


def _check_block(params: dict, schema: dict[str, Rule], prefix: str) -> None:
    unknown = sorted(set(params) - set(schema), key=str)
    if unknown:
        key = clip(unknown[0]) if isinstance(unknown[0], str) else shorten(unknown[0])
        close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
        hint = (
            f"did you mean {prefix}{close[0]}?"
            if close
            else "known keys: " + ", ".join(prefix + known for known in schema)
        )
        raise HeadposeError(f"unknown key {prefix}{key} in params.yaml; {hint}")
    missing = [key for key in schema if key not in params]
    if missing:
        raise HeadposeError(f"params.yaml is missing the key {prefix}{missing[0]}")
    for key, rule in schema.items():
        value = params[key]
        if not accepts(rule, value):
            expected = rule.expected or f"a value of type {rule.kind}"
            raise HeadposeError(
                f"params.yaml: {prefix}{key} is {shorten(value)}; expected {expected}"
            )


def validate(params: dict) -> dict:
    """Check a params mapping against the schema; return it unchanged or raise HeadposeError."""
    if not isinstance(params, dict):
        raise HeadposeError("params.yaml must be a mapping of keys to values")
    _check_block(params, SCHEMA, "")
    _check_block(params["synth"], SYNTH_SCHEMA, "synth.")
    for name, test_set in params["test_sets"].items():
        if not (isinstance(name, str) and TEST_SET_NAME.fullmatch(name)) or name == "test":
            raise HeadposeError(
                f"params.yaml: test_sets name {shorten(name)}; expected at most "
                f"{TEST_SET_NAME_MAX_CHARS} lower-case letters, digits and _ starting with a "
                "letter (a file name), other than test (test_data's)"
            )
        if not isinstance(test_set, dict):
            raise HeadposeError(
                f"params.yaml: test_sets.{name} is {shorten(test_set)}; expected a mapping with "
                "data and frame_list"
            )
        _check_block(test_set, TEST_SET_SCHEMA, f"test_sets.{name}.")
    for block in ("train_pose", "test_pose"):
        poses = params["synth"][block]
        if set(poses) != {"yaw", "pitch", "roll"}:
            raise HeadposeError(f"params.yaml: synth.{block} must have exactly yaw, pitch, roll")
        for angle, pair in poses.items():
            if not _PAIR.check(pair):
                raise HeadposeError(
                    f"params.yaml: synth.{block}.{angle} is {shorten(pair)}; expected "
                    f"{_PAIR.expected}"
                )
    if params["finetune_epochs"] > 0 and params["finetune_lr"] > params["lr"]:
        raise HeadposeError(
            f"params.yaml: finetune_lr ({params['finetune_lr']}) must not exceed lr "
            f"({params['lr']}): phase 2 fine-tunes at a lower learning rate"
        )
    final_map = math.ceil(params["image_size"] / BACKBONE_STRIDE_PX) ** 2
    if params["batch_size"] * final_map < 2:
        raise HeadposeError(
            f"params.yaml: batch_size {params['batch_size']} with image_size "
            f"{params['image_size']}: BatchNorm needs two values per channel, and this input "
            "ends on a 1x1 feature map; raise batch_size or image_size"
        )
    return params


# Command-line options share these rules (:func:`option`): ``--workers -3`` or ``--image-size 8``
# are refused where params.yaml refuses them.
AT_LEAST_ONE = _integer(1)
FINITE_NUMBER = _number()


def option(rule: Rule) -> Callable[[str], Any]:
    """An argparse ``type`` checking an option by ``rule``: a bad value is argparse's one error
    line naming the option and what was expected, never a traceback later on."""
    parse = int if rule.kind is int else float

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not accepts(rule, value):
            raise argparse.ArgumentTypeError(f"{text!r}; expected {rule.expected}")
        return value

    return convert


def build_params(mapping: dict) -> Params:
    """The :class:`Params` of a params.yaml mapping, validated first (:func:`validate`)."""
    return Params.from_checked(validate(mapping))


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Read and validate ``params.yaml``: a regular UTF-8 file of at most
    :data:`PARAMS_MAX_BYTES` (:func:`headpose.io.text.read_text_file`), parsed by
    :func:`headpose.io.yaml_text.parse_yaml` (bounded, no key twice). Every stage reads its
    params through here."""
    file = Path(path)
    text = read_text_file(file, PARAMS_MAX_BYTES, "params file")
    return build_params(parse_yaml(text, str(file)))
