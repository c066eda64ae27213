"""What a head is (the :class:`Head` interface), and the registry of heads: where a head plugs in.

A head turns a backbone's pooled features into angles. Its module owns everything about it:
the network's output layers (:meth:`Head.layer_sizes`), what a checkpoint records about it
(:meth:`Head.meta`, :attr:`Head.meta_keys`, :meth:`Head.from_meta`, :meth:`Head.validate_meta`
against the weights), the params.yaml keys it owns with their rules (:attr:`Head.params_defaults`,
:meth:`Head.validate_params`, :meth:`Head.from_params`), its training loss (:meth:`Head.loss`),
the conversion of outputs to degrees (:meth:`Head.angles_deg`, exported into ONNX with the
network) and its label in reports (:meth:`Head.label`). Training, evaluation, export, the
benchmark and checkpoints only call these.

A head class registers itself with :func:`register_head` under its params.yaml ``head`` value
(in :data:`HEADS`, a :class:`headpose.registry.Registry`: a name taken by another module's head
is refused); :mod:`headpose.models.heads` imports the built-in heads and looks them up. Adding a
head is one module defining a :class:`Head` subclass decorated with ``@register_head``, in the
package or outside it (a plugin: :mod:`headpose.registry`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from headpose.errors import HeadposeError
from headpose.registry import Registry

HEADS: Registry[type[Head]] = Registry("head")


def register_head(cls: type[Head]) -> type[Head]:
    """Class decorator: make ``cls`` the head named ``cls.name`` in params.yaml and checkpoints."""
    return HEADS.register(cls)


class Head(ABC):
    """The interface every head implements (instances are immutable values)."""

    name: ClassVar[str]  # the params.yaml ``head`` value and the checkpoint meta's ``head``
    # params.yaml keys this head alone reads, at the values that mean "not set" for other heads
    params_defaults: ClassVar[dict[str, Any]] = {}
    meta_keys: ClassVar[tuple[str, ...]] = ()  # checkpoint meta keys it needs beside ``head``
    # settings an evaluation may override (:meth:`with_options`): fields of a dataclass head
    options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def validate_params(cls, params: dict) -> None:
        """Check the values of the keys this head owns (raise a HeadposeError naming one)."""
        return None

    @classmethod
    @abstractmethod
    def from_params(cls, params: dict) -> Head:
        """The head that a validated params.yaml trains."""

    @classmethod
    @abstractmethod
    def from_meta(cls, meta: dict) -> Head:
        """The head a checkpoint's meta describes (its :attr:`meta_keys` are present)."""

    @classmethod
    def validate_meta(cls, meta: dict, state_dict: dict, source: str) -> None:
        """Check the meta against itself and the weights beyond the output layers' sizes (which
        every checkpoint read checks); ``source`` starts each message."""
        return None

    @abstractmethod
    def meta(self) -> dict:
        """What a checkpoint stores about the head (``head`` included)."""

    @abstractmethod
    def layer_sizes(self) -> dict[str, int]:
        """The network's output layers for this head: name -> output count."""

    @abstractmethod
    def angles_deg(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The (N, 3) yaw, pitch, roll degrees of the network's outputs (traceable for ONNX)."""

    @abstractmethod
    def loss(self, outputs: Sequence[torch.Tensor], angles_deg: torch.Tensor) -> torch.Tensor:
        """The training loss of the network's outputs against (N, 3) labels in degrees."""

    def label(self) -> str:
        """How reports name this head."""
        return f"{self.name} head"

    def with_options(self, **options: Any) -> Head:
        """This head with evaluation settings of :attr:`options` replaced."""
        unknown = [key for key in options if key not in self.options]
        if unknown:
            raise HeadposeError(f"{', '.join(unknown)} does not apply to a {self.name} head")
        return dataclasses.replace(self, **options) if options else self
