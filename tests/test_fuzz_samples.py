"""Property-based fuzzing of the sample readers with mutated copies of real samples (issue 13).

Each example copies a few real AFLW2000 and 300W_LP pairs from ``../shared/data``, damages one
of them (a key removed, a value of the wrong type or shape, NaN/inf/huge numbers, landmarks
collapsed or thrown far away, a truncated or header-forged JPEG) and runs what reads samples:
the file lists, 300W_AUG, the training/evaluation input and ``headpose evaluate --data FOLDER``.
Each must finish, naming the damaged sample when it leaves it out, without a traceback, and
use every good sample. The budget is small for CI (60 + 12 examples, about 20 s).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from helpers import as_samples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_fixtures import write_checkpoint
from protocol_fixtures import HOPENET

from headpose.cli import main as headpose_main
from headpose.crops.store import prepare_crops
from headpose.crops.store.spec import StoreSpec
from headpose.datasets.augment import build_augmentation
from headpose.datasets.filelists import build_filelists, write_filelists
from headpose.datasets.mat import read_pair
from headpose.errors import HeadposeError
from headpose.inference import timing

TRAIN_REAL = ("image00002", "image00006")  # AFLW2000 pairs in a 300W_LP-layout folder
TEST_REAL = ("image00008", "image00013", "image00004")
IMAGE_SIZE = 32
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- Mutations ------------------------------------------------------------------------------------

KEYS = ("Pose_Para", "pt2d", "pt3d_68")
odd_numbers = st.sampled_from([np.nan, np.inf, -np.inf, 1e7, -1e7, 1e30, -1e300, 0.0])
odd_values = st.one_of(
    st.just("text instead of numbers"),
    st.just(np.array([np.zeros(3), "cell"], dtype=object)),  # a MATLAB cell array
    st.just(np.array([[1 + 2j, 3, 4, 5, 6, 7, 8]])),
    st.just(np.array([[True, False, True]])),
    st.tuples(st.integers(0, 4), st.integers(0, 70)).map(lambda shape: np.ones(shape)),
)
mat_mutation = st.one_of(
    st.tuples(st.just("remove"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("replace"), st.sampled_from(KEYS), odd_values),
    st.tuples(
        st.just("element"), st.sampled_from(KEYS), st.tuples(st.integers(0, 200), odd_numbers)
    ),
    st.tuples(st.just("scale"), st.sampled_from(("pt2d", "pt3d_68")), odd_numbers),
    st.tuples(st.just("collapse"), st.sampled_from(("pt2d", "pt3d_68")), st.none()),
)
forged_side = st.sampled_from([0, 1, 7, 449, 451, 900, 32766, 32767, 40000, 65535])
image_mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 0.999)),
    # header-forged sizes: empty, tiny, near the real 450, and beyond the side/pixel bounds
    st.tuples(st.just("forge"), st.tuples(forged_side, forged_side)),
    st.tuples(st.just("flip_header_byte"), st.tuples(st.integers(0, 400), st.integers(1, 255))),
)
mutation = st.one_of(mat_mutation, image_mutation)


def apply_mutation(stem: Path, change: tuple) -> None:
    """Damage the pair ``stem.jpg`` + ``stem.mat`` as ``change`` says."""
    kind, *details = change
    if kind in ("truncate", "forge", "flip_header_byte"):
        image = stem.with_suffix(".jpg")
        data = bytearray(image.read_bytes())
        if kind == "truncate":
            data = data[: int(len(data) * details[0])]
        elif kind == "forge":
            width, height = details[0]
            sof = data.index(b"\xff\xc0")
            data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
        else:
            position, xor = details[0]
            data[position % len(data)] ^= xor
        image.write_bytes(bytes(data))
        return
    key, value = details
    mat = {k: v for k, v in scipy.io.loadmat(stem.with_suffix(".mat")).items() if k[:2] != "__"}
    if kind == "remove":
        mat.pop(key, None)
    elif kind == "replace":
        mat[key] = value
    elif key in mat:
        array = np.array(mat[key], dtype=np.float64)
        if kind == "element":
            index, number = value
            array.flat[index % array.size] = number
        elif kind == "scale":
            with np.errstate(all="ignore"):
                array = array * value
        else:  # collapse: every landmark on one point
            array[:] = array[:, :1]
        mat[key] = array
    scipy.io.savemat(stem.with_suffix(".mat"), mat)


# --- The data -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(aflw2000_dir, w300lp_sample_dir, tmp_path_factory) -> Path:
    """Real pairs: ``train/`` (300W_LP layout: IBUG/ + AFW/) and ``test/`` (AFLW2000 layout)."""
    root = tmp_path_factory.mktemp("pristine")
    shutil.copytree(w300lp_sample_dir / "IBUG", root / "train" / "IBUG")
    (root / "train" / "AFW").mkdir()
    (root / "test").mkdir()
    for names, folder in ((TRAIN_REAL, root / "train" / "AFW"), (TEST_REAL, root / "test")):
        for name in names:
            for suffix in (".jpg", ".mat"):
                shutil.copy(aflw2000_dir / f"{name}{suffix}", folder / f"{name}{suffix}")
    return root


def good_stems(root: Path) -> tuple[list[str], list[str]]:
    train = sorted(p.with_suffix("").as_posix() for p in (root / "train").rglob("*.jpg"))
    test = sorted(p.with_suffix("").as_posix() for p in (root / "test").glob("*.jpg"))
    return train, test


@contextlib.contextmanager
def mutated_copy(pristine: Path, target_index: int, change: tuple):
    """A fresh copy of the pristine data with one sample damaged: (root, damaged stem)."""
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "data"
        shutil.copytree(pristine, root)
        train, test = good_stems(root)
        everything = train + test
        damaged = everything[target_index % len(everything)]
        apply_mutation(Path(damaged), change)
        yield root, damaged


def named(error: Exception, stem: str) -> bool:
    return Path(stem).name in str(error) and "\n" not in str(error)


# --- The properties -------------------------------------------------------------------------------


@FUZZ
@given(target_index=st.integers(0, 5), change=mutation)
def test_data_stages_skip_and_name_damaged_samples_and_use_every_good_one(
    pristine, target_index, change
):
    with mutated_copy(pristine, target_index, change) as (root, damaged):
        train_all, test_all = good_stems(root)
        # the one validation: the sample is read, or refused naming its file
        try:
            read_pair(damaged)
        except HeadposeError as error:
            assert named(error, damaged), str(error)
        # the filelists stage finishes; every good sample is listed, the damaged one is either
        # listed or skipped with a reason
        lists = build_filelists(root / "train", root / "test", 99, 0.3, 0, workers=1)
        write_filelists(lists, root / "filelists")
        listed = set(lists.train + lists.val + lists.test)
        skipped = {sample: reason for sample, _, reason in lists.skipped}
        assert set(train_all + test_all) - {damaged} <= listed, skipped
        assert (damaged in listed) != (damaged in skipped), (listed, skipped)
        if damaged in skipped:
            assert skipped[damaged].strip(), "a skip always says why"
        # whatever the lists accept, the training / evaluation input decodes
        spec = StoreSpec(IMAGE_SIZE, HOPENET, "train")
        crops = prepare_crops(as_samples(sorted(listed)), spec, 1)
        assert len(crops) == len(listed)
        # 300W_AUG rotates or skips (naming it) every training sample; it never stops
        train = as_samples(lists.train + lists.val)
        augmentation = build_augmentation(
            train, root / "train", root / "aug", True, 1.0, [15.0], 99, 0, workers=1
        )
        assert len(augmentation.angles) + len(augmentation.skipped) == len(train)
        for entry, _, reason in augmentation.skipped:
            source = Path(entry).name.rsplit("_rot", 1)[0]
            assert source in reason and "\n" not in reason, reason


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(
        tmp_path_factory.mktemp("fuzz_model") / "model.pt", "resnet18", image_size=IMAGE_SIZE
    )


@settings(FUZZ, max_examples=12)
@given(target_index=st.integers(0, 2), change=mutation)
@pytest.mark.usefixtures("one_torch_thread")
def test_evaluate_folder_reports_the_damaged_sample_and_scores_the_good_ones(
    pristine, checkpoint, target_index, change, monkeypatch
):
    monkeypatch.setattr(timing, "WARMUP_RUNS", 1)
    monkeypatch.setattr(timing, "TIMED_RUNS", 1)
    monkeypatch.setattr(timing, "THROUGHPUT_BATCH_SIZE", 2)
    with tempfile.TemporaryDirectory() as work:
        test = Path(work) / "test"
        shutil.copytree(pristine / "test", test)
        stems = sorted(p.with_suffix("").as_posix() for p in test.glob("*.jpg"))
        damaged = stems[target_index]
        apply_mutation(Path(damaged), change)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                headpose_main(["evaluate", str(checkpoint), "--data", str(test), "--workers", "1"])
                code = 0
            except SystemExit as exit_:
                code = exit_.code
        assert code == 0 and "Traceback" not in err.getvalue(), err.getvalue()
        skipped = [line for line in err.getvalue().splitlines() if line.startswith("skipped ")]
        evaluated = 3 - len(skipped)
        assert f"{test}: {evaluated} samples" in out.getvalue()
        assert all(damaged in line for line in skipped) and len(skipped) <= 1
