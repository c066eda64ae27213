"""Shared fixtures: the real sample data in ``../shared/data`` (tests skip if it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import slow_guard
import torch
from helpers import REPO_ROOT

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
AFLW2000_DIR = SHARED_DATA / "AFLW2000"
W300LP_SAMPLE_DIR = SHARED_DATA / "300W_LP_sample"
BIWI_SAMPLE_DIR = SHARED_DATA / "BIWI_sample"
YUNET_TEST_MODEL = REPO_ROOT.parent / "shared" / "models" / "face_detection_yunet.onnx"


def _require(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"real dataset not available: {path} is missing (only present in CI/dev)")
    return path


@pytest.fixture(scope="session")
def aflw2000_dir() -> Path:
    """The real AFLW2000-3D folder (2000 jpg+mat pairs)."""
    return _require(AFLW2000_DIR)


@pytest.fixture(scope="session")
def w300lp_sample_dir() -> Path:
    """The folder holding one real 300W_LP pair (IBUG/)."""
    return _require(W300LP_SAMPLE_DIR)


@pytest.fixture(scope="session")
def biwi_sample_dir() -> Path:
    """One genuine BIWI frame (hpdb/01/frame_00003) and the protocol-1 lists (lists/)."""
    return _require(BIWI_SAMPLE_DIR)


@pytest.fixture(scope="session")
def yunet_model() -> Path:
    """A YuNet build that cv2.FaceDetectorYN runs (not the release predict downloads)."""
    if not YUNET_TEST_MODEL.is_file():
        pytest.skip(f"YuNet test model not available: {YUNET_TEST_MODEL} is missing")
    return YUNET_TEST_MODEL


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test not marked ``slow`` (its fixtures included) may not train, export ONNX or run
    dvc / torchrun: tests/slow_guard.py fails it, naming the marker it lacks."""
    if item.get_closest_marker("slow") is not None:
        return (yield)
    with slow_guard.guard():
        return (yield)


def pytest_configure(config):
    """Under pytest-xdist (``-n N``) each of the N worker processes takes its share of the
    cores for torch, so N workers do not each start a thread per core and wait on each other."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


@pytest.fixture(autouse=True)
def offline_model_cache(tmp_path_factory, monkeypatch):
    """No test downloads: an empty model cache and an unreachable YuNet URL."""
    from headpose.app import detect

    monkeypatch.setenv(detect.CACHE_DIR_ENV, str(tmp_path_factory.mktemp("model_cache")))
    monkeypatch.setattr(detect, "YUNET_URL", "file:///nonexistent/face_detection_yunet.onnx")


@pytest.fixture(scope="session", autouse=True)
def private_crop_store(tmp_path_factory):
    """Crop stores go to a temporary folder, never into the repo's .cache/crops (session-wide,
    so module-scoped fixtures that train or evaluate see it too)."""
    from headpose.crops.store.key import STORE_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STORE_ENV, str(tmp_path_factory.mktemp("crop_store")))
        yield


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch CPU thread: small forward passes are then much faster on a
    machine whose cores are busy (intra-op threads otherwise wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def few_timing_runs(monkeypatch):
    """Measure speed the usual way with fewer repetitions (the tests check behaviour, not speed)."""
    from headpose.inference import timing

    monkeypatch.setattr(timing, "WARMUP_RUNS", 1)
    monkeypatch.setattr(timing, "TIMED_RUNS", 4)
