"""The model family: shapes, CBAM, parameter groups, checkpoints and HopeNet snapshots."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import urllib.error
from collections import OrderedDict

import pytest
import torch
from model_fixtures import checkpoint_meta

from headpose.errors import HeadposeError
from headpose.models import checkpoints, weights
from headpose.models.cbam import CBAM, ChannelAttention, SpatialAttention
from headpose.models.checkpoints import read_checkpoint, save_checkpoint
from headpose.models.heads.bins import Bins
from headpose.models.hopenet import HOPENET_META
from headpose.models.network import build_model, network_from_checkpoint
from headpose.models.registry import arch_names
from headpose.models.weights import imagenet_weight_files

pytestmark = pytest.mark.usefixtures("one_torch_thread")


FAST_ARCHS = ("resnet18", "mobilenet_v2", "shufflenet_v2_x1_0", "resnet50", "cbam_resnet50")


@pytest.mark.parametrize("arch", FAST_ARCHS)
def test_every_fast_arch_gives_three_bin_logits(arch):
    torch.manual_seed(0)
    model = build_model(arch, Bins(3)).eval()
    with torch.inference_mode():
        outputs = model(torch.randn(2, 3, 32, 32))
    assert len(outputs) == 3
    assert all(output.shape == (2, 66) for output in outputs)
    assert not torch.equal(outputs[0], outputs[1])  # three separate heads


@pytest.mark.parametrize("arch", sorted(set(arch_names()) - set(FAST_ARCHS)))
def test_the_big_archs_build_with_heads_of_the_right_size(arch):
    model = build_model(arch, Bins(6))
    assert model.fc_yaw.out_features == 33 and model.fc_roll.out_features == 33


def test_unknown_arch_and_too_few_bins_are_rejected():
    with pytest.raises(HeadposeError, match="unknown arch 'vgg16'"):
        build_model("vgg16", Bins(3))
    with pytest.raises(HeadposeError, match="at least 2 bins"):
        build_model("resnet18", Bins(198))


def test_cbam_keeps_shapes_and_modulates_its_input():
    torch.manual_seed(0)
    features = torch.randn(2, 32, 6, 5)
    channel, spatial, cbam = ChannelAttention(32), SpatialAttention(), CBAM(32)
    channel_weights = channel.weights(features)
    spatial_weights = spatial.weights(features)
    assert channel_weights.shape == (2, 32, 1, 1)
    assert spatial_weights.shape == (2, 1, 6, 5)
    # weights are sigmoid outputs that differ between channels / positions: a real modulation
    assert channel_weights.min() > 0 and channel_weights.max() < 1
    assert channel_weights.std() > 1e-4 and spatial_weights.std() > 1e-4
    output = cbam(features)
    assert output.shape == features.shape
    assert not torch.allclose(output, features)
    expected = spatial(channel(features))
    assert torch.allclose(channel(features), features * channel_weights)
    assert expected.shape == features.shape


def test_cbam_resnet50_has_attention_in_every_bottleneck():
    model = build_model("cbam_resnet50", Bins(3))
    blocks = [m for name, m in model.backbone.named_modules() if name.count(".") == 1]
    assert len(blocks) == 3 + 4 + 6 + 3
    assert all(isinstance(block.cbam, CBAM) for block in blocks)


@pytest.mark.parametrize("arch", ("resnet18", "mobilenet_v2", "shufflenet_v2_x1_0"))
def test_parameter_groups_partition_the_parameters(arch):
    model = build_model(arch, Bins(3))
    groups = model.parameter_groups()
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert groups["stem"] and groups["backbone"]
    assert len(groups["heads"]) == 6  # weight + bias of three heads
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert id(first_conv.weight) in {id(p) for p in groups["stem"]}


def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", Bins(6)).eval()
    images = torch.randn(2, 3, 32, 32)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, checkpoint_meta("resnet18", 33))
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "meta"}
    state_dict, meta = read_checkpoint(path)
    loaded = network_from_checkpoint(state_dict, meta, path)
    assert meta == {**checkpoint_meta("resnet18", 33), "fused": False, "format_version": 1}
    assert not loaded.training
    with torch.inference_mode():
        for before, after in zip(model(images), loaded(images), strict=True):
            assert torch.equal(before, after)


def test_pretrained_weights_of_another_arch_say_which_arch_the_file_holds(tmp_path):
    path = tmp_path / "model.pt"
    model = build_model("mobilenet_v2", Bins(3))
    save_checkpoint(path, model, checkpoint_meta("mobilenet_v2", 66))
    with pytest.raises(HeadposeError, match="holds arch mobilenet_v2"):
        build_model("resnet18", Bins(3), pretrained=str(path))


def test_pretrained_weights_of_another_arch_under_its_name_give_one_message(tmp_path):
    # resnet50 weights whose meta says resnet18 (a relabelled file): the tensors of another shape
    # are named, with the arch and head they do not fit
    path = tmp_path / "relabelled.pt"
    weights = build_model("resnet50", Bins(3)).state_dict()
    checkpoints.save_torch(path, {"state_dict": weights, "meta": checkpoint_meta("resnet18", 66)})
    with pytest.raises(HeadposeError, match=r"does not fit resnet18 with head .*'num_bins': 33"):
        build_model("resnet18", Bins(6), pretrained=str(path))


def test_meta_must_match_the_model(tmp_path):
    with pytest.raises(HeadposeError, match="lacks image_size"):
        meta = checkpoint_meta("resnet18", 66)
        del meta["image_size"]
        save_checkpoint(tmp_path / "m.pt", build_model("resnet18", Bins(3)), meta)
    with pytest.raises(HeadposeError, match="model is resnet18 with head .*'num_bins': 66"):
        save_checkpoint(
            tmp_path / "m.pt", build_model("resnet18", Bins(3)), checkpoint_meta("resnet18", 33)
        )
    assert not (tmp_path / "m.pt").exists()


def test_missing_and_corrupt_checkpoints_give_one_message(tmp_path):
    with pytest.raises(HeadposeError, match="does not exist"):
        read_checkpoint(tmp_path / "absent.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(HeadposeError, match="not a readable weights-only PyTorch checkpoint"):
        read_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(HeadposeError, match="neither a headpose checkpoint"):
        read_checkpoint(foreign)


@pytest.fixture(scope="module")
def hopenet_snapshot(tmp_path_factory) -> tuple:
    """(path, reference model, state) of a file in the original HopeNet layout: bare ResNet50
    keys, 66-bin heads and the unused fc_finetune, saved as an OrderedDict of tensors."""
    path = tmp_path_factory.mktemp("hopenet") / "hopenet_alpha1.pkl"
    torch.manual_seed(1)
    reference = build_model("resnet50", Bins(3)).eval()
    state = OrderedDict()
    for key, value in reference.state_dict().items():
        state[key.removeprefix("backbone.")] = value.clone()
    state["fc_finetune.weight"] = torch.randn(3, 2048)
    state["fc_finetune.bias"] = torch.randn(3)
    torch.save(state, path)
    return path, reference, state


def test_original_hopenet_snapshot_loads_with_the_published_settings(hopenet_snapshot):
    path, reference, state = hopenet_snapshot
    assert "conv1.weight" in state and "layer1.0.conv3.weight" in state
    state_dict, meta = read_checkpoint(path)
    model = network_from_checkpoint(state_dict, meta, path)
    assert meta["arch"] == "resnet50" and (meta["num_bins"], meta["bin_width"]) == (66, 3)
    assert meta["expectation"] == "lower_edges" and meta["image_size"] == 224
    assert meta["mean"] == HOPENET_META["mean"] and meta["std"] == HOPENET_META["std"]
    images = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model(images)[2], reference(images)[2])


def test_pretrained_checkpoint_with_other_bins_keeps_backbone_and_fresh_heads(hopenet_snapshot):
    path, reference, _ = hopenet_snapshot
    model = build_model("resnet50", Bins(1), pretrained=str(path))
    assert torch.equal(model.backbone.conv1.weight, reference.backbone.conv1.weight)
    assert model.fc_yaw.out_features == 198


def test_imagenet_offline_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)  # what download_url_to_file calls
    expected = tmp_path / "checkpoints" / "resnet50-0676ba61.pth"
    assert imagenet_weight_files("resnet50")[0] == expected
    with pytest.raises(HeadposeError) as error:
        build_model("resnet50", Bins(3), pretrained="imagenet")
    message = str(error.value)
    assert "could not download" in message and "name resolution" in message
    assert "resnet50-0676ba61.pth" in message
    assert str(tmp_path / "checkpoints") in message
    assert "\n" not in message
    assert not expected.exists()


@pytest.mark.parametrize("stall", ["before the answer", "in the body"])
def test_a_stalled_download_times_out_in_one_line_and_leaves_nothing(stall, tmp_path, monkeypatch):
    """torch.hub's downloader sets no timeout: a server that accepts and then goes quiet would
    hang the stage. It is no network after DOWNLOAD_TIMEOUT_S."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    held = []

    def serve() -> None:
        connection, _ = server.accept()
        held.append(connection)
        connection.recv(4096)
        if stall == "in the body":
            connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(weights, "DOWNLOAD_TIMEOUT_S", 0.5)
    target = tmp_path / "weights" / "model.pth"
    started = time.monotonic()
    try:
        with pytest.raises(weights.DownloadUnavailable) as error:
            weights.fetch_file(f"http://127.0.0.1:{port}/model.pth", target, "00", "test weights")
    finally:
        for connection in held:
            connection.close()
        server.close()
    assert time.monotonic() - started < 20
    message = str(error.value)
    assert "timed out" in message and f"127.0.0.1:{port}/model.pth" in message
    assert str(target) in message and "\n" not in message
    assert sorted(target.parent.iterdir()) == []
    assert socket.getdefaulttimeout() is None  # restored for the rest of the process


