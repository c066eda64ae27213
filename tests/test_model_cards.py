"""Model cards (:mod:`headpose.inference.card`): every field is honoured when a file is fed and
read (layout, channels, scale, mean/std, euler unit/order/signs, rotation matrices plain and
transposed, quaternions in both orders, bins), a fixed batch dimension is fed in chunks, several
files average as one model, the card round-trips through a file's metadata (``headpose adopt``),
metadata that contradicts the graph or nests without bound is one line, and every bad card is
one line naming the file and the field, nothing written.

The models are small ONNX graphs built here with ``onnx.helper`` (no export, no training)."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
import yaml
from cli_fixtures import run_cli
from onnx import TensorProto, helper

import headpose
from headpose.crops.protocols import get_protocol
from headpose.errors import HeadposeError
from headpose.geometry import rotation_matrix
from headpose.inference.card import card_from_metadata, card_metadata, parse_card, read_card
from headpose.inference.loading import open_model
from headpose.inference.metadata import ModelDescription, onnx_metadata, read_onnx_metadata
from headpose.models.registry import Normalization

OPSET = 18
SIDE = 32
ANGLES_DEG = (30.0, -20.0, 10.0)  # yaw, pitch, roll of the constant answers


def _save(path, nodes, inputs, outputs, initializers=(), metadata=None):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _image_input(layout="NCHW", channels=3, batch="N", side=SIDE):
    shape = [batch, channels, side, side] if layout == "NCHW" else [batch, side, side, channels]
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)


def channel_means_model(path, layout="NCHW", channels=3, batch="N", side=SIDE, metadata=None):
    """Answers each input channel's mean over the image, (N, 3) (a grey input's thrice): the
    columns show what the file was fed."""
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    nodes = [
        helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("a", 7, [2], axes)),
        helper.make_node("ReduceMean", ["x", "axes"], ["m" if channels == 1 else "y"], keepdims=0),
    ]
    if channels == 1:
        nodes.append(helper.make_node("Concat", ["m", "m", "m"], ["y"], axis=1))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])
    return _save(path, nodes, [_image_input(layout, channels, batch, side)], [out], (), metadata)


def constant_model(path, values, shape_tail, outputs=1):
    """Answers ``values`` (one row, or one row per output) for every image, shape
    (N, *shape_tail): zero times the image's mean plus the constants."""
    rows = [np.asarray(v, np.float32).reshape(-1) for v in (values if outputs > 1 else [values])]
    axes = helper.make_tensor("a", 7, [3], [1, 2, 3])
    nodes = [
        helper.make_node("Constant", [], ["axes"], value=axes),
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=1),  # (N, 1, 1, 1)
        helper.make_node("Flatten", ["m"], ["m2"], axis=1),  # (N, 1)
        helper.make_node("Mul", ["m2", "zero"], ["z"]),
    ]
    inits = [helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])]
    outs = []
    for index, row in enumerate(rows):
        inits.append(helper.make_tensor(f"c{index}", TensorProto.FLOAT, [1, len(row)], row))
        inits.append(helper.make_tensor(f"s{index}", 7, [len(shape_tail) + 1], [-1, *shape_tail]))
        nodes.append(helper.make_node("Add", ["z", f"c{index}"], [f"f{index}"]))
        nodes.append(helper.make_node("Reshape", [f"f{index}", f"s{index}"], [f"y{index}"]))
        outs.append(
            helper.make_tensor_value_info(f"y{index}", TensorProto.FLOAT, ["N", *shape_tail])
        )
    return _save(path, nodes, [_image_input()], outs, inits)


def card(**changes) -> dict:
    """A card for the models above (32 px RGB NCHW of x / 255, euler degrees)."""
    values = {
        "input": {
            "size": SIDE,
            "layout": "NCHW",
            "channels": "RGB",
            "scale": 255,
            "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0],
        },
        "output": {"kind": "euler", "unit": "degrees", "order": ["yaw", "pitch", "roll"]},
        "crop_protocol": "visible",
    }
    for part, settings in changes.items():
        if isinstance(settings, dict):
            values[part] = {**values[part], **settings}
            values[part] = {k: v for k, v in values[part].items() if v is not None}
        else:
            values[part] = settings
    return values


