"""timm backbones (``arch: timm/<name>``): building, training a step, unknown names, ImageNet
weights offline and from a local file, re-parameterisation (fused == unfused) and the benchmark."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from helpers import REPO_ROOT

from headpose.deploy.benchmark import run_benchmark
from headpose.errors import HeadposeError
from headpose.inference.loading import open_model
from headpose.models.checkpoints import read_checkpoint, save_checkpoint
from headpose.models.heads.bins import Bins
from headpose.models.heads.rotation import Rotation6D
from headpose.models.keys import validate_model_params
from headpose.models.network import (
    AnglesModel,
    build_model,
    fused_for_inference,
    network_from_checkpoint,
)
from headpose.models.registry import get_arch
from headpose.models.weights import timm_weight_source
from headpose.params import validate
from headpose.training.schedule import Phase, make_optimizer, set_stem_frozen

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _meta(arch: str, head) -> dict:
    return {
        "arch": arch,
        **head.meta(),
        "image_size": 32,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }


def _randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine weights, so fusing them is tested."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(size, generator=generator) * 0.1)


@pytest.mark.parametrize(
    ("arch", "stem"),
    [
        ("timm/repvgg_a0", ("stem",)),
        ("timm/mobilenetv3_small_100", ("conv_stem", "bn1")),
        ("timm/convnext_atto", ("stem",)),
    ],
)
def test_timm_arch_builds_and_trains_a_step(arch, stem):
    torch.manual_seed(0)
    model = build_model(arch, Rotation6D())
    assert model.stem_names == stem
    groups = model.parameter_groups()
    everything = {id(p) for p in model.parameters()}
    assert sum(len(group) for group in groups.values()) == len(everything)
    assert groups["stem"] and groups["heads"]
    set_stem_frozen(model, True)
    optimizer = make_optimizer(model, Phase("frozen_stem", 1, 1, 1e-3))
    images = torch.randn(4, 3, 64, 64)
    angles = torch.tensor([[30.0, -10.0, 5.0], [0.0, 0.0, 0.0], [-60.0, 15.0, -5.0], [5, 5, 5]])
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = model.head.loss(model(images), angles)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert "fc_rotation.weight" in changed
    assert any(name.startswith("backbone.") for name in changed)
    stem_names = {f"backbone.{prefix}." for prefix in stem}
    assert not any(name.startswith(tuple(stem_names)) for name in changed)  # frozen in phase 1
    assert len(model(images)) == 1 and model(images)[0].shape == (4, 6)


def test_timm_arch_with_the_bins_head():
    model = build_model("timm/efficientnet_b0", Bins(3)).eval()
    with torch.inference_mode():
        outputs = model(torch.randn(1, 3, 32, 32))
    assert [output.shape for output in outputs] == [(1, 66)] * 3


def test_unknown_timm_name_names_close_matches():
    with pytest.raises(HeadposeError) as error:
        build_model("timm/repvgg_a00", Bins(3))
    message = str(error.value)
    assert "unknown timm model timm/repvgg_a00" in message and "timm/repvgg_a0" in message
    assert "\n" not in message
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    with pytest.raises(
        HeadposeError, match="params.yaml: arch: unknown timm model .*efficientnet_b0"
    ):
        validate_model_params(validate({**copy.deepcopy(params), "arch": "timm/efficentnet_b0"}))
    validate_model_params(validate({**copy.deepcopy(params), "arch": "timm/repvgg_a0"}))


def test_imagenet_weights_offline_name_the_file_and_folder(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    with pytest.raises(HeadposeError) as error:
        build_model("timm/repvgg_a0", Rotation6D(), pretrained="imagenet")
    message = str(error.value)
    tag, origin, local = timm_weight_source(get_arch("timm/repvgg_a0"))
    assert (
        tag == "repvgg_a0.rvgg_in1k" and origin == "https://huggingface.co/timm/repvgg_a0.rvgg_in1k"
    )
    assert "could not download" in message and "name resolution" in message
    assert local.name in message and str(local.parent) in message and origin in message
    assert "\n" not in message


def test_imagenet_weights_load_from_the_local_file(tmp_path, monkeypatch):
    import safetensors.torch
    import timm

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    torch.manual_seed(5)
    source = timm.create_model("repvgg_a0", pretrained=False)  # with its 1000-class classifier
    _, _, local = timm_weight_source(get_arch("timm/repvgg_a0"))
    local.parent.mkdir(parents=True)
    safetensors.torch.save_file(source.state_dict(), str(local))
    model = build_model("timm/repvgg_a0", Rotation6D(), pretrained="imagenet")
    loaded = model.backbone.state_dict()
    assert all(
        torch.equal(loaded[key], value)
        for key, value in source.state_dict().items()
        if key in loaded
    )
    assert torch.equal(loaded["stem.conv_kxk.conv.weight"], source.stem.conv_kxk.conv.weight)
    # weights of another model are refused in one line
    safetensors.torch.save_file(timm.create_model("resnet18").state_dict(), str(local))
    with pytest.raises(HeadposeError, match="does not fit timm/repvgg_a0"):
        build_model("timm/repvgg_a0", Rotation6D(), pretrained="imagenet")


@pytest.mark.parametrize("head", [Bins(3), Rotation6D()], ids=["bins", "rotation_6d"])
@pytest.mark.parametrize("arch", ["timm/repvgg_a0", "timm/mobileone_s0"])
def test_fused_and_unfused_give_the_same_angles(arch, head, tmp_path):
    torch.manual_seed(1)
    network = build_model(arch, head)
    _randomise_batchnorm(network)
    network.eval()
    fused = fused_for_inference(network)
    assert fused.fused and not network.fused
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in network.parameters())
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        unfused_deg = AnglesModel(network)(images)
        fused_deg = AnglesModel(fused)(images)
        # in float64 the fused network's outputs equal the unfused ones up to rounding; in
        # float32 (below) the head's angles differ by float32 rounding noise only
        reference = copy.deepcopy(network).double()
        exact = fused_for_inference(reference)
        for fused_out, unfused_out in zip(
            exact(images.double()), reference(images.double()), strict=True
        ):
            assert (fused_out - unfused_out).abs().max() <= 1e-9 * unfused_out.abs().max()
    assert (fused_deg - unfused_deg).abs().max() < 1e-3
    # the checkpoint of the trained (unfused) model loads fused for inference; a fused
    # checkpoint records it, loads into the fused structure and is refused for training
    save_checkpoint(tmp_path / "model.pt", network, _meta(arch, head))
    opened = open_model(tmp_path / "model.pt", "torch", "cpu")
    inference, meta = opened.model, opened.meta
    assert inference.network.fused and not meta["fused"]
    save_checkpoint(tmp_path / "fused.pt", fused, _meta(arch, head))
    state_dict, fused_meta = read_checkpoint(tmp_path / "fused.pt")
    reloaded = network_from_checkpoint(state_dict, fused_meta, tmp_path / "fused.pt")
    assert fused_meta["fused"] and reloaded.fused
    with torch.inference_mode():
        assert torch.equal(inference(images), fused_deg)
        assert (AnglesModel(reloaded)(images) - fused_deg).abs().max() < 1e-6
    with pytest.raises(HeadposeError, match="is fused for inference"):
        build_model(arch, head, pretrained=str(tmp_path / "fused.pt"))


def test_torchvision_archs_have_nothing_to_fuse():
    network = build_model("resnet18", Bins(3))
    assert fused_for_inference(network) is network and not network.fused


@pytest.mark.slow
def test_benchmark_accepts_a_timm_arch_with_either_head():
    report = run_benchmark(
        ["timm/repvgg_a0"], {}, threads=1, head="rotation_6d", image_size=32, timed_runs=2
    )
    row = report["backbones"]["timm/repvgg_a0 (rotation_6d)"]
    assert row["fused"] and row["head"] == "rotation_6d" and row["weights"] == "untrained"
    assert list(row["runtimes"]) == ["torch_fp32", "onnx_fp32", "onnx_int8"]
    assert all(entry["latency_ms_batch1"] > 0 for entry in row["runtimes"].values())
