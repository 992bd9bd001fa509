"""Compatibility shim: the face enhancers now live in ``engine.enhancers``.

``GfpganEnhancer(sessions, path)`` is the old entry point (GFPGAN 1.4 only, ``blend``
passed positionally); it wraps ``FaceEnhancer`` with the ``gfpgan_1.4`` catalogue entry
until every caller builds ``FaceEnhancer`` from a catalogue entry itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.enhancers.face import DEFAULT_FIDELITY, FaceEnhancer
from engine.faces import Face
from engine.models.registry import REGISTRY
from engine.runtime import SessionCache

__all__ = ["FaceEnhancer", "GfpganEnhancer"]


class GfpganEnhancer:
    """The ``gfpgan_1.4`` entry run by ``FaceEnhancer``, with the old call signature."""

    def __init__(
        self, sessions: SessionCache, model_path: str | Path, weight: float = DEFAULT_FIDELITY
    ) -> None:
        self.enhancer = FaceEnhancer(sessions, REGISTRY["gfpgan_1.4"], model_path)
        self.name = self.enhancer.name
        self.size = self.enhancer.size
        self.has_weight = self.enhancer.has_fidelity
        self.weight = weight

    def enhance(
        self, frame: np.ndarray, face: Face, blend: float, mask_blur: float = 0.3
    ) -> np.ndarray:
        return self.enhancer.enhance(
            frame, face, blend=blend, fidelity=self.weight, mask_blur=mask_blur
        )

    def restore(self, crop: np.ndarray) -> np.ndarray:
        return self.enhancer.restore(crop, fidelity=self.weight)
