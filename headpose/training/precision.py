"""How the training step computes: autocast precision, loss scaling, memory format, compilation.

``precision`` in ``params.yaml``:

* ``auto`` (default): bfloat16 autocast where the device computes it natively (a CUDA GPU with
  bf16 support; a CPU with AVX512-BF16 or AMX instructions), else float16
  autocast with a loss scaler on CUDA and float32 on the CPU;
* ``float32``, ``bfloat16``, ``float16``: that, wherever the run is (``float16`` only on CUDA).

bfloat16 keeps float32's exponent range, so it needs no loss scaler; float16 does
(``torch.amp.GradScaler``, which reads an overflow flag from the GPU every step). Weights,
optimizer state, BatchNorm statistics and the losses stay float32 (the heads compute their
expectation and loss outside autocast). Channels-last memory
format (NHWC, what cuDNN's and oneDNN's fast convolutions read) is used on CUDA and under
bfloat16 on the CPU. ``compile: true`` runs the training network through ``torch.compile``
(its first steps are slow while it compiles; the CPU needs a C++ compiler).

On the 2-core AMD EPYC (AVX512-BF16) this was written on, ResNet18 at 64 px, batch 64, the
training step ran at 297 images/s in bfloat16 with channels-last against 164 in float32
(``scripts/benchmark_training.py``; ``docs/results.md``, "Training speed, measured").
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import torch

from headpose.errors import HeadposeError
from headpose.params import PRECISIONS

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware: AVX512-BF16 or AMX tiles.

    oneDNN accepts bfloat16 on any AVX512 CPU, but without these instructions it converts to
    float32 and back around every kernel: on a 2-core Intel Xeon (Ice Lake, AVX512 without
    BF16) the 64 px ResNet18 training loop ran at 69.6 images/s in bfloat16 against 118.4 in
    float32 (docs/results.md).
    """
    try:
        cpu = torch.cpu
        return bool(
            torch.backends.mkldnn.is_available()
            and (cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
        )
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Precision:
    """The step's numerics on one device: autocast dtype (``None``: float32), loss scaling and
    memory format."""

    name: str  # float32, bfloat16 or float16
    device_type: str
    channels_last: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.name)

    @property
    def memory_format(self) -> torch.memory_format:
        """The model's and its input's memory format."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def scales_loss(self) -> bool:
        return self.name == "float16"

    def autocast(self) -> torch.autocast:
        """The context the forward pass runs in."""
        dtype = self.autocast_dtype
        return torch.autocast(self.device_type, dtype=dtype, enabled=dtype is not None)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, enabled only for float16."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scales_loss)


def choose_precision(requested: str, device: torch.device) -> Precision:
    """The :class:`Precision` of ``requested`` (a ``precision`` value) on ``device``."""
    if requested not in PRECISIONS:
        raise HeadposeError(f"precision: {requested!r}; expected one of {', '.join(PRECISIONS)}")
    cuda = device.type == "cuda"
    name = requested
    if requested == "auto":
        if cuda:
            name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            name = "bfloat16" if cpu_has_native_bfloat16() else "float32"
    if name == "float16" and not cuda:
        raise HeadposeError(
            "precision: float16 needs a CUDA GPU (on the CPU use bfloat16, float32 or auto)"
        )
    return Precision(name, device.type, channels_last=cuda or name == "bfloat16")


def check_compiler(device: torch.device) -> None:
    """Refuse ``compile: true`` in one line where ``torch.compile`` could not build its kernels:
    on the CPU it needs a C++ compiler (``$CXX``, else ``g++``), on CUDA a C compiler (``$CC``,
    else ``cc``, ``gcc`` or ``clang``) for Triton."""
    if device.type == "cpu":
        wanted = [os.environ.get("CXX", "g++")]
    else:
        wanted = [os.environ["CC"]] if "CC" in os.environ else ["cc", "gcc", "clang"]
    if not any(shutil.which(name) for name in wanted):
        raise HeadposeError(
            f"compile: true needs a compiler on {device.type} ({' or '.join(wanted)}), and none "
            "is on PATH: install one or set compile: false"
        )
