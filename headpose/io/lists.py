"""Sample lists: the text files that name a dataset's samples, one entry per line.

The filelists and augment stages write them (``data/filelists/train.txt`` ...); every reader of
a list calls :func:`read_list`. An entry is a dataset format's name for one sample
(:mod:`headpose.datasets.registry`): a path without extension for ``.jpg`` + ``.mat`` pairs,
``.../NN/frame_XXXXX`` for BIWI. :func:`listable_name` says whether a name can be a line.
"""

from __future__ import annotations

import os
from pathlib import Path

from headpose.errors import HeadposeError
from headpose.io.text import MIB, read_text_file

# Characters that end a line for str.splitlines (and the tab of the .tsv tables): a sample
# name holding one cannot be written to a list.
LINE_BREAKING_CHARACTERS = "\n\r\t\v\f\x1c\x1d\x1e\x85\u2028\u2029"
# Files of a sample, by suffix: an entry naming one was meant as the sample without it.
SAMPLE_FILE_SUFFIXES = (".jpg", ".mat")
# The largest list (and angles.tsv) read: the full 300W_LP's 122,450 entries take about 12 MB.
LIST_MAX_BYTES = 256 * MIB


def listable_name(name: str) -> bool:
    """Whether a sample name can be a line of a list (no line break, no tab)."""
    return not any(character in LINE_BREAKING_CHARACTERS for character in name)


def read_list(path: str | os.PathLike, allow_empty: bool = False) -> list[str]:
    """Read a sample list: one sample path without extension per line; blank lines are ignored.

    Raises a HeadposeError naming the file when it is missing, unreadable, no regular UTF-8
    file of at most :data:`LIST_MAX_BYTES` (:func:`headpose.io.text.read_text_file`) or (unless
    ``allow_empty``) holds no samples.
    """
    file = Path(path)
    hint = " (run the filelists/augment stages first)"
    text = read_text_file(file, LIST_MAX_BYTES, "sample list", missing_hint=hint)
    stems = [line.strip() for line in text.splitlines() if line.strip()]
    for number, stem in enumerate(stems, 1):
        if stem.lower().endswith(SAMPLE_FILE_SUFFIXES):
            raise HeadposeError(
                f"sample list {file} line {number}: {stem!r} names a file; a list names each "
                f"sample without its extension ({stem[:-4]!r} for its "
                f"{' and '.join(SAMPLE_FILE_SUFFIXES)})"
            )
    if not stems and not allow_empty:
        raise HeadposeError(f"sample list {file} is empty: expected one sample path per line")
    return stems
