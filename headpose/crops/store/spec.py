"""What a crop store holds: its spec (:class:`StoreSpec`), its files, and the decoded crops
read from it (:class:`PreparedCrops`).

**Sharing.** The images are memory-mapped read-only: loader workers, DDP ranks and parallel
experiments on one machine share one copy through the page cache, and each process's private
memory does not grow with the dataset. :class:`PreparedCrops` pickles a memory-mapped array as
its file name, so worker processes map the file instead of receiving a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headpose.crops.crop import cache_side
from headpose.crops.protocols import CropProtocol
from headpose.datasets.registry import Sample
from headpose.errors import HeadposeError

FORMAT_VERSION = 4  # the files of a store; bump when they change
PURPOSES = ("train", "eval")  # cached regions for random training crops, or final evaluation crops
IMAGES_FILE, CONTEXTS_FILE, BOXES_FILE, REGIONS_FILE, ANGLES_FILE, META_FILE = (
    "images.npy",
    "contexts.npy",
    "face_boxes.npy",
    "regions.npy",
    "angles_deg.npy",
    "meta.json",
)
ROW_DIGESTS_FILE = "row_digests.npy"  # (count, image files, 32) uint8: each row's SHA-256


@dataclass(frozen=True)
class StoreSpec:
    """What a store holds: crops for a model input of ``image_size`` under crop ``protocol``,
    for ``purpose`` "train" (each face's training region at :func:`cache_side` pixels, cut into
    random crops per item) or "eval" (the final evaluation crops, ``image_size`` pixels).
    The protocol's name goes into the store's key and meta."""

    image_size: int
    protocol: CropProtocol
    purpose: str
    # "train" only: how many times larger than each training region (about its centre) a
    # context image of the same side is stored for re-framed crops (headpose.crops.framing);
    # 0 stores none
    context_extent: float = 0.0

    def __post_init__(self) -> None:
        if self.purpose not in PURPOSES:
            raise HeadposeError(f"crop store purpose must be one of {PURPOSES}, got {self.purpose}")
        if self.context_extent and (self.purpose != "train" or self.context_extent <= 1):
            raise HeadposeError(
                f"a context extent ({self.context_extent}) needs a train store and a value > 1"
            )

    @property
    def has_context(self) -> bool:
        """Whether each sample also has a context image (re-framed training crops)."""
        return self.context_extent > 0

    @property
    def side(self) -> int:
        """Side in pixels of the stored images."""
        return cache_side(self.image_size) if self.purpose == "train" else self.image_size


@dataclass
class PreparedCrops:
    """Decoded samples: square uint8 images (training regions or final evaluation crops, as
    ``spec.purpose`` says), with each face's box and region in full-image pixels, and labels.

    ``images`` is memory-mapped when it comes from a store. ``face_boxes`` are the tight face boxes
    of each sample's crop (:func:`~headpose.crops.protocols.stored_box.sample_protocol`:
    ``spec.protocol``'s, or the stored box); ``regions`` the full-image pixels each image was cut
    from (left, top, right, bottom): a training region, resized to a square, or the evaluation box
    the final crop was scaled and cropped from. ``contexts`` (``spec.has_context`` only, else None):
    each training region's surroundings, the pixels :func:`headpose.crops.framing.context_bounds`
    names, resized to the same square.
    """

    samples: list[Sample]
    images: np.ndarray  # (N, S, S, 3) uint8
    face_boxes: np.ndarray  # (N, 4) float64: x_min, y_min, x_max, y_max
    regions: np.ndarray  # (N, 4) float64: whole pixels
    angles_deg: np.ndarray  # (N, 3) float32: yaw, pitch, roll
    spec: StoreSpec
    key: str = ""  # the store key (contents of the samples and the crop code); "" if none
    contexts: np.ndarray | None = None  # (N, S, S, 3) uint8, spec.has_context only

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def entries(self) -> list[str]:
        """The samples' list entries, in order (item ``i`` is ``entries[i]``)."""
        return [sample.entry for sample in self.samples]

    def __getstate__(self) -> dict:
        """Memory-mapped ``images`` and ``contexts`` travel as their file names (a worker
        process maps the files itself), never as copies of their bytes."""
        state = dict(self.__dict__)
        for name in ("images", "contexts"):
            if isinstance(state[name], np.memmap):
                state[name] = Path(state[name].filename)
        return state

    def __setstate__(self, state: dict) -> None:
        for name in ("images", "contexts"):
            if isinstance(state.get(name), Path):
                state[name] = np.load(state[name], mmap_mode="r")
        self.__dict__.update(state)


def spec_meta(spec: StoreSpec, count: int) -> dict:
    """The meta.json keys that say what a store holds (checked before it is reused)."""
    return {
        "format": FORMAT_VERSION,
        "count": count,
        "side": spec.side,
        "image_size": spec.image_size,
        "protocol": spec.protocol.name,
        "purpose": spec.purpose,
        "context_extent": spec.context_extent,
    }


def image_file_names(spec: StoreSpec) -> tuple[str, ...]:
    """The image files of a store of ``spec``: the crops (or regions), then any contexts."""
    return (IMAGES_FILE, CONTEXTS_FILE) if spec.has_context else (IMAGES_FILE,)