def _serve_weights_from_a_file_url(tmp_path, monkeypatch, name_hash: str | None = None):
    """Point shufflenet's ImageNet source at a local file:// URL holding known weights."""
    import torchvision

    torch.manual_seed(3)
    source = torchvision.models.shufflenet_v2_x1_0(weights=None)
    served = tmp_path / "served.pth"
    torch.save(source.state_dict(), served)
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    cached = tmp_path / "hub" / "checkpoints" / f"shufflenet-{name_hash or digest[:8]}.pth"
    sources = [(served.as_uri(), cached)]
    monkeypatch.setattr(weights, "imagenet_weight_sources", lambda arch: sources)
    return source, cached


def test_imagenet_weights_are_downloaded_and_hash_checked(tmp_path, monkeypatch):
    source, cached = _serve_weights_from_a_file_url(tmp_path, monkeypatch)
    model = build_model("shufflenet_v2_x1_0", Bins(3), pretrained="imagenet")
    assert cached.is_file()
    assert torch.equal(model.backbone.conv1[0].weight, source.conv1[0].weight)


def test_imagenet_download_with_a_wrong_hash_is_refused_and_not_kept(tmp_path, monkeypatch):
    _, cached = _serve_weights_from_a_file_url(tmp_path, monkeypatch, name_hash="00000000")
    with pytest.raises(HeadposeError) as error:
        build_model("shufflenet_v2_x1_0", Bins(3), pretrained="imagenet")
    message = str(error.value)
    assert "refusing" in message and "invalid hash value" in message and cached.name in message
    assert not cached.exists() and not list(cached.parent.glob("*.partial"))


def test_imagenet_weights_load_from_the_cache_into_the_backbone(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    import torchvision

    torch.manual_seed(2)
    source = torchvision.models.shufflenet_v2_x1_0(weights=None)
    cached = imagenet_weight_files("shufflenet_v2_x1_0")[0]
    cached.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cached)
    model = build_model("shufflenet_v2_x1_0", Bins(3), pretrained="imagenet")
    assert torch.equal(model.backbone.conv1[0].weight, source.conv1[0].weight)