def write_card(path, values) -> str:
    path.write_text(yaml.safe_dump(values))
    return str(path)


def uniform_crops(*rgb) -> np.ndarray:
    """One SIDE x SIDE uint8 crop per (r, g, b) triple, each pixel that colour."""
    return np.stack([np.broadcast_to(np.uint8(c), (SIDE, SIDE, 3)) for c in rgb]).copy()


def rotation_of(yaw_deg, pitch_deg, roll_deg) -> np.ndarray:
    return rotation_matrix(math.radians(pitch_deg), math.radians(yaw_deg), math.radians(roll_deg))


def hamilton_wxyz(matrix) -> np.ndarray:
    """The unit quaternion (w, x, y, z) of a rotation matrix (Shepperd's method, trace branch:
    the test rotations are far from 180 degrees)."""
    w = math.sqrt(1.0 + np.trace(matrix)) / 2.0
    return np.array(
        [
            w,
            (matrix[2, 1] - matrix[1, 2]) / (4 * w),
            (matrix[0, 2] - matrix[2, 0]) / (4 * w),
            (matrix[1, 0] - matrix[0, 1]) / (4 * w),
        ]
    )


# --- Every field honoured -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_changes", "expected"),
    [
        # RGB of x / 255: the channel means (r, g, b) / 255
        ({}, lambda r, g, b: (r / 255, g / 255, b / 255)),
        # BGR, kept 0..255 (scale 1), mean and std per BGR channel
        (
            {"channels": "BGR", "scale": 1, "mean": [10, 20, 30], "std": [2, 4, 5]},
            lambda r, g, b: ((b - 10) / 2, (g - 20) / 4, (r - 30) / 5),
        ),
        # NHWC, scale 255, mean 0.5 std 0.25
        (
            {"layout": "NHWC", "mean": [0.5] * 3, "std": [0.25] * 3},
            lambda r, g, b: tuple((c / 255 - 0.5) / 0.25 for c in (r, g, b)),
        ),
    ],
)
def test_the_input_is_fed_as_the_card_says(tmp_path, input_changes, expected):
    layout = input_changes.get("layout", "NCHW")
    model = channel_means_model(tmp_path / "m.onnx", layout=layout)
    loaded = headpose.load(model, card=write_card(tmp_path / "c.yaml", card(input=input_changes)))
    colours = [(200, 100, 50), (0, 255, 7)]
    got = loaded.predict_crops(uniform_crops(*colours))
    np.testing.assert_allclose(got, [expected(*c) for c in colours], atol=1e-4)


def test_a_grey_input_is_fed_bt601_luma(tmp_path):
    model = channel_means_model(tmp_path / "m.onnx", channels=1)
    values = card(input={"channels": "grey", "mean": [10.0], "std": [2.0], "scale": 1})
    loaded = headpose.load(model, card=write_card(tmp_path / "c.yaml", values))
    grey = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    got = loaded.predict_crops(uniform_crops((200, 100, 50)))
    np.testing.assert_allclose(got, [[(grey - 10) / 2] * 3], rtol=1e-5)


