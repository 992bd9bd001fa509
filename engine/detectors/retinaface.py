"""FaceFusion's RetinaFace detector (``retinaface_10g``), run as FaceFusion runs it.

The file has SCRFD's nine heads (MODELS-2.md §10: scores, boxes, keypoints for
strides 8/16/32, two anchors per cell, centres (x·s, y·s) with no 0.5 offset), so
decoding is SCRFD's (``engine.detectors.scrfd.decode_distances``). Unlike our
SCRFD, which follows insightface (resize up or down, RGB), the input follows
FaceFusion: downscale only, top-left on a zero canvas, BGR, (x − 127.5) / 128.
Candidates with score ≥ the threshold go through NMS at IoU 0.4.
"""

from __future__ import annotations

import numpy as np

from engine.detectors import as_bgr, check_threshold, make_faces
from engine.detectors.common import (
    NMS_IOU,
    BoundIO,
    FamilyDetector,
    fit_frame,
    model_error,
    nms,
    output_width,
)
from engine.detectors.scrfd import LAYOUTS, anchor_centres, decode_distances
from engine.faces import Face

FAMILY = "retinaface"
SIZES = (160, 320, 480, 512, 640)
MEAN, SCALE = 127.5, 128.0
LAYOUT = LAYOUTS[9]
_WIDTHS = (1, 1, 1, 4, 4, 4, 10, 10, 10)  # scores, boxes, keypoints per stride


class RetinafaceDetector(FamilyDetector):
    """RetinaFace with five keypoints; ``size`` is the square detector input (§10 choices)."""

    family = FAMILY
    sizes = SIZES

    def _read_outputs(self, bound: BoundIO) -> None:
        if len(bound.outputs) != len(_WIDTHS):
            raise model_error(
                self.model_name,
                FAMILY,
                bound.outputs[-1],
                f"is one of {len(bound.outputs)} outputs; the family reads 9 "
                "(scores, boxes, keypoints for strides 8/16/32)",
            )
        for tensor, width in zip(bound.outputs, _WIDTHS, strict=True):
            declared = output_width(tensor)
            if declared is not None and declared != width:
                raise model_error(
                    self.model_name, FAMILY, tensor, f"has width {declared}, expected {width}"
                )
        self._outputs = [tensor.name for tensor in bound.outputs]
        square = (self.size, self.size)
        self._centres = {s: anchor_centres(square, s, LAYOUT.anchors) for s in LAYOUT.strides}

    def detect(self, image_bgr: np.ndarray, score_threshold: float = 0.5) -> list[Face]:
        """Faces in a BGR frame, largest first."""
        threshold = check_threshold(score_threshold)
        canvas = fit_frame(as_bgr(image_bgr), self.size, MEAN, SCALE, self._input.dtype)
        outputs = self._session.run(self._outputs, {self._input.name: canvas.blob})
        boxes, scores, points = decode_distances(
            outputs, LAYOUT, self._centres, threshold, self._head
        )
        boxes *= np.tile(canvas.ratio, 2)
        points *= canvas.ratio
        keep = nms(boxes, scores, NMS_IOU)
        return make_faces(boxes[keep], scores[keep], points[keep])

    def _head(self, output: np.ndarray, rows: int, width: int, stride: int) -> np.ndarray:
        """One output as (rows, width): a leading batch axis of 1 is accepted."""
        if output.size != rows * width:
            index = LAYOUT.strides.index(stride) + 3 * {1: 0, 4: 1, 10: 2}[width]
            raise model_error(
                self.model_name,
                FAMILY,
                self._outputs[index],
                f"has shape {output.shape}, expected {rows}x{width} at stride {stride} "
                f"for a {self.size}x{self.size} input",
            )
        return output.reshape(rows, width).astype(np.float32, copy=False)
