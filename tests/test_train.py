"""Training: determinism, resume after an interruption, phase-1 freezing, LR schedule, bad input.

Runs use a tiny random dataset (16 + 8 images of 40 px), 32 px inputs and 3 epochs (2 + 1).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from training_fixtures import tiny_settings, write_list, write_tiny_dataset

import headpose.training.run as training
from headpose.errors import HeadposeError
from headpose.models.heads.bins import Bins
from headpose.models.network import build_model
from headpose.training.run import run_training
from headpose.training.schedule import Phase, make_optimizer, make_scheduler
from headpose.training.settings import TrainPaths


@pytest.fixture(scope="module")
def lists(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    stems = write_tiny_dataset(folder, 24)
    return write_list(folder / "train.txt", stems[:16]), write_list(folder / "val.txt", stems[16:])


def _paths(lists: tuple[Path, Path], out: Path) -> TrainPaths:
    return TrainPaths(lists[0], lists[1], out / "models", out / "resume" / "train.pt", out / "live")


def interrupt_after_two_epochs(monkeypatch, settings, paths: TrainPaths) -> None:
    """Run ``settings`` into ``paths`` and interrupt it as the third epoch starts (as Ctrl-C
    would), leaving its resume checkpoint; ``train_one_epoch`` is the real one again after."""
    real_epoch = training.train_one_epoch
    calls = []

    def interrupted_after_two_epochs(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(training, "train_one_epoch", interrupted_after_two_epochs)
        with pytest.raises(KeyboardInterrupt):
            run_training(settings, paths)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference_run(lists, tmp_path_factory) -> tuple[dict, TrainPaths]:
    paths = _paths(lists, tmp_path_factory.mktemp("reference"))
    return run_training(tiny_settings(), paths), paths


@pytest.mark.slow
def test_same_seed_gives_identical_results(lists, reference_run, tmp_path):
    metrics, reference = reference_run
    paths = _paths(lists, tmp_path)
    assert run_training(tiny_settings(), paths) == metrics
    again, first = (
        _weights(paths.models_dir / "model.pt"),
        _weights(reference.models_dir / "model.pt"),
    )
    assert all(torch.equal(again[key], first[key]) for key in first)
    assert not paths.resume_file.exists()  # removed once the run is complete


@pytest.mark.slow
def test_train_seed_moves_the_model_and_the_data_seed_does_not(lists, reference_run, tmp_path):
    _, reference = reference_run
    first = _weights(reference.models_dir / "model.pt")
    data_seed = _paths(lists, tmp_path / "data_seed")
    run_training(tiny_settings(seed=7), data_seed)
    same = _weights(data_seed.models_dir / "model.pt")
    assert all(torch.equal(same[key], first[key]) for key in first)
    train_seed = _paths(lists, tmp_path / "train_seed")
    run_training(tiny_settings(train_seed=1), train_seed)
    other = _weights(train_seed.models_dir / "model.pt")
    assert not torch.equal(other["fc_yaw.weight"], first["fc_yaw.weight"])


@pytest.mark.slow
def test_outputs_hold_meta_and_curves(reference_run):
    metrics, paths = reference_run
    content = torch.load(paths.models_dir / "best.pt", weights_only=True)
    meta = content["meta"]
    assert meta["arch"] == "resnet18" and meta["num_bins"] == 66 and meta["image_size"] == 32
    assert meta["expectation"] == "centers" and len(meta["mean"]) == 3
    assert meta["crop_protocol"] == "hopenet"  # what predict and export frame faces by
    assert meta["epoch"] == metrics["best"]["epoch"]
    assert metrics["best"]["mae_mean"] <= metrics["final"]["mae_mean"]
    with open(paths.live_dir / "plots" / "metrics" / "train" / "lr.tsv") as handle:
        lrs = [float(row["lr"]) for row in csv.DictReader(handle, delimiter="\t")]
    # phase 1 decays by lr_decay per epoch; phase 2 starts at finetune_lr
    assert lrs == pytest.approx([1e-3, 1e-3 * 0.95, 3e-4])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_interrupted_run_resumes_to_the_same_result(lists, reference_run, tmp_path, monkeypatch):
    metrics, reference = reference_run
    paths = _paths(lists, tmp_path)
    interrupt_after_two_epochs(monkeypatch, tiny_settings(), paths)
    assert paths.resume_file.is_file()
    # other params: the saved state is not used
    calls = []
    monkeypatch.setattr(training, "train_one_epoch", lambda *a, **k: calls.append(1) or 0.0)
    run_training(tiny_settings(finetune_epochs=0), _paths(lists, tmp_path / "other"))
    assert len(calls) == 2
    monkeypatch.undo()

    assert run_training(tiny_settings(), paths) == metrics
    resumed, first = (
        _weights(paths.models_dir / "model.pt"),
        _weights(reference.models_dir / "model.pt"),
    )
    assert all(torch.equal(resumed[key], first[key]) for key in first)


@pytest.mark.slow
def test_an_interrupted_onecycle_run_resumes_to_the_same_result(lists, tmp_path, monkeypatch):
    """The per-step schedule's state is in the resume checkpoint: interrupted after two epochs
    and resumed, a onecycle run ends with the weights and rates of an uninterrupted one."""
    settings = tiny_settings(lr_schedule="onecycle", lr_warmup=0.25)
    reference = _paths(lists, tmp_path / "reference")
    metrics = run_training(settings, reference)
    paths = _paths(lists, tmp_path / "resumed")
    interrupt_after_two_epochs(monkeypatch, settings, paths)
    assert run_training(settings, paths) == metrics
    resumed, first = (
        _weights(paths.models_dir / "model.pt"),
        _weights(reference.models_dir / "model.pt"),
    )
    assert all(torch.equal(resumed[key], first[key]) for key in first)


@pytest.mark.slow
def test_stem_is_frozen_in_phase_one_only(lists, tmp_path):
    params = tiny_settings(epochs=1, finetune_epochs=0)
    torch.manual_seed(params.train_seed)
    initial = build_model("resnet18", Bins(3)).state_dict()
    run_training(params, _paths(lists, tmp_path / "one"))
    after_phase_one = _weights(tmp_path / "one" / "models" / "model.pt")
    for key in ("conv1.weight", "bn1.weight", "bn1.running_mean", "bn1.running_var"):
        assert torch.equal(after_phase_one[f"backbone.{key}"], initial[f"backbone.{key}"])
    assert not torch.equal(
        after_phase_one["backbone.layer1.0.conv1.weight"], initial["backbone.layer1.0.conv1.weight"]
    )

    run_training(tiny_settings(epochs=1, finetune_epochs=1), _paths(lists, tmp_path / "two"))
    after_phase_two = _weights(tmp_path / "two" / "models" / "model.pt")
    assert not torch.equal(
        after_phase_two["backbone.conv1.weight"], initial["backbone.conv1.weight"]
    )
    assert not torch.equal(
        after_phase_two["backbone.bn1.running_mean"], initial["backbone.bn1.running_mean"]
    )


def test_schedules_and_head_rate():
    model = build_model("resnet18", Bins(3))
    optimizer = make_optimizer(model, Phase("frozen_stem", 1, 30, 1e-3))
    scheduler = make_scheduler(
        optimizer, tiny_settings(lr_schedule="exponential", lr_decay=0.9).schedule, 30
    )
    for _ in range(3):
        scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx(
        [1e-3 * 0.9**3] * 2 + [5e-3 * 0.9**3] * 2  # backbone, heads: weights, then the rest
    )
    stem_ids = {id(p) for p in model.parameter_groups()["stem"]}
    assert not stem_ids & {id(p) for group in optimizer.param_groups for p in group["params"]}

    optimizer = make_optimizer(model, Phase("finetune", 31, 30, 1e-4))
    step = tiny_settings(lr_schedule="step", lr_steps=[2, 4], lr_step_gamma=0.1)
    scheduler = make_scheduler(optimizer, step.schedule, 30)
    rates = []
    for _ in range(5):
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1e-4, 1e-5, 1e-5, 1e-6, 1e-6])
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(trained) == len({id(p) for p in trained}) == len(list(model.parameters()))


def test_weight_decay_shrinks_weights_not_biases_or_norms():
    """weight_decay > 0 is AdamW: with zero gradients (an Adam step of 0) a step multiplies each
    conv and linear weight by 1 - lr x weight_decay and leaves biases and BatchNorm alone; with
    0 every parameter stays as it is."""
    for weight_decay in (0.0, 0.1):
        model = build_model("resnet18", Bins(3))
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        optimizer = make_optimizer(model, Phase("finetune", 1, 1, 1e-2, weight_decay))
        for parameter in model.parameters():
            parameter.grad = torch.zeros_like(parameter)
        optimizer.step()
        for name, parameter in model.named_parameters():
            shrink = 1 - 1e-2 * weight_decay if parameter.ndim > 1 else 1.0
            torch.testing.assert_close(parameter.detach(), before[name] * shrink, msg=name)
    assert any(p.ndim > 1 for p in model.parameters())
    assert any(p.ndim == 1 for p in model.parameters())


def test_the_optimizer_is_fused_adam_and_steps_as_the_plain_loop():
    """On the CPU the phase's Adam is the fused kernel; its update is the per-parameter loop's
    (to float rounding), the heads' 5x rate included, though it groups weights apart from
    biases and norms (for weight decay, 0 here)."""
    torch.manual_seed(0)
    model = build_model("resnet18", Bins(3))
    twin = build_model("resnet18", Bins(3))
    twin.load_state_dict(model.state_dict())
    fused = make_optimizer(model, Phase("frozen_stem", 1, 1, 1e-3))
    assert fused.defaults["fused"] is True
    groups = twin.parameter_groups()
    plain = torch.optim.Adam(
        [
            {"params": groups["backbone"], "lr": 1e-3},
            {"params": groups["heads"], "lr": 5e-3},
        ],
        foreach=False,
    )
    for _ in range(3):
        for network, optimizer in ((model, fused), (twin, plain)):
            generator = torch.Generator().manual_seed(1)
            for parameter in network.parameters():
                parameter.grad = torch.randn(parameter.shape, generator=generator)
            optimizer.step()
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name


def test_onecycle_rises_to_each_groups_rate_then_falls_within_the_phase():
    """onecycle is stepped per optimizer step: 1/25 of each group's rate at the start, the rate
    itself (the head's 5x included) after the warm-up share of the phase's steps, then down."""
    model = build_model("resnet18", Bins(3))
    optimizer = make_optimizer(model, Phase("frozen_stem", 1, 1, 2e-3))
    settings = tiny_settings(lr_schedule="onecycle", lr_warmup=0.25)
    assert settings.schedule.per_step
    scheduler = make_scheduler(optimizer, settings.schedule, 100)
    rates = [[group["lr"] for group in optimizer.param_groups]]
    for _ in range(99):
        optimizer.step()
        scheduler.step()
        rates.append([group["lr"] for group in optimizer.param_groups])
    assert rates[0] == pytest.approx([2e-3 / 25] * 2 + [1e-2 / 25] * 2)
    peak = max(range(100), key=lambda step: rates[step][0])
    assert peak == 25 - 1 or peak == 25, peak
    assert rates[peak] == pytest.approx([2e-3] * 2 + [1e-2] * 2, rel=1e-3)
    assert rates[-1][0] < 2e-3 / 1000
    assert all(a[0] >= b[0] for a, b in zip(rates[peak:], rates[peak + 1 :], strict=False))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"arch": "vgg16"}, "arch"),
        ({"bin_width": 7}, "bin_width"),
        ({"alpha": -1}, "alpha"),
        ({"lr": 0}, "lr"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_bad_params_are_rejected_before_any_work(override, message, tmp_path):
    missing = _paths((tmp_path / "no_train.txt", tmp_path / "no_val.txt"), tmp_path)
    with pytest.raises(HeadposeError, match=message):
        run_training(tiny_settings(**override), missing)


def test_bad_lists_get_a_clear_message(lists, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(HeadposeError, match="empty.txt is empty"):
        run_training(tiny_settings(), _paths((empty, lists[1]), tmp_path))
    with pytest.raises(HeadposeError, match="no_val.txt does not exist"):
        run_training(tiny_settings(), _paths((lists[0], tmp_path / "no_val.txt"), tmp_path))


@pytest.mark.slow  # a whole run but for the epochs' steps
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
@pytest.mark.parametrize("relabel", [False, True], ids=["same files", "same names, new labels"])
def test_resume_follows_the_sample_files_contents(relabel, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "set"
    folder.mkdir()
    stems = write_tiny_dataset(folder, 24)
    lists = (
        write_list(tmp_path / "train.txt", stems[:16]),
        write_list(tmp_path / "val.txt", stems[16:]),
    )
    paths = _paths(lists, tmp_path / "run")
    calls = []

    def interrupted_after_two_epochs(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return 0.0

    monkeypatch.setattr(training, "train_one_epoch", interrupted_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_settings(), paths)
    assert paths.resume_file.is_file()
    if relabel:
        write_tiny_dataset(folder, 24, seed=1)  # the same file names, other images and angles
    calls.clear()
    capsys.readouterr()
    monkeypatch.setattr(training, "train_one_epoch", lambda *a, **k: calls.append(1) or 0.0)
    run_training(tiny_settings(), paths)
    out = capsys.readouterr().out
    if relabel:  # weights trained on the old labels are not continued, and that is said
        assert len(calls) == 3
        assert f"ignoring {paths.resume_file}: a run of other params or other samples" in out
    else:
        assert len(calls) == 1 and "resuming after epoch 2" in out
