"""The built-in crop protocols as objects, as the library takes them (a name becomes the object
once, where it enters: params.yaml, a checkpoint, a command-line option)."""

from __future__ import annotations

from headpose.crops.protocols import get_protocol

HOPENET = get_protocol("hopenet")
VISIBLE = get_protocol("visible")
