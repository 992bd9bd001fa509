"""The GFPGAN 1.4 face enhancer (restores detail after a swap), run as an ONNX model.

Pre/post-processing per MODELS.md §3–4 (FaceFusion's): ``ffhq_512`` crop at
512 px, RGB, scaled to [−1, 1], NCHW; the output is clipped to [−1, 1], mapped
back to uint8 BGR, pasted back with a box mask and mixed with the frame by
``blend``. Models that declare a ``weight`` input get FaceFusion's default 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.align import warp_face
from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.paste import box_mask, paste_back
from engine.runtime import SessionCache

TEMPLATE = "ffhq_512"
SIZE = 512


class GfpganEnhancer:
    """Runs a GFPGAN ONNX file on one face at a time; shared by the jobs of a worker."""

    name = "gfpgan_1.4"

    def __init__(self, sessions: SessionCache, model_path: str | Path, weight: float = 0.5) -> None:
        self.model_path = Path(model_path)
        self.session = sessions.get(self.model_path)
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        images = [item for item in inputs if item.name != "weight"]
        if len(images) != 1 or not outputs:
            raise ModelUnavailable(
                f"{self.model_path.name} does not look like a GFPGAN model: inputs "
                f"{[item.name for item in inputs]}, {len(outputs)} outputs"
            )
        image = images[0]
        if len(image.shape) != 4 or (isinstance(image.shape[1], int) and image.shape[1] != 3):
            raise ModelUnavailable(
                f"{self.model_path.name}: input {image.name!r} has shape {image.shape}, "
                "expected [1, 3, 512, 512]"
            )
        self.image_name = image.name
        self.image_dtype = np.float16 if image.type == "tensor(float16)" else np.float32
        self.output_name = outputs[0].name
        self.has_weight = len(images) != len(inputs)
        self.weight = np.array([weight], dtype=np.float64)

    def enhance(
        self,
        frame: np.ndarray,
        face: Face,
        blend: float,
        mask_blur: float = 0.3,
        mask_padding: float = 0.0,
    ) -> np.ndarray:
        """A new frame with ``face`` restored; ``blend`` 0..1 mixes enhanced over original."""
        if not 0.0 <= blend <= 1.0:
            raise InvalidOptions(f"enhancer blend must be between 0 and 1; got {blend!r}")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
            raise InvalidInput("the frame to enhance must be a BGR uint8 image array")
        if frame.shape[2] != 3:
            raise InvalidInput(f"the frame to enhance must have shape (H, W, 3), got {frame.shape}")
        points = np.asarray(face.landmarks, dtype=np.float64)
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise InvalidInput(f"the face needs five finite landmarks, got shape {points.shape}")
        if blend == 0.0:
            return frame.copy()
        crop, matrix = warp_face(frame, points, TEMPLATE, SIZE)
        restored = self.restore(crop)
        mask = box_mask(SIZE, mask_blur, mask_padding) * np.float32(blend)
        return paste_back(frame, restored, matrix, mask)

    def restore(self, crop: np.ndarray) -> np.ndarray:
        """Run the model on an aligned 512×512 BGR crop; returns the restored BGR crop."""
        if crop.shape != (SIZE, SIZE, 3) or crop.dtype != np.uint8:
            raise InvalidInput(f"GFPGAN needs a 512x512 BGR uint8 crop, got {crop.shape}")
        blob = crop[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
        blob = (blob - np.float32(0.5)) / np.float32(0.5)
        feed = {self.image_name: blob.astype(self.image_dtype)}
        if self.has_weight:
            feed["weight"] = self.weight
        output = self.session.run([self.output_name], feed)[0]
        image = np.clip(np.asarray(output[0], dtype=np.float32), -1.0, 1.0)
        image = np.rint((image + 1.0) / 2.0 * 255.0).astype(np.uint8)
        return np.ascontiguousarray(image.transpose(1, 2, 0)[:, :, ::-1])
