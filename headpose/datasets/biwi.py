"""BIWI Kinect Head Pose, raw: the ``hpdb`` layout, its pose and calibration files, and the
protocol-1 frame list (facts and sources: ``docs/conventions.md``, "BIWI").

Layout: ``hpdb/NN/frame_XXXXX_rgb.png`` (640 x 480 RGB) with ``frame_XXXXX_pose.txt`` beside it
and one ``rgb.cal`` / ``depth.cal`` per sequence folder ``NN`` (two digits). The dataset root is
``hpdb`` itself or a folder holding it.

Pose (:func:`read_pose_file`): a 3 x 3 rotation M (head template -> depth camera) and the head
centre T in millimetres in the depth camera frame. Angles: the benchmark formula every published
BIWI number uses (:func:`benchmark_angles_deg`), uncalibrated, which is exactly our Pose_Para
convention read in the Kinect camera frame (M = D R D, D = diag(1, -1, -1), R the 300W_LP
rotation of the same angles: :func:`biwi_matrix`).

Entries: ``<root>/NN/frame_XXXXX`` (HopeNet's stem form) plus the face box, ``@x,y,w,h`` in
pixels, when a frame list gives one. The box is the final crop: the block of pixels ``x`` to
``x + w - 1`` and ``y`` to ``y + h - 1`` (black beyond the image), resized to a square without
keeping its aspect ratio, as FSA-Net's protocol-1 preprocessing made its crops.
:func:`read_frame_list` reads a list of frames with boxes (the ``Biwi_FSA-Net.npz`` of the
13,219 protocol-1 frames, whose boxes are FSA-Net's enlarged MTCNN detections). Without a frame
list, every frame is a sample and its box is projected from the head centre through the
sequence's calibration (:func:`projected_box`: an approximation of protocol-1 framing, neither
its frame set nor its crops, so its numbers do not compare with published ones).

Groups: the person (:data:`SEQUENCE_SUBJECTS`; four people were recorded twice, so a split by
sequence is not a split by person). Guard: a set whose frames are exactly the 13,219 of
protocol 1 is recognised as the published set (:data:`FSANET_FRAMES_SHA256`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from headpose.datasets.labels import Labels, check_box
from headpose.datasets.registry import DatasetFormat, Scan, register_format
from headpose.errors import HeadposeError
from headpose.geometry import rotation_matrix
from headpose.io.arrays import read_npz
from headpose.io.files import write_text
from headpose.io.images import MAX_IMAGE_SIDE_PX, image_header_size, read_image
from headpose.io.text import read_text_file

SEQUENCE_SUBJECTS = {
    "01": "F01", "02": "F02", "03": "F03", "04": "F04", "05": "F05", "06": "F06",
    "07": "M01", "08": "M02", "09": "M03", "10": "M04", "11": "M05", "12": "M06",
    "13": "M07", "14": "M08", "15": "F03", "16": "M09", "17": "M10", "18": "F05",
    "19": "M11", "20": "M12", "21": "F02", "22": "M01", "23": "M13", "24": "M14",
}  # fmt: skip
# The frame list FSA-Net published (the literature's BIWI protocol 1): its name, its size and
# the SHA-256 of its frames as "NN/frame_XXXXX", sorted, one per line (the test-set guard's).
FSANET_FRAME_LIST_NAME = "BIWI protocol 1 (FSA-Net's 13,219 frames)"
FSANET_FRAME_COUNT = 13219
FSANET_FRAMES_SHA256 = "4b44a0b49a835a8101c66cbe5a0d950c56cef03125ec96a080a2d9ef84795b2d"
RGB_SUFFIX, POSE_SUFFIX = "_rgb.png", "_pose.txt"
ENTRY = re.compile(
    r"(?P<frame>(?:.*/)?(?P<sequence>\d\d)/frame_(?P<number>\d{5}))(?:@(?P<box>[^@/]*))?"
)
FRAME_FILE = re.compile(r"frame_(\d{5})_rgb\.png")
# Without a frame list: the box around the projected head centre, in millimetres at its depth
# (the protocol-1 box of sequence 01, frame 00003: 146 x 180 px at 881 mm, f = 517.7 px).
PROJECTED_BOX_MM = (248.0, 306.0)
# Detector boxes (a test set's frame_list: detector): each detection enlarged as FSA-Net enlarged
# its MTCNN boxes for protocol 1, by this share of its width left and right and of its height
# above and below.
DETECTION_MARGIN = 0.4
DETECTOR_FRAME_LIST = "detector"  # a frame_list value: boxes from the project's face detector
ROTATION_TOLERANCE = 1e-3  # |M M^T - I| and |det M - 1| of six-digit matrices stay below it
# A calibration's plausible focal lengths (px): the Kinect's are 517.7 (RGB) and 575.8 (depth);
# outside this range a projected box is empty or huge (0, a negative value, 1e7 in a damaged file).
FOCAL_RANGE_PX = (100.0, 5000.0)
# A pose file is 4 lines, a calibration file 13, of a few numbers each (about 200 bytes).
NUMBER_FILE_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class Calibration:
    """One camera of a sequence (``rgb.cal`` or ``depth.cal``): intrinsics, and the rotation
    and translation (mm) from the depth camera frame into this camera's:
    X_cam = rotation @ X_depth + translation."""

    intrinsics: np.ndarray  # (3, 3)
    distortion: np.ndarray  # (4,)
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    size_wh: tuple[int, int]

    def project(self, point_depth_mm: np.ndarray) -> tuple[float, float]:
        """Pixel (u, v) of a point given in the depth camera frame."""
        x, y, z = self.rotation @ point_depth_mm + self.translation
        if z <= 0:
            raise HeadposeError(f"a point at depth {z:g} mm is behind the camera")
        k = self.intrinsics
        return float(k[0, 0] * x / z + k[0, 2]), float(k[1, 1] * y / z + k[1, 2])


def _number_rows(path: Path, what: str) -> list[list[float]]:
    """The non-empty lines of a text file (ASCII, at most :data:`NUMBER_FILE_MAX_BYTES`) as rows
    of numbers, or one line naming the file."""
    text = read_text_file(path, NUMBER_FILE_MAX_BYTES, f"BIWI {what} file", encoding="ascii")
    try:
        rows = [[float(token) for token in line.split()] for line in text.splitlines()]
    except ValueError:
        raise HeadposeError(
            f"{path}: the {what} file holds something that is not a number"
        ) from None
    rows = [row for row in rows if row]
    if not all(math.isfinite(value) for row in rows for value in row):
        raise HeadposeError(f"{path}: the {what} file holds a value that is not finite")
    return rows


def read_pose_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(M, T) of a ``frame_XXXXX_pose.txt``: three rows of the rotation, then the head centre
    (mm); a HeadposeError naming the file when it is not that or M is no rotation."""
    path = Path(path)
    rows = _number_rows(path, "pose")
    if len(rows) != 4 or any(len(row) != 3 for row in rows):
        raise HeadposeError(
            f"{path}: expected 3 rows of 3 numbers (the rotation) and 1 row of 3 (the head "
            f"centre), got rows of {[len(row) for row in rows]} numbers"
        )
    matrix, centre = np.array(rows[:3]), np.array(rows[3])
    if not _is_rotation(matrix):
        raise HeadposeError(f"{path}: the 3x3 matrix is not a rotation (orthonormal, det 1)")
    return matrix, centre


