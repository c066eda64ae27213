"""The training step's numerics: which precision ``auto`` picks where, and the CUDA path's step
(autocast, loss scaling, channels-last, torch.compile) run on the CPU."""

from __future__ import annotations

import pytest
import torch
from helpers import as_samples
from protocol_fixtures import HOPENET
from training_fixtures import tiny_settings, write_list, write_tiny_dataset

import headpose.training.precision as precision_module
from headpose.crops.pipeline import training_dataset
from headpose.errors import HeadposeError
from headpose.models.heads.bins import Bins
from headpose.models.network import build_model
from headpose.models.registry import IMAGENET
from headpose.params import PRECISIONS
from headpose.training.data import make_train_loader
from headpose.training.epoch import input_maker, train_one_epoch
from headpose.training.precision import Precision, check_compiler, choose_precision
from headpose.training.run import run_training
from headpose.training.schedule import Phase, make_optimizer, set_train_mode
from headpose.training.settings import LoaderSettings, TrainPaths

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("bf16_gpu", "expected", "scales"), [(True, "bfloat16", False), (False, "float16", True)]
)
def test_auto_on_cuda_is_bfloat16_where_supported_else_float16_with_a_scaler(
    monkeypatch, bf16_gpu, expected, scales
):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    chosen = choose_precision("auto", CUDA)
    assert (chosen.name, chosen.scales_loss, chosen.channels_last) == (expected, scales, True)
    assert chosen.memory_format == torch.channels_last
    assert chosen.autocast_dtype == getattr(torch, expected)


@pytest.mark.parametrize(("native", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_auto_on_the_cpu_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch, native, expected):
    monkeypatch.setattr(precision_module, "cpu_has_native_bfloat16", lambda: native)
    chosen = choose_precision("auto", CPU)
    assert (chosen.name, chosen.channels_last, chosen.scales_loss) == (expected, native, False)
    assert chosen.autocast_dtype == (torch.bfloat16 if native else None)
    assert choose_precision("float32", CPU) == Precision("float32", "cpu", channels_last=False)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native"),
    [(False, False, False), (True, False, True), (False, True, True), (True, True, True)],
)
def test_a_cpu_computes_bfloat16_natively_only_with_avx512_bf16_or_amx(
    monkeypatch, avx512_bf16, amx, native
):
    # oneDNN says "bf16 supported" on any AVX512 CPU (it emulates); that must not count
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert precision_module.cpu_has_native_bfloat16() is native
    assert choose_precision("auto", CPU).name == ("bfloat16" if native else "float32")


