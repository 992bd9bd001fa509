"""FaceFusion's YOLO-face detector (``yoloface_8n``), run as FaceFusion runs it.

MODELS-2.md §10: 640×640 only; downscale only, top-left on a zero canvas, BGR,
x / 255. One output, squeezed and transposed to N×20 rows (N = 8400 at 640 for a
YOLOv8 head): box (cx, cy, w, h) in input pixels, score in column 4 (kept when
*above* the threshold, FaceFusion's ``>``), then five keypoints as (x, y,
visibility) triplets, visibility ignored. The head is already decoded, so no
anchors. NMS at IoU 0.4.
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
)
from engine.faces import Face

FAMILY = "yolo_face"
SIZES = (640,)
ROWS = 20  # 4 box + 1 score + 5 × (x, y, visibility)


class YoloFaceDetector(FamilyDetector):
    """YOLOv8-face with five keypoints; ``size`` must be 640 (§10)."""

    family = FAMILY
    sizes = SIZES

    def _read_outputs(self, bound: BoundIO) -> None:
        output = bound.outputs[0]
        if output.shape is not None:
            batch_ok = len(output.shape) == 3 and output.shape[0] in (1, None)
            if not batch_ok or output.shape[1] not in (ROWS, None):
                raise model_error(
                    self.model_name,
                    FAMILY,
                    output,
                    f"has shape {list(output.shape)}, expected [1, {ROWS}, N] "
                    "(box, score, five keypoints per candidate)",
                )
        self._output = output.name

    def detect(self, image_bgr: np.ndarray, score_threshold: float = 0.5) -> list[Face]:
        """Faces in a BGR frame, largest first."""
        threshold = check_threshold(score_threshold)
        canvas = fit_frame(as_bgr(image_bgr), self.size, 0.0, 255.0, self._input.dtype)
        (raw,) = self._session.run([self._output], {self._input.name: canvas.blob})
        if raw.ndim != 3 or raw.shape[:2] != (1, ROWS):
            raise model_error(
                self.model_name,
                FAMILY,
                self._output,
                f"gave shape {raw.shape}, expected [1, 20, N]",
            )
        rows = raw[0].T.astype(np.float32)  # FaceFusion: squeeze, transpose to N×20
        rows = rows[rows[:, 4] > threshold]
        centre, extent = rows[:, 0:2], rows[:, 2:4]
        boxes = np.concatenate([centre - extent / 2, centre + extent / 2], axis=1)
        boxes *= np.tile(canvas.ratio, 2)
        points = rows[:, 5:20].reshape(-1, 5, 3)[:, :, :2] * canvas.ratio
        scores = rows[:, 4]
        keep = nms(boxes, scores, NMS_IOU)
        return make_faces(boxes[keep], scores[keep], points[keep])