@pytest.mark.parametrize(
    ("output", "values", "tail"),
    [
        ({"order": ["pitch", "roll", "yaw"]}, [-20.0, 10.0, 30.0], [3]),
        ({"unit": "radians"}, [math.radians(a) for a in ANGLES_DEG], [3]),
        (
            {"signs": [-1, 1, -1]},
            [-ANGLES_DEG[0], ANGLES_DEG[1], -ANGLES_DEG[2]],
            [3],
        ),
        (
            {"kind": "rotation_matrix", "unit": None, "order": None},
            rotation_of(*ANGLES_DEG).reshape(-1),
            [3, 3],
        ),
        (
            {"kind": "rotation_matrix", "unit": None, "order": None},
            rotation_of(*ANGLES_DEG).reshape(-1),
            [9],
        ),
        (
            {"kind": "rotation_matrix", "transposed": True, "unit": None, "order": None},
            rotation_of(*ANGLES_DEG).T.reshape(-1),
            [3, 3],
        ),
        (
            {"kind": "quaternion", "order": "wxyz", "unit": None},
            hamilton_wxyz(rotation_of(*ANGLES_DEG)) * 3.0,  # any length but zero
            [4],
        ),
        (
            {"kind": "quaternion", "order": "xyzw", "unit": None},
            np.roll(hamilton_wxyz(rotation_of(*ANGLES_DEG)), -1),
            [4],
        ),
    ],
)
def test_each_output_kind_reads_the_same_pose(tmp_path, output, values, tail):
    model = constant_model(tmp_path / "m.onnx", values, tail)
    loaded = headpose.load(model, card=write_card(tmp_path / "c.yaml", card(output=output)))
    got = loaded.predict_crops(uniform_crops((1, 2, 3), (4, 5, 6)))
    np.testing.assert_allclose(got, [ANGLES_DEG] * 2, atol=1e-3)


def test_bins_are_a_softmax_expectation_one_output_per_angle_in_order(tmp_path):
    count, width, start = 66, 3.0, -99.0
    centres = start + width * np.arange(count)
    rows = []
    for target in (-20.0, 10.0, 30.0):  # pitch, roll, yaw: the order of the card
        logits = -0.5 * ((centres - target) / 2.0) ** 2
        rows.append(logits)
    model = constant_model(tmp_path / "m.onnx", rows, [count], outputs=3)
    output = {
        "kind": "bins",
        "count": count,
        "width": width,
        "start": start,
        "order": ["pitch", "roll", "yaw"],
        "unit": None,
    }
    loaded = headpose.load(model, card=write_card(tmp_path / "c.yaml", card(output=output)))
    expected = []
    for row in (rows[2], rows[0], rows[1]):
        weights = np.exp(row - row.max())
        expected.append(float((weights / weights.sum()) @ centres))
    got = loaded.predict_crops(uniform_crops((1, 2, 3)))
    np.testing.assert_allclose(got, [expected], atol=1e-4)
    np.testing.assert_allclose(got, [ANGLES_DEG], atol=0.05)


def test_a_fixed_batch_of_one_is_fed_in_chunks(tmp_path):
    model = channel_means_model(tmp_path / "m.onnx", batch=1)
    loaded = headpose.load(model, card=write_card(tmp_path / "c.yaml", card()), batch_size=32)
    colours = [(i * 20, 255 - i * 20, 7 * i) for i in range(5)]
    got = loaded.predict_crops(uniform_crops(*colours))
    np.testing.assert_allclose(got, np.asarray(colours) / 255, atol=1e-5)


def test_several_files_average_as_one_model(tmp_path):
    first = constant_model(tmp_path / "a.onnx", [10.0, 20.0, 30.0], [3])
    second = constant_model(tmp_path / "b.onnx", [20.0, -20.0, 0.0], [3])
    loaded = headpose.load([first, second], card=write_card(tmp_path / "c.yaml", card()))
    np.testing.assert_allclose(loaded.predict_crops(uniform_crops((1, 2, 3))), [[15, 0, 15]])
    assert "mean of 2" in loaded.runs_on and loaded.loaded.files == (first, second)


def test_averaged_files_must_take_the_same_crops(tmp_path):
    first = constant_model(tmp_path / "a.onnx", [1.0, 2.0, 3.0], [3])
    other = card(input={"mean": [0.5, 0.5, 0.5]})
    second = open_model(
        constant_model(tmp_path / "b.onnx", [1.0, 2.0, 3.0], [3]), card=parse_card(other, "b")
    )
    from headpose.inference.loading import averaged

    with pytest.raises(HeadposeError, match="normalization") as error:
        averaged([open_model(first, card=parse_card(card(), "a")), second])
    assert "\n" not in str(error.value)


# --- Metadata: the same card ------------------------------------------------------------------


