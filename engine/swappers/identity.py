"""The identity a neural swapper is fed: embedding rules, the identity weight, source crops.

Every embedding swapper starts from the recognizer's raw 512-d ArcFace w600k vector
(MODELS-2.md §13) and turns it into its ``source`` tensor its own way (§5.2): the
inswapper ``emap`` projection, plain L2 normalisation, or a converter model (§5.3).
Image swappers (blendswap, uniface) are fed an aligned crop of the source face instead.

Identity weight (FaceFusion's ``--face-swapper-weight``, §5.4): the weight in [0, 1] maps
linearly to w' in [+0.35, −0.35] (0.5 → 0, no change) and the source identity is
mixed with the target face's: ``e = n(src)·(1 − w') + n(tgt)·w'`` (n = L2 normalise),
rescaled to the length of the raw source embedding. We mix in the recognizer's own
space, before the projection or converter, and feed the mix through the family's rule.
FaceFusion instead mixes *after* conversion, adding a plain w600k target embedding to a
vector that already lives in the emap/converter space — two different spaces, so its
"toward the target" direction is not the target's identity in the model's space. Mixing
first keeps both identities in one space and lets the model's own mapping do the rest.
"""

from __future__ import annotations

import cv2
import numpy as np

from engine.align import warp_face
from engine.errors import InvalidInput, InvalidOptions
from engine.faces import Face

EMBEDDING_SIZE = 512
WEIGHT_SPAN = 0.35  # w' at weight 0 (toward the target); −w' at weight 1
NEUTRAL_WEIGHT = 0.5


def raw_embedding(embedding: np.ndarray, what: str = "the source embedding") -> np.ndarray:
    """A (512,) float64 copy of a recognizer vector, or ``InvalidInput`` saying what is wrong."""
    raw = np.asarray(embedding, dtype=np.float64).reshape(-1)
    if raw.shape != (EMBEDDING_SIZE,) or not np.isfinite(raw).all():
        raise InvalidInput(
            f"{what} must be {EMBEDDING_SIZE} finite numbers, got shape {np.shape(embedding)}"
        )
    if not np.any(raw):
        raise InvalidInput(f"{what} is all zeros")
    return raw


def l2_normalise(vector: np.ndarray) -> np.ndarray:
    """``vector / ‖vector‖`` over its last axis (float64)."""
    vector = np.asarray(vector, dtype=np.float64)
    return vector / (np.linalg.norm(vector, axis=-1, keepdims=True) + 1e-12)


def balance(weight: float) -> float:
    """w' for an identity weight: 0 → +0.35 (toward the target), 0.5 → 0, 1 → −0.35."""
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise InvalidOptions(f"the identity weight must be a number, got {weight!r}") from None
    if not 0.0 <= value <= 1.0:
        raise InvalidOptions(f"the identity weight must be between 0 and 1, got {value}")
    return float(np.interp(value, (0.0, 1.0), (WEIGHT_SPAN, -WEIGHT_SPAN)))


def mix_identity(
    source_raw: np.ndarray, target_raw: np.ndarray | None, weight: float
) -> np.ndarray:
    """The raw (512,) float64 embedding to feed, after the identity weight (module docstring).

    At the neutral weight the source embedding is returned unchanged and the target is
    not needed; otherwise the target face's raw embedding is required.
    """
    w = balance(weight)
    source = raw_embedding(source_raw)
    if w == 0.0:
        return source
    if target_raw is None:
        raise InvalidInput(
            f"an identity weight other than {NEUTRAL_WEIGHT} needs the target face's embedding; "
            "run the recognizer on the target faces"
        )
    target = raw_embedding(target_raw, "the target embedding")
    mixed = l2_normalise(source) * (1.0 - w) + l2_normalise(target) * w
    length = np.linalg.norm(mixed)
    if length == 0:  # cannot happen for |w'| <= 0.35; a guard against a division by zero
        raise InvalidInput("the source and target identities cancel out")
    return mixed * (np.linalg.norm(source) / length)


def emap_latent(raw: np.ndarray, emap: np.ndarray) -> np.ndarray:
    """inswapper's (1, 512) latent: ``(raw/‖raw‖)·emap``, renormalised (insightface's rule).

    FaceFusion skips the final renormalisation; the two differ only in the latent's
    length, and insightface (the model's authors) feed a unit latent.
    """
    latent = l2_normalise(raw_embedding(raw)).reshape(1, -1) @ emap
    return l2_normalise(latent)


def source_crop_input(image: np.ndarray, face: Face, template: str, size: int) -> np.ndarray:
    """An image swapper's (1, 3, size, size) source: the aligned face, RGB, /255, no mean/std."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise InvalidInput("the source image must be a BGR uint8 image array")
    points = np.asarray(face.landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise InvalidInput(f"the source face needs five finite landmarks, got {points.shape}")
    crop, _ = warp_face(image, points, template, size)
    rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
