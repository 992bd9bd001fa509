"""Invisible watermark in the luminance of an image or video frame (DWT + SVD, blind).

Scheme, chosen for robustness to JPEG (quality 80), to a 0.5x resize that the
verifier scales back, and to one H.264 encode (intra frames), at > 40 dB PSNR:

1. Luminance Y (BT.601 weights) of the BGR frame, cropped to whole 8x16-pixel cells.
2. One level of the Haar DWT; the LL band (half size) is cut into 4x4 blocks, i.e.
   one block per 8x8 pixels. LL is computed with numpy slicing, which gives exactly
   ``pywt.dwt2(y, "haar")[0]`` (a test checks that) at a tenth of the cost.
3. The largest singular value s of each block (power iteration, batched). A DCT
   before the SVD, as in the classic DWT-DCT-SVD recipe, is left out on purpose:
   the 2-D DCT is orthogonal, so it does not change singular values, and changing
   s in the DCT domain is the same change in the LL domain.
4. Horizontally adjacent blocks form pairs; each pair carries one bit by
   quantisation index modulation of the *difference* s_left - s_right with step
   ``QUANT_STEP``. The difference cancels a uniform brightness shift, which the
   BGR -> YUV -> BGR round trip of a video encoder introduces (about 2 grey
   levels, enough to flip an absolute quantiser).
5. The 80 coded bits are the 48-bit payload plus its CRC-32, XOR-ed with a fixed
   pseudo-random mask; pairs are dealt to bits by a fixed permutation, so every
   bit is repeated all over the frame (hundreds of times at 720p).

Reading averages a soft value per pair (+1 = certainly 1, -1 = certainly 0) over
every pair of each bit, takes signs, removes the mask and checks the CRC. An
unmarked image fails the CRC (chance 2^-32) and reads as None, never as a random
payload. Soft values of several video frames can be averaged before deciding.

The change is spread over the luminance only: the same ΔY is added to B, G and R.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from engine.errors import InvalidInput, InvalidOptions
from engine.provenance.payload import PAYLOAD_BYTES

QUANT_STEP = 48.0
BLOCK = 4  # block side in the LL band; one block covers 8x8 pixels
CELL_H, CELL_W = 2 * BLOCK, 4 * BLOCK  # a pair of blocks covers 8x16 pixels
PAYLOAD_BITS = PAYLOAD_BYTES * 8
CODED_BITS = PAYLOAD_BITS + 32
MIN_CONFIDENCE = 0.1
_POWER_ITERATIONS = 6
_LUMA = np.array([0.114, 0.587, 0.299], dtype=np.float32)  # B, G, R
_MASK = np.random.default_rng(0x5EED_F05).integers(0, 2, CODED_BITS).astype(np.uint8)
_ASSIGNMENT_SEED = 0xF5_1D10


@dataclass(frozen=True)
class WatermarkReading:
    """A payload read from pixels; ``confidence`` is the mean |soft bit| (0..1)."""

    payload: bytes
    confidence: float


def embed(image_bgr: np.ndarray, payload: bytes | int) -> np.ndarray:
    """A copy of ``image_bgr`` carrying ``payload`` (6 bytes, or an int below 2**48)."""
    image = _check_image(image_bgr)
    bits = _coded_bits(_payload_bytes(payload))
    layout = _layout(image.shape)
    luma = _luma(image[: layout.height, : layout.width])
    blocks = _blocks(_haar_ll(luma), layout)
    u, s, v = _top_singular(blocks)
    difference = s[0::2] - s[1::2]
    wanted = bits[_assignment(layout.pairs)]
    target = (np.floor(difference / QUANT_STEP) + np.where(wanted == 1, 0.75, 0.25)) * QUANT_STEP
    delta = (target - difference).astype(np.float32)
    ds = np.empty_like(s)
    ds[0::2], ds[1::2] = delta / 2, -delta / 2
    d_blocks = ds[:, None, None] * u[:, :, None] * v[:, None, :]
    d_ll = d_blocks.reshape(layout.rows, layout.cols, BLOCK, BLOCK).transpose(0, 2, 1, 3)
    d_ll = d_ll.reshape(layout.rows * BLOCK, layout.cols * BLOCK)
    # Inverse Haar of an LL-only change: each pixel of a 2x2 cell moves by ΔLL / 2.
    d_luma = np.repeat(np.repeat(d_ll * 0.5, 2, axis=0), 2, axis=1)
    out = image.copy()
    region = out[: layout.height, : layout.width]
    region[:] = cv2.add(region, cv2.merge([d_luma, d_luma, d_luma]), dtype=cv2.CV_8U)
    return out


def soft_bits(
    image_bgr: np.ndarray, original_size: tuple[int, int] | None = None
) -> np.ndarray | None:
    """Per-bit soft values in [-1, 1] (average them over video frames), or None if too small.

    ``original_size`` is (width, height) as recorded when the output was made; an
    image of another size (a resized copy) is scaled back to it first.
    """
    image = _check_image(image_bgr)
    if original_size is not None:
        width, height = int(original_size[0]), int(original_size[1])
        if width <= 0 or height <= 0:
            raise InvalidOptions(f"original size {original_size} is not a size")
        if (image.shape[1], image.shape[0]) != (width, height):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    try:
        layout = _layout(image.shape)
    except InvalidInput:
        return None
    blocks = _blocks(_haar_ll(_luma(image[: layout.height, : layout.width])), layout)
    _, s, _ = _top_singular(blocks)
    difference = s[0::2] - s[1::2]
    soft = -np.sin(2 * np.pi * np.mod(difference / QUANT_STEP, 1.0))
    assignment = _assignment(layout.pairs)
    sums = np.bincount(assignment, weights=soft, minlength=CODED_BITS)
    counts = np.bincount(assignment, minlength=CODED_BITS)
    return sums / np.maximum(counts, 1)


def decode_soft(soft: np.ndarray) -> WatermarkReading | None:
    """The payload behind (averaged) soft bits, or None when there is no valid watermark."""
    soft = np.asarray(soft, dtype=np.float64)
    if soft.shape != (CODED_BITS,):
        raise InvalidOptions(f"expected {CODED_BITS} soft bits, got shape {soft.shape}")
    confidence = float(np.mean(np.abs(soft)))
    bits = (soft > 0).astype(np.uint8) ^ _MASK
    data = np.packbits(bits).tobytes()
    payload, check = data[:PAYLOAD_BYTES], data[PAYLOAD_BYTES:]
    if zlib.crc32(payload).to_bytes(4, "big") != check or confidence < MIN_CONFIDENCE:
        return None
    return WatermarkReading(payload=payload, confidence=round(confidence, 4))


def read(
    image_bgr: np.ndarray, original_size: tuple[int, int] | None = None
) -> WatermarkReading | None:
    """The watermark of one image with its confidence, or None."""
    soft = soft_bits(image_bgr, original_size)
    return None if soft is None else decode_soft(soft)


def extract(image_bgr: np.ndarray, original_size: tuple[int, int] | None = None) -> bytes | None:
    """The payload of one image, or None when it carries no (readable) watermark."""
    reading = read(image_bgr, original_size)
    return None if reading is None else reading.payload


def min_size() -> tuple[int, int]:
    """A (width, height) that is just large enough to carry one copy of every bit."""
    return (CELL_W * 10, CELL_H * 8)


def psnr(original: np.ndarray, marked: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images (inf when equal)."""
    error = np.mean((original.astype(np.float64) - marked.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255.0**2 / error))


