"""FaceFusion's YuNet detector (``yunet_2023_mar``), run as FaceFusion runs it.

MODELS-2.md §10: 640×640 only; downscale only, top-left on a zero canvas, raw
0–255 BGR (no normalisation). Twelve outputs, each [1, N_s, C]: class scores
(C 1), objectness (1), boxes (4) and keypoints (10) for strides 8/16/32. One
anchor per cell at (col·s, row·s); centre = (dx, dy)·s + anchor, size =
exp(dw, dh)·s, keypoint k = (d₂ₖ, d₂ₖ₊₁)·s + anchor.

Score = cls · obj, FaceFusion's **plain product**. OpenCV's own decoder uses
√(cls · obj), so at the same threshold this is stricter (a face with cls = obj =
0.6 scores 0.36 here, 0.6 in OpenCV); we keep FaceFusion's so that its
``--face-detector-score`` values mean the same here. Kept when ≥ the threshold;
NMS at IoU 0.4.
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
from engine.detectors.scrfd import anchor_centres
from engine.faces import Face

FAMILY = "yunet"
SIZES = (640,)
STRIDES = (8, 16, 32)
_HEADS = (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))


class YunetDetector(FamilyDetector):
    """YuNet with five keypoints; ``size`` must be 640 (§10)."""

    family = FAMILY
    sizes = SIZES

    def _read_outputs(self, bound: BoundIO) -> None:
        if len(bound.outputs) != len(_HEADS) * len(STRIDES):
            raise model_error(
                self.model_name,
                FAMILY,
                bound.outputs[-1],
                f"is one of {len(bound.outputs)} outputs; the family reads 12 "
                "(cls, obj, bbox, kps for strides 8/16/32)",
            )
        for index, tensor in enumerate(bound.outputs):
            head, width = _HEADS[index // len(STRIDES)]
            stride = STRIDES[index % len(STRIDES)]
            rows = (self.size // stride) ** 2
            declared = output_width(tensor)
            count = tensor.shape[-2] if tensor.shape and len(tensor.shape) >= 2 else None
            if (declared is not None and declared != width) or (
                count is not None and count != rows
            ):
                raise model_error(
                    self.model_name,
                    FAMILY,
                    tensor,
                    f"has shape {list(tensor.shape or [])}, expected [1, {rows}, {width}] "
                    f"({head} at stride {stride})",
                )
        self._outputs = [tensor.name for tensor in bound.outputs]
        square = (self.size, self.size)
        self._anchors = {stride: anchor_centres(square, stride, 1) for stride in STRIDES}

    def detect(self, image_bgr: np.ndarray, score_threshold: float = 0.5) -> list[Face]:
        """Faces in a BGR frame, largest first."""
        threshold = check_threshold(score_threshold)
        canvas = fit_frame(as_bgr(image_bgr), self.size, 0.0, 1.0, self._input.dtype)
        outputs = self._session.run(self._outputs, {self._input.name: canvas.blob})
        all_boxes, all_scores, all_points = [], [], []
        for index, stride in enumerate(STRIDES):
            anchors = self._anchors[stride]
            cls, obj, bbox, kps = (
                self._head(outputs, index + part * len(STRIDES), len(anchors), width)
                for part, (_, width) in enumerate(_HEADS)
            )
            scores = (cls * obj).reshape(-1)
            picked = np.nonzero(scores >= threshold)[0]
            anchor, bbox, kps = anchors[picked], bbox[picked], kps[picked]
            centre = bbox[:, 0:2] * stride + anchor
            extent = np.exp(bbox[:, 2:4]) * stride
            all_boxes.append(np.concatenate([centre - extent / 2, centre + extent / 2], axis=1))
            all_points.append(kps.reshape(-1, 5, 2) * stride + anchor[:, None, :])
            all_scores.append(scores[picked])
        boxes = np.concatenate(all_boxes) * np.tile(canvas.ratio, 2)
        points = np.concatenate(all_points) * canvas.ratio
        scores = np.concatenate(all_scores)
        keep = nms(boxes, scores, NMS_IOU)
        return make_faces(boxes[keep], scores[keep], points[keep])

    def _head(self, outputs: list[np.ndarray], index: int, rows: int, width: int) -> np.ndarray:
        """Output ``index`` as (rows, width), or a clear error naming it."""
        output = outputs[index]
        if output.size != rows * width:
            raise model_error(
                self.model_name,
                FAMILY,
                self._outputs[index],
                f"gave shape {output.shape}, expected [1, {rows}, {width}]",
            )
        return output.reshape(rows, width).astype(np.float32, copy=False)
