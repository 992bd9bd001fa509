"""``temporal_blend``: damping a network's own frame-to-frame noise, per face track.

Geometry is smoothed by the tracker; what is left is the network (and above all the
enhancers) answering a little differently to near-identical frames. Per track, the
swapped face is taken in aligned space (the ``arcface_128`` template at a fixed crop
size, so a moving face stays put), blended with the previous frame's aligned result,
and pasted back through a feathered box mask. The weight falls where the face moves
or its expression changes: it is ``strength · exp(−change / CHANGE_SCALE)`` with
``change`` the mean absolute difference (levels) between this frame's and the previous
frame's aligned *target* crops, so a still face is steadied and a talking or turning
face follows without ghosting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from engine.align import warp_face
from engine.faces import Face
from engine.masks.box import box_mask
from engine.paste import paste_back

CROP_SIZE = 256
TEMPLATE = "arcface_128"
CHANGE_SCALE = 6.0  # levels of mean change at which the weight falls to 1/e of its strength
MASK_BLUR = 0.3


@dataclass
class TemporalBlend:
    """Per-track memory of the previous aligned target and result crops."""

    strength: float
    _previous: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def apply(
        self, original: np.ndarray, swapped: np.ndarray, faces: list[tuple[int, Face]]
    ) -> np.ndarray:
        """``swapped`` with each tracked face blended toward its previous frame's result."""
        if self.strength <= 0 or not faces:
            return swapped
        result = swapped
        seen = set()
        for track, face in faces:
            seen.add(track)
            target, matrix = warp_face(original, face.landmarks, TEMPLATE, CROP_SIZE)
            current, _ = warp_face(result, face.landmarks, TEMPLATE, CROP_SIZE)
            previous = self._previous.get(track)
            blended = current
            if previous is not None:
                change = float(cv2.absdiff(target, previous[0]).mean())
                weight = self.strength * float(np.exp(-change / CHANGE_SCALE))
                if weight > 1e-3:
                    blended = cv2.addWeighted(previous[1], weight, current, 1.0 - weight, 0.0)
                    mask = box_mask(CROP_SIZE, MASK_BLUR, 0.0)
                    result = paste_back(result, blended, matrix, mask)
            self._previous[track] = (target, blended)
        for track in list(self._previous):
            if track not in seen:
                del self._previous[track]  # a face that left: no stale memory when it returns
        return result