def test_a_torch_without_the_cpu_probes_falls_back_to_float32(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert precision_module.cpu_has_native_bfloat16() is False


def test_float16_needs_cuda_and_unknown_names_are_refused():
    with pytest.raises(HeadposeError, match="float16 needs a CUDA GPU"):
        choose_precision("float16", CPU)
    with pytest.raises(HeadposeError, match="expected one of auto, float32, bfloat16, float16"):
        choose_precision("fp8", CPU)
    assert set(PRECISIONS) == {"auto", "float32", "bfloat16", "float16"}


def test_compile_without_a_compiler_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(HeadposeError, match="compile: true needs a compiler on cpu .g\\+\\+."):
        check_compiler(CPU)
    monkeypatch.setenv("CC", "my-cc")
    with pytest.raises(HeadposeError, match="on cuda .my-cc., and none is on PATH"):
        check_compiler(CUDA)
    (tmp_path / "my-cc").write_text("#!/bin/sh\n")
    (tmp_path / "my-cc").chmod(0o755)
    check_compiler(CUDA)


@pytest.fixture(scope="module")
def loader_and_dataset(tmp_path_factory):
    stems = write_tiny_dataset(tmp_path_factory.mktemp("samples"), 16)
    dataset = training_dataset(as_samples(stems), 32, HOPENET, seed=0, workers=1)
    dataset.set_epoch(1)
    settings = LoaderSettings(batch_size=8, train_seed=0, workers=1)
    loader, sampler = make_train_loader(dataset, settings, CPU)
    sampler.set_epoch(1)
    return loader


def _one_epoch(loader, precision: Precision, compile_network: bool = False):
    torch.manual_seed(0)
    model = build_model("resnet18", Bins(3)).to(memory_format=precision.memory_format)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer = make_optimizer(model, Phase("frozen_stem", 1, 1, 1e-3))
    scaler = precision.grad_scaler()
    set_train_mode(model, stem_frozen=True)
    network = torch.compile(model) if compile_network else model
    make_inputs = input_maker(32, HOPENET, IMAGENET, CPU, precision)
    loss = train_one_epoch(network, loader, optimizer, scaler, Bins(3), make_inputs, precision, "t")
    changed = [
        name for name, value in model.state_dict().items() if not torch.equal(value, before[name])
    ]
    return loss, model, scaler, changed


@pytest.mark.slow
@pytest.mark.parametrize(
    "precision",
    [
        Precision("float32", "cpu", channels_last=False),
        Precision("bfloat16", "cpu", channels_last=True),  # CUDA's default, here on the CPU
        Precision("float16", "cpu", channels_last=True),  # CUDA without bf16: loss scaling
    ],
    ids=lambda p: p.name,
)
def test_the_step_trains_in_each_precision(loader_and_dataset, precision):
    loss, model, scaler, changed = _one_epoch(loader_and_dataset, precision)
    assert torch.isfinite(torch.tensor(loss)) and loss > 0
    assert scaler.is_enabled() == (precision.name == "float16")
    if scaler.is_enabled():
        assert scaler.get_scale() > 0  # the scaler stepped (and kept a finite scale)
    assert any(name.startswith("backbone.layer4") for name in changed)  # the backbone learnt
    assert not any(name.startswith("backbone.conv1") for name in changed)  # the stem did not
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32
    conv = model.backbone.layer1[0].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) == precision.channels_last


@pytest.mark.slow
def test_the_same_precision_gives_the_same_step(loader_and_dataset):
    bf16 = Precision("bfloat16", "cpu", channels_last=True)
    first, _, _, _ = _one_epoch(loader_and_dataset, bf16)
    again, _, _, _ = _one_epoch(loader_and_dataset, bf16)
    assert first == again


def _cpu_compiler_present() -> bool:
    try:
        check_compiler(CPU)
    except HeadposeError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _cpu_compiler_present(), reason="no C++ compiler for torch.compile here")
def test_a_compiled_network_trains_like_the_plain_one(loader_and_dataset):
    fp32 = Precision("float32", "cpu", channels_last=False)
    plain, _, _, _ = _one_epoch(loader_and_dataset, fp32)
    compiled, _, _, changed = _one_epoch(loader_and_dataset, fp32, compile_network=True)
    assert compiled == pytest.approx(plain, rel=1e-3)
    assert any(name.startswith("backbone.layer4") for name in changed)


@pytest.mark.slow
@pytest.mark.skipif(not _cpu_compiler_present(), reason="no C++ compiler for torch.compile here")
def test_a_whole_run_with_compile_true_saves_plain_checkpoints(tmp_path):
    stems = write_tiny_dataset(tmp_path / "samples", 20)
    train_list = write_list(tmp_path / "train.txt", stems[:14])
    val_list = write_list(tmp_path / "val.txt", stems[14:])
    paths = TrainPaths(train_list, val_list, tmp_path / "models", tmp_path / "r.pt", tmp_path / "l")
    params = tiny_settings(compile=True, epochs=1, finetune_epochs=1)
    metrics = run_training(params, paths, device="cpu")
    assert metrics["final"]["epoch"] == 2
    saved = torch.load(paths.models_dir / "model.pt", weights_only=True)
    assert not any(key.startswith("_orig_mod") for key in saved["state_dict"])
    assert saved["meta"]["params"]["compile"] is True
    assert saved["meta"]["training_precision"] == choose_precision("auto", CPU).name
