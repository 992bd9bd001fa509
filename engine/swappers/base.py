"""What every swapper receives and promises: the source identity and the ``Swapper`` protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engine.faces import Face
from engine.options import SwapOptions


@dataclass
class SourceIdentity:
    """The face to paste, prepared once per job.

    ``image`` is the best source image (BGR) and ``face`` its chosen face, with
    landmarks in that image: the classic swapper copies pixels from them.
    ``embedding`` is the raw 512-d recognizer vector, the element-wise mean of
    the raw embeddings when several source images were given (FaceFusion's
    rule); models such as inswapper turn it into their latent.
    ``sources`` holds every source image with its chosen face, in the order the
    images were given; image-input swappers (blendswap, uniface) use the first, as
    FaceFusion does. Empty: ``(image, face)`` is the only source.
    """

    image: np.ndarray
    face: Face
    embedding: np.ndarray | None = field(default=None, repr=False)
    sources: tuple[tuple[np.ndarray, Face], ...] = field(default=(), repr=False)

    def first_source(self) -> tuple[np.ndarray, Face]:
        """The first source image and its face (FaceFusion's choice for image swappers)."""
        return self.sources[0] if self.sources else (self.image, self.face)


class Swapper(Protocol):
    """Replaces one target face of a frame with the source identity."""

    name: str
    needs_embedding: bool

    def swap(
        self, frame: np.ndarray, target: Face, source: SourceIdentity, options: SwapOptions
    ) -> np.ndarray:
        """A new frame with ``target`` swapped; ``frame`` itself is left untouched."""
        ...
