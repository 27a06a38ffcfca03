"""A PCM16 WAV file written as it grows, playable whenever its header was last patched.

The stdlib ``wave`` writer fixes the header's sizes only on close; a process killed mid-call
would leave a file whose header says it holds no audio. Here ``patch`` rewrites the two size
fields for everything written so far, so a crash loses at most what came after the last patch.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import IO

HEADER_BYTES = 44


def wav_header(channels: int, rate: int, data_bytes: int) -> bytes:
    """The canonical 44-byte RIFF/WAVE header for 16-bit PCM."""
    block = channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class GrowingWav:
    """Appends interleaved PCM16 frames to ``path``; ``patch`` makes what is there playable."""

    def __init__(self, path: Path, channels: int, rate: int) -> None:
        self.path = path
        self.channels = channels
        self.rate = rate
        self.data_bytes = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = path.open("wb")
        self._file.write(wav_header(channels, rate, 0))
        self._file.flush()

    def append(self, pcm: bytes) -> None:
        """Interleaved samples, whole sample frames only."""
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        self._file.write(pcm)
        self.data_bytes += len(pcm)

    def patch(self) -> None:
        """Write the current sizes into the header and hand the file to the OS."""
        if self._file is None:
            return
        self._file.seek(4)
        self._file.write(struct.pack("<I", 36 + self.data_bytes))
        self._file.seek(40)
        self._file.write(struct.pack("<I", self.data_bytes))
        self._file.seek(0, 2)
        self._file.flush()

    def close(self) -> None:
        if self._file is None:
            return
        self.patch()
        self._file.close()
        self._file = None

    @property
    def seconds(self) -> float:
        return self.data_bytes / (2 * self.channels * self.rate)