def test_a_card_round_trips_through_metadata(tmp_path):
    parsed = parse_card(
        card(
            input={"channels": "BGR", "layout": "NHWC", "scale": 1, "mean": [1, 2, 3]},
            output={"kind": "quaternion", "order": "xyzw", "unit": None, "signs": [1, -1, 1]},
        ),
        "card",
    )
    props = {"headpose." + k: json.dumps(v) for k, v in card_metadata(parsed).items()}
    assert card_from_metadata(read_onnx_metadata(props, "f.onnx"), "f.onnx") == parsed
    assert parse_card(parsed.values(), "again") == parsed


def test_this_projects_export_metadata_reads_as_a_card():
    description = ModelDescription(
        64, Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), get_protocol("hopenet")
    )
    read = card_from_metadata(read_onnx_metadata(onnx_metadata(description), "m"), "m")
    assert (read.input.size, read.input.layout, read.input.channels) == (64, "NCHW", "RGB")
    assert read.input.scale == 255 and read.output.kind == "euler"
    assert read.output.order == ("yaw", "pitch", "roll") and read.crop_protocol == "hopenet"
    assert read.normalization() == description.normalization


def test_adopt_writes_the_card_and_every_reader_takes_the_file_unchanged(tmp_path):
    model = channel_means_model(tmp_path / "m.onnx", layout="NHWC", batch=1)
    values = card(input={"layout": "NHWC", "channels": "BGR", "scale": 1, "size": None})
    out = tmp_path / "described.onnx"
    assert run_cli(["adopt", str(model), "--card", write_card(tmp_path / "c.yaml", values),
                    "--out", str(out)]) == 0  # fmt: skip
    adopted = headpose.load(out)
    assert adopted.image_size == SIDE and adopted.crop_protocol.name == "visible"
    np.testing.assert_allclose(adopted.predict_crops(uniform_crops((9, 8, 7))), [[7, 8, 9]])
    assert adopted.loaded.card == parse_card(card(input={"layout": "NHWC", "channels": "BGR",
                                                         "scale": 1}), "x")  # fmt: skip


def test_metadata_contradicting_the_graph_is_one_line_when_opened(tmp_path):
    description = ModelDescription(
        128, Normalization((0.5,) * 3, (0.5,) * 3), get_protocol("hopenet")
    )
    model = channel_means_model(tmp_path / "m.onnx", metadata=onnx_metadata(description))
    with pytest.raises(HeadposeError) as error:
        headpose.load(model)
    message = str(error.value)
    assert "\n" not in message and str(model) in message and "128" in message
    assert "input.size" in message


@pytest.mark.parametrize("depth", [20, 100_000])
def test_deeply_nested_metadata_is_one_line(tmp_path, depth):
    model = channel_means_model(
        tmp_path / "m.onnx", metadata={"headpose.head": "[" * depth + "]" * depth}
    )
    with pytest.raises(HeadposeError) as error:
        headpose.load(model, card=write_card(tmp_path / "c.yaml", card()))
    assert "\n" not in str(error.value) and "headpose.head" in str(error.value)


# --- Bad cards: one line each, naming the file and the field, nothing written ----------------

BAD_CARDS = {
    "unknown kind": (card(output={"kind": "axis_angle"}), "output.kind", None),
    "unknown top key": ({**card(), "threshold": 1}, "threshold", None),
    "unknown output key": (card(output={"transposed": True}), "output.'transposed'", None),
    "unknown input key": (card(input={"gamma": 2.2}), "input.'gamma'", None),
    "size not a number": (card(input={"size": "64"}), "input.size", None),
    "three means for grey": (card(input={"channels": "grey"}), "input.mean", None),
    "negative std": (card(input={"std": [1, -1, 1]}), "input.std", None),
    "unit misspelt": (card(output={"unit": "deg"}), "output.unit", None),
    "order twice": (card(output={"order": ["yaw", "yaw", "roll"]}), "output.order", None),
    "bins without count": (
        card(output={"kind": "bins", "width": 3, "start": -99, "unit": None}),
        "output.count",
        None,
    ),
    "unknown crop protocol": (card(crop_protocol="nosuch"), "crop_protocol", None),
    "channels contradict the graph": (
        card(input={"channels": "grey", "mean": [0], "std": [1]}),
        "input.channels",
        "means",
    ),
    "size contradicts the graph": (card(input={"size": 64}), "input.size", "means"),
    "layout contradicts the graph": (card(input={"layout": "NHWC"}), "input.", "means"),
    "matrix on an (N, 3) output": (
        card(output={"kind": "rotation_matrix", "unit": None, "order": None}),
        "output.kind",
        "means",
    ),
    "zero-length quaternion": (
        card(output={"kind": "quaternion", "unit": None, "order": None}),
        "quaternion",
        "zeros",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CARDS))