@dataclass(frozen=True)
class _Layout:
    rows: int  # blocks per column
    cols: int  # blocks per row (even)

    @property
    def height(self) -> int:
        return self.rows * 2 * BLOCK

    @property
    def width(self) -> int:
        return self.cols * 2 * BLOCK

    @property
    def pairs(self) -> int:
        return self.rows * self.cols // 2


def _layout(shape: tuple[int, ...]) -> _Layout:
    rows = shape[0] // CELL_H
    cols = (shape[1] // CELL_W) * 2
    layout = _Layout(rows, cols)
    if layout.pairs < CODED_BITS:
        width, height = min_size()
        raise InvalidInput(
            f"a {shape[1]}×{shape[0]} image is too small to carry the watermark "
            f"(it needs about {width}×{height} pixels)"
        )
    return layout


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InvalidInput("the watermark works on uint8 BGR images")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInput(f"expected a BGR image of shape (h, w, 3), got {image.shape}")
    return image


def _payload_bytes(payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        if not 0 <= payload < 1 << PAYLOAD_BITS:
            raise InvalidOptions(f"a watermark payload must fit in {PAYLOAD_BITS} bits")
        return payload.to_bytes(PAYLOAD_BYTES, "big")
    payload = bytes(payload)
    if len(payload) != PAYLOAD_BYTES:
        raise InvalidOptions(f"a watermark payload is {PAYLOAD_BYTES} bytes, not {len(payload)}")
    return payload


def _coded_bits(payload: bytes) -> np.ndarray:
    frame = payload + zlib.crc32(payload).to_bytes(4, "big")
    return np.unpackbits(np.frombuffer(frame, dtype=np.uint8)) ^ _MASK


def _assignment(pairs: int) -> np.ndarray:
    """Which coded bit each pair carries: every bit about equally often, spread out."""
    rng = np.random.default_rng(_ASSIGNMENT_SEED)
    return rng.permutation(np.arange(pairs) % CODED_BITS)


def _luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ _LUMA


def _haar_ll(luma: np.ndarray) -> np.ndarray:
    """The LL band of a one-level orthonormal Haar DWT (even-sized input)."""
    return (luma[0::2, 0::2] + luma[1::2, 0::2] + luma[0::2, 1::2] + luma[1::2, 1::2]) * 0.5


def _blocks(ll: np.ndarray, layout: _Layout) -> np.ndarray:
    """Row-major 4x4 blocks of the LL band, shape (n, 4, 4); neighbours 2k, 2k+1 pair up."""
    ll = ll[: layout.rows * BLOCK, : layout.cols * BLOCK]
    return np.ascontiguousarray(
        ll.reshape(layout.rows, BLOCK, layout.cols, BLOCK)
        .transpose(0, 2, 1, 3)
        .reshape(-1, BLOCK, BLOCK)
    )


def _top_singular(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest singular value and its vectors of each block, by batched power iteration.

    Natural 8x8-pixel blocks are dominated by their mean, so the top singular value
    is well separated and a few iterations from the all-ones vector converge.
    """
    gram = np.matmul(blocks.transpose(0, 2, 1), blocks)
    v = np.full((blocks.shape[0], BLOCK, 1), 0.5, dtype=np.float32)
    for _ in range(_POWER_ITERATIONS):
        v = np.matmul(gram, v)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    bv = np.matmul(blocks, v)[:, :, 0]
    s = np.linalg.norm(bv, axis=1)
    u = bv / np.maximum(s[:, None], 1e-12)
    return u.astype(np.float32), s.astype(np.float32), v[:, :, 0].astype(np.float32)
