"""The ``inswapper_128`` swapper (InsightFace's model, downloaded on demand).

Pre- and post-processing follow MODELS.md §3–4: the target face is aligned to
the ``arcface_128`` template at 128 px, fed as RGB in [0, 1] NCHW together with
a 512-d latent; the output crop (RGB, [0, 1]) is pasted back with FaceFusion's
box mask.

Latent rule: we follow **insightface** (the model's authors):
``latent = (raw/‖raw‖)·emap``, then ``latent /= ‖latent‖``. FaceFusion skips
the final renormalisation (``raw·emap/‖raw‖``); the two differ only in the
latent's length, and renormalising keeps it at the scale the reference code
feeds. With several source images the raw embeddings are averaged first
(``SourceIdentity.embedding``), as FaceFusion does.

Differences from insightface's ``INSwapper.get`` that are deliberate: the
output crop is rounded to uint8 rather than truncated (at most one level), and
paste-back uses FaceFusion's box mask (``mask_blur``/``mask_padding``) instead
of insightface's eroded white square.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.align import warp_face
from engine.errors import InvalidInput, ModelUnavailable
from engine.faces import Face
from engine.masks.box import box_mask
from engine.options import SwapOptions
from engine.paste import color_transfer, paste_back
from engine.runtime import SessionCache
from engine.swappers.base import SourceIdentity
from engine.swappers.identity import emap_latent

TEMPLATE = "arcface_128"
EMBEDDING_SIZE = 512


class InSwapper:
    """Runs an inswapper ONNX file; one instance serves every job of a worker."""

    name = "inswapper_128"
    needs_embedding = True

    def __init__(self, sessions: SessionCache, model_path: str | Path) -> None:
        self.model_path = Path(model_path)
        self.emap = load_emap(self.model_path)
        self.session = sessions.get(self.model_path)
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if len(inputs) != 2 or not outputs:
            raise ModelUnavailable(
                f"{self.model_path.name} does not look like an inswapper model: it has "
                f"{len(inputs)} inputs (expected an image and a latent) and {len(outputs)} outputs"
            )
        by_name = {item.name: item for item in inputs}
        if "target" in by_name and "source" in by_name:
            image_input, latent_input = by_name["target"], by_name["source"]
        else:
            image_input, latent_input = inputs[0], inputs[1]
        self.image_name = image_input.name
        self.latent_name = latent_input.name
        self.output_name = outputs[0].name
        self.image_dtype = _numpy_type(image_input.type)
        self.latent_dtype = _numpy_type(latent_input.type)
        shape = image_input.shape
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ModelUnavailable(
                f"{self.model_path.name}: image input {image_input.name!r} has shape {shape}, "
                "expected [1, 3, size, size]"
            )
        self.size = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else 128

    def latent(self, embedding: np.ndarray) -> np.ndarray:
        """The model's [1, 512] source latent from a raw embedding (insightface's rule)."""
        return emap_latent(embedding, self.emap).astype(self.latent_dtype)

    def swap_crop(
        self, frame: np.ndarray, target: Face, latent: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the model on one face: (swapped BGR crop, frame → crop matrix, original crop)."""
        _check_frame(frame)
        points = np.asarray(target.landmarks, dtype=np.float64)
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise InvalidInput(
                f"the target face needs five finite landmarks, got shape {points.shape}"
            )
        crop, matrix = warp_face(frame, points, TEMPLATE, self.size)
        blob = crop[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
        output = self.session.run(
            [self.output_name],
            {self.image_name: blob.astype(self.image_dtype), self.latent_name: latent},
        )[0]
        image = np.clip(np.asarray(output[0], dtype=np.float32).transpose(1, 2, 0), 0.0, 1.0)
        swapped = np.rint(image * 255.0).astype(np.uint8)[:, :, ::-1]
        return np.ascontiguousarray(swapped), matrix, crop

    def swap(
        self, frame: np.ndarray, target: Face, source: SourceIdentity, options: SwapOptions
    ) -> np.ndarray:
        if source.embedding is None:
            raise InvalidInput(
                "inswapper_128 needs the source face's embedding; run the recognizer first"
            )
        swapped, matrix, original = self.swap_crop(frame, target, self.latent(source.embedding))
        mask = box_mask(self.size, options.mask_blur, options.mask_padding)
        if options.color_correction:
            swapped = color_transfer(swapped, original, mask)
        return paste_back(frame, swapped, matrix, mask)


def load_emap(path: Path) -> np.ndarray:
    """The 512×512 ``emap``: the model file's last graph initializer (insightface's rule)."""
    import onnx
    from onnx import numpy_helper

    if not path.is_file():
        raise ModelUnavailable(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise ModelUnavailable(f"cannot read {path.name} as an ONNX model: {exc}") from exc
    initializers = model.graph.initializer
    if not initializers:
        raise ModelUnavailable(
            f"{path.name} has no graph initializers, so it carries no emap; "
            "is it really inswapper_128? Download it again"
        )
    emap = numpy_helper.to_array(initializers[-1])
    if emap.shape != (EMBEDDING_SIZE, EMBEDDING_SIZE):
        raise ModelUnavailable(
            f"{path.name}: the last graph initializer ({initializers[-1].name!r}) has shape "
            f"{tuple(emap.shape)}, but inswapper's emap must be 512x512; "
            "the file is not a usable inswapper model"
        )
    return emap.astype(np.float64)


def _numpy_type(onnx_type: str) -> type:
    return np.float16 if onnx_type == "tensor(float16)" else np.float32


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
        raise InvalidInput("the target frame must be a BGR uint8 image array")
    if frame.shape[2] != 3:
        raise InvalidInput(f"the target frame must have shape (H, W, 3), got {frame.shape}")
