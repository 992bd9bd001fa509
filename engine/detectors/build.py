"""A detector from its catalogue entry: the family names the code, the size its input.

Sizes per family are FaceFusion's choices (MODELS-2.md §10; the default is the
last, 640). ``mtcnn`` runs an image pyramid and has no input size, so it ignores
``size``. ``scrfd`` keeps its insightface pre-processing (``engine.detectors.scrfd``);
its tensors are checked here against the family, as the others check theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.detectors import FaceDetector
from engine.detectors.common import bind_detector, check_fixed_size, check_size
from engine.detectors.many import MANY_SIZES, ManyDetector
from engine.detectors.retinaface import SIZES as RETINAFACE_SIZES
from engine.detectors.retinaface import RetinafaceDetector
from engine.detectors.yolo_face import SIZES as YOLO_FACE_SIZES
from engine.detectors.yolo_face import YoloFaceDetector
from engine.detectors.yunet import SIZES as YUNET_SIZES
from engine.detectors.yunet import YunetDetector
from engine.errors import InvalidOptions, ModelUnavailable
from engine.models.registry import ModelSpec
from engine.runtime import SessionCache

DETECTOR_SIZES: dict[str, tuple[int, ...]] = {
    "scrfd": (160, 320, 480, 512, 640),
    "retinaface": RETINAFACE_SIZES,
    "yolo_face": YOLO_FACE_SIZES,
    "yunet": YUNET_SIZES,
    "many": MANY_SIZES,
}
DEFAULT_SIZE = 640


def build_detector(
    sessions: SessionCache,
    spec: ModelSpec,
    path: str | Path | None,
    size: int | None = None,
) -> FaceDetector:
    """The detector for ``spec`` loaded from ``path`` at ``size`` (None: 640).

    ``InvalidOptions`` for a model that is not a detector, an unknown family or a size
    the family does not offer; ``ModelUnavailable`` when the file does not fit.
    """
    if spec.kind != "detector":
        raise InvalidOptions(f"model {spec.name} is a {spec.kind}, not a face detector")
    family = spec.family
    if family == "mtcnn":
        from engine.detectors.mtcnn import MtcnnDetector

        return MtcnnDetector(sessions)
    if family not in DETECTOR_SIZES or family == "many":
        raise InvalidOptions(
            f"model {spec.name} names detector family {family!r}; known families: "
            f"{', '.join(f for f in DETECTOR_SIZES if f != 'many')}, mtcnn"
        )
    if path is None:
        raise ModelUnavailable(f"model {spec.name} has no file to load")
    size = check_size(
        spec.name, family, DEFAULT_SIZE if size is None else size, DETECTOR_SIZES[family]
    )
    if family == "scrfd":
        from engine.detectors.scrfd import ScrfdDetector

        bound = bind_detector(spec.name, family, sessions.get(path))
        check_fixed_size(spec.name, family, bound, size)
        return ScrfdDetector(sessions, path, input_size=size)
    kinds = {
        "retinaface": RetinafaceDetector,
        "yolo_face": YoloFaceDetector,
        "yunet": YunetDetector,
    }
    return kinds[family](sessions, path, size=size, model_name=spec.name)


def build_many(
    sessions: SessionCache,
    members: Sequence[tuple[ModelSpec, str | Path]],
    size: int | None = None,
) -> ManyDetector:
    """FaceFusion's ``many`` from its members' entries and files
    (``engine.detectors.many.MANY_MODELS``: retinaface_10g, scrfd_2.5g, yoloface_8n)."""
    size = check_size("many", "many", DEFAULT_SIZE if size is None else size, MANY_SIZES)
    return ManyDetector([build_detector(sessions, spec, path, size) for spec, path in members])