def _is_rotation(matrix: np.ndarray) -> bool:
    return (
        np.abs(matrix @ matrix.T - np.eye(3)).max() <= ROTATION_TOLERANCE
        and abs(np.linalg.det(matrix) - 1) <= ROTATION_TOLERANCE
    )


def benchmark_angles_deg(matrix: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a BIWI pose matrix by the formula of every published
    BIWI number (HopeNet, FSA-Net, 6DRepNet's data, img2pose)."""
    m = np.asarray(matrix, dtype=np.float64)
    yaw = math.atan2(m[0, 2], math.hypot(m[1, 2], m[2, 2]))
    pitch = math.atan2(m[1, 2], m[2, 2])
    roll = math.atan2(-m[0, 1], m[0, 0])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def biwi_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """The BIWI pose matrix of angles in our convention: D R D, with R the 300W_LP rotation of
    the same angles (:func:`headpose.geometry.rotation_matrix`) and D = diag(1, -1, -1)."""
    flip = np.diag([1.0, -1.0, -1.0])
    rotation = rotation_matrix(*np.radians([pitch_deg, yaw_deg, roll_deg]))
    return flip @ rotation @ flip


def _number_line(values) -> str:
    """Numbers as the BIWI files print them: about 6 significant digits, each followed by a
    space (C++'s default stream format)."""
    return "".join(f"{float(value):g} " for value in values)


def write_pose_file(path: str | Path, matrix: np.ndarray, centre_mm: np.ndarray) -> None:
    """A ``frame_XXXXX_pose.txt`` in the dataset's exact layout: three matrix rows, an empty
    line, the centre, an empty line."""
    rows = [_number_line(row) for row in np.asarray(matrix)]
    write_text(path, "\n".join([*rows, "", _number_line(centre_mm), ""]) + "\n")


def write_calibration(path: str | Path, calibration: Calibration) -> None:
    """A ``rgb.cal`` / ``depth.cal`` in the dataset's exact 13-line layout (the last line, the
    image size, without a trailing space but with a newline, as the real files have it)."""
    lines = [
        *(_number_line(row) for row in calibration.intrinsics),
        "",
        _number_line(calibration.distortion),
        "",
        *(_number_line(row) for row in calibration.rotation),
        "",
        _number_line(calibration.translation),
        "",
        " ".join(str(value) for value in calibration.size_wh),
    ]
    write_text(path, "\n".join(lines) + "\n")


def read_calibration(path: str | Path) -> Calibration:
    """A ``rgb.cal`` or ``depth.cal`` (13 lines: K, distortion, R, t, image size), checked by
    :func:`check_calibration`."""
    path = Path(path)
    rows = _number_rows(path, "calibration")
    lengths = [len(row) for row in rows]
    if lengths != [3, 3, 3, 4, 3, 3, 3, 3, 2]:
        raise HeadposeError(
            f"{path}: expected the intrinsics (3 rows of 3), 4 distortion values, a 3x3 "
            f"rotation, a translation of 3 and the image size (2), got rows of {lengths} numbers"
        )
    width, height = rows[8]
    if not (width.is_integer() and height.is_integer()):
        raise HeadposeError(
            f"{path}: the image size must be whole pixels, got {width:g} {height:g}"
        )
    calibration = Calibration(
        np.array(rows[0:3]),
        np.array(rows[3]),
        np.array(rows[4:7]),
        np.array(rows[7]),
        (int(width), int(height)),
    )
    check_calibration(path, calibration)
    return calibration


def check_calibration(path: str | Path, calibration: Calibration) -> None:
    """The one check of a camera calibration's values, a HeadposeError naming ``path``: an image
    size of 1 to ``MAX_IMAGE_SIDE_PX`` px a side (as every image read), focal lengths in
    :data:`FOCAL_RANGE_PX`, the principal point inside the image, the camera rotation a rotation.
    A sequence whose ``rgb.cal`` fails it has each of its frames skipped with this reason."""
    width, height = calibration.size_wh
    if not (1 <= width <= MAX_IMAGE_SIDE_PX and 1 <= height <= MAX_IMAGE_SIDE_PX):
        raise HeadposeError(
            f"{path}: the image size {width} x {height} is not 1 to {MAX_IMAGE_SIDE_PX} px a side"
        )
    k = calibration.intrinsics
    low, high = FOCAL_RANGE_PX
    for name, value in (("fx", k[0, 0]), ("fy", k[1, 1])):
        if not low <= value <= high:
            raise HeadposeError(
                f"{path}: the focal length {name} {value:g} px is not a plausible camera's "
                f"({low:g} to {high:g} px)"
            )
    if not (0 <= k[0, 2] <= width and 0 <= k[1, 2] <= height):
        raise HeadposeError(
            f"{path}: the principal point ({k[0, 2]:g}, {k[1, 2]:g}) lies outside the "
            f"{width} x {height} image"
        )
    if not _is_rotation(calibration.rotation):
        raise HeadposeError(f"{path}: the 3x3 rotation is not a rotation (orthonormal, det 1)")


def projected_box(centre_mm: np.ndarray, calibration: Calibration) -> tuple[int, int, int, int]:
    """(x, y, w, h) of :data:`PROJECTED_BOX_MM` around the head centre projected into the RGB
    image (the box used without a frame list)."""
    u, v = calibration.project(centre_mm)
    depth = (calibration.rotation @ centre_mm + calibration.translation)[2]
    width = PROJECTED_BOX_MM[0] * calibration.intrinsics[0, 0] / depth
    height = PROJECTED_BOX_MM[1] * calibration.intrinsics[1, 1] / depth
    return round(u - width / 2), round(v - height / 2), round(width), round(height)


def head_centre_px(entry: str) -> tuple[float, float]:
    """The head centre of an entry's frame projected into its RGB image (pixels)."""
    match = _parse(entry)
    _, centre = read_pose_file(match["frame"] + POSE_SUFFIX)
    return _calibration(str(Path(match["frame"]).parent)).project(centre)


def detection_crop_box(
    detection: tuple[float, float, float, float], image_wh: tuple[int, int]
) -> tuple[int, int, int, int]:
    """(x, y, w, h) of a detected face box ``(x0, y0, x1, y1)`` enlarged by
    :data:`DETECTION_MARGIN` on each side (FSA-Net's protocol-1 enlargement), truncated to whole
    pixels and clipped to the image."""
    x0, y0, x1, y1 = detection
    width, height = x1 - x0, y1 - y0
    left = min(max(int(x0 - DETECTION_MARGIN * width), 0), image_wh[0] - 1)
    top = min(max(int(y0 - DETECTION_MARGIN * height), 0), image_wh[1] - 1)
    right = min(max(int(x1 + DETECTION_MARGIN * width), 0), image_wh[0] - 1)
    bottom = min(max(int(y1 + DETECTION_MARGIN * height), 0), image_wh[1] - 1)
    return left, top, right - left + 1, bottom - top + 1


def detected_entries(
    entries: list[str], detect: Callable[[np.ndarray], list[tuple[float, float, float, float]]]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Entries boxed by a face detector instead of a frame list: ``detect`` (RGB image -> face
    boxes ``(x0, y0, x1, y1)``) runs on every frame; of the faces whose box holds the projected
    head centre (the calibration says where the annotated head is), the one whose centre is
    nearest it is kept, enlarged by :func:`detection_crop_box`. Returns (boxed entries, frames
    left out with the reason): the frame set is the detector's, not protocol 1's."""
    boxed, missed = [], []
    for entry in entries:
        frame = _parse(entry)["frame"]
        image = read_image(frame + RGB_SUFFIX)
        u, v = head_centre_px(entry)
        holding = [box for box in detect(image) if box[0] <= u <= box[2] and box[1] <= v <= box[3]]
        if not holding:
            missed.append((entry, "no detected face holds the projected head centre"))
            continue
        nearest = min(
            holding, key=lambda b: math.hypot((b[0] + b[2]) / 2 - u, (b[1] + b[3]) / 2 - v)
        )
        x, y, width, height = detection_crop_box(nearest, (image.shape[1], image.shape[0]))
        boxed.append(f"{frame}@{x},{y},{width},{height}")
    return boxed, missed


def read_frame_list(path: str | Path) -> dict[str, tuple[int, int, int, int]]:
    """``NN/frame_XXXXX`` -> its box (x, y, w, h) from a frame list ``.npz`` with ``images``
    (``NN/frame_XXXXX_rgb.png`` paths) and ``bbox`` (N x 4 integers), as the published
    protocol-1 list ``Biwi_FSA-Net.npz`` holds them."""
    path = Path(path)
    arrays = read_npz(path, ("images", "bbox"), "a BIWI frame list")
    images, boxes = arrays["images"], arrays["bbox"]
    if images.ndim != 1 or boxes.shape != (len(images), 4) or boxes.dtype.kind not in "iu":
        raise HeadposeError(
            f"{path}: expected 'images' (N,) and integer 'bbox' (N, 4), got {images.shape} and "
            f"{boxes.dtype} {boxes.shape}"
        )
    frames = {}
    for image, box in zip(images.tolist(), boxes.tolist(), strict=True):
        match = re.fullmatch(r"(\d\d)/frame_(\d{5})_rgb\.png", str(image))
        if not match or box[2] < 1 or box[3] < 1:
            raise HeadposeError(f"{path}: bad frame {image!r} or box {box}")
        frames[f"{match[1]}/frame_{match[2]}"] = tuple(box)
    return frames


def _hpdb(root: Path) -> Path | None:
    """The folder holding the sequence folders: ``root`` itself, or its ``hpdb``."""
    for folder in (root, root / "hpdb"):
        if folder.is_dir() and any(_sequence_frames(folder / name) for name in _sequences(folder)):
            return folder
    return None


def _sequences(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"\d\d", p.name))


def _sequence_frames(folder: Path) -> list[str]:
    """The frame names (``frame_XXXXX``) of a sequence folder's RGB images."""
    return sorted(
        name.removesuffix(RGB_SUFFIX) for p in folder.glob(f"frame_*{RGB_SUFFIX}")
        if FRAME_FILE.fullmatch(name := p.name)
    )  # fmt: skip


def _parse(entry: str) -> re.Match:
    match = ENTRY.fullmatch(entry)
    if not match:
        raise HeadposeError(f"{entry}: not a BIWI entry (.../NN/frame_XXXXX[@x,y,w,h])")
    return match


def _box(entry: str, match: re.Match) -> tuple[int, int, int, int] | None:
    if match["box"] is None:
        return None
    try:
        box = tuple(int(value) for value in match["box"].split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] < 1 or box[3] < 1:
        raise HeadposeError(f"{entry}: the box after @ must be x,y,w,h in whole pixels, w, h >= 1")
    return box


@lru_cache(maxsize=64)
def _calibration(sequence_folder: str) -> Calibration:
    return read_calibration(Path(sequence_folder) / "rgb.cal")


def frame_labels(entry: str, image_wh: tuple[int, int] | None = None) -> Labels:
    """The labels of an entry: benchmark angles, and its crop box (the entry's, else the
    projected one); a HeadposeError naming the file at fault."""
    match = _parse(entry)
    matrix, centre = read_pose_file(match["frame"] + POSE_SUFFIX)
    box = _box(entry, match)
    if box is None:
        box = projected_box(centre, _calibration(str(Path(match["frame"]).parent)))
    x, y, width, height = box
    if width < 1 or height < 1:  # a projected box of a head far beyond the camera's range
        raise HeadposeError(
            f"{entry}: the box projected from the head centre is {width} x {height} px (empty)"
        )
    if image_wh is not None:  # the bound every crop box and face box obeys
        check_box((x, y, x + width, y + height), image_wh, entry, "crop box")
    return Labels(benchmark_angles_deg(matrix), crop_box=(x, y, x + width, y + height))


@register_format
class FormatBIWI(DatasetFormat):
    name = "biwi"
    stores_crop_box = True
    description = (
        "hpdb/NN/frame_XXXXX_rgb.png + _pose.txt, rgb.cal per sequence folder NN of two digits "
        "(01, not 1) (BIWI, raw)"
    )

    @classmethod
    def recognises(cls, root: Path) -> bool:
        return root.is_dir() and _hpdb(root) is not None

    @classmethod
    def owns(cls, entry: str) -> bool:
        return ENTRY.fullmatch(entry) is not None

    @classmethod
    def scan(cls, root: Path, frame_list: Path | None = None) -> Scan:
        """Every frame with its pose file; with ``frame_list``, exactly the listed frames with
        their boxes (a listed frame missing on disk is reported, unlisted ones are left out)."""
        folder = _hpdb(root) if root.is_dir() else None
        if folder is None:
            raise HeadposeError(
                f"dataset folder {root} holds no BIWI sequence folders (NN/frame_XXXXX_rgb.png)"
            )
        prefix = folder.as_posix()
        found = {
            f"{sequence}/{frame}"
            for sequence in _sequences(folder)
            for frame in _sequence_frames(folder / sequence)
        }
        unpaired = [
            (f"{prefix}/{name}", f"no {POSE_SUFFIX} beside the image")
            for name in sorted(found)
            if not (folder / f"{name}{POSE_SUFFIX}").exists()
        ]
        found -= {name.removeprefix(f"{prefix}/") for name, _ in unpaired}
        if frame_list is None:
            return Scan([f"{prefix}/{name}" for name in sorted(found)], unpaired)
        listed = read_frame_list(frame_list)
        unpaired += [
            (f"{prefix}/{name}", f"listed in {frame_list} but not found")
            for name in sorted(listed.keys() - found)
        ]
        entries = [
            f"{prefix}/{name}@{','.join(map(str, listed[name]))}"
            for name in sorted(listed.keys() & found)
        ]
        return Scan(entries, unpaired)

    @classmethod
    def header(cls, entry: str) -> Labels:
        image = _parse(entry)["frame"] + RGB_SUFFIX
        size = image_header_size(image)
        if size is None:
            raise HeadposeError(f"{image}: not a PNG image")
        return frame_labels(entry, size)

    @classmethod
    def read(cls, entry: str) -> tuple[np.ndarray, Labels]:
        image = read_image(_parse(entry)["frame"] + RGB_SUFFIX)
        return image, frame_labels(entry, (image.shape[1], image.shape[0]))

    @classmethod
    def image_file(cls, entry: str) -> str:
        return _parse(entry)["frame"] + RGB_SUFFIX

    @classmethod
    def digest(cls, entry: str) -> str:
        frame = _parse(entry)["frame"]
        files = [frame + POSE_SUFFIX, frame + RGB_SUFFIX]
        if _box(entry, _parse(entry)) is None:  # the box comes from the calibration
            files.append(str(Path(frame).parent / "rgb.cal"))
        digest = hashlib.sha256()
        for name in files:
            try:
                digest.update(Path(name).read_bytes())
            except OSError as error:
                raise HeadposeError(f"{name}: cannot read sample file ({error.strerror})") from None
        return digest.hexdigest()

    @classmethod
    def sequence(cls, entry: str) -> str:
        return _parse(entry)["sequence"]

    @classmethod
    def group_key(cls, entry: str) -> str:
        sequence = _parse(entry)["sequence"]
        return SEQUENCE_SUBJECTS.get(sequence, f"sequence {sequence}")

    @classmethod
    def check_test_set(cls, entries: list[str], source: str) -> bool:
        """Whether the entries are exactly FSA-Net's 13,219 frames (protocol 1), each once, with
        boxes."""
        names = [f"{m['sequence']}/frame_{m['number']}" for m in map(_parse, entries)]
        if len(names) != FSANET_FRAME_COUNT or any(_parse(e)["box"] is None for e in entries):
            return False
        text = "".join(f"{name}\n" for name in sorted(names))
        return hashlib.sha256(text.encode()).hexdigest() == FSANET_FRAMES_SHA256
