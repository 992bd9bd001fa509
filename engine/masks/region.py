"""The region mask: a BiSeNet face parser (MODELS-2.md §6.1, §6.2, §6.3).

The crop is resized to 512², fed RGB, /255, ImageNet mean/std, NCHW as ``input``;
output 0 holds 19 class scores per pixel. The mask is 1 where the best-scoring class
is one of the chosen regions, resized back to the crop (bilinear on 0/1) and softened.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from engine.errors import InvalidOptions, ModelUnavailable
from engine.families.table import IMAGENET_MEAN, IMAGENET_STD, PARSER_IO
from engine.masks.crop import check_crop
from engine.masks.model import load, numpy_type
from engine.masks.soften import soften
from engine.models.registry import ModelSpec
from engine.runtime import SessionCache

SIZE = 512
CLASSES = 19

# (x/255 − mean)/std per RGB plane, as one scale and one shift.
_SCALE = 1.0 / (255.0 * np.array(IMAGENET_STD, np.float32))
_SHIFT = np.array(IMAGENET_MEAN, np.float32) / np.array(IMAGENET_STD, np.float32)


class FaceParser:
    """One loaded BiSeNet file; thread-safe (ONNX Runtime sessions are)."""

    def __init__(self, sessions: SessionCache, spec: ModelSpec, path: str | Path) -> None:
        self.name = spec.name
        self.session, bound = load(sessions, spec, path, "parser", "bisenet", PARSER_IO)
        self.input_name = bound.inputs[0].name
        self.input_type = numpy_type(self.name, bound.inputs[0])
        self.output_name = bound.outputs[0].name

    def scores(self, crop: np.ndarray) -> np.ndarray:
        """The [19, H, W] class scores of a BGR crop (H = W = 512 for FaceFusion's files)."""
        check_crop("crop", crop)
        small = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        batch = np.empty((1, 3, SIZE, SIZE), np.float32)
        for plane, channel in enumerate((2, 1, 0)):  # RGB planes from BGR pixels
            np.multiply(small[:, :, channel], _SCALE[plane], out=batch[0, plane])
            batch[0, plane] -= _SHIFT[plane]
        batch = batch.astype(self.input_type, copy=False)
        result = self.session.run([self.output_name], {self.input_name: batch})[0]
        if result.ndim != 4 or result.shape[:2] != (1, CLASSES):
            raise ModelUnavailable(
                f"model {self.name} (family bisenet): output {self.output_name!r} has shape "
                f"{list(result.shape)}, expected [1, {CLASSES}, {SIZE}, {SIZE}]"
            )
        return result[0]

    def mask(self, crop: np.ndarray, classes: Iterable[int]) -> np.ndarray:
        """The softened S×S mask of the pixels whose best class is in ``classes``."""
        size = check_crop("crop", crop)
        chosen = best_class_in(self.scores(crop), classes).astype(np.float32)
        if chosen.shape != (size, size):
            chosen = cv2.resize(chosen, (size, size), interpolation=cv2.INTER_LINEAR)
        return soften(chosen)


def best_class_in(scores: np.ndarray, classes: Iterable[int]) -> np.ndarray:
    """``isin(argmax(scores, axis=0), classes)`` as a bool H×W array, for finite scores.

    The best chosen score is compared with the best other score, plane by plane; only
    pixels where the two tie fall back to ``argmax`` (first class wins, as there).
    About three times faster than ``np.argmax`` over the first axis of a [19, 512,
    512] array, which strides across the planes.
    """
    count = scores.shape[0]
    wanted = {int(c) for c in classes}
    if not wanted <= set(range(count)):
        raise InvalidOptions(f"parser classes {sorted(wanted)} are outside 0..{count - 1}")
    planes = scores.astype(np.float32, copy=False)
    chosen_best = _plane_max(planes, sorted(wanted))
    other_best = _plane_max(planes, [c for c in range(count) if c not in wanted])
    if chosen_best is None or other_best is None:
        return np.full(planes.shape[1:], other_best is None, dtype=bool)
    result = chosen_best > other_best
    ties = np.flatnonzero(chosen_best == other_best)
    if ties.size:
        in_set = np.isin(np.arange(count), sorted(wanted))
        first = np.argmax(planes.reshape(count, -1)[:, ties], axis=0)
        result.reshape(-1)[ties] = in_set[first]
    return result


def _plane_max(planes: np.ndarray, indices: list[int]) -> np.ndarray | None:
    if not indices:
        return None
    best = planes[indices[0]].copy()
    for index in indices[1:]:
        np.maximum(best, planes[index], out=best)
    return best
