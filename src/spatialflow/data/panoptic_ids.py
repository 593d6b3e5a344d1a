"""COCO-panoptic segment ids <-> PNG colours: ``id = R + 256 * G + 256**2 * B``; 0 is void.

``read_segment_ids`` is the one decoder of panoptic PNGs in the repository: validate-data, the training
reader (``coco_panoptic.read_panoptic_png``), evaluate / PQ, package-submission and the figures all read
PNG ids through it, so they accept and reject the same files with the same messages.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

import numpy as np
import pyspng

from spatialflow.errors import DataError
from spatialflow.utils.inputs import read_input_bytes

VOID_ID = 0


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours -> (H, W) int64 segment ids."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    rgb = rgb.astype(np.int64, copy=False)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) integer segment ids -> (H, W, 3) uint8 colours."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= 256**3:
        raise ValueError("segment ids must lie in [0, 256**3)")
    rgb = np.empty(ids.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = ids % 256
    rgb[..., 1] = (ids // 256) % 256
    rgb[..., 2] = ids // 65536
    return rgb


#: Largest panoptic PNG decoded, in pixels (8192 x 8192): its ids take 0.5 GB. A PNG of a few kilobytes can
#: declare 20000 x 20000 pixels (1.2 GB of colours, 3.2 GB of ids); its header is refused before decoding.
MAX_PNG_PIXELS = 2**26

#: ``size_check(path, (height, width))``: a DataError when the PNG header's size is not the expected one.
SizeCheck = Callable[[str | os.PathLike, tuple[int, int]], "DataError | None"]


def read_segment_ids(path: str | os.PathLike, size_check: SizeCheck | None = None) -> np.ndarray:
    """(H, W) intp segment ids of a COCO-panoptic PNG (``R + 256 G + 256**2 B``), decoded fast.

    ``read_panoptic_rgb`` then ``ids_from_rgb`` (the ids read from the packed bytes, no per-channel arithmetic).
    """
    return ids_from_rgb(read_panoptic_rgb(path, size_check))


def read_panoptic_rgb(path: str | os.PathLike, size_check: SizeCheck | None = None) -> np.ndarray:
    """(H, W, 3) uint8 colours of a COCO-panoptic PNG; DataError if missing, corrupt or not 8-bit RGB(A).

    Before decoding, the header's size is checked against ``MAX_PNG_PIXELS`` and, with ``size_check``,
    against the size the caller expects (the JSON's height x width of the image), so a PNG that would
    decode to gigabytes is refused from its first 24 bytes. Decoding is libspng through pyspng (about 1.8x
    faster than Pillow's libpng on panoptic PNGs; decoding is most of PQ's time), straight to packed RGB
    (an alpha channel is dropped). PQ counts pixels on these colours directly; every other reader wants
    ``read_segment_ids``.
    """
    encoded = read_input_bytes(path, "panoptic PNG")
    size = check_png_header(encoded, path)
    if size_check is not None and (mismatch := size_check(path, size)) is not None:
        raise mismatch
    try:
        pixels = pyspng.load(encoded, format="RGB")
    except Exception as exc:  # libspng reports corrupt / truncated files as RuntimeError or ValueError
        raise DataError(path, f"cannot read PNG ({exc})") from None
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise DataError(path, f"panoptic PNG must be 8-bit RGB, got shape {pixels.shape} of {pixels.dtype}")
    return pixels


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}


def check_png_header(encoded: bytes, path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) from the header; DataError unless ``encoded`` starts like an 8-bit RGB / RGBA PNG of at
    most ``MAX_PNG_PIXELS`` pixels (signature + IHDR, nothing decoded).

    The one test every reader of panoptic PNGs (validate-data, evaluate, package-submission, the training
    reader) applies, so all of them accept and reject the same files with the same message.
    """
    if not encoded.startswith(_PNG_SIGNATURE):
        kind = " (it is a JPEG)" if encoded.startswith(b"\xff\xd8\xff") else ""
        raise DataError(path, f"cannot read PNG: not a PNG file{kind}; expected an 8-bit RGB panoptic PNG")
    if len(encoded) < 26 or encoded[12:16] != b"IHDR":
        raise DataError(path, "cannot read PNG: truncated or corrupt header")
    depth, colour = encoded[24], encoded[25]
    if depth != 8 or colour not in (2, 6):
        got = f"{depth}-bit {_PNG_COLOUR_TYPES.get(colour, f'colour type {colour}')}"
        raise DataError(path, f"panoptic PNG must be 8-bit RGB (or RGBA), got {got}")
    width, height = struct.unpack(">II", encoded[16:24])
    if width * height > MAX_PNG_PIXELS:
        raise DataError(path, f"PNG header says {height}x{width} (HxW) pixels, more than the {MAX_PNG_PIXELS:,} "
                              "a panoptic PNG may have (refused before decoding)")
    return height, width


def ids_from_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours -> (H, W) intp ids, reading each pixel's 3 bytes as one little-endian word.

    Same ids as ``rgb2id``, without a copy of the pixels or per-channel arithmetic.
    """
    height, width = pixels.shape[:2]
    raw = np.ascontiguousarray(pixels).reshape(-1)
    n = height * width
    ids = np.empty(n, dtype=np.intp)
    if n:
        # Word i spans bytes R_i G_i B_i R_(i+1) (stride 3): masking the top byte leaves R + 256 G + 65536 B.
        # The last pixel has no byte after it, so it is done by hand.
        words = np.ndarray((n - 1,), dtype="<u4", buffer=raw, strides=(3,))
        np.bitwise_and(words, np.uint32(0xFFFFFF), out=ids[:-1], casting="unsafe")
        red, green, blue = (int(v) for v in raw[-3:])
        ids[-1] = red + 256 * green + 65536 * blue
    return ids.reshape(height, width)
