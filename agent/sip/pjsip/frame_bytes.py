"""Fast, checked access to the bytes of a PJSUA2 ``MediaFrame``.

``MediaFrame.buf`` is a SWIG-wrapped ``std::vector<unsigned char>``. Converting it with
``bytes(frame.buf)`` walks the vector one element at a time through SWIG (about 150 µs for a
320-byte frame, on the media clock thread, per call, every 20 ms). The vector's storage is
contiguous, so we read its data pointer and copy with one ``memmove`` (a few µs).

The layout assumption (the first word of a libstdc++/libc++ vector is the pointer to its
elements) is verified once against the slow path by :func:`fast_access_works`; when the check
fails the slow, always-correct path is used instead.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pjsua2 as pj

_PTR = ctypes.c_void_p


def _data_pointer(vector: Any) -> int:
    # int(swig_object.this) is the address of the C++ std::vector object.
    address = int(vector.this)
    return _PTR.from_address(address).value or 0


def read_fast(frame: pj.MediaFrame) -> bytes:
    """The frame's payload (``frame.size`` bytes, capped at the vector's length)."""
    vector = frame.buf
    size = min(frame.size, vector.size())
    if size <= 0:
        return b""
    return ctypes.string_at(_data_pointer(vector), size)


def write_fast(frame: pj.MediaFrame, payload: bytes) -> None:
    """Fill ``frame`` with ``payload`` as an audio frame."""
    vector = frame.buf
    size = len(payload)
    vector.resize(size)
    if size:
        ctypes.memmove(_data_pointer(vector), payload, size)
    frame.size = size
    frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO


def read_slow(frame: pj.MediaFrame) -> bytes:
    return bytes(frame.buf)[: frame.size]


def write_slow(frame: pj.MediaFrame, payload: bytes) -> None:
    vector = pj.ByteVector()
    for byte in payload:
        vector.append(byte)
    frame.buf = vector
    frame.size = len(payload)
    frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO


def fast_access_works() -> bool:
    """True when the pointer-based path reads and writes exactly what SWIG sees."""
    probe = bytes(range(1, 256)) + bytes(range(65))
    frame = pj.MediaFrame()
    try:
        write_fast(frame, probe)
        if bytes(frame.buf) != probe:
            return False
        frame2 = pj.MediaFrame()
        write_slow(frame2, probe[::-1])
        return read_fast(frame2) == probe[::-1]
    except (ValueError, TypeError, OSError):
        return False


if fast_access_works():
    read_frame = read_fast
    write_frame = write_fast
    FAST_FRAME_ACCESS = True
else:  # pragma: no cover - depends on the C++ runtime of the wheel
    read_frame = read_slow
    write_frame = write_slow
    FAST_FRAME_ACCESS = False
