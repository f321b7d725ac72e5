"""Unit ids of one width as a byte matrix: hashed without becoming Python strings.

``ensayo.protowire.split_fixed_width`` reads them from an ``AssignBatch`` message; the
vectorised hash (``ensayo.hashing.hash_v2_many``) walks the matrix's columns directly. Code
that needs the ids themselves (sticky keys, exposure events, forced assignments) gets
``str`` values on demand: this is a ``Sequence[str]`` like a list of ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np
from numpy.typing import NDArray

__all__ = ["FixedWidthIds", "as_list"]


class FixedWidthIds(Sequence[str]):
    """``n`` ASCII ids of ``width`` bytes each, rows of an ``(n, width)`` uint8 matrix."""

    __slots__ = ("_strings", "matrix")

    def __init__(self, matrix: NDArray[np.uint8]) -> None:
        if matrix.ndim != 2 or matrix.dtype != np.uint8:
            raise ValueError("ids must be an (n, width) uint8 matrix")
        self.matrix = matrix
        self._strings: list[str] | None = None

    @property
    def width(self) -> int:
        """Every id's length (in bytes, which for ASCII is also characters)."""
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> FixedWidthIds: ...

    def __getitem__(self, index: int | slice) -> str | FixedWidthIds:
        if isinstance(index, slice):
            return FixedWidthIds(self.matrix[index])
        row: bytes = self.matrix[index].tobytes()
        return row.decode("ascii")

    def __iter__(self) -> Iterator[str]:
        return iter(self.strings())

    def strings(self) -> list[str]:
        """The ids as Python strings (decoded once, then kept)."""
        if self._strings is None:
            fixed = np.ascontiguousarray(self.matrix).view(f"S{max(self.width, 1)}").ravel()
            self._strings = fixed.astype(f"U{max(self.width, 1)}").tolist()
        return self._strings


def as_list(ids: Sequence[str]) -> list[str]:
    """``ids`` as a list of strings, without copying a list or re-decoding fixed-width ids."""
    if isinstance(ids, FixedWidthIds):
        return ids.strings()
    return ids if isinstance(ids, list) else list(ids)