def test_every_bad_card_is_one_line_naming_the_file_and_field(tmp_path, case, capsys):
    values, field, model_kind = BAD_CARDS[case]
    if model_kind == "zeros":
        model = constant_model(tmp_path / "m.onnx", [0.0, 0.0, 0.0, 0.0], [4])
    else:
        model = channel_means_model(tmp_path / "m.onnx")
    card_file = write_card(tmp_path / "c.yaml", values)
    with pytest.raises(HeadposeError) as error:
        headpose.load(model, card=card_file).predict_crops(uniform_crops((1, 2, 3)))
    message = str(error.value)
    assert "\n" not in message and field in message
    assert card_file in message or str(model) in message
    if model_kind != "zeros":  # adopt writes nothing for a card that contradicts the file
        out = tmp_path / "out.onnx"
        capsys.readouterr()
        assert run_cli(["adopt", str(model), "--card", card_file, "--out", str(out)]) != 0
        stderr = capsys.readouterr().err
        assert stderr.count("\n") == 1 and stderr.startswith("error: ") and field in stderr
        assert sorted(tmp_path.iterdir()) == sorted([model, tmp_path / "c.yaml"])


def test_a_file_without_metadata_or_card_is_one_line_naming_card(tmp_path):
    model = channel_means_model(tmp_path / "m.onnx")
    with pytest.raises(HeadposeError) as error:
        headpose.load(model)
    message = str(error.value)
    assert "\n" not in message and str(model) in message and "--card" in message


