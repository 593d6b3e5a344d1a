"""PNG files Pillow will not write: a 16-bit RGB image, and a header whose pixel data cannot decode."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_16bit_rgb(path: Path, height: int = 3, width: int = 4) -> None:
    """A valid 16-bit RGB PNG (Pillow cannot write one)."""
    rows = b"".join(b"\x00" + bytes(width * 6) for _ in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def png_header_only(path: Path, height: int, width: int) -> None:
    """An 8-bit RGB PNG header declaring height x width, with pixel data that cannot decode: a reader that
    decodes before it checks the size says 'cannot read PNG' (or runs out of memory) instead."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + _png_chunk(b"IDAT", b"not deflate data") + _png_chunk(b"IEND", b""))
