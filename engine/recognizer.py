"""ArcFace identity embeddings (``arcface_w600k_r50`` and insightface's ``w600k_r50``).

Pre-processing as insightface's ``ArcFaceONNX`` (MODELS.md §3): a 5-point
similarity warp to ``arcface_112_v2``, BGR→RGB, ``(x − 127.5) / 127.5``, NCHW.
MXNet exports normalise inside the graph; insightface recognises them by a
``Sub`` and a ``Mul`` among the first eight nodes and feeds them raw pixels,
and so do we. Embeddings are returned raw (not normalised): the swapper and
the reference selector normalise them as they need.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import onnx

from engine.align import warp_face
from engine.detectors import as_bgr
from engine.errors import InvalidInput, ModelUnavailable
from engine.faces import Face
from engine.runtime import SessionCache

TEMPLATE = "arcface_112_v2"
_MAX_BATCH = 32


def is_mxnet_export(model_path: Path) -> bool:
    """insightface's test: a Sub and a Mul node among the first eight nodes (by node name)."""
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises protobuf's DecodeError and others
        raise ModelUnavailable(f"cannot read model {model_path.name}: {exc}") from exc
    names = [node.name for node in model.graph.node[:8]]
    has_sub = any(name.startswith(("Sub", "_minus")) for name in names)
    has_mul = any(name.startswith(("Mul", "_mul")) for name in names)
    return has_sub and has_mul


class ArcFaceRecognizer:
    """Raw ArcFace embeddings of detected faces."""

    def __init__(self, sessions: SessionCache, model_path: str | Path) -> None:
        self.model_path = Path(model_path)
        self._session = sessions.get(self.model_path)
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else []
        if len(shape) != 4 or len(outputs) != 1 or len(outputs[0].shape) != 2:
            raise ModelUnavailable(
                f"{self.model_path.name} is not an ArcFace recognizer: expected one NCHW input "
                f"and one [B, D] output, found inputs {[(i.name, i.shape) for i in inputs]} "
                f"and outputs {[(o.name, o.shape) for o in outputs]}"
            )
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name
        size = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else 112
        self.input_size = int(size)
        self.dynamic_batch = not (isinstance(shape[0], int) and shape[0] > 0)
        if is_mxnet_export(self.model_path):
            self.mean, self.std = 0.0, 1.0
        else:
            self.mean, self.std = 127.5, 127.5

    def embed(self, image_bgr: np.ndarray, face: Face) -> np.ndarray:
        """The raw (D,) float32 embedding of one face (D = 512 for ArcFace)."""
        image = as_bgr(image_bgr)
        return self._run(self._blob(image, face))[0]

    def embed_many(self, image_bgr: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """(N, D) embeddings of several faces of one image; one batched run when the model allows."""
        image = as_bgr(image_bgr)
        if not faces:
            dim = self._session.get_outputs()[0].shape[-1]
            return np.empty((0, dim if isinstance(dim, int) else 512), dtype=np.float32)
        blobs = np.concatenate([self._blob(image, face) for face in faces])
        step = _MAX_BATCH if self.dynamic_batch else 1
        parts = [self._run(blobs[i : i + step]) for i in range(0, len(blobs), step)]
        return np.concatenate(parts)

    def crop(self, image_bgr: np.ndarray, face: Face) -> np.ndarray:
        """The aligned BGR crop the model sees (for previews and debugging)."""
        landmarks = np.asarray(face.landmarks, dtype=np.float32)
        if landmarks.shape != (5, 2) or not np.all(np.isfinite(landmarks)):
            raise InvalidInput(
                f"a face needs five finite (x, y) landmarks, got shape {landmarks.shape}"
            )
        crop, _ = warp_face(as_bgr(image_bgr), landmarks, TEMPLATE, self.input_size)
        return crop

    def _blob(self, image: np.ndarray, face: Face) -> np.ndarray:
        rgb = cv2.cvtColor(self.crop(image, face), cv2.COLOR_BGR2RGB).astype(np.float32)
        blob = (rgb - np.float32(self.mean)) / np.float32(self.std)
        return blob.transpose(2, 0, 1)[None]

    def _run(self, blob: np.ndarray) -> np.ndarray:
        out = self._session.run(
            [self._output_name], {self._input_name: np.ascontiguousarray(blob)}
        )[0]
        return np.asarray(out, dtype=np.float32).reshape(len(blob), -1)