@pytest.mark.parametrize(
    "text",
    ["input: [unclosed", "\xff\xfe", "- a list\n- not a mapping\n", "a: &a [*a, *a]\n" * 1],
)
def test_a_card_that_is_not_a_card_is_one_line(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(HeadposeError) as error:
        read_card(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_card_over_the_size_bound_is_refused_unread(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# " + "x" * 100_000 + "\n")
    with pytest.raises(HeadposeError, match="bytes") as error:
        read_card(path)
    assert "\n" not in str(error.value)


# --- The round trip on a model this project exports --------------------------------------------


def _wrapped_to_nhwc_bgr_and_a_matrix(proto: onnx.ModelProto, mean, std) -> onnx.ModelProto:
    """``proto`` (input ``image``: normalised RGB NCHW; output ``angles_deg``) made to take
    NHWC BGR pixels 0..255 (``pixels``) and answer the rotation matrix (``matrix``, (N, 3, 3))
    of its angles in this project's convention, with plain ONNX operators around its graph."""
    graph = proto.graph
    nodes, inits, count = [], [], [0]

    def const(values, shape):
        name = f"k{len(inits)}"
        inits.append(helper.make_tensor(name, TensorProto.FLOAT, shape, list(values)))
        return name

    def op(kind, *inputs, **attributes):
        count[0] += 1
        out = f"w{count[0]}"
        nodes.append(helper.make_node(kind, list(inputs), [out], **attributes))
        return out

    index = helper.make_tensor("bgr", TensorProto.INT64, [3], [2, 1, 0])
    inits.append(index)
    rgb = op("Gather", op("Transpose", "pixels", perm=[0, 3, 1, 2]), "bgr", axis=1)
    scaled = op("Div", rgb, const([255.0], [1]))
    normalised = op("Sub", scaled, const(mean, [1, 3, 1, 1]))
    nodes.append(helper.make_node("Div", [normalised, const(std, [1, 3, 1, 1])], ["image"]))
    pre = list(nodes)
    nodes.clear()
    radians = op("Mul", "angles_deg", const([math.pi / 180.0], [1]))
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [3], [1, 1, 1])
    inits.append(sizes)
    nodes.append(helper.make_node("Split", [radians, "sizes"], ["yaw", "pitch", "roll"], axis=1))
    cy, sy = op("Cos", "yaw"), op("Sin", "yaw")
    cp, sp = op("Cos", "pitch"), op("Sin", "pitch")
    cr, sr = op("Cos", "roll"), op("Sin", "roll")
    sy_cr, sy_sr = op("Mul", sy, cr), op("Mul", sy, sr)
    elements = [
        op("Mul", cy, cr),
        op("Mul", cy, sr),
        op("Neg", sy),
        op("Sub", op("Mul", sp, sy_cr), op("Mul", cp, sr)),
        op("Add", op("Mul", cp, cr), op("Mul", sp, sy_sr)),
        op("Mul", sp, cy),
        op("Add", op("Mul", sp, sr), op("Mul", cp, sy_cr)),
        op("Sub", op("Mul", cp, sy_sr), op("Mul", sp, cr)),
        op("Mul", cp, cy),
    ]
    shape = helper.make_tensor("shape33", TensorProto.INT64, [3], [-1, 3, 3])
    inits.append(shape)
    flat = op("Concat", *elements, axis=1)
    nodes.append(helper.make_node("Reshape", [flat, "shape33"], ["matrix"]))
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(pre + body + nodes)
    graph.initializer.extend(inits)
    side = graph.input[0].type.tensor_type.shape.dim[2].dim_value
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", side, side, 3])
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("matrix", TensorProto.FLOAT, ["N", 3, 3]))
    kept = [entry for entry in proto.metadata_props if not entry.key.startswith("headpose.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)  # made elsewhere: it describes nothing
    return proto


@pytest.mark.slow
def test_a_project_export_wrapped_to_nhwc_bgr_and_a_matrix_round_trips_through_its_card(tmp_path):
    from model_fixtures import write_checkpoint

    from headpose.inference.onnx_export import export_onnx

    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18", image_size=SIDE)
    opened = open_model(checkpoint, "torch", "cpu")
    export_onnx(opened.model, tmp_path / "model.onnx", opened.description)
    original = headpose.load(tmp_path / "model.onnx")
    normalization = original.normalization
    wrapped = _wrapped_to_nhwc_bgr_and_a_matrix(
        onnx.load(str(tmp_path / "model.onnx")), normalization.mean, normalization.std
    )
    onnx.save(wrapped, str(tmp_path / "wrapped.onnx"))
    values = card(
        input={"layout": "NHWC", "channels": "BGR", "scale": 1, "mean": [0, 0, 0]},
        output={"kind": "rotation_matrix", "unit": None, "order": None},
        crop_protocol=original.crop_protocol.name,
    )
    card_file = write_card(tmp_path / "wrapped.yaml", values)
    described = tmp_path / "described.onnx"
    assert run_cli(["adopt", str(tmp_path / "wrapped.onnx"), "--card", card_file,
                    "--out", str(described)]) == 0  # fmt: skip
    crops = np.random.default_rng(0).integers(0, 256, (12, SIDE, SIDE, 3), dtype=np.uint8)
    expected = original.predict_crops(crops)
    assert np.abs(expected).max() > 0.1  # the model answers something to reproduce
    np.testing.assert_allclose(headpose.load(described).predict_crops(crops), expected, atol=0.01)
    # the card given without adopting reads the wrapped file the same
    by_card = headpose.load(tmp_path / "wrapped.onnx", card=card_file).predict_crops(crops)
    np.testing.assert_allclose(by_card, expected, atol=0.01)


def test_a_card_for_a_checkpoint_is_one_line(tmp_path):
    from model_fixtures import write_checkpoint

    checkpoint = write_checkpoint(tmp_path / "model.pt", "resnet18")
    with pytest.raises(HeadposeError) as error:
        headpose.load(checkpoint, card=write_card(tmp_path / "c.yaml", card()))
    assert "\n" not in str(error.value) and str(checkpoint) in str(error.value)
