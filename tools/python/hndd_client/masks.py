"""Raster concept masks of a version-2 dictionary (docs/1-dictionary.md ``/images/masks``).

A mask is an S×S grid of bits, stored row by row as ⌈S/8⌉ bytes: pixel (i, j) is bit 7 − (j mod 8)
of byte ⌊j/8⌋ of row i — numpy's ``packbits(…, axis=-1)`` with its default big bit order. The bits
past column S − 1 in a row's last byte are padding and must be 0. Bits may be set only where the
concept is present (``local_label = 1``); a present concept may have an empty mask.

The paper's dictionary at S = 112 holds 24,632 local images × 38 concepts: 1.5 GB of packed
bits (far less on disk, compressed), 11.7 GB as one byte a pixel. So masks are checked and read a
slice of images at a time (``CHECK_SLICE``), never unpacked all at once.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

CHECK_SLICE = 256  # images per slice when a whole file's masks are checked


class MaskError(ValueError):
    """Mask rows that break docs/1-dictionary.md; the message names the image and the concept."""


def packed_width(size: int) -> int:
    """Bytes per mask row: ⌈S/8⌉."""
    return (size + 7) // 8


def pack(masks) -> np.ndarray:
    """Boolean masks [..., S, S] as docs/1-dictionary.md packed rows [..., S, ⌈S/8⌉] uint8 (padding bits 0)."""
    return np.packbits(np.asarray(masks, dtype=bool), axis=-1)


def unpack(packed, size: int) -> np.ndarray:
    """Packed rows [..., S, ⌈S/8⌉] as boolean masks [..., S, S] (the padding bits dropped)."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1, count=size).astype(bool)


def padding_bits(size: int) -> int:
    """The bits of a row's last byte that lie past column S − 1 (0 when S is a multiple of 8)."""
    used = size % 8
    return 0 if used == 0 else (1 << (8 - used)) - 1


def _image(first_index: int, n: int, sources: Optional[Sequence[str]]) -> str:
    name = f"image {first_index + n}"
    return f"{name} ({sources[n]})" if sources is not None and sources[n] else name


def check_mask_rows(concepts: Sequence[str], mask_size: int, local_label, masks, first_index: int = 0,
                    source: str = "dictionary", sources: Optional[Sequence[str]] = None) -> int:
    """Checks packed mask rows [n, L, S, ⌈S/8⌉] against their labels [n, L]; returns how many
    present concepts have an empty mask. Raises MaskError naming the image and the concept."""
    def fail(message):
        raise MaskError(f"{source}: {message}")

    masks = np.asarray(masks)
    local_label = np.asarray(local_label)
    expected = (len(local_label), len(concepts), mask_size, packed_width(mask_size))
    if masks.shape != expected:
        fail(f"/images/masks has shape {masks.shape}, expected {expected}")
    if masks.dtype != np.uint8:
        fail(f"/images/masks must be uint8 (bit-packed rows), got {masks.dtype}")
    padding = padding_bits(mask_size)
    if padding:
        stray_padding = (masks[..., -1] & padding) != 0
        if stray_padding.any():
            n, c, row = np.argwhere(stray_padding)[0]
            fail(f"/images/masks[{first_index + n}, {c}] ({_image(first_index, n, sources)}, concept "
                 f"{concepts[c]!r}): row {row} has padding bits set past column {mask_size - 1}")
    drawn = masks.reshape(masks.shape[0], masks.shape[1], -1).any(axis=2)
    stray = drawn & (local_label != 1)
    if stray.any():
        n, c = np.argwhere(stray)[0]
        fail(f"/images/masks[{first_index + n}, {c}] ({_image(first_index, n, sources)}, concept {concepts[c]!r}) "
             f"has bits set but local_label = {local_label[n, c]}: a mask may be drawn only where the concept "
             f"is present (1)")
    return int(((local_label == 1) & ~drawn).sum())
