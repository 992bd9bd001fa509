"""Scene cuts: where a video jumps to another shot, so tracks must restart.

Each frame is reduced to a small thumbnail and its hue–saturation and brightness
histograms; a cut is a frame whose histograms differ from the previous frame's by more
than ``threshold`` (Bhattacharyya distance, 0 = same colours, 1 = disjoint). A pan or
a moving face shifts pixels but keeps the colour distribution, so it is not a cut;
a jump to another image changes the distribution. A change of light (a flash, a gain
step) shifts the histograms too, but keeps the picture's layout: a frame whose grey
thumbnail still correlates with the previous one (``SAME_LAYOUT``) is not a cut.
"""

from __future__ import annotations

import cv2
import numpy as np

THUMBNAIL = (128, 72)  # width, height: enough pixels for stable histograms
_HS_BINS = (16, 4)
_V_BINS = 16
# Correlation of consecutive grey thumbnails (brightness and contrast do not change it)
# at or above which the frames are the same shot whatever the histograms say.
SAME_LAYOUT = 0.8
# Pans across a photo measure ≤ 0.06, a jump to another image ~0.9, a jump to another
# part of the same photo 0.2–0.5: 0.3 catches most of those without touching pans.
DEFAULT_THRESHOLD = 0.3


class SceneCutDetector:
    """``is_cut(frame)``: whether ``frame`` starts a new shot (the first frame is not)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.threshold = float(threshold)
        self._previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def reset(self) -> None:
        self._previous = None

    def distance(self, frame: np.ndarray) -> float:
        """The histogram distance of ``frame`` to the previous frame (0 for the first);
        ``frame`` becomes the previous one."""
        current = _signature(frame)
        previous, self._previous = self._previous, current
        if previous is None:
            return 0.0
        if _correlation(previous[0], current[0]) >= SAME_LAYOUT:
            return 0.0
        hs = cv2.compareHist(previous[1], current[1], cv2.HISTCMP_BHATTACHARYYA)
        v = cv2.compareHist(previous[2], current[2], cv2.HISTCMP_BHATTACHARYYA)
        return float(max(hs, v))

    def is_cut(self, frame: np.ndarray) -> bool:
        return self.distance(frame) > self.threshold


def _signature(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey thumbnail, hue–saturation histogram and brightness histogram."""
    image = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    small = cv2.resize(image[:, :, :3], THUMBNAIL, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hs = cv2.calcHist([hsv], [0, 1], None, list(_HS_BINS), [0, 180, 0, 256])
    v = cv2.calcHist([hsv], [2], None, [_V_BINS], [0, 256])
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return grey, hs, v


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two thumbnails; two flat ones count as the same (1), a
    flat and a textured one as unrelated (0)."""
    a = a - a.mean()
    b = b - b.mean()
    na, nb = float(np.sqrt((a * a).sum())), float(np.sqrt((b * b).sum()))
    flat = 1e-3 * a.size
    if na < flat or nb < flat:
        return 1.0 if na < flat and nb < flat else 0.0
    return float((a * b).sum() / (na * nb))
