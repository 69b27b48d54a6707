"""Hostile files made by hand, small on disk: images whose header claims a huge size, a ``.npy`` whose header
claims a huge shape. Shared by the bad-input tests and ``scripts/fuzz_inputs.py``."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(path: Path, width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2) -> Path:
    """A PNG whose header says ``width x height`` (RGB 8-bit by default; ``bit_depth=16, colour_type=0`` is a
    16-bit grey depth map) with one compressed row of data: a few hundred bytes that ask for gigabytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    row = b"\x00" + b"\x00" * min(width * 6, 1 << 16)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(row, 9)) + _chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def npy_claiming(path: Path, shape: tuple[int, ...], dtype: str = "<f4", data: bytes = b"\x00" * 64) -> Path:
    """A ``.npy`` (format 1.0) whose header claims ``shape`` of ``dtype``, followed by ``data``."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode("latin1")
    pad = 64 - (10 + len(header) + 1) % 64
    header += b" " * pad + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data)
    return path
