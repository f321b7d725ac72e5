"""Zero-copy reading of a repeated string field whose values all have one width.

``AssignBatch`` receives up to 100,000 unit ids per message. Any protobuf runtime turns each
into a Python ``str`` on access, which costs more than bucketing them. When every id has the
same byte length and is ASCII (UUIDs, zero-padded customer numbers), the field's elements sit
in the serialized message at a fixed stride, ``[tag][length][bytes]``, so they can be read as
one ``(n, width)`` uint8 matrix straight from the buffer. Anything else (ids of several
lengths, non-ASCII bytes, elements split by other fields, non-minimal varints, a malformed
message) gives ``None`` and the caller parses the message the usual way, so the result is
always what the protobuf runtime would have read.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["split_fixed_width"]

_LENGTH_DELIMITED = 2


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it; IndexError/ValueError when cut."""
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _skip(buf: bytes, pos: int, wire_type: int) -> int:
    """The position after a field's value of ``wire_type`` starting at ``pos``."""
    if wire_type == 0:
        return _varint(buf, pos)[1]
    if wire_type == 1:
        end = pos + 8
    elif wire_type == _LENGTH_DELIMITED:
        size, pos = _varint(buf, pos)
        end = pos + size
    elif wire_type == 5:
        end = pos + 4
    else:  # groups (3, 4) are not used by Ensayo's messages
        raise ValueError(f"unsupported wire type {wire_type}")
    if end > len(buf):
        raise ValueError("field runs past the end")
    return end


def split_fixed_width(raw: bytes, field_number: int) -> tuple[NDArray[np.uint8], bytes] | None:
    """Field ``field_number``'s strings as rows of a matrix, and the message without them.

    The matrix is a read-only view of ``raw`` (no copy); the remaining bytes are the other
    fields, to be parsed normally, and the caller must find field ``field_number`` empty
    there: otherwise its elements were not all in one run of one width, and ``raw`` must be
    parsed whole. ``None`` unless the first run of the field's elements is non-empty, ASCII
    without NUL and of one width (the fields before it are read here, the ones after it are not).
    """
    tag = (field_number << 3) | _LENGTH_DELIMITED
    try:
        pos, size, start = 0, len(raw), -1
        while pos < size:  # the fields before the ids (a handful)
            key, after = _varint(raw, pos)
            if key == tag:
                start = pos
                break
            if key >> 3 == field_number:
                return None
            pos = _skip(raw, after, key & 7)
        if start < 0:
            return None
        width, _ = _varint(raw, _varint(raw, start)[1])
        header = _encode_varint(tag) + _encode_varint(width)
        if width == 0 or raw[start : start + len(header)] != header:
            return None
        stride = len(header) + width
        view = np.frombuffer(raw, dtype=np.uint8, offset=start)
        rows = view[: (view.size // stride) * stride].reshape(-1, stride)
        # Row r is an element exactly when rows 0..r-1 were (each starts where one ended),
        # so the elements are the leading rows whose header matches. Probing rows 1, 2, 4, ...
        # bounds the first mismatch, so ragged ids are given up on without scanning them all.
        probe = 1
        while probe < len(rows) and raw.startswith(header, start + probe * stride):
            probe *= 2
        scan = rows[: probe + 1, : len(header)]
        matches = np.all(scan == np.frombuffer(header, dtype=np.uint8), axis=1)
        count = int(matches.size if matches.all() else np.argmin(matches))
        end = start + count * stride
        ids = rows[:count, len(header) :]
        # The field going on in another width means parsing the whole message anyway; bytes
        # outside 1..127 are NUL or not ASCII.
        if raw.startswith(_encode_varint(tag), end) or int((ids - np.uint8(1)).max()) >= 0x7F:
            return None
        return ids, raw[:start] + raw[end:]
    except (IndexError, ValueError):
        return None
