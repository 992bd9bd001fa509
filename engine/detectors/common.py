"""The steps FaceFusion's detectors share (MODELS-2.md §10): load check, input, NMS.

RetinaFace, YOLO-face and YuNet are run the way FaceFusion runs them, since their
files are FaceFusion's: the frame is only ever *downscaled* to fit the detector
size (aspect kept, OpenCV's default bilinear), pasted at the top-left of a zero
canvas, fed as BGR (no channel swap), and results are scaled back by
(W / w_resized, H / h_resized). Overlapping candidates are removed with OpenCV's
NMS on (x, y, w, h), as FaceFusion does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from engine.errors import InvalidOptions, ModelUnavailable
from engine.families.io import BoundIO, Tensor, bind_session
from engine.families.table import family_io
from engine.runtime import SessionCache

NMS_IOU = 0.4  # FaceFusion's IoU for one detector at one angle (§10)


def check_size(model: str, family: str, size: Any, choices: Sequence[int]) -> int:
    """``size`` as one of the family's detector sizes, else ``InvalidOptions``."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size not in choices:
        raise InvalidOptions(
            f"detector size {size!r} is not available for {model} (family {family}); "
            f"choose one of {', '.join(str(c) for c in choices)}"
        )
    return int(size)


def bind_detector(model: str, family: str, session: Any) -> BoundIO:
    """The file's tensors checked against the detector family (``engine.families``)."""
    io = family_io("detector", family)
    if io is None:
        raise InvalidOptions(f"{family!r} is not a detector family")
    return bind_session(model, family, io, session)


class FamilyDetector:
    """What every catalogue detector does first: name the model, check the size against
    the family's choices, open the session and check its tensors; each family checks
    the outputs it reads (``_read_outputs``) and decodes them."""

    family: ClassVar[str]
    sizes: ClassVar[Sequence[int]]

    def __init__(
        self,
        sessions: SessionCache,
        model_path: str | Path,
        size: int = 640,
        model_name: str | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.model_name = model_name or self.model_path.stem
        self.size = check_size(self.model_name, self.family, size, self.sizes)
        self._session = sessions.get(self.model_path)
        bound = bind_detector(self.model_name, self.family, self._session)
        self._read_outputs(bound)
        check_fixed_size(self.model_name, self.family, bound, self.size)
        self._input = bound.inputs[0]

    def _read_outputs(self, bound: BoundIO) -> None:
        """Check the outputs the family reads and keep what decoding needs."""
        raise NotImplementedError


def check_fixed_size(model: str, family: str, bound: BoundIO, size: int) -> None:
    """A file whose input height/width are fixed takes only that size."""
    image = bound.inputs[0]
    if {image.dim(2, size), image.dim(3, size)} != {size}:
        raise InvalidOptions(
            f"model {model} (family {family}) has a fixed input {_dims(image)}; "
            f"detector size {size} is not possible with this file"
        )


def model_error(model: str, family: str, tensor: Tensor | str, problem: str) -> ModelUnavailable:
    """A ``ModelUnavailable`` naming the model, its family and the tensor."""
    name = tensor.name if isinstance(tensor, Tensor) else tensor
    return ModelUnavailable(f"model {model} (family {family}): output {name!r} {problem}")


def output_width(tensor: Tensor) -> int | None:
    """The declared last dimension of an output, or None when dynamic or unknown."""
    if not tensor.shape:
        return None
    return tensor.shape[-1]


@dataclass(frozen=True)
class Canvas:
    """The detector input and the factors that map its pixels back to the frame."""

    blob: np.ndarray  # (1, 3, size, size), the model's input dtype
    ratio: np.ndarray  # (2,) float32: (W / w_resized, H / h_resized)


def fit_frame(
    image: np.ndarray, size: int, mean: float, scale: float, dtype: str = "float32"
) -> Canvas:
    """FaceFusion's detector input: downscale only, top-left on zeros, BGR, (x − mean) / scale.

    ``restrict_frame``: a frame larger than ``size`` on either side is scaled by
    min(size/H, size/W), each side truncated to an int; a smaller frame is left as is.
    """
    height, width = image.shape[:2]
    fitted = image
    if height > size or width > size:
        factor = min(size / height, size / width)
        new_width, new_height = max(int(width * factor), 1), max(int(height * factor), 1)
        fitted = cv2.resize(image, (new_width, new_height))
    canvas = np.zeros((size, size, 3), dtype=np.float32)
    canvas[: fitted.shape[0], : fitted.shape[1]] = fitted
    blob = (canvas - np.float32(mean)) / np.float32(scale)
    ratio = np.array([width / fitted.shape[1], height / fitted.shape[0]], dtype=np.float32)
    return Canvas(np.ascontiguousarray(blob.transpose(2, 0, 1)[None]).astype(dtype), ratio)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by OpenCV's NMS (a box goes when its IoU with a better one exceeds
    ``iou_threshold``), best score first; ties keep their input order."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    rects = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    # OpenCV drops scores ≤ its score threshold (which must be ≥ 0); the caller has
    # already applied the detector score, so NMS sees ranks: all kept, order exact.
    order = np.argsort(-np.asarray(scores, dtype=np.float64).reshape(-1), kind="stable")
    ranks = np.empty(len(order), dtype=np.float64)
    ranks[order] = np.arange(len(order), 0, -1)
    keep = cv2.dnn.NMSBoxes(rects.tolist(), ranks.tolist(), 0.0, iou_threshold)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def _dims(tensor: Tensor) -> str:
    if tensor.shape is None:
        return "[?]"
    return "[" + ", ".join("?" if d is None else str(d) for d in tensor.shape) + "]"
